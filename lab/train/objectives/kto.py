"""KTO: TRL's ``KTOTrainer`` on unpaired data, one completion per row labelled desirable (👍) or not (👎).

The loss pushes desirable completions above, and undesirable ones below, a reference point: the policy's KL
divergence from the reference, estimated in each batch from mismatched (prompt, completion) pairs, so a batch
needs two rows or more. The reference is the base with the adapter off, or for full-model KTO a frozen copy
unless its log-probabilities are computed once up front (``precompute_ref_log_probs``, as for DPO).

The two sides' losses are weighted so that desirable_weight × #desirable is 1 to 4/3 times
undesirable_weight × #undesirable (the KTO paper, eq. 8); ``auto`` weights aim at the middle of that range.
"""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass
from typing import Any

from lab.config import TrainConfig
from lab.errors import LabError
from lab.train.methods import Build
from lab.train.objectives.dpo import precompute_reference

BALANCE = 7 / 6  # desirable_weight × #desirable over undesirable_weight × #undesirable: the middle of [1, 4/3]
LOW, HIGH = 1.0, 4 / 3  # the paper's range for that ratio


@dataclass(frozen=True)
class Weights:
    desirable: float
    undesirable: float
    text: str  # one sentence for the run's log: the counts, the weights and where they came from


def weight_setting(value: str, name: str) -> float | None:
    """A weight as set: None for auto, else a positive number (LabError naming the setting otherwise)."""
    text = str(value).strip().lower()
    if text == "auto":
        return None
    try:
        weight = float(text)
    except ValueError:
        weight = math.nan
    if not math.isfinite(weight) or weight <= 0:
        raise LabError(f"{name} must be auto or a positive number, got {value!r}.")
    return weight


def balanced_weights(cfg: TrainConfig, desirable: int, undesirable: int) -> Weights:
    """The loss weights for ``desirable`` 👍 and ``undesirable`` 👎 rows: as set, and each ``auto`` weight chosen so
    that desirable_weight × #desirable = 7/6 × undesirable_weight × #undesirable. With both on auto the smaller
    side is weighted up and the other keeps 1; with equal counts both are 1."""
    set_d = weight_setting(cfg.kto_desirable_weight, "kto_desirable_weight")
    set_u = weight_setting(cfg.kto_undesirable_weight, "kto_undesirable_weight")
    n_d, n_u = max(desirable, 1), max(undesirable, 1)  # one side may be missing: its weight does not matter
    if set_d is not None and set_u is not None:
        d, u, how = set_d, set_u, "as set"
    elif set_u is not None:
        d, u, how = BALANCE * set_u * n_u / n_d, set_u, "desirable weight balanced from the counts"
    elif set_d is not None:
        d, u, how = set_d, set_d * n_d / (BALANCE * n_u), "undesirable weight balanced from the counts"
    elif n_d == n_u:
        d, u, how = 1.0, 1.0, "balanced: the counts are equal"
    elif BALANCE * n_u / n_d >= 1:
        d, u, how = BALANCE * n_u / n_d, 1.0, "auto: the desirable side weighted up"
    else:
        d, u, how = 1.0, n_d / (BALANCE * n_u), "auto: the undesirable side weighted up"
    if not desirable or not undesirable:  # no balance to strike: say what the run can and cannot learn
        kind, other = ("undesirable (👎)", "what to avoid, not what to say") if undesirable else (
            "desirable (👍)", "what to say, with nothing marked as worse")
        return Weights(d, u, f"all {desirable + undesirable} rows are {kind}: KTO learns only {other}. Collect "
                             "answers of the other kind (or lower a campaign export's agreement threshold) for a "
                             "balanced run.")
    ratio = d * n_d / (u * n_u)
    text = (f"{desirable} desirable and {undesirable} undesirable rows; loss weights {d:.3g} desirable, {u:.3g} "
            f"undesirable ({how}): weighted desirable/undesirable {ratio:.2f}")
    if desirable and undesirable and not LOW - 0.005 <= ratio <= HIGH + 0.005:
        text += (", outside the 1–1.33 the KTO paper advises: set kto_desirable_weight and "
                 "kto_undesirable_weight to auto, or balance them yourself")
    return Weights(d, u, text + ".")


