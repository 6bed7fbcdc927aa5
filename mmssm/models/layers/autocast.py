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
