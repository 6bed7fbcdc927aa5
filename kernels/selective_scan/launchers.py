"""Argument checks shared by every path, and the launchers of the Triton kernels (allocate, pick blocks, launch)."""
from dataclasses import dataclass
from typing import Optional

import torch

from ..common.launch import cdiv, check_devices, check_dtype, check_shape, next_power_of_2, triton_runs_on

SCAN_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


@dataclass(frozen=True)
class ScanTiles:
    """Launch shape: steps per chunk (BLOCK_T), the longest (power-of-two padded) sequence scanned as one chunk,
    then for the forward and the backward the elements of the (BLOCK_D, BLOCK_T) tile and the warps per program;
    ``prefetch``: both kernels issue the next chunk's loads before scanning the current one (twice the loads in
    flight, more registers); ``bwd_chunk``: the backward's steps per chunk when shorter than the forward's (a power
    of two; 0: the forward's). The forward saves the state entering every backward chunk. ``bwd_registers``: a cap
    on the backward's registers a thread (ptxas's .maxnreg; None: ptxas's choice, 166 at VMamba-T stage 3 where
    128 builds without spills: 12 -> 16 single-warp programs an SM)."""
    chunk: int
    whole_sequence: int
    fwd_tile: int
    fwd_warps: int
    bwd_tile: int
    bwd_warps: int
    prefetch: bool = False
    bwd_chunk: int = 0
    bwd_registers: Optional[int] = None


# chosen from sweeps on an H100 at VMamba-T / GroupMamba-T (N = 1) and Vim-S (N = 16) shapes, batch 128, bf16
# (docs/benchmarks.md): single-warp backward programs avoid the barriers of cross-warp reductions and scans;
# 'short' (N = 1, L <= 64, 16-bit inputs) from the H200 runs of session 9: at L = 49 (VMamba-T stage 4) 8-step chunks
# take bf16 forward + backward from 0.413 to 0.314 ms, but fp32 from 0.413 to 0.584 ms (fp32 keeps 'one_state')
TILES = {'one_state': ScanTiles(chunk=64, whole_sequence=64, fwd_tile=1024, fwd_warps=4, bwd_tile=256,
                                bwd_warps=1, prefetch=True),
         'short': ScanTiles(chunk=8, whole_sequence=8, fwd_tile=512, fwd_warps=4, bwd_tile=128, bwd_warps=1,
                            prefetch=True),
         'many_states': ScanTiles(chunk=16, whole_sequence=16, fwd_tile=512, fwd_warps=4, bwd_tile=128,
                                  bwd_warps=1)}
SHORT_SEQUENCE = 64  # N = 1 sequences of 16-bit inputs up to this length take the 'short' tiles


def default_tiles(num_states, length, dtype):
    if num_states > 1:
        return TILES['many_states']
    short = length <= SHORT_SEQUENCE and dtype.itemsize == 2
    return TILES['short' if short else 'one_state']


def check_selective_scan_args(u, delta, A, B, C, D, z, delta_bias, initial_state, return_states):
    """Raise a clear error on wrong shapes, dtypes or mixed devices; return (batch, channels, length, N, G)."""
    if u.dim() != 3:
        raise ValueError(f'u must be (batch, D, L), got shape {tuple(u.shape)}')
    batch, channels, length = u.shape
    if length < 1 or channels < 1:
        raise ValueError(f'u must have D >= 1 and L >= 1, got shape {tuple(u.shape)}')
    if A.dim() != 2 or A.shape[0] != channels:
        raise ValueError(f'A must be (D, N) = ({channels}, N), got shape {tuple(A.shape)}')
    num_states = A.shape[1]
    if B.dim() not in (3, 4):
        raise ValueError(f'B must be (batch, N, L) or (batch, G, N, L), got shape {tuple(B.shape)}')
    groups = 1 if B.dim() == 3 else B.shape[1]
    if groups < 1 or channels % groups:
        raise ValueError(f'the number of groups of B ({groups}) must divide D ({channels})')
    bc_shape = (batch, num_states, length) if B.dim() == 3 else (batch, groups, num_states, length)
    check_shape('B', B, bc_shape)
    check_shape('delta', delta, u.shape)
    if return_states:
        if C is not None or D is not None or z is not None:
            raise ValueError('return_states=True returns the hidden states: C, D and z must be None')
    elif C is None:
        raise ValueError('C is required unless return_states=True')
    optional = dict(C=(C, bc_shape), D=(D, (channels,)), z=(z, u.shape), delta_bias=(delta_bias, (channels,)),
                    initial_state=(initial_state, (batch, channels, num_states)))
    for name, (tensor, shape) in optional.items():
        if tensor is not None:
            check_shape(name, tensor, shape)
    named = dict(u=u, delta=delta, A=A, B=B, **{name: tensor for name, (tensor, _) in optional.items()})
    for name, tensor in named.items():
        if tensor is not None:
            check_dtype(name, tensor, SCAN_DTYPES)
    check_devices(**named)
    return batch, channels, length, num_states, groups


