"""TFLOP/s of the frozen base's matrix products in an 8B LoRA step, as the fused LoRA layer runs them, against the
same products written other ways: is the step's 615 TFLOP/s the shapes' ceiling on this GPU, or the way they run?

    python bench/gemm_shapes.py [--tokens 16384,8192,16384] [--repeat 20]

For each Llama-3.1-8B projection (q, k/v, o, gate/up, down) and token count: the forward ``x @ Wᵀ``
(``F.linear``), the backward ``g @ W`` as the layer runs it (``addmm_`` onto the adapter's gradient, beta 1), and
the same product into a fresh tensor (``mm``); from 16,384 tokens also the forward as two products of half the
tokens each (is a micro-batch of 8 x 2,048 better multiplied in halves?). bf16, CUDA events, after a warm-up.
A token count given twice runs twice, in the order given, which tells the GPU warming up from the shape.
"""

from __future__ import annotations

import argparse
import json

import torch

# (name, in, out) of Llama-3.1-8B's projections; k and v share a shape, as gate and up do
SHAPES = (("q/o", 4096, 4096), ("k/v", 4096, 1024), ("gate/up", 4096, 14336), ("down", 14336, 4096))


def timed(run, repeat: int) -> float:
    """Seconds per call."""
    for _ in range(3):
        run()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeat):
        run()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1000 / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", default="16384,8192,16384")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    rows = []
    for tokens in map(int, args.tokens.split(",")):
        for name, width_in, width_out in SHAPES:
            x = torch.randn(tokens, width_in, device="cuda", dtype=torch.bfloat16)
            g = torch.randn(tokens, width_out, device="cuda", dtype=torch.bfloat16)
            w = torch.randn(width_out, width_in, device="cuda", dtype=torch.bfloat16)
            into = torch.randn(tokens, width_in, device="cuda", dtype=torch.bfloat16)
            flops = 2 * tokens * width_in * width_out
            ways = {"forward linear": lambda x=x, w=w: torch.nn.functional.linear(x, w),
                    "backward addmm_": lambda into=into, g=g, w=w: into.addmm_(g, w),
                    "backward mm": lambda g=g, w=w: g @ w}
            if tokens >= 16384:
                out = torch.empty(tokens, width_out, device="cuda", dtype=torch.bfloat16)
                halves = [(x[:tokens // 2], out[:tokens // 2]), (x[tokens // 2:], out[tokens // 2:])]
                ways["forward in halves"] = lambda w=w, halves=halves: [torch.mm(h, w.t(), out=o) for h, o in halves]
            for way, run in ways.items():
                seconds = timed(run, args.repeat)
                rows.append({"tokens": tokens, "projection": name, "way": way, "ms": round(seconds * 1000, 3),
                             "tflops": round(flops / seconds / 1e12, 1)})
                print(json.dumps(rows[-1]), flush=True)


if __name__ == "__main__":
    main()
