"""The autocast state as the layers that manage their own output dtype need it."""
import torch

# device types mmssm runs on (meta tensors, e.g. in FLOP counting, have no autocast state). Not
# torch.amp.is_autocast_available: torch.compile in torch 2.11 cannot trace it and breaks the graph there.
AUTOCAST_DEVICE_TYPES = ('cpu', 'cuda')


def autocast_dtype(tensor):
    """The autocast dtype when autocast is on for ``tensor``'s device type, else None."""
    device_type = tensor.device.type
    if device_type in AUTOCAST_DEVICE_TYPES and torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return None


def run_in_float32(function, x):
    """``function(x)`` with autocast off on ``x``'s device and half-precision ``x`` cast to float32 first (float64
    stays). U-Mamba's and LightM-UNet's Mamba layers run this way: under AMP they gave NaN (U-Mamba's README)."""
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    if x.device.type not in AUTOCAST_DEVICE_TYPES:
        return function(x)
    with torch.autocast(x.device.type, enabled=False):
        return function(x)
