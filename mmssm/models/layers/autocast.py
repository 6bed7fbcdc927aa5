"""The autocast state as the layers that manage their own output dtype need it."""
import torch


def autocast_dtype(tensor):
    """The autocast dtype when autocast is on for ``tensor``'s device type, else None (meta tensors included)."""
    device_type = tensor.device.type
    if torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return None
