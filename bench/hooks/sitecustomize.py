"""Bench-only trials of a change before it becomes a lab setting: Python imports this at start-up in every process
whose PYTHONPATH has bench/hooks first (the lab's worker inherits it from ``python -m lab train``).

    BENCH_HEAD_TOKENS=16384  tokens per tile of TRL's fused LM head and loss (TRL's TOKEN_CHUNK_SIZE, 4,096):
                             fewer, larger tiles mean fewer fp32 -> bf16 casts of the head's weight, fewer
                             fp32 accumulations of its gradient and fewer launches, for a larger tile buffer
"""

import os

if os.environ.get("BENCH_HEAD_TOKENS"):
    from trl.kernels import chunked_logprob

    chunked_logprob.TOKEN_CHUNK_SIZE = int(os.environ["BENCH_HEAD_TOKENS"])
