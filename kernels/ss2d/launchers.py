"""Argument checks and the launchers of the fused SS2D kernels (projection matmuls, allocation, grid, reductions)."""
import torch

from ..common.launch import cdiv, check_devices, check_dtype, check_shape, next_power_of_2, triton_runs_on
from ..cross_scan.routes import codes_tensor
from ..cross_scan.triton_kernels import cross_merge_triton

SS2D_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
RANK_UNROLL = 8  # dt ranks handled per unrolled step of the kernels' rank loops


def check_ss2d_args(x, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds, num_routes):
    """Raise a clear error on wrong shapes, dtypes or mixed devices; return (batch, D, H, W, R, N)."""
    if x.dim() != 4:
        raise ValueError(f'x must be (batch, D, H, W), got shape {tuple(x.shape)}')
    batch, channels, height, width = x.shape
    if dt_projs_weight.dim() != 3:
        raise ValueError(f'dt_projs_weight must be (K, D, R), got shape {tuple(dt_projs_weight.shape)}')
    rank = dt_projs_weight.shape[2]
    check_shape('dt_projs_weight', dt_projs_weight, (num_routes, channels, rank))
    if A_logs.dim() != 2:
        raise ValueError(f'A_logs must be (K*D, N), got shape {tuple(A_logs.shape)}')
    num_states = A_logs.shape[1]
    check_shape('A_logs', A_logs, (num_routes * channels, num_states))
    check_shape('x_proj_weight', x_proj_weight, (num_routes, rank + 2 * num_states, channels))
    check_shape('dt_projs_bias', dt_projs_bias, (num_routes, channels))
    check_shape('Ds', Ds, (num_routes * channels,))
    named = dict(x=x, x_proj_weight=x_proj_weight, dt_projs_weight=dt_projs_weight, dt_projs_bias=dt_projs_bias,
                 A_logs=A_logs, Ds=Ds)
    for name, tensor in named.items():
        check_dtype(name, tensor, SS2D_DTYPES + (torch.float64,))
    check_devices(**named)
    return batch, channels, height, width, rank, num_states


