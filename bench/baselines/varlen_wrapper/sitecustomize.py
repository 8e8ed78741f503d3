"""The variable-length attention wrapper as call 1 of the fourteenth session measured it (``varlen_attn`` with k and
v repeated to every query head, ``t[0]`` selections and ``.contiguous()`` copies), for a same-machine baseline of
the direct flash call that replaced it: put this folder first on ``PYTHONPATH`` of one bench run
(``bench/issue20_calls.sh`` does) and ``lab.train.speed._torch_varlen`` is this function in that run's processes."""

from __future__ import annotations

import sys
from typing import Any


def call1_torch_varlen(query: Any, key: Any, value: Any, boundaries: Any, max_len: int, scaling: float | None) -> Any:
    import inspect

    import torch
    from torch.nn.attention.varlen import varlen_attn

    dtype = query.dtype
    if dtype not in (torch.bfloat16, torch.float16):
        query, key, value = (t.to(torch.bfloat16) for t in (query, key, value))
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))
    params = inspect.signature(varlen_attn).parameters
    extra: dict[str, Any] = {}
    if q.shape[1] != k.shape[1]:
        k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
        v = v.repeat_interleave(q.shape[1] // v.shape[1], dim=1)
    if "window_size" in params:
        extra["window_size"] = (-1, 0)
    else:
        extra["is_causal"] = True
    if scaling is not None and "scale" in params:
        extra["scale"] = scaling
    cu = boundaries.to(device=q.device, dtype=torch.int32)
    out = varlen_attn(q.contiguous(), k.contiguous(), v.contiguous(), cu, cu, max_len, max_len, **extra)
    return out.unsqueeze(0).to(dtype)


try:  # every Python process of the bench run starts here; those that cannot import the lab have nothing to swap
    import lab.train.speed
except ImportError:
    pass
else:
    lab.train.speed._torch_varlen = call1_torch_varlen
    print("[baseline] lab.train.speed._torch_varlen is call 1's wrapper", file=sys.stderr, flush=True)
