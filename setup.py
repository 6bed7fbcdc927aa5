"""mmssm: vision state-space models for OpenMMLab on shared Triton scan kernels.

The top-level ``kernels/`` folder is installed as the ``mmssm.kernels`` package, so the scan ops can be read
(and lifted out) on their own while ``import mmssm.kernels`` works after ``pip install .`` and ``pip install -e .``.
"""
import os
import sys
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent
# setuptools loads other distributions' entry points while it builds; with this folder on sys.path our top-level
# ``kernels/`` would shadow the ``kernels`` package of Hugging Face (a dependency of transformers >= 5.25, whose
# egg_info writer ``kernels._internals.locking`` then fails to import and the install stops)
sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or '.') != str(ROOT.resolve())]


def read_requirements(name):
    lines = (ROOT / 'requirements' / name).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith('#')]


def read_version():
    namespace = {}
    exec((ROOT / 'mmssm' / 'version.py').read_text(), namespace)
    return namespace['__version__']


kernel_packages = ['mmssm.kernels'] + [
    'mmssm.kernels.' + name for name in find_packages('kernels')
]

setup(
    name='mmssm',
    version=read_version(),
    description='Vision state-space models (Mamba) for OpenMMLab on shared Triton scan kernels',
    long_description=(ROOT / 'README.md').read_text(),
    long_description_content_type='text/markdown',
    python_requires='>=3.10',
    packages=find_packages(include=['mmssm', 'mmssm.*']) + kernel_packages,
    package_dir={'mmssm.kernels': 'kernels'},
    install_requires=read_requirements('runtime.txt'),
    extras_require={
        'mmpretrain': read_requirements('mmpretrain.txt'),
        'mmdet': read_requirements('mmdet.txt'),
        'mmseg': read_requirements('mmseg.txt'),
        'tests': read_requirements('tests.txt'),
    },
    license='Apache-2.0',
    zip_safe=False,
)
