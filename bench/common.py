"""What the GPU benchmarks share: random-initialised models of published architectures (speed and memory do not
depend on the weights' values), FLOP counts for MFU, and the versions a result was measured with."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "bench" / "configs"
PEAK_BF16_FLOPS = 989e12  # dense BF16 peak of an H100/H200 SXM


def build_random_model(arch: str, out: Path, home: Any) -> Path:
    """``bench/configs/<arch>.json`` with random bf16 weights and the tiny tokenizer (its ids fit in any of the
    real vocabularies), saved to ``out`` once."""
    if (out / "config.json").exists():
        return out
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from lab.models import load_tokenizer

    values = json.loads((CONFIGS / f"{arch}.json").read_text())
    config = AutoConfig.for_model(**{k: v for k, v in values.items() if k != "architectures"})
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(out)
    load_tokenizer("tiny", home=home).save_pretrained(out)
    return out


def matmul_params(model_dir: Path) -> dict[str, int]:
    """Parameters that take part in matrix products per token: all but the input embedding (a lookup), with a
    tied output head counted once. Built on the meta device."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_dir)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    total = sum(p.numel() for p in model.parameters())
    embedding = model.get_input_embeddings().weight.numel()
    tied = getattr(config, "tie_word_embeddings", False)
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return {"total": total, "matmul": total if tied else total - embedding, "layers": config.num_hidden_layers,
            "attention_width": config.num_attention_heads * head_dim}


def training_flops(shape: dict[str, int], lengths: list[int], *, trainable: int | None = None) -> float:
    """Model FLOPs of one pass of training over sequences of these lengths: 6 per parameter and token when every
    weight is trained (2 forward, 4 backward), 4 for frozen weights (no weight gradients) plus 6 per trainable
    adapter parameter, and causal attention's 6·s²·width per layer (activation recomputation not counted)."""
    tokens = sum(lengths)
    if trainable is None:
        dense = 6 * shape["matmul"] * tokens
    else:
        dense = (4 * shape["matmul"] + 6 * trainable) * tokens
    attention = sum(6 * s * s * shape["attention_width"] * shape["layers"] for s in lengths)
    return dense + attention


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "trl", "peft", "accelerate", "bitsandbytes", "liger-kernel"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    try:
        import torch

        out["gpu"] = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
    except Exception:  # noqa: BLE001
        out["gpu"] = "unknown"
    return out


def import_rows(home: Any, rows: list[dict], name: str) -> str:
    """Write ``rows`` as JSONL and import them as a dataset version (no near-dedup, no validation split, as the
    benchmark made them); returns the version's ref."""
    import subprocess
    import sys

    data = home.root / f"{name}.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    imported = subprocess.run([sys.executable, "-m", "lab", "data", "import", str(data), "--name", name,
                               "--no-dedup-near", "--val-fraction", "0", "--json"], capture_output=True, text=True,
                              env=lab_env(home), cwd=ROOT)
    if imported.returncode != 0:
        raise SystemExit(imported.stderr)
    return json.loads(imported.stdout)["ref"]


def lab_train(home: Any, sets: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
    """``python -m lab train`` as a user runs it (the tiny recipe, every setting given by ``--set``), waited for:
    its ``--json`` answer (``id``, ``run_dir``, ``status``, ``error``), or ``{"error": stderr}`` when it printed
    none."""
    import subprocess
    import sys

    command = [sys.executable, "-m", "lab", "train", str(ROOT / "recipes/tiny-sft.yaml"), "--wait", "--json"]
    for key, value in sets.items():
        command += ["--set", f"{key}={value}"]
    result = subprocess.run(command, capture_output=True, text=True, env={**lab_env(home), **(env or {})}, cwd=ROOT)
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError:
        return {"error": result.stderr[-3000:]}


def lab_env(home: Any) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)  # keep carried wheels
    return {**os.environ, "LAB_HOME": str(home.root), "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}