def block_sizes(channels, num_states, length, block_l=None, block_d=None, num_warps=None):
    """(BLOCK_D, BLOCK_N, BLOCK_L, warps): programs scan BLOCK_D channels x BLOCK_N states in chunks of BLOCK_L steps.

    Chosen from H100 sweeps (docs/benchmarks.md): long maps (VMamba-T stages 1-2) run single-warp programs of
    128-element tiles, whose reductions and scans need no barriers; short ones (stages 3-4) 4-warp, 512 elements.
    """
    block_n = next_power_of_2(num_states)
    long_map = length >= 512
    num_warps = num_warps or (1 if long_map else 4)
    block_l = block_l or (64 if long_map and length >= 2048 and block_n == 1 else max(16, 32 // block_n))
    tile = 128 if num_warps == 1 else 512
    block_d = block_d or min(next_power_of_2(channels), max(1, tile // (block_n * block_l)))
    return block_d, block_n, block_l, num_warps


def route_plan(codes):
    """The reading orders the routes use (0 row-major, 1 column-major; one partial-sum slot each, in this order)
    and each route's int32 word for the kernels (see ``triton_kernels``)."""
    orders = sorted({code & 1 for code in codes})
    words, seen = [], set()
    for code in codes:
        order = code & 1
        words.append(code | int(order in seen) << 2 | orders.index(order) << 3)
        seen.add(order)
    return orders, words


def reading_orders(x, orders):
    """x (batch, D, H, W) -> [contiguous (batch, D, L) in each reading order of ``orders``] (column-major: a copy)."""
    batch, channels, height, width = x.shape
    return [(x if order == 0 else x.transpose(2, 3)).contiguous().view(batch, channels, height * width)
            for order in orders]


def routes_of(codes, order, device):
    """Indices (int64, on ``device``) of the routes reading in ``order``."""
    return codes_tensor([k for k, code in enumerate(codes) if (code & 1) == order], device, torch.int64)


def _merge_orders(parts, height, width, orders, empty):
    """(batch, slots, D, L) partial sums per reading order -> (batch, D, H, W) in parts' dtype."""
    batch, _, channels, _ = parts.shape
    if orders == [0]:
        return parts.view(batch, channels, height, width)
    return cross_merge_triton(parts, height, width, orders, empty)


def _check_triton_device(x):
    if not triton_runs_on(x):
        raise RuntimeError(f'the fused SS2D kernels need CUDA tensors (or TRITON_INTERPRET=1), got {x.device}')


def ss2d_fwd_triton(x, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds, codes, out_dtype, save_states,
                    empty=torch.empty, block_l=None, block_d=None, num_warps=None):
    """Forward launcher: returns (y (batch, D, H, W), x_dbl (batch, K, R+2N, L), states or an empty tensor).

    ``codes``: the K route codes (list of ints). x_dbl holds each route's projections in its reading order.
    ``states`` (batch, K, D, N, chunks) fp32 holds the state entering each chunk of ``block_l`` steps (kept for the
    backward when ``save_states``).
    """
    num_routes = len(codes)
    batch, channels, height, width, rank, num_states = check_ss2d_args(
        x, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds, num_routes)
    _check_triton_device(x)
    length, device = height * width, x.device
    block_d, block_n, block_l, num_warps = block_sizes(channels, num_states, length, block_l, block_d, num_warps)
    num_chunks = cdiv(length, block_l)
    orders, words = route_plan(codes)
    sources = reading_orders(x, orders)  # [(batch, D, L)] per reading order
    x_dbl = empty(batch, num_routes, rank + 2 * num_states, length, dtype=x.dtype, device=device)
    for order, source in zip(orders, sources):
        index = routes_of(codes, order, device)
        weight = x_proj_weight.index_select(0, index).flatten(0, 1).to(x.dtype)  # (routes*(R+2N), D)
        x_dbl.index_copy_(1, index, torch.matmul(weight, source).view(batch, len(index), -1, length))
    y_parts = empty(batch, len(orders), channels, length, dtype=out_dtype, device=device)
    states_shape = (batch, num_routes, channels, num_states, num_chunks) if save_states else (0,)
    states = empty(*states_shape, dtype=torch.float32, device=device)
    from .triton_kernels import ss2d_fwd_kernel
    ss2d_fwd_kernel[(batch, cdiv(channels, block_d))](
        sources[0], sources[-1], x_dbl, codes_tensor(words, device), dt_projs_weight.contiguous(),
        dt_projs_bias.contiguous(), A_logs.contiguous(), Ds.contiguous(), y_parts, states,
        channels, length, num_routes, len(orders), num_states, num_chunks, RANK=rank, RANK_UNROLL=RANK_UNROLL,
        SAVE_STATES=save_states, BLOCK_D=block_d, BLOCK_N=block_n, BLOCK_L=block_l, num_warps=num_warps)
    return _merge_orders(y_parts, height, width, orders, empty), x_dbl, states


def ss2d_bwd_triton(grad_y, x, x_dbl, states, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds, codes,
                    empty=torch.empty, block_l=None, block_d=None, num_warps=None):
    """Backward launcher: gradients of (x, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds).

    ``x_dbl`` and ``states`` come from :func:`ss2d_fwd_triton` (same ``block_l``) with ``save_states=True``.
    """
    num_routes = len(codes)
    batch, channels, height, width, rank, num_states = check_ss2d_args(
        x, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds, num_routes)
    _check_triton_device(x)
    length, device = height * width, x.device
    block_d, block_n, block_l, num_warps = block_sizes(channels, num_states, length, block_l, block_d, num_warps)
    num_chunks, num_blocks = cdiv(length, block_l), cdiv(channels, block_d)
    check_shape('grad_y', grad_y, x.shape)
    check_shape('states', states, (batch, num_routes, channels, num_states, num_chunks))
    orders, words = route_plan(codes)
    sources = reading_orders(x, orders)  # [(batch, D, L)] per reading order
    grad_sources = reading_orders(grad_y, orders)
    grad_parts = empty(batch, len(orders), channels, length, dtype=torch.float32, device=device)
    # d loss / d (delta before softplus), each route in its reading order; half inputs keep it in half like autocast
    grad_delta = empty(batch, num_routes, channels, length, dtype=x.dtype, device=device)
    part_bc = empty(batch, num_routes, num_blocks, 2 * num_states, length, dtype=torch.float32, device=device)
    part_alog = empty(batch, num_routes * channels, num_states, dtype=torch.float32, device=device)
    part_ds, part_dtb = (empty(batch, num_routes * channels, dtype=torch.float32, device=device) for _ in range(2))
    from .triton_kernels import ss2d_bwd_kernel
    ss2d_bwd_kernel[(batch, num_blocks)](
        sources[0], sources[-1], x_dbl, codes_tensor(words, device), dt_projs_weight.contiguous(),
        dt_projs_bias.contiguous(), A_logs.contiguous(), Ds.contiguous(), states, grad_sources[0],
        grad_sources[-1], grad_parts, grad_delta, part_bc, part_alog, part_ds, part_dtb,
        channels, length, num_routes, len(orders), num_states, num_chunks, RANK=rank, RANK_UNROLL=RANK_UNROLL,
        BLOCK_D=block_d, BLOCK_N=block_n, BLOCK_L=block_l, num_warps=num_warps)
    # the dt up-projection delta = dt_projs_weight @ x_dbl[:, :, :R] + bias, differentiated with matmuls
    dt_weight = dt_projs_weight.to(grad_delta.dtype)  # (K, D, R)
    grad_low = torch.matmul(dt_weight.transpose(1, 2), grad_delta)  # (batch, K, R, L)
    grad_dtw = torch.matmul(grad_delta, x_dbl[:, :, :rank].transpose(2, 3)).float().sum(0)  # (K, D, R)
    grad_xdbl = torch.cat([grad_low.float(), part_bc.sum(2)], dim=2)  # (batch, K, R+2N, L), reading orders
    grad_proj = torch.empty(x_proj_weight.shape, dtype=torch.float32, device=device)
    for slot, (order, source) in enumerate(zip(orders, sources)):
        index = routes_of(codes, order, device)
        grad_rows = grad_xdbl.index_select(1, index).flatten(1, 2)  # (batch, routes*(R+2N), L)
        weight = x_proj_weight.index_select(0, index).flatten(0, 1).float()  # (routes*(R+2N), D)
        grad_parts[:, slot].baddbmm_(weight.t().expand(batch, -1, -1), grad_rows)  # (batch, D, L)
        grad_weight = torch.bmm(grad_rows.to(x.dtype), source.transpose(1, 2)).float().sum(0)  # (routes*(R+2N), D)
        grad_proj.index_copy_(0, index, grad_weight.view(len(index), rank + 2 * num_states, channels))
    return (_merge_orders(grad_parts, height, width, orders, empty).to(x.dtype),
            grad_proj.to(x_proj_weight.dtype),
            grad_dtw.to(dt_projs_weight.dtype),
            part_dtb.sum(0).view_as(dt_projs_bias).to(dt_projs_bias.dtype),
            part_alog.sum(0).to(A_logs.dtype),
            part_ds.sum(0).to(Ds.dtype))
