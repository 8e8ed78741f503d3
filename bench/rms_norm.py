"""Time RMSNorm's backward pass: Liger's kernel against the lab's blocks of rows (lab/train/rms_norm_backward.py),
at the shapes of the benchmarks' steps, with the bandwidth floor beside them.

    python bench/rms_norm.py                         # 65,536 × 896 (packed 0.5B) and 8,192 × 4,096 (8B LoRA), bf16
    python bench/rms_norm.py --sweep                 # also the lab's kernel at other tiles and programs per SM

The floor is the bytes each must move (dy and x read, dx written, in bf16) at the GPU's measured copy bandwidth.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lab.train import rms_norm_backward as rows  # noqa: E402


def timed(fn, repeats: int = 50) -> float:
    """Milliseconds a call, after warm-up."""
    for _ in range(5):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(repeats):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / repeats


def copy_bandwidth() -> float:
    """Bytes a second of a large device-to-device copy (read + write)."""
    a = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    b = torch.empty_like(a)
    return 2 * a.numel() / (timed(lambda: b.copy_(a), 20) / 1e3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default="65536x896,8192x4096", help="rows x width, comma-separated")
    parser.add_argument("--sweep", action="store_true", help="time the lab's kernel at TILE x PROGRAMS_PER_SM choices")
    args = parser.parse_args()
    from liger_kernel.ops import rms_norm as liger

    bandwidth = copy_bandwidth()
    print(f"copy bandwidth {bandwidth / 1e12:.2f} TB/s")
    print(f"{'shape':>14} {'Liger ms':>9} {'lab ms':>8} {'floor ms':>9} {'max |dx| diff':>14} {'max |dw| diff':>14}")
    for shape in args.shapes.split(","):
        n_rows, width = map(int, shape.split("x"))
        x = torch.randn(n_rows, width, device="cuda", dtype=torch.bfloat16)
        w = torch.randn(width, device="cuda") * 0.1 + 1
        dy = torch.randn_like(x)
        _, saved, rstd, block, warps, mode = liger.rms_norm_forward(x, w, 1e-6, 0.0, "llama", None)
        ours = rows.routed(liger.rms_norm_backward)

        def theirs() -> tuple:
            return liger.rms_norm_backward(dy, saved, w, rstd, 0.0, mode, block, warps, False, None)

        def lab() -> tuple:
            return ours(dy, saved, w, rstd, 0.0, mode, block, warps, False, None)

        (want_dx, want_dw), (dx, dw) = theirs(), lab()
        floor = 3 * x.numel() * x.element_size() / bandwidth * 1e3
        print(f"{shape:>14} {timed(theirs):9.3f} {timed(lab):8.3f} {floor:9.3f} "
              f"{(dx.float() - want_dx.float()).abs().max().item():14.3g} {(dw - want_dw).abs().max().item():14.3g}")
        if args.sweep:
            print(f"{'':>14} sweep, ms (TILE x programs per SM; the module's: {rows.TILE} x {rows.PROGRAMS_PER_SM}):")
            chosen = rows.TILE, rows.PROGRAMS_PER_SM
            for tile in (1024, 2048, 4096, 8192, 16384):
                cells = []
                for programs in (1, 2, 4, 8, 16):
                    rows.TILE, rows.PROGRAMS_PER_SM = tile, programs
                    cells.append(f"{programs}: {timed(lab):.3f}")
                print(f"{'':>14} TILE {tile:>6}  " + "  ".join(cells))
            rows.TILE, rows.PROGRAMS_PER_SM = chosen


if __name__ == "__main__":
    main()
