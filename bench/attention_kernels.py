"""Causal attention's forward and backward, kernel against kernel, at the shapes of the speed benchmarks.

Which kernel should take a padding-free batch (examples end to end in one row, boundaries in ``cu_seqlens``)?
The lab's path (``lab.train.speed._torch_varlen``) is PyTorch's variable-length flash kernel (FlashAttention 2);
``attention: bucketed`` (``lab.train.bucketed_attention``) pads examples grouped by length for SDPA's fixed-length
kernels, here at three bucket sizes. cuDNN also takes ragged batches (``aten._cudnn_attention_forward`` with cumulative sequence lengths, what nested
tensors' SDPA calls); for rows of one length the lab already calls SDPA, which picks cuDNN on Hopper. Each kernel
runs forward and backward on the same inputs; the table gives the median time, the achieved TFLOP/s (causal
FLOPs of the examples actually present) and the largest difference from the flash kernel's output and gradients.

    python bench/attention_kernels.py                 # on a CUDA GPU; writes bench/results/attention.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# name, examples' lengths (None: log-normal, as bench/chat_data.py), tokens, query heads, key/value heads, head dim
SHAPES = (
    ("qwen2.5-0.5b packed 32 x 2,048", None, 65536, 14, 2, 64),
    ("llama-3.1-8b packed 8 x 2,048", None, 16384, 32, 8, 128),
    ("llama-3.1-8b 8 rows of 2,048", 2048, 16384, 32, 8, 128),
)


def lengths(total: int, fixed: int | None, seed: int = 0) -> list[int]:
    """Examples filling ``total`` tokens: all ``fixed`` long, or log-normal with a mean near 455 (at most 2,048)."""
    import random

    if fixed:
        return [fixed] * (total // fixed)
    rng, out = random.Random(seed), []
    while sum(out) < total:
        out.append(min(2048, max(16, int(rng.lognormvariate(math.log(455) - 0.5 * 0.8 ** 2, 0.8)))))
    out[-1] -= sum(out) - total
    return [n for n in out if n > 0]


def causal_flops(lens: list[int], heads: int, dim: int) -> float:
    """Forward and backward (2.5 times the forward), the causal half of each example's scores."""
    forward = sum(4 * n * n * heads * dim / 2 for n in lens)
    return 3.5 * forward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", default=str(ROOT / "bench/results/attention.json"))
    args = parser.parse_args()

    import torch

    from lab.train import bucketed_attention as buckets
    from lab.train import speed

    def timed(fn) -> float:
        for _ in range(3):
            fn()
        times = []
        for _ in range(args.repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        return sorted(times)[len(times) // 2]

    def cudnn_ragged(q, k, v, cu, longest, scale):
        """cuDNN over the ragged batch, (tokens, heads, dim) inputs; key/value heads repeated as for flash."""
        if k.shape[1] != q.shape[1]:
            k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
            v = v.repeat_interleave(q.shape[1] // v.shape[1], dim=1)
        return torch.ops.aten._cudnn_attention_forward(q, k, v, None, cu, cu, longest, longest, True, 0.0, True,
                                                       False, scale=scale)[0]

    def shape_rows(name: str, fixed: int | None, total: int, hq: int, hkv: int, dim: int) -> list[dict]:
        lens = lengths(total, fixed)
        cu = torch.tensor([0, *torch.tensor(lens).cumsum(0).tolist()], dtype=torch.int32, device="cuda")
        longest, scale = max(lens), dim ** -0.5
        torch.manual_seed(0)
        # the lab's layout: (1, heads, tokens, dim), as transformers hands it to the attention function
        q, k, v = (torch.randn(1, h, total, dim, device="cuda", dtype=torch.bfloat16).requires_grad_()
                   for h in (hq, hkv, hkv))
        grad = torch.randn(1, total, hq, dim, device="cuda", dtype=torch.bfloat16)
        kernels = {"flash varlen (the lab's)": lambda: speed._torch_varlen(q, k, v, cu, longest, scale)}
        if fixed:
            kernels["SDPA, rows of one length (the lab's for these)"] = \
                lambda: speed._equal_rows_sdpa(q, k, v, len(lens), scale)
        for bucket in (64, 128, 256):
            if not fixed:
                kernels[f"bucketed SDPA, multiples of {bucket}"] = \
                    lambda b=bucket: buckets.bucketed_attention(q, k, v, cu, scale, b)
        kernels["cuDNN ragged"] = lambda: cudnn_ragged(
            *(t[0].transpose(0, 1).contiguous() for t in (q, k, v)), cu, longest, scale).view(1, total, hq, dim)

        def step(forward) -> torch.Tensor:
            for t in (q, k, v):
                t.grad = None
            out = forward()
            out.backward(grad)
            return out

        rows, reference = [], None
        for kernel, forward in kernels.items():
            row = {"shape": name, "kernel": kernel, "examples": len(lens), "tokens": total}
            try:
                out = step(forward)
                got = [out.detach().float()] + [t.grad.float() for t in (q, k, v)]
                reference = reference or got
                row["max_diff_out_dq_dk_dv"] = [round((a - b).abs().max().item(), 5) for a, b in zip(got, reference)]
                ms = timed(lambda f=forward: step(f))
                row.update(ms=round(ms, 3), tflops=round(causal_flops(lens, hq, dim) / ms / 1e9, 1))
            except Exception as error:  # noqa: BLE001 - a kernel this torch or GPU lacks is a row, not a crash
                row["error"] = f"{type(error).__name__}: {str(error)[:300]}"
            print(json.dumps(row), flush=True)
            rows.append(row)
        return rows

    rows = [row for shape in SHAPES for row in shape_rows(*shape)]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
                                          "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
