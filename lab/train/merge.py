"""After a run: merge a LoRA adapter into its base and export a standalone model; push to the Hub."""

from __future__ import annotations

import os
import re
from pathlib import Path

from lab.adapters import apply, base_of, is_adapter
from lab.errors import LabError


def merge_adapter(adapter_dir: str | Path, out_dir: str | Path) -> Path:
    """Load the adapter's base in full precision, fold the LoRA weights in (``merge_and_unload``) and save
    a model that loads with plain ``AutoModelForCausalLM.from_pretrained``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter_dir, out_dir = Path(adapter_dir), Path(out_dir)
    if not is_adapter(adapter_dir):
        raise LabError(f"{adapter_dir} holds no LoRA adapter (no adapter_config.json): nothing to merge; "
                       "a full fine-tune is already a standalone model.")
    try:
        base = base_of(adapter_dir)
    except KeyError:
        raise LabError(f"{adapter_dir}/adapter_config.json does not name its base model.") from None
    try:
        # A QLoRA adapter is merged into the 16-bit base: merging into 4-bit weights would lose precision.
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.bfloat16 if torch.cuda.is_available()
                                                     else torch.float32)
    except OSError as err:
        raise LabError(f"Could not load the base model '{base}' to merge into: {str(err).splitlines()[0]}") from None
    merged = apply(model, adapter_dir)  # with the adapters beneath it (a DPO LoRA on a LoRA SFT)
    out_dir.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out_dir)
    tokenizer_source = adapter_dir if (adapter_dir / "tokenizer_config.json").exists() else base
    AutoTokenizer.from_pretrained(tokenizer_source).save_pretrained(out_dir)
    return out_dir


def export_run(run, *, out: str | Path | None = None, home=None) -> Path:
    """A finished run's model as a standalone folder: the adapter merged into its base, or the full model copied."""
    import shutil

    from lab.home import lab_home

    final = Path(run.run_dir) / "final"
    if run.status != "succeeded" or not final.exists():
        raise LabError(f"Run {run.id} is {run.status} and has no final model to export.")
    target = Path(out) if out else (home or lab_home()).models / f"{run.id}-merged"
    if is_adapter(final):
        return merge_adapter(final, target)
    shutil.copytree(final, target, dirs_exist_ok=True)
    return target


def push_model(model_dir: str | Path, repo_id: str, *, private: bool = True) -> str:
    """Upload a model or adapter folder; the token comes from ``HF_TOKEN`` only."""
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if not token:
        raise LabError("Set HF_TOKEN in the environment to push to the Hugging Face Hub.")
    if not re.match(r"^[\w.-]+/[\w.-]+$", repo_id or ""):
        raise LabError(f"Hub repo id must look like 'owner/name', got '{repo_id}'.")
    try:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
        api.create_repo(repo_id, private=private, exist_ok=True)
        api.upload_folder(folder_path=str(model_dir), repo_id=repo_id, commit_message="Upload from the lab")
    except Exception as err:  # network, auth and permission errors come in many types
        raise LabError(f"Push of {model_dir} to {repo_id} failed: {str(err).splitlines()[0]}") from None
    return f"https://huggingface.co/{repo_id}"
