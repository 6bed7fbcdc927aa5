"""Pieces shared by the scan ops: Triton building blocks (``triton_scan``) and launch helpers (``launch``)."""
from .launch import check_devices, check_dtype, check_shape, triton_runs_on

__all__ = ['check_devices', 'check_dtype', 'check_shape', 'triton_runs_on']
