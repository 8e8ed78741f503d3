"""The ten-minute sanity check that saves a wasted day: before a long run, overfit a handful of
examples, take a short curve on the real data, check the loss mask and read a sample — and say in
words what looks wrong. Each training part is a real (short) run in its own process."""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lab.config import TrainConfig
from lab.errors import LabError
from lab.home import Home, lab_home
from lab.names import derived_name
from lab.train.methods import objective

OVERFIT_ROWS = 20
OVERFIT_STEPS = 50
CURVE_STEPS = 20
# How the check names what it makes, so pickers can leave its working runs and datasets out (lab.catalog).
SANITY_PREFIXES = ("sanity-overfit-", "sanity-curve-")
SANITY_STEP = "sanity subset"


@dataclass
class Verdict:
    check: str
    ok: bool
    message: str


@dataclass
class SanityReport:
    verdicts: list[Verdict] = field(default_factory=list)
    runs: dict[str, str] = field(default_factory=dict)  # part -> run id
    sample: str = ""

    @property
    def ok(self) -> bool:
        return all(v.ok for v in self.verdicts)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "verdicts": [dataclasses.asdict(v) for v in self.verdicts], "runs": self.runs,
                "sample": self.sample}


def losses_of(run_id: str, home: Home, metric: str = "loss") -> list[float]:
    """The logged training values of ``metric`` (the loss, or an online objective's reward), in order."""
    from lab.train.runner import read_metrics

    return [r[metric] for r in read_metrics(run_id, home) if r.get("split") == "train" and metric in r]


def loss_verdict(losses: list[float], *, what: str, need_fraction: float, metric: str = "loss") -> Verdict:
    """The loss must fall below ``need_fraction`` of its first value; another series (a reward) must rise."""
    if len(losses) < 2:
        return Verdict(what, False, f"{what}: too few logged steps to judge.")
    first, last = losses[0], losses[-1]
    if metric == "loss":
        good = last < need_fraction * first
        advice = "did not fall enough: check the learning rate, the masking and the data"
    else:
        good = last > first
        advice = "did not rise: check the learning rate, the reward functions and the sampling temperature"
    return Verdict(what, good, f"{what}: {metric} {first:.3f} → {last:.3f} in {len(losses)} logs "
                   + (f"({'fell' if metric == 'loss' else 'rose'} as it should)." if good else f"({advice})."))


