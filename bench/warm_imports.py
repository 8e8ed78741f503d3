"""Which of the warm worker's imports starts CUDA (a fork after that is unsafe): imports lab.train.warm's list one
by one, as its server does, and prints the stack of the first CUDA initialisation and the module being imported.

    python bench/warm_imports.py
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = "1"

import torch  # noqa: E402

current = ["torch"]
original = torch.cuda._lazy_init


def traced() -> None:
    if not torch.cuda.is_initialized():
        print(f"[warm-imports] CUDA started while importing {current[0]}:", flush=True)
        traceback.print_stack(limit=40)
    original()


torch.cuda._lazy_init = traced

from lab.train import warm  # noqa: E402

for name in (*warm.PRELOAD, *warm.OPTIONAL):
    current[0] = name
    try:
        __import__(name)
    except ImportError as err:
        print(f"[warm-imports] {name}: {err}")
    print(f"[warm-imports] {name}: CUDA initialised {torch.cuda.is_initialized()}", flush=True)
current[0] = "the model classes and objectives"
try:
    warm.preload()
    print("[warm-imports] preload: CUDA still uninitialised", flush=True)
except RuntimeError as err:
    print(f"[warm-imports] preload: {err}", flush=True)
