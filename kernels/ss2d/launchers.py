"""Argument checks and the launchers of the fused SS2D kernels (projection matmuls, allocation, grid, reductions)."""
import torch
import triton

from ..common.launch import check_devices, check_dtype, check_shape, triton_runs_on

SS2D_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


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


def block_sizes(channels, num_states, rank, block_l=None, block_d=None):
    """(BLOCK_D, BLOCK_N, BLOCK_R, BLOCK_L): a scan tile of BLOCK_D channels x BLOCK_N states x BLOCK_L steps."""
    block_n = triton.next_power_of_2(num_states)
    block_l = block_l or max(16, 32 // block_n)
    block_d = block_d or min(16, triton.next_power_of_2(channels))
    return block_d, block_n, triton.next_power_of_2(rank), block_l


def project_routes(x, x_proj_weight):
    """x_dbl = per-route projections in natural pixel order: (batch, D, L) -> (batch, K*(R+2N), L), one matmul."""
    weight = x_proj_weight.flatten(0, 1).to(x.dtype)  # (K*(R+2N), D)
    return torch.matmul(weight, x)  # (batch, K*(R+2N), L)


def _check_triton_device(x):
    if not triton_runs_on(x):
        raise RuntimeError(f'the fused SS2D kernels need CUDA tensors (or TRITON_INTERPRET=1), got {x.device}')


def ss2d_fwd_triton(x, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds, codes, out_dtype, save_states,
                    empty=torch.empty, block_l=None, block_d=None, num_warps=4):
    """Forward launcher: returns (y (batch, D, H, W), x_dbl (batch, K, R+2N, L), states or an empty tensor).

    ``codes``: int32 route codes (K,) on x's device. ``states`` (batch, K, D, N, chunks) fp32 holds the state
    entering each chunk of ``block_l`` steps (kept for the backward when ``save_states``).
    """
    num_routes = codes.numel()
    batch, channels, height, width, rank, num_states = check_ss2d_args(
        x, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds, num_routes)
    _check_triton_device(x)
    length = height * width
    block_d, block_n, block_r, block_l = block_sizes(channels, num_states, rank, block_l, block_d)
    num_chunks = triton.cdiv(length, block_l)
    x = x.contiguous().view(batch, channels, length)  # (batch, D, L)
    x_dbl = project_routes(x, x_proj_weight).view(batch, num_routes, rank + 2 * num_states, length)
    y = empty(batch, channels, height, width, dtype=out_dtype, device=x.device)
    states_shape = (batch, num_routes, channels, num_states, num_chunks) if save_states else (0,)
    states = empty(*states_shape, dtype=torch.float32, device=x.device)
    from .triton_kernels import ss2d_fwd_kernel
    ss2d_fwd_kernel[(batch, triton.cdiv(channels, block_d))](
        x, x_dbl, codes, dt_projs_weight.contiguous(), dt_projs_bias.contiguous(), A_logs.contiguous(),
        Ds.contiguous(), y, states, channels, height, width, num_routes, num_states, num_chunks, RANK=rank,
        SAVE_STATES=save_states, BLOCK_D=block_d, BLOCK_N=block_n, BLOCK_L=block_l, num_warps=num_warps)
    return y, x_dbl, states


def ss2d_bwd_triton(grad_y, x, x_dbl, states, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds, codes,
                    empty=torch.empty, block_l=None, block_d=None, num_warps=4):
    """Backward launcher: gradients of (x, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds).

    ``x_dbl`` and ``states`` come from :func:`ss2d_fwd_triton` (same ``block_l``) with ``save_states=True``.
    """
    num_routes = codes.numel()
    batch, channels, height, width, rank, num_states = check_ss2d_args(
        x, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds, num_routes)
    _check_triton_device(x)
    length = height * width
    block_d, block_n, block_r, block_l = block_sizes(channels, num_states, rank, block_l, block_d)
    num_chunks, num_blocks = triton.cdiv(length, block_l), triton.cdiv(channels, block_d)
    xdbl_rows = rank + 2 * num_states
    check_shape('grad_y', grad_y, x.shape)
    check_shape('states', states, (batch, num_routes, channels, num_states, num_chunks))
    device = x.device
    x = x.contiguous().view(batch, channels, length)  # (batch, D, L)
    grad_x_scan = empty(batch, channels, length, dtype=torch.float32, device=device)
    part_xdbl = empty(batch, num_routes, num_blocks, xdbl_rows, length, dtype=torch.float32, device=device)
    part_alog = empty(batch, num_routes * channels, num_states, dtype=torch.float32, device=device)
    part_ds, part_dtb = (empty(batch, num_routes * channels, dtype=torch.float32, device=device) for _ in range(2))
    part_dtw = empty(batch, num_routes * channels, rank, dtype=torch.float32, device=device)
    from .triton_kernels import ss2d_bwd_kernel
    ss2d_bwd_kernel[(batch, num_blocks)](
        x, x_dbl, codes, dt_projs_weight.contiguous(), dt_projs_bias.contiguous(), A_logs.contiguous(),
        Ds.contiguous(), states, grad_y.contiguous(), grad_x_scan, part_xdbl, part_alog, part_ds, part_dtb,
        part_dtw, channels, height, width, num_routes, num_states, num_chunks, RANK=rank,
        BLOCK_D=block_d, BLOCK_N=block_n, BLOCK_R=block_r, BLOCK_L=block_l, num_warps=num_warps)
    grad_xdbl = part_xdbl.sum(2).view(batch, num_routes * xdbl_rows, length)  # (batch, K*(R+2N), L)
    weight = x_proj_weight.flatten(0, 1).float()  # (K*(R+2N), D)
    grad_x = torch.baddbmm(grad_x_scan, weight.t().expand(batch, -1, -1), grad_xdbl)  # (batch, D, L)
    grad_proj = torch.bmm(grad_xdbl.to(x.dtype), x.transpose(1, 2)).float().sum(0)  # (K*(R+2N), D)
    return (grad_x.view(batch, channels, height, width).to(x.dtype),
            grad_proj.view_as(x_proj_weight).to(x_proj_weight.dtype),
            part_dtw.sum(0).view_as(dt_projs_weight).to(dt_projs_weight.dtype),
            part_dtb.sum(0).view_as(dt_projs_bias).to(dt_projs_bias.dtype),
            part_alog.sum(0).to(A_logs.dtype),
            part_ds.sum(0).to(Ds.dtype))
