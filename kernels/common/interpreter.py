"""Test-speed helper for the Triton interpreter (TRITON_INTERPRET=1).

The interpreter runs a custom ``tl.associative_scan`` one element at a time in Python (~0.4 ms per element), which
makes chunked scans far too slow for CPU tests. :func:`vectorize_interpreter_scans` replaces that fallback with the
same sequential scan along the scan axis, applying the kernel's own combine function to whole slices at once: the
results are identical, only the Python loop is shorter. Call it from tests; it changes nothing on the GPU.
"""
import numpy as np


def _scan_along_axis(self, inputs):
    """Inclusive sequential scan of ``inputs`` (a tuple of interpreter tensors) along ``self.axis``, slice by slice."""
    arrays = [arg.handle.data for arg in inputs]
    dtypes = [arg.dtype for arg in inputs]
    outputs = [np.empty_like(a) for a in arrays]
    out_views = [np.moveaxis(o, self.axis, 0) for o in outputs]  # (scan length, ...) views to write into

    def step(index):
        return tuple(self.to_tensor(np.ascontiguousarray(np.take(a, index, axis=self.axis)), dtype)
                     for a, dtype in zip(arrays, dtypes))

    acc = step(0)
    for position in range(arrays[0].shape[self.axis]):
        if position:
            result = self.combine_fn.fn(*acc, *step(position))
            acc = result if isinstance(result, tuple) else (result, )
        for view, value in zip(out_views, acc):
            view[position] = value.handle.data
    return [self.to_tensor(o, dtype) for o, dtype in zip(outputs, dtypes)]


def vectorize_interpreter_scans():
    """Make the interpreter's generic ``tl.associative_scan`` loop over the scan axis only (idempotent)."""
    from triton.runtime import interpreter
    interpreter.ScanOps.generic_scan = _scan_along_axis
