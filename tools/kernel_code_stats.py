"""Static counts of the code Triton generates for the bare selective-scan kernels, on a machine without a GPU.

    python tools/kernel_code_stats.py [--tree DIR] [--dtype bf16] [--prefetch on|off]

Compiles the forward (saving chunk states) and the backward at each model shape of tools/check_kernels_device.py,
with the launch tiles the launchers pick, for sm_90a through the installed Triton's CUDA backend (its bundled ptxas),
and prints per kernel the registers per thread and local-memory bytes (spills) of the cubin (``cuobjdump
-res-usage``), then counts of its SASS (``nvdisasm``; each loop body counted once): instructions, warp shuffles
(``SHFL``), barriers (``BAR``) and exp2 (``MUFU.EX2``), and the size and shuffles of the innermost loop: the per-state
loop for N > 1 (divide by the elements a thread holds: instructions per element and state), the chunk loop at N = 1
(N is a constant there), none when the sequence is one chunk. Integer arguments are specialised as Triton does at a real launch (== 1: a constant; % 16 == 0: known
divisible by 16), pointers as 16-byte aligned. ``--tree`` compiles another checkout's ``kernels/`` (e.g. an older
commit from ``git archive``) to compare. These are counts, not times: speed is measured on the device.
"""
import argparse
import importlib
import os
import re
import subprocess
import sys
import tempfile

TOOLS = os.path.dirname(os.path.abspath(__file__))
MIN_LOOP = 10  # instructions: shorter backward branches are spin / exit loops, not loop bodies
HALF_TENSORS = ('u_ptr', 'delta_ptr', 'B_ptr', 'C_ptr', 'z_ptr', 'out_ptr', 'grad_out_ptr', 'grad_u_ptr',
                'grad_delta_ptr', 'grad_z_ptr')


def code_counts(fn, constants, int_args, warps, dtype):
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
                            options=dict(num_warps=warps))
    return cubin_counts(kernel.asm['cubin'])


def cubin_counts(cubin):
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
    opcodes, labels, loops = [], {}, []
    for line in sass.splitlines():
        label = re.match(r'\s*(\.L_x_\d+):', line)
        if label:
            labels[label.group(1)] = len(opcodes)
        instruction = re.search(r'/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)(.*?);', line)
        if instruction:
            opcodes.append(instruction.group(1))
            target = re.search(r'`\((\.L_x_\d+)\)', instruction.group(2))
            if instruction.group(1) == 'BRA' and target and labels.get(target.group(1), len(opcodes)) < len(opcodes) - 1:
                loops.append(opcodes[labels[target.group(1)]:])  # a backward branch closes a loop body
    inner = min((body for body in loops if len(body) > MIN_LOOP), key=len, default=[])
    return dict(regs=int(re.search(r'REG:(\d+)', usage).group(1)), local=int(re.search(r'LOCAL:(\d+)', usage).group(1)),
                sass=len(opcodes), shfl=sum(op.startswith('SHFL') for op in opcodes),
                bar=sum(op.startswith('BAR') for op in opcodes), ex2=sum(op == 'MUFU.EX2' for op in opcodes),
                inner_loop=len(inner), inner_shfl=sum(op.startswith('SHFL') for op in inner))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--tree', default=os.path.dirname(TOOLS), help='checkout whose kernels/ is compiled')
    parser.add_argument('--dtype', default='bf16', choices=('bf16', 'fp16', 'fp32'))
    parser.add_argument('--prefetch', choices=('on', 'off'), help='override the tiles\' prefetch setting')
    args = parser.parse_args()
    sys.path.insert(0, os.path.abspath(args.tree))
    launchers = importlib.import_module('kernels.selective_scan.launchers')
    kernels = importlib.import_module('kernels.selective_scan.triton_kernels')
    sys.path.insert(0, TOOLS)
    from check_kernels_device import SHAPES
    print(f'tree {os.path.abspath(args.tree)}, {args.dtype}, sm_90')
    import torch
    dtype = {'bf16': torch.bfloat16, 'fp16': torch.float16, 'fp32': torch.float32}[args.dtype]
    for name, (channels, length, states, groups, with_z) in SHAPES.items():
        tiles = launchers.default_tiles(states, length, dtype)
        chunk = launchers.chunk_length(states, length, dtype, tiles)
        ints = dict(channels=channels, length=length, num_states=states, channels_per_group=channels // groups,
                    num_groups=groups, num_chunks=launchers.cdiv(length, chunk))
        flags = dict(HAS_D=True, HAS_Z=with_z, HAS_BIAS=True, HAS_INITIAL=False, SOFTPLUS=True, RETURN_STATES=False)
        for label, fn, tile, warps, extra in (
                ('fwd', kernels.selective_scan_fwd_kernel, tiles.fwd_tile, tiles.fwd_warps,
                 dict(SAVE_CHECKPOINTS=True)),
                ('bwd', kernels.selective_scan_bwd_kernel, tiles.bwd_tile, tiles.bwd_warps,
                 dict(HAS_GRAD_LAST=False))):
            block_d, block_n, block_t = launchers.block_sizes(channels // groups, states, chunk, tile)
            constants = dict(flags, **extra, BLOCK_D=block_d, BLOCK_N=block_n, BLOCK_T=block_t)
            if 'ALIGN' in fn.arg_names:
                constants['ALIGN'] = launchers.row_alignment(length)
            if 'PREFETCH' in fn.arg_names:
                constants['PREFETCH'] = tiles.prefetch if args.prefetch is None else args.prefetch == 'on'
            counts = code_counts(fn, constants, ints, warps, args.dtype)
            print(f'{name:16s} L={length:<5d} {label} BLOCK_D={block_d:<3d} BLOCK_T={block_t:<3d} warps={warps} '
                  f'ALIGN={constants.get("ALIGN", "-")} PREFETCH={constants.get("PREFETCH", "-")}: ' + ', '.join(f'{k} {v}' for k, v in counts.items()),
                  flush=True)


if __name__ == '__main__':
    main()
