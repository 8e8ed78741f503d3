"""Models for training: 'tiny', hub ids, local paths and ``run:<id>`` (a finished run's model), in the
precision and quantisation the run asks for."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lab.config import TrainConfig
from lab.errors import LabError
from lab.home import Home


def resolve_model_path(name: str, home: Home) -> str:
    """'tiny' → the built-in model; 'run:<id>' → that run's final model or adapter; else unchanged."""
    from lab.models import resolve

    if name.startswith("run:"):
        from lab.train.runner import get_run

        run = get_run(name[4:], home)
        final = run.run_dir / "final"
        if run.status != "succeeded" or not final.exists():
            raise LabError(f"Run {run.id} is {run.status} and has no final model to start from.")
        return str(final)
    return require_model(name, resolve(name, home))


def require_model(name: str, path: str) -> str:
    """``path`` unless it is a local file or a folder without config.json (adapter_config.json for an adapter):
    those fail now, not in a background process. Anything else is taken as a hub id, which loading reports on."""
    local = Path(path).expanduser()
    what = "give a model folder (with config.json), 'tiny', run:<id> or a hub id owner/name"
    if local.is_file():
        raise LabError(f"Model '{name}' is a file, not a model: {what}.")
    if local.is_dir() and not any((local / f).is_file() for f in ("config.json", "adapter_config.json")):
        raise LabError(f"Model folder '{name}' has no config.json, so it holds no model: {what}.")
    return path


def base_model_path(name: str, home: Home) -> str:
    """Where the architecture of ``name`` is described (its config.json): the model's own folder, or for an adapter
    (a LoRA run's final/) its base's. Every reader of a model's shape, type or size goes through here."""
    from lab.adapters import base_of

    return base_of(resolve_model_path(name, home))


def model_type(model: str, home: Home) -> str:
    """The architecture family of a run's base model ('llama', 'qwen2', ...), '' when it cannot be read."""
    try:
        path = Path(base_model_path(model, home))
        if (path / "config.json").exists():
            return json.loads((path / "config.json").read_text()).get("model_type", "")
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(str(path)).model_type
    except (LabError, OSError, ValueError, KeyError):
        return ""


def model_params(model: str, home: Home) -> int | None:
    """The model's parameter count from its architecture (no weights loaded); None when its config cannot be read
    (a hub id offline): the learning-rate advice then takes it as a real-size model."""
    from lab.train.estimate import model_shape

    try:
        return model_shape(model, home).params
    except (LabError, OSError, ValueError, KeyError):
        return None


def load_for_training(cfg: TrainConfig, home: Home, *, cuda: bool, precision: str) -> tuple[Any, Any]:
    """Tokenizer and model. Full fine-tuning keeps fp32 master weights (autocast does the 16-bit math);
    adapters freeze the base in 16-bit, or 4-bit NF4 for QLoRA. A LoRA run's output used as the base is
    merged first (with the adapters beneath it: ``lab.adapters``), so a new adapter (e.g. DPO after SFT) trains on
    top of it; the worker records that stack beside the new adapter. An objective whose ``model_kind`` is
    'score' (a reward model) gets the base as a sequence classifier with one output (``score_model``)."""
    import torch

    from lab import adapters
    from lab.models import hub_error, load_tokenizer
    from lab.train.convert import quantization_config
    from lab.train.distributed import device_map
    from lab.train.methods import objective

    path = resolve_model_path(cfg.model, home)
    base = adapters.base_of(path)
    tokenizer = load_tokenizer(path)
    half = torch.bfloat16 if precision == "bf16" else torch.float16
    kwargs: dict[str, Any] = {"dtype": torch.float32 if cfg.adapter == "none" or not cuda else half}
    quant = quantization_config(cfg, bf16=precision == "bf16")
    if quant is not None:
        placement = device_map(cfg)  # the process's own GPU, unless FSDP / ZeRO-3 place the shards
        kwargs.update(quantization_config=quant, **({"device_map": placement} if placement else
                                                    {"dtype": quant.bnb_4bit_quant_storage}))
    score = objective(cfg.objective).model_kind == "score"
    try:
        model = score_model(base, tokenizer, **kwargs) if score else causal_lm(base, **kwargs)
    except ImportError as err:
        raise LabError(f"Loading {base} needs a package that is missing: {err}. For QLoRA install "
                       "requirements-gpu.txt (bitsandbytes).") from None
    except OSError as err:
        raise hub_error("model", base, err) from None
    return tokenizer, adapters.apply(model, path)  # a LoRA run's model (and any beneath it) merged in


def causal_lm(path: str, **kwargs: Any) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, **kwargs)


def score_model(path: str, tokenizer: Any, **kwargs: Any) -> Any:
    """A sequence classifier with one output (a reward model) from ``path``: a causal LM gets a new ``score`` head
    in place of its LM head (randomly initialised: training it is the point), a reward model keeps its own. The
    score is read at the last token that is not padding, so the model must know the pad token."""
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, **kwargs)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model
