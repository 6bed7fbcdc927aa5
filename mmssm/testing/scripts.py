"""Run a repository script (a converter, a tool) inside the test process, as ``python SCRIPT ARGS`` would."""
import runpy
import sys


def run_script(path, *args):
    """Execute ``path`` as ``__main__`` with ``sys.argv = [path, *args]`` (restored afterwards); exceptions and
    ``SystemExit`` propagate to the caller."""
    argv = sys.argv
    sys.argv = [str(path), *map(str, args)]
    try:
        runpy.run_path(str(path), run_name='__main__')
    finally:
        sys.argv = argv
