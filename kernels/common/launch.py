"""Argument checks and device rules shared by every op's launchers (plain PyTorch, no Triton import)."""
import functools
import os

import torch
from torch.utils._python_dispatch import _get_current_dispatch_mode  # no public query of the mode stack

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def traced():
    """Whether a tracer watches this call: torch.compile, torch.jit tracing, or a TorchDispatchMode (FlopCounterMode,
    fake tensors). The ops' autograd Functions then call their torch.library custom ops, which tracers see as one
    node with a fake kernel and a FLOP formula; plain eager calls run the same Python function directly and skip
    the custom-op dispatch (about 70 us a call on a 2-core CPU: milliseconds per VMamba training step)."""
    return torch.compiler.is_compiling() or torch.jit.is_tracing() or _get_current_dispatch_mode() is not None


def interpreting():
    """True when Triton kernels run on the CPU through the interpreter (TRITON_INTERPRET=1)."""
    return os.environ.get('TRITON_INTERPRET', '0') not in ('', '0')


def triton_runs_on(tensor):
    """Whether a Triton kernel can take ``tensor``: CUDA tensors, or CPU tensors under the interpreter."""
    return tensor.is_cuda or (tensor.device.type == 'cpu' and interpreting())


@functools.lru_cache(maxsize=None)
def _cuda_multiprocessor_count(index):
    return torch.cuda.get_device_properties(index).multi_processor_count


def multiprocessor_count(device):
    """SMs of a CUDA device (cached); 132 (an H100's) for the interpreter on CPU, so launches look like the GPU's."""
    if device.type != 'cuda':
        return 132
    return _cuda_multiprocessor_count(device.index if device.index is not None else torch.cuda.current_device())


def cdiv(a, b):
    """ceil(a / b) for positive ints (plain Python: ``triton.cdiv`` costs ~6 us a host call in triton 3.8)."""
    return -(-a // b)


def next_power_of_2(n):
    """The smallest power of two >= n (n >= 1), in plain Python like :func:`cdiv`."""
    return 1 << (n - 1).bit_length()


def check_shape(name, tensor, shape):
    """Raise ValueError unless ``tensor.shape == shape``."""
    if tuple(tensor.shape) != tuple(shape):
        raise ValueError(f'{name} must have shape {tuple(shape)}, got {tuple(tensor.shape)}')


def check_dtype(name, tensor, dtypes=FLOAT_DTYPES):
    """Raise TypeError unless ``tensor.dtype`` is one of ``dtypes``."""
    if tensor.dtype not in dtypes:
        raise TypeError(f'{name} must have a dtype in {[str(d) for d in dtypes]}, got {tensor.dtype}')


def check_devices(**tensors):
    """Raise ValueError unless every given (non-None) tensor lives on the same device."""
    devices = {name: t.device for name, t in tensors.items() if t is not None}
    if len(set(devices.values())) > 1:
        listing = ', '.join(f'{name}: {device}' for name, device in devices.items())
        raise ValueError(f'all tensors must be on one device, got {listing}')
