"""FLOP counting of the scan ops by mmengine's ``FlopAnalyzer`` / ``get_model_complexity_info``.

mmengine (like fvcore) traces the model with ``torch.jit`` and counts each graph node with a handle keyed by its
kind; our ops' autograd Functions appear as ``prim::PythonOp.<Function>`` nodes, which it would skip as unsupported.
:func:`register_flop_handles` (called on ``import mmssm.models``) adds handles for them to mmengine's defaults, in
fvcore's convention, the one the official VMamba FLOPs (``flops_selective_scan_fn`` on fvcore) are counted in:
one per multiply-add for projections, ``9 L D N`` (+ ``L D`` for D, + ``L D`` for the z gate) per sequence for a
scan, ``7 L D N`` for a scan that returns its hidden states (no ``C h`` read-out and sum over N, as Spatial-Mamba's
``selective_scan_state_flop_jit``: ``flops_selective_scan_fn(with_C=False, with_D=False)``), five per element for a
LayerNorm with an affine transform; the route copies and the merge's additions count nothing (fvcore ignores
``aten::add``, the official counts ignore CrossScan / CrossMerge).
"""
from mmengine.analysis import complexity_analysis
from mmengine.analysis.jit_handles import get_shape

from mmssm.kernels.selective_scan import selective_scan_flop_count

SELECTIVE_SCAN_ARGS = ('u', 'delta', 'A', 'B', 'C', 'D', 'z', 'delta_bias', 'initial_state')


def python_op_args(inputs, outputs):
    """The positional arguments of a ``prim::PythonOp`` node: its tensor inputs (their shapes) and scalar arguments
    (``None`` included) merged back in call order, from the node's calling convention string (``d`` a tensor, ``c`` a
    scalar)."""
    node = outputs[0].node()
    tensors, scalars = iter(inputs), iter(node.scalar_args())
    return [get_shape(next(tensors)) if kind == 'd' else next(scalars) for kind in node.cconv()]


def selective_scan_flops(inputs, outputs):
    """``SelectiveScanFunction.apply(u, delta, A, B, C, D, z, delta_bias, initial_state, ...)``; without C (the
    ``return_states`` mode, where D and z are None too) 7 per state and step, the scan less the read-out."""
    args = dict(zip(SELECTIVE_SCAN_ARGS, python_op_args(inputs, outputs)))
    batch, channels, length = args['u']
    return selective_scan_flop_count(batch, channels, length, args['A'][1], args['D'] is not None,
                                     args['z'] is not None, args['C'] is not None)


def ss2d_flops(inputs, outputs):
    """``SS2DFunction.apply(x, x_proj_weight, dt_projs_weight, ...)``: per pixel and route-channel, the projection to
    (dt rank R, B, C) and the dt up-projection (R + 2N + R multiply-adds), then the scans with the D term."""
    x, x_proj, dt_projs = python_op_args(inputs, outputs)[:3]
    batch, channels, height, width = x
    num_routes, rows, _ = x_proj
    rank = dt_projs[2]
    num_states = (rows - rank) // 2
    length = height * width
    projections = batch * length * num_routes * channels * (rows + rank)
    return projections + selective_scan_flop_count(batch, num_routes * channels, length, num_states)


def layer_norm_2d_flops(inputs, outputs):
    """``LayerNorm2dFunction.apply(x, weight, bias, ...)``: five per element, as fvcore's affine LayerNorm."""
    batch, channels, height, width = python_op_args(inputs, outputs)[0]
    return 5 * batch * channels * height * width


FLOP_HANDLES = {
    'prim::PythonOp.SelectiveScanFunction': selective_scan_flops,
    'prim::PythonOp.SS2DFunction': ss2d_flops,
    'prim::PythonOp.LayerNorm2dFunction': layer_norm_2d_flops,
    'mmssm::cross_scan': None,  # a copy
    'mmssm::cross_merge': None,  # additions, ignored as fvcore ignores aten::add
}


def register_flop_handles():
    """Make every later ``FlopAnalyzer`` (and ``get_model_complexity_info``) count the scan ops."""
    complexity_analysis._DEFAULT_SUPPORTED_FLOP_OPS.update(FLOP_HANDLES)