def label_counts(rows: list[dict[str, Any]]) -> tuple[int, int]:
    desirable = sum(bool(row["label"]) for row in rows)
    return desirable, len(rows) - desirable


def precheck(cfg: TrainConfig, home: Any) -> None:
    """Before launch: KTO's KL estimate pairs each row with another row of its batch, so a batch of one cannot
    train (TRL refuses it only once the model is loaded); weights must be auto or positive numbers."""
    if cfg.kto_loss_type == "kto" and cfg.batch_size < 2:
        raise LabError(f"KTO needs batch_size 2 or more (got {cfg.batch_size}): it estimates its KL reference point "
                       "from the other rows of each batch, which a batch of one does not have. Raise batch_size (and "
                       "lower grad_accum to keep the effective batch), or use kto_loss_type apo_zero_unpaired.")
    if cfg.kto_beta <= 0:
        raise LabError(f"kto_beta must be positive (got {cfg.kto_beta}).")
    weight_setting(cfg.kto_desirable_weight, "kto_desirable_weight")
    weight_setting(cfg.kto_undesirable_weight, "kto_undesirable_weight")


def sequences(cfg: TrainConfig) -> int:
    """Sequences one row puts through the policy per step: its completion, and (for the KL estimate) its prompt
    with another row's completion. The KL pass runs without gradients, so it holds no activations for the
    backward pass; counted anyway, as its forward's activations exist while it runs."""
    return 2 if cfg.kto_loss_type == "kto" else 1


def reference(cfg: TrainConfig) -> bool:
    """A frozen copy of the model is held only for full-model KTO whose reference log-probabilities are not
    precomputed; adapters switch themselves off for the reference."""
    return cfg.adapter == "none" and not precompute_reference(cfg)


def config(cfg: TrainConfig, common: dict[str, Any], weights: Weights | None = None) -> Any:
    """KTO's settings; ``weights`` from the training rows' label counts (``build``), else the weights as set (auto
    counts as 1 until the rows are known)."""
    from trl import KTOConfig

    if weights is None:
        weights = Weights(weight_setting(cfg.kto_desirable_weight, "kto_desirable_weight") or 1.0,
                          weight_setting(cfg.kto_undesirable_weight, "kto_undesirable_weight") or 1.0, "")
    # The KL estimate pairs each row with its neighbour in a fixed-order batch: TRL needs sequential sampling.
    return KTOConfig(**common, max_length=cfg.max_length, beta=cfg.kto_beta, loss_type=cfg.kto_loss_type,
                     desirable_weight=weights.desirable, undesirable_weight=weights.undesirable,
                     precompute_ref_log_probs=precompute_reference(cfg), train_sampling_strategy="sequential")


def build(b: Build) -> Any:
    from trl import KTOTrainer

    from lab.train.datasets import truncate_prompts

    cfg = b.cfg
    weights = balanced_weights(cfg, *label_counts(b.train_rows))
    print(f"[lab] KTO: {weights.text}", flush=True)
    args = config(cfg, b.args, weights)
    # TRL samples in order (each row's KL partner is its batch neighbour), so rows that arrive grouped (a campaign's
    # export, a file sorted by label) are shuffled once here, with the run's seed.
    train_rows = truncate_prompts(b.train_rows, b.tokenizer, cfg.max_prompt_length)
    random.Random(cfg.seed).shuffle(train_rows)
    eval_rows = truncate_prompts(b.eval_rows, b.tokenizer, cfg.max_prompt_length)
    return KTOTrainer(args=args, **b.trainer_kwargs(train_rows, eval_rows))