def _largest_power_of_two_dividing(n, cap):
    size = 1
    while size * 2 <= cap and n % (size * 2) == 0:
        size *= 2
    return size


def chunk_length(num_states, length, dtype, tiles=None):
    """The forward's steps per chunk (BLOCK_T) for inputs of ``dtype`` (and the backward's unless
    ``tiles.bwd_chunk`` is shorter)."""
    tiles = tiles or default_tiles(num_states, length, dtype)
    padded = next_power_of_2(length)
    return padded if padded <= tiles.whole_sequence else min(padded, tiles.chunk)


def checkpoint_steps(num_states, length, dtype, tiles=None):
    """Steps between the state checkpoints the forward saves: the backward's chunk (BLOCK_T), dividing the
    forward's."""
    tiles = tiles or default_tiles(num_states, length, dtype)
    chunk = chunk_length(num_states, length, dtype, tiles)
    return min(tiles.bwd_chunk, chunk) if tiles.bwd_chunk else chunk


def block_sizes(channels_per_group, num_states, chunk, tile):
    """(BLOCK_D, BLOCK_N, BLOCK_T): BLOCK_D divides the group so that one block reads one row of B and C."""
    block_d = _largest_power_of_two_dividing(channels_per_group, max(1, min(64, tile // chunk)))
    return block_d, next_power_of_2(num_states), chunk


def row_alignment(length):
    """ALIGN: the largest power of two (at most 8) dividing L, so that every row of a (batch, D, L) tensor starts at
    a multiple of it (the kernels' vector loads)."""
    return _largest_power_of_two_dividing(length, 8)


def _check_triton_device(u):
    if not triton_runs_on(u):
        raise RuntimeError(f'the Triton selective scan needs CUDA tensors (or TRITON_INTERPRET=1), got {u.device}')


def selective_scan_fwd_triton(u, delta, A, B, C, D, z, delta_bias, initial_state, delta_softplus, return_states,
                              out_dtype, save_checkpoints, empty=torch.empty, tiles=None):
    """Forward launcher: returns (out, last_state, checkpoints (batch, chunks, D, N) fp32 or an empty tensor): the
    state entering each chunk of the backward (:func:`checkpoint_steps`).

    ``empty`` allocates every output (tests pass a NaN-filling allocator so unwritten elements show); ``tiles`` (a
    :class:`ScanTiles`) overrides the tuned launch shape.
    """
    batch, channels, length, num_states, groups = check_selective_scan_args(
        u, delta, A, B, C, D, z, delta_bias, initial_state, return_states)
    _check_triton_device(u)
    tiles = tiles or default_tiles(num_states, length, u.dtype)
    block_t = chunk_length(num_states, length, u.dtype, tiles)
    state_steps = checkpoint_steps(num_states, length, u.dtype, tiles)
    block_d, block_n, _ = block_sizes(channels // groups, num_states, block_t, tiles.fwd_tile)
    num_chunks = cdiv(length, block_t)
    device = u.device
    out_shape = (batch, channels, num_states, length) if return_states else (batch, channels, length)
    out = empty(out_shape, dtype=out_dtype, device=device)
    last_state = empty((batch, channels, num_states), dtype=out_dtype, device=device)
    checkpoint_shape = (batch, cdiv(length, state_steps), channels, num_states) if save_checkpoints else (0,)
    checkpoints = empty(checkpoint_shape, dtype=torch.float32, device=device)
    contiguous = [None if t is None else t.contiguous() for t in (u, delta, A, B, C, D, z, delta_bias, initial_state)]
    from .triton_kernels import selective_scan_fwd_kernel
    selective_scan_fwd_kernel[(channels // block_d, batch)](
        *contiguous, out, last_state, checkpoints,
        channels, length, num_states, channels // groups, groups, num_chunks,
        HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
        HAS_INITIAL=initial_state is not None, SOFTPLUS=delta_softplus, RETURN_STATES=return_states,
        SAVE_CHECKPOINTS=save_checkpoints, PREFETCH=tiles.prefetch, BLOCK_D=block_d, BLOCK_N=block_n,
        BLOCK_T=block_t, STATE_STEPS=state_steps, ALIGN=row_alignment(length), num_warps=tiles.fwd_warps)
    return out, last_state, checkpoints


def selective_scan_bwd_triton(grad_out, grad_last_state, u, delta, A, B, C, D, z, delta_bias, initial_state,
                              checkpoints, delta_softplus, return_states, empty=torch.empty, tiles=None):
    """Backward launcher: gradients of (u, delta, A, B, C, D, z, delta_bias, initial_state), None where absent.

    ``checkpoints`` come from :func:`selective_scan_fwd_triton` with ``save_checkpoints=True``.
    """
    batch, channels, length, num_states, groups = check_selective_scan_args(
        u, delta, A, B, C, D, z, delta_bias, initial_state, return_states)
    _check_triton_device(u)
    tiles = tiles or default_tiles(num_states, length, u.dtype)
    block_t = checkpoint_steps(num_states, length, u.dtype, tiles)
    block_d, block_n, _ = block_sizes(channels // groups, num_states, block_t, tiles.bwd_tile)
    num_chunks = cdiv(length, block_t)
    check_shape('checkpoints', checkpoints, (batch, num_chunks, channels, num_states))
    num_blocks = channels // block_d
    device = u.device

    def alloc(shape, dtype=torch.float32, present=True):
        return empty(shape, dtype=dtype, device=device) if present else None

    def alloc_like(tensor):
        return None if tensor is None else empty(tensor.shape, dtype=tensor.dtype, device=device)

    grad_u, grad_delta, grad_z, grad_initial = (alloc_like(t) for t in (u, delta, z, initial_state))
    part_A = alloc((batch, channels, num_states))
    part_D = alloc((batch, channels), present=D is not None)
    part_bias = alloc((batch, channels), present=delta_bias is not None)
    part_B = alloc((batch, num_blocks, num_states, length))
    part_C = alloc((batch, num_blocks, num_states, length), present=not return_states)
    inputs = [None if t is None else t.contiguous() for t in (u, delta, A, B, C, D, z, delta_bias, checkpoints)]
    from .triton_kernels import selective_scan_bwd_kernel
    selective_scan_bwd_kernel[(num_blocks, batch)](
        *inputs, grad_out.contiguous(), None if grad_last_state is None else grad_last_state.contiguous(),
        grad_u, grad_delta, grad_z, grad_initial, part_A, part_D, part_bias, part_B, part_C,
        channels, length, num_states, channels // groups, groups, num_chunks,
        HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
        HAS_INITIAL=initial_state is not None, HAS_GRAD_LAST=grad_last_state is not None, SOFTPLUS=delta_softplus,
        RETURN_STATES=return_states, PREFETCH=tiles.prefetch, BLOCK_D=block_d, BLOCK_N=block_n, BLOCK_T=block_t,
        ALIGN=row_alignment(length), num_warps=tiles.bwd_warps, maxnreg=tiles.bwd_registers)

    def group_sum(part, like):
        """(batch, blocks, N, L) partials -> summed over the blocks of each group, shaped and typed like B / C."""
        grouped = part.view(batch, groups, num_blocks // groups, num_states, length)  # (batch, G, blocks/G, N, L)
        return grouped.sum(2).reshape(like.shape).to(like.dtype)

    grad_A = part_A.sum(0).to(A.dtype)
    grad_B = group_sum(part_B, B)
    grad_C = None if return_states else group_sum(part_C, C)
    grad_D = None if D is None else part_D.sum(0).to(D.dtype)
    grad_bias = None if delta_bias is None else part_bias.sum(0).to(delta_bias.dtype)
    return grad_u, grad_delta, grad_A, grad_B, grad_C, grad_D, grad_z, grad_bias, grad_initial
