"""Static counts of the code Triton generates for the scan kernels, on a machine without a GPU.

    python tools/kernel_code_stats.py [--family scan|ss2d] [--tree DIR] [--dtype bf16] [--prefetch on|off]
        [--shapes NAMES] [--bwd-block-l STEPS] [--max-registers N] [--sass DIR]

Compiles the forward (saving chunk states) and the backward at each model shape of tools/check_kernels_device.py
(``--family scan``, the bare selective scan) or of tools/benchmark_kernels.py's SS2D section (``--family ss2d``,
the fused SS2D core at VMamba-T's stages, the training kernels), with the launch tiles the launchers pick, for
sm_90a through the installed Triton's CUDA backend (its bundled ptxas), and prints per kernel the registers per
thread of the cubin (``cuobjdump -res-usage``; the SS2D backward under the launchers' cap, ``--max-registers``
overrides it), then counts of its SASS (``nvdisasm``; each loop body counted once; ``--sass`` keeps the listings):
instructions, local-memory loads and stores (``LDL``/``STL``: register spills; cuobjdump's LOCAL stays 0 for them),
warp shuffles (``SHFL``), barriers (``BAR``) and exp2 (``MUFU.EX2``), and the size, spills and shuffles of the
innermost loop: the per-state loop for
N > 1 (divide by the elements a thread holds: instructions per element and state), the chunk loop at N = 1 (N is a
constant there), none when the sequence is one chunk; for SS2D the chunk loop (8 steps a thread at N = 1). Integer
arguments are specialised as Triton does at a real launch (== 1: a constant; % 16 == 0: known divisible by 16),
pointers as 16-byte aligned. ``--tree`` compiles another checkout's ``kernels/`` (e.g. an older commit from ``git
archive``) to compare. These are counts, not times: speed is measured on the device. Run without
``TRITON_INTERPRET=1`` (the interpreter compiles nothing).
"""
import argparse
import dataclasses
import importlib
import os
import re
import subprocess
import sys
import tempfile

TOOLS = os.path.dirname(os.path.abspath(__file__))
MIN_LOOP = 10  # instructions: shorter backward branches are spin / exit loops, not loop bodies
# pointers in the inputs' dtype (the others fp32): the bare scan's, then the SS2D kernels' (x, x_dbl, y, delta, dy, dx)
HALF_TENSORS = ('u_ptr', 'delta_ptr', 'B_ptr', 'C_ptr', 'z_ptr', 'out_ptr', 'grad_out_ptr', 'grad_u_ptr',
                'grad_delta_ptr', 'grad_z_ptr', 'x_ptr', 'xdbl_ptr', 'bc_ptr', 'y_ptr', 'dy_ptr', 'dx_ptr')
SS2D_ROUTES = 4


SASS_DIR = None  # --sass: where each kernel's disassembly goes