def oscillation_verdict(losses: list[float]) -> Verdict:
    """Loss that keeps going up and down by a large fraction of itself: the learning rate is too high."""
    tail = losses[len(losses) // 2:]
    if len(tail) < 4:
        return Verdict("stability", True, "Stability: too short a curve to judge oscillation.")
    diffs = [b - a for a, b in zip(tail, tail[1:])]
    flips = sum(1 for a, b in zip(diffs, diffs[1:]) if a * b < 0)
    swing = statistics.pstdev(diffs) / max(statistics.mean(tail), 1e-8)
    oscillating = flips >= len(diffs) * 0.6 and swing > 0.15
    return Verdict("stability", not oscillating,
                   "Loss oscillates (up and down by {:.0%} of itself): the learning rate is probably too high."
                   .format(swing) if oscillating else "Stability: the loss curve is smooth enough.")


def readable(text: str) -> bool:
    printable = sum(ch.isprintable() or ch.isspace() for ch in text)
    words = text.split()
    return bool(words) and printable / max(len(text), 1) > 0.95 and len(set(words)) > min(3, len(words)) - 1


def sanity_check(cfg: TrainConfig, *, home: Home | None = None,
                 progress: Callable[[float, str], None] | None = None) -> SanityReport:
    """Run the checks for ``cfg`` (its model, data and learning rate) and return verdicts in words."""
    from lab.data.canonical import Row
    from lab.data.masking import mask_view
    from lab.data.versions import read_rows, save_version
    from lab.models import generate, load_tokenizer
    from lab.train.datasets import resolve_version
    from lab.train.loading import resolve_model_path
    from lab.train.runner import create_run, wait

    home = home or lab_home()
    say = progress or (lambda fraction, message: None)
    report = SanityReport()
    version = resolve_version(cfg.dataset, home)
    rows = read_rows(version, cfg.train_split, home)
    if not rows:
        raise LabError(f"{version.ref} has no {cfg.train_split} rows to check with.")

    say(0.05, "Checking the loss mask")
    entry = objective(cfg.objective)
    if entry.loss_mask:
        tokenizer = load_tokenizer(resolve_model_path(cfg.model, home))
        views = [mask_view(r["messages"], tokenizer, tools=r.get("tools"), max_length=cfg.max_length) for r in rows[:5]]
        problems = sorted({w for v in views for w in v.warnings})
        trained = sum(v.n_loss_tokens for v in views)
        total = sum(v.n_tokens for v in views)
        report.verdicts.append(Verdict("masking", not problems, "Masking correct: only the assistant's replies "
                                       f"carry loss ({trained} of {total} tokens in 5 rows)." if not problems
                                       else "Masking problem: " + " ".join(problems)))

    say(0.1, f"Overfitting {OVERFIT_ROWS} examples for {OVERFIT_STEPS} steps")
    subset = [Row({k: v for k, v in r.items() if k not in ("source", "line")}, r["line"], r["source"])
              for r in rows[:OVERFIT_ROWS]]
    small = save_version(derived_name(version.name, suffix="-sanity"), version.kind, version.format, subset, [],
                         {"source": version.ref, "steps": [{"step": SANITY_STEP, "before": len(rows),
                                                            "after": len(subset), "removed": 0,
                                                            "detail": f"first {len(subset)} rows"}]}, home=home)
    quick = dict(eval_split="none", save_steps=0, report_to="none", logging_steps=2, early_stopping_patience=0,
                 sample_prompts=0,
                 load_best_model_at_end=False, warmup_ratio=0.0)
    overfit_cfg = dataclasses.replace(cfg, name=derived_name(cfg.name or cfg.method, prefix=SANITY_PREFIXES[0]),
                                      dataset=small.ref, max_steps=OVERFIT_STEPS,
                                      # an online objective's batch holds whole groups of completions: kept
                                      batch_size=cfg.batch_size if entry.entries_per_row(cfg) > 1 else
                                      min(cfg.batch_size, 8),
                                      grad_accum=1, **quick)
    overfit, _ = create_run(overfit_cfg, home=home)
    report.runs["overfit"] = overfit.id
    overfit = wait(overfit.id, home)
    if overfit.status != "succeeded":
        report.verdicts.append(Verdict("overfit", False, f"The overfit run {overfit.status}: {overfit.error}"))
        return report
    metric = entry.sanity_metric
    losses = losses_of(overfit.id, home, metric)
    report.verdicts.append(loss_verdict(losses, what="Overfit on 20 examples",
                                        need_fraction=entry.overfit_fraction, metric=metric))
    if metric == "loss":  # a reward's spread across steps is its sampling, not the learning rate
        report.verdicts.append(oscillation_verdict(losses))

    say(0.6, f"A short curve on the real data ({CURVE_STEPS} steps)")
    curve_cfg = dataclasses.replace(cfg, name=derived_name(cfg.name or cfg.method, prefix=SANITY_PREFIXES[1]),
                                    max_steps=CURVE_STEPS, **quick)
    curve = wait(create_run(curve_cfg, home=home)[0].id, home)
    report.runs["curve"] = curve.id
    if curve.status == "succeeded":
        report.verdicts.append(loss_verdict(losses_of(curve.id, home, metric), what="Short curve on the real data",
                                            need_fraction=1.0, metric=metric))
    else:
        report.verdicts.append(Verdict("curve", False, f"The short run {curve.status}: {curve.error}"))

    if not entry.generates:  # a reward model scores answers; it writes none
        say(1.0, "Done")
        return report
    say(0.9, "Reading a sample")
    prompt = rows[0]["messages"][:-1] if "messages" in rows[0] else rows[0]["prompt"]
    report.sample = generate(str(overfit.run_dir / "final"), [prompt], max_new_tokens=48, home=home)[0]
    report.verdicts.append(Verdict("sample", readable(report.sample),
                                   f"Sample after overfitting: {report.sample[:200]!r}" if readable(report.sample)
                                   else f"The sample is not readable text: {report.sample[:200]!r}"))
    say(1.0, "Done")
    return report