def propose_kto(dataset_ref: str, model: str, home: Any) -> Any:
    """KTO with a LoRA adapter on ``model`` (e.g. run:<SFT id>) over the unpaired version ``dataset_ref`` (a Label
    export), as ``lab.train.viability.propose_dpo`` does for DPO: the usual rate for the model's size and a schedule
    that trains on the rows there are (``trainable``), with batches of 2 rows or more (the KL estimate's floor).
    Returns a ``viability.Proposal``."""
    from lab.data.versions import read_rows
    from lab.names import derived_name
    from lab.train.datasets import resolve_version
    from lab.train.loading import model_params
    from lab.train.methods import objective
    from lab.train.viability import Proposal, count_steps, run_processes, trainable

    version = resolve_version(dataset_ref, home)
    if version.kind != objective("kto").data_kind:
        raise LabError(f"Dataset {version.ref} holds {version.kind} data; KTO needs unpaired replies labelled "
                       "desirable or not (a thumbs campaign's export, a pairwise campaign's unpaired export, or an "
                       "unpaired file).")
    base = TrainConfig(objective="kto", adapter="lora", model=model, dataset=version.ref)
    rate = base.usual_lr_for(model_params(model, home))
    base = dataclasses.replace(base, learning_rate=rate)
    rows = version.rows[base.train_split]
    if not rows:
        raise LabError(f"Dataset {version.ref} has no {base.train_split} rows to train on; export a campaign with "
                       "votes first.")
    processes = run_processes(base)
    # Plan in units of two rows, so the batch the plan shrinks to is never below two rows.
    halved = trainable(dataclasses.replace(base, batch_size=max(1, base.batch_size // 2)), math.ceil(rows / 2),
                       processes)
    values = dict(halved.values)
    values["batch_size"] = 2 * values.get("batch_size", max(1, base.batch_size // 2))
    chosen = dataclasses.replace(base, **values)
    steps = count_steps(chosen, rows, processes)
    if steps.warmup and steps.warmup >= steps.total:
        chosen = dataclasses.replace(chosen, warmup_ratio=0.0)
        steps = count_steps(chosen, rows, processes)
    desirable, undesirable = label_counts(read_rows(version, base.train_split, home))
    weights = balanced_weights(chosen, desirable, undesirable)
    proposal = {"objective": "kto", "adapter": chosen.adapter, "model": model, "dataset": version.ref,
                "batch_size": chosen.batch_size, "grad_accum": chosen.grad_accum, "epochs": chosen.epochs,
                "warmup_ratio": chosen.warmup_ratio, "learning_rate": rate,
                # Every field the schedule and the refusals read, so nothing left in the form from another run
                # (a max_steps, a batch of one, weights set by hand) overrides the proposal.
                "max_steps": chosen.max_steps, "max_length": chosen.max_length,
                "max_prompt_length": chosen.max_prompt_length, "kto_desirable_weight": "auto",
                "kto_undesirable_weight": "auto", "kto_loss_type": chosen.kto_loss_type,
                "eval_split": "validation" if version.rows.get("validation") else "none",
                "name": derived_name(version.name, prefix="kto-")}
    text = (f"{rows} rows of {version.ref} ({desirable} desirable, {undesirable} undesirable) make {steps.total} "
            f"optimizer step{'s' if steps.total != 1 else ''} (batch {chosen.batch_size} × {chosen.grad_accum} "
            f"accumulated{f' × {processes} processes' if processes > 1 else ''} per step, {chosen.epochs:g} epoch"
            f"{'s' if chosen.epochs != 1 else ''}) at learning rate {rate:g}"
            + (f" after {steps.warmup} warm-up steps" if steps.warmup else ", with no warm-up")
            + f"; loss weights {weights.desirable:.3g} desirable, {weights.undesirable:.3g} undesirable (auto).")
    return Proposal(proposal, text)