def code_counts(fn, constants, int_args, warps, dtype, label='kernel', maxnreg=None):
    """Compile ``fn`` for sm_90: constexprs, runtime ints (specialised like a launch), 16-byte aligned pointers."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    constants = dict(constants)
    signature, attrs = {}, {}
    for index, name in enumerate(fn.arg_names):
        if name in constants:
            signature[name] = 'constexpr'
        elif name.endswith('_ptr'):
            signature[name] = ('*' + dtype) if name in HALF_TENSORS else '*fp32'
            attrs[(index,)] = [['tt.divisibility', 16]]
        elif int_args[name] == 1:
            signature[name] = 'constexpr'
            constants[name] = 1
        else:
            signature[name] = 'i32'
            if int_args[name] % 16 == 0:
                attrs[(index,)] = [['tt.divisibility', 16]]
    kernel = triton.compile(ASTSource(fn, signature, constants, attrs), target=GPUTarget('cuda', 90, 32),
                            options=dict(num_warps=warps, maxnreg=maxnreg))
    return cubin_counts(kernel.asm['cubin'], label)


def cubin_counts(cubin, label='kernel'):
    """Registers, local memory and SASS counts of a compiled kernel, from the tools bundled with Triton."""
    import triton
    tools = os.path.join(os.path.dirname(triton.__file__), 'backends', 'nvidia', 'bin')
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, 'kernel.cubin')
        with open(path, 'wb') as file:
            file.write(cubin)
        usage = subprocess.run([os.path.join(tools, 'cuobjdump'), '-res-usage', path], capture_output=True,
                               text=True, check=True).stdout
        sass = subprocess.run([os.path.join(tools, 'nvdisasm'), '-c', path], capture_output=True, text=True,
                              check=True).stdout
    if SASS_DIR:
        with open(os.path.join(SASS_DIR, f'{label}.sass'), 'w') as file:
            file.write(sass)
    opcodes, labels, loops = [], {}, []
    for line in sass.splitlines():
        label = re.match(r'\s*(\.L_x_\d+):', line)
        if label:
            labels[label.group(1)] = len(opcodes)
        instruction = re.search(r'/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)(.*?);', line)
        if instruction:
            opcodes.append(instruction.group(1))
            target = re.search(r'`\((\.L_x_\d+)\)', instruction.group(2))
            backward = target and labels.get(target.group(1), len(opcodes)) < len(opcodes) - 1
            if instruction.group(1) == 'BRA' and backward:
                loops.append(opcodes[labels[target.group(1)]:])  # a backward branch closes a loop body
    inner = min((body for body in loops if len(body) > MIN_LOOP), key=len, default=[])
    spills = [sum(op.startswith(('LDL', 'STL')) for op in ops) for ops in (opcodes, inner)]
    return dict(regs=int(re.search(r'REG:(\d+)', usage).group(1)), spills=spills[0], inner_spills=spills[1],
                sass=len(opcodes), shfl=sum(op.startswith('SHFL') for op in opcodes),
                bar=sum(op.startswith('BAR') for op in opcodes), ex2=sum(op == 'MUFU.EX2' for op in opcodes),
                inner_loop=len(inner), inner_shfl=sum(op.startswith('SHFL') for op in inner))


def scan_counts(dtype_name, dtype, prefetch, shapes=None, bwd_chunk=0, bwd_block_d=32):
    """Per bare-scan shape (``shapes``: names of tools/check_kernels_device.py's, default all): the forward and
    backward kernels as the launchers would launch them (``bwd_chunk``: a shorter backward chunk of ``bwd_block_d``
    channels, one warp)."""
    launchers = importlib.import_module('kernels.selective_scan.launchers')
    kernels = importlib.import_module('kernels.selective_scan.triton_kernels')
    from check_kernels_device import SHAPES
    for name in shapes or SHAPES:
        channels, length, states, groups, with_z = SHAPES[name]
        tiles = launchers.default_tiles(states, length, dtype)
        if bwd_chunk:
            tiles = dataclasses.replace(tiles, bwd_chunk=bwd_chunk, bwd_tile=bwd_chunk * bwd_block_d, bwd_warps=1)
        chunk = launchers.chunk_length(states, length, dtype, tiles)
        state_steps = launchers.checkpoint_steps(states, length, dtype, tiles)
        flags = dict(HAS_D=True, HAS_Z=with_z, HAS_BIAS=True, HAS_INITIAL=False, SOFTPLUS=True, RETURN_STATES=False)
        for label, fn, steps, tile, warps, extra in (
                ('fwd', kernels.selective_scan_fwd_kernel, chunk, tiles.fwd_tile, tiles.fwd_warps,
                 dict(SAVE_CHECKPOINTS=True, STATE_STEPS=state_steps)),
                ('bwd', kernels.selective_scan_bwd_kernel, state_steps, tiles.bwd_tile, tiles.bwd_warps,
                 dict(HAS_GRAD_LAST=False))):
            ints = dict(channels=channels, length=length, num_states=states, channels_per_group=channels // groups,
                        num_groups=groups, num_chunks=launchers.cdiv(length, steps))
            block_d, block_n, block_t = launchers.block_sizes(channels // groups, states, steps, tile)
            constants = dict(flags, **extra, BLOCK_D=block_d, BLOCK_N=block_n, BLOCK_T=block_t)
            if 'ALIGN' in fn.arg_names:
                constants['ALIGN'] = launchers.row_alignment(length)
            if 'PREFETCH' in fn.arg_names:
                constants['PREFETCH'] = tiles.prefetch if prefetch is None else prefetch == 'on'
            cap = getattr(tiles, 'bwd_registers', None) if label == 'bwd' else None
            counts = code_counts(fn, constants, ints, warps, dtype_name, f'{name}_{label}', cap)
            print(f'{name:16s} L={length:<5d} {label} BLOCK_D={block_d:<3d} BLOCK_T={block_t:<3d} warps={warps} '
                  f'ALIGN={constants.get("ALIGN", "-")} PREFETCH={constants.get("PREFETCH", "-")}: '
                  + ', '.join(f'{k} {v}' for k, v in counts.items()), flush=True)


def ss2d_counts(dtype_name, dtype, bwd_block_l=None, max_registers=None, shapes=None):
    """Per VMamba-T stage: the training forward (saving chunk states, and delta as the launcher decides) and the
    backward of the fused SS2D core, N = 1, K = 4; ``bwd_block_l`` overrides the backward's chunk,
    ``max_registers`` its register cap (default: the launchers' caps); ``shapes``: stage names (default all)."""
    launchers = importlib.import_module('kernels.ss2d.launchers')
    kernels = importlib.import_module('kernels.ss2d.triton_kernels')
    from benchmark_kernels import SS2D_SHAPES
    for name in shapes or SS2D_SHAPES:
        channels, size, rank = SS2D_SHAPES[name]
        block_d, block_n, block_l, warps = launchers.block_sizes(channels, 1)
        bwd_chunk = launchers.backward_chunk(channels, 1, bwd_block_l=bwd_block_l)
        saved = launchers.saves_delta(rank)
        fwd_dot = launchers.dot_rank(rank, 1, channels, block_l, launchers.FWD_DOT_MIN_RANK[dtype.itemsize])
        bwd_dot = 0 if saved else launchers.dot_rank(rank, 1, channels, bwd_chunk, launchers.BWD_DOT_MIN_RANK)
        common = dict(RANK=rank, RANK_UNROLL=launchers.RANK_UNROLL, FP32_DOT=launchers.FP32_DOT, BLOCK_D=block_d,
                      BLOCK_N=block_n)
        register_cap = getattr(launchers, 'register_cap', lambda *launch: None)  # (older trees: no caps)
        for label, fn, chunk, cap, extra in (
                ('fwd', kernels.ss2d_fwd_kernel, block_l, register_cap('fwd', dtype.itemsize, block_l, block_n),
                 dict(RANK_DOT=fwd_dot, SAVE_STATES=True, SAVE_DELTA=saved, STATE_STEPS=bwd_chunk)),
                ('bwd', kernels.ss2d_bwd_kernel, bwd_chunk,
                 max_registers or register_cap('bwd', dtype.itemsize, bwd_chunk, block_n),
                 dict(RANK_DOT=bwd_dot, SAVED_DELTA=saved))):
            ints = dict(route_codes=0b11100100, channels=channels, height=size, width=size, num_routes=SS2D_ROUTES,
                        num_states=1, num_chunks=launchers.cdiv(size * size, chunk))
            if hasattr(launchers, 'padded_length'):  # (older trees read B, C from x_dbl)
                ints['length_pad'] = launchers.padded_length(size * size, chunk)
            counts = code_counts(fn, dict(common, BLOCK_L=chunk, **extra), ints, warps, dtype_name,
                                 f'ss2d_{name.split()[-1]}_{label}', cap)
            print(f'{name:16s} D={channels:<4d} L={size * size:<5d} R={rank:<3d} {label} BLOCK_D={block_d} '
                  f'BLOCK_L={chunk} warps={warps} RANK_DOT={extra["RANK_DOT"]} delta saved={saved} cap={cap}: '
                  + ', '.join(f'{k} {v}' for k, v in counts.items()), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--family', default='scan', choices=('scan', 'ss2d'))
    parser.add_argument('--tree', default=os.path.dirname(TOOLS), help='checkout whose kernels/ is compiled')
    parser.add_argument('--dtype', default='bf16', choices=('bf16', 'fp16', 'fp32'))
    parser.add_argument('--prefetch', choices=('on', 'off'), help='override the scan tiles\' prefetch setting')
    parser.add_argument('--bwd-block-l', type=int, help='the backward\'s chunk (steps), instead of the tuned one')
    parser.add_argument('--max-registers', type=int, help='the SS2D backward\'s register cap, instead of the tuned one')
    parser.add_argument('--shapes', help='comma-separated shape names (default: all): tools/check_kernels_device.py\'s'
                        ' (bare scan), tools/benchmark_kernels.py\'s SS2D_SHAPES (SS2D)')
    parser.add_argument('--sass', metavar='DIR', help='also write each kernel\'s SASS (nvdisasm) to DIR')
    args = parser.parse_args()
    global SASS_DIR
    SASS_DIR = args.sass
    if SASS_DIR:
        os.makedirs(SASS_DIR, exist_ok=True)
    sys.path.insert(0, os.path.abspath(args.tree))
    sys.path.insert(0, TOOLS)
    print(f'tree {os.path.abspath(args.tree)}, {args.family}, {args.dtype}, sm_90')
    import torch
    dtype = {'bf16': torch.bfloat16, 'fp16': torch.float16, 'fp32': torch.float32}[args.dtype]
    if args.family == 'scan':
        scan_counts(args.dtype, dtype, args.prefetch, args.shapes and args.shapes.split(','),
                    args.bwd_block_l or 0)
    else:
        ss2d_counts(args.dtype, dtype, args.bwd_block_l, args.max_registers,
                    args.shapes and args.shapes.split(','))


if __name__ == '__main__':
    main()
