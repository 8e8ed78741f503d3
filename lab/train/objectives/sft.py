"""SFT: TRL's ``SFTTrainer`` on conversations, the loss on the assistant's replies only."""

from __future__ import annotations

from typing import Any

from lab.config import TrainConfig
from lab.train.methods import Build


def config(cfg: TrainConfig, common: dict[str, Any]) -> Any:
    """SFT's settings. Padding-free without packing is not switched on here: TRL would then stop truncating to
    max_length, so ``build`` passes the lab's padding-free collator instead."""
    from trl import SFTConfig

    return SFTConfig(**common, max_length=cfg.max_length, packing=cfg.packing, assistant_only_loss=True,
                     neftune_noise_alpha=cfg.neftune_noise_alpha or None)


def build(b: Build) -> Any:
    from trl import SFTTrainer

    from lab.data.masking import trainer_splits
    from lab.train.lazy_metrics import lazy_metrics
    from lab.train.speed import padding_free_collator

    cfg = b.cfg
    args = config(cfg, b.args)

    def progress(done: int, total: int) -> None:
        print(f"[lab] tokenising with the lab's assistant masks (per-message weights, or a chat template TRL "
              f"cannot mark): {done:,} of {total:,} rows", flush=True)

    (train_rows, eval_rows), tokenized = trainer_splits([b.train_rows, b.eval_rows], b.tokenizer, progress)
    if tokenized:  # TRL builds the labels from the lab's masks; it refuses assistant_only_loss on such rows
        args.assistant_only_loss = False
    kwargs = b.trainer_kwargs(train_rows, eval_rows)
    if b.speed.padding_free and not cfg.packing:  # with packing, TRL goes padding-free by itself
        kwargs["data_collator"] = padding_free_collator(b.tokenizer, cfg.max_length)
    return lazy_metrics(SFTTrainer)(args=args, **kwargs)


PRECHECK_ROWS = 16  # rows whose loss mask is checked before launch: enough to tell, quick for any tokenizer


def precheck(cfg: TrainConfig, home: Any) -> None:
    """Refuse a run whose first rows keep no token of the assistant's replies within max_length: the trainer would
    drop every example (TRL then fails with "num_samples=0"), e.g. tool-call rows whose tools list alone fills it."""
    from lab.data.masking import mask_view
    from lab.data.versions import read_rows
    from lab.errors import LabError
    from lab.models import load_tokenizer
    from lab.train.datasets import resolve_version
    from lab.train.loading import resolve_model_path

    version = resolve_version(cfg.dataset, home)
    path = resolve_model_path(cfg.model, home)
    passed = passed_marker(home, version.ref, cfg.train_split, path, cfg.max_length)
    if passed is not None and passed.exists():
        return
    rows = read_rows(version, cfg.train_split, home)[:PRECHECK_ROWS]
    try:
        tokenizer = load_tokenizer(path, home=home)
    except Exception:  # noqa: BLE001 - a tokenizer not at hand here (a hub id offline) is checked when loading
        return
    views = [mask_view(r["messages"], tokenizer, tools=r.get("tools"), max_length=cfg.max_length) for r in rows]
    if views and not any(v.n_loss_tokens for v in views):
        longest = max(v.full_length for v in views)
        raise LabError(f"max_length {cfg.max_length} cuts every assistant reply out of the first {len(views)} rows "
                       f"of {version.ref} (they run to {longest} tokens), so no token would carry loss and the "
                       f"trainer would drop every example: raise max_length to about {longest}.")
    if passed is not None:
        passed.parent.mkdir(parents=True, exist_ok=True)
        passed.touch()


def passed_marker(home: Any, ref: str, split: str, model_path: str, max_length: int) -> Any:
    """The file that says this check passed for these rows, tokenizer and max_length, so the next launch of the same
    skips it (loading a tokenizer imports transformers and torch: seconds of every ``python -m lab train``). Named by
    the tokenizer's files (name, size, modification time); None for a model that is no local folder."""
    from pathlib import Path

    from lab.train.data_cache import tokenizer_keyed

    name = tokenizer_keyed(model_path, ref, split, max_length, PRECHECK_ROWS)
    return None if name is None else Path(home.root) / "cache" / "prechecks" / name
