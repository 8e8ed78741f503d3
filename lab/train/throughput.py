"""Expected training speed and wall time before a launch, and a finished run's measured speed beside it.

The expected figure has one of these bases, in this order (``Expected.basis`` says which, in a sentence):

1. this machine's own finished runs: the newest succeeded run of the same model, objective, adapter and packing on
   the same device whose ``summary.json`` measured ``tokens_per_second`` (and, per phase, the whole wait), scaled
   by the training FLOPs per token when the settings differ (length, gradient checkpointing, processes);
2. on a GPU the lab knows: its dense 16-bit peak × the model-FLOP utilisation the lab measured for the method
   (``EFFICIENCY``, from docs/benchmarks.md) ÷ the training FLOPs per token;
3. otherwise no rate, and the sentence says why (a CPU, an unknown GPU, a method never measured).

Tokens are the real (non-padding) tokens the loop will see, counted with the model's tokenizer over a sample of
the dataset version's rows, each sequence capped at ``max_length``."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.config import TrainConfig
from lab.errors import LabError
from lab.home import Home
from lab.train.estimate import ModelShape, model_shape, trainable_params, write_whole

SAMPLE_ROWS = 256  # rows tokenised to measure a dataset's mean length: enough for a mean within a few percent
# Phases of a run's whole wait that are not set-up: the loop itself, and waiting in the queue for a GPU. (The
# before/after samples, phases "samples …", count only for a run that answers fixed prompts.)
NOT_SETUP = ("training", "queue")

# Dense (no sparsity) 16-bit tensor peaks from the vendors' data sheets, by a part of the device's name; the first
# match wins, so a more specific name comes before a shorter one it contains.
PEAK_FLOPS: tuple[tuple[str, float, str], ...] = (
    (r"H200", 989e12, "BF16"),
    (r"H100 PCIe", 756e12, "BF16"),
    (r"H100", 989e12, "BF16"),  # SXM (nvidia-smi says "H100 80GB HBM3")
    (r"A100", 312e12, "BF16"),
    (r"L40S", 362e12, "BF16"),
    (r"\bL4\b", 121e12, "BF16"),
    (r"A10G", 125e12, "BF16"),
    (r"RTX 4090", 165e12, "BF16"),
    (r"\bT4\b", 65e12, "FP16"),  # no BF16 on a T4: its runs train in fp16
)


@dataclass(frozen=True)
class Efficiency:
    """A measured model-FLOP utilisation and the runs it holds for."""

    what: str  # the measurement, as the basis sentence cites it
    mfu: float
    params: float  # the measured model's parameters: the utilisation holds for models within SIZE_RANGE of it
    adapters: tuple[str, ...]
    objectives: tuple[str, ...]
    packing: bool | None = None  # None: measured on full-length rows, where packing changes nothing
    checkpointing: bool = False
    offload: bool = False
    min_batch_tokens: int = 0  # holds from this many tokens per micro-batch on


LORA = ("lora", "qlora")
QWEN_05B, LLAMA_8B = 494e6, 8.03e9  # parameters of the two architectures measured
# Utilisation falls with smaller matrices and a relatively larger LM head: a measurement is used for models of up
# to this factor smaller or larger than the one measured, and for no other.
SIZE_RANGE = 4.0
# Model-FLOP utilisation over the whole training loop (first step included) of the lab's own path on an H200, from
# docs/benchmarks.md, "Speed on the GPU: the lab's fast path against plain TRL" (session 4 rows; model FLOPs as
# flops_per_token counts them, recomputation not counted). Full SFT: "Full SFT, Qwen2.5-0.5B architecture, one
# epoch" (12.2%), "The same model at its largest batch, packed" (31.4% at 16 rows) and, at 32 rows, "The second
# remedy: larger tiles in the fused LM head" (38.5% over a 42-step epoch, issue 20's fifth session). DPO: "DPO, Qwen2.5-0.5B
# architecture, full model", 62,929 tokens/s at about 3.0 GFLOP per token = 19%. LoRA and QLoRA: "LoRA and QLoRA of
# the Llama-3.1-8B architecture" (39.5% LoRA, 41.1% QLoRA; with checkpointing 19.1% at 2 × 2,048 and 30.6% at
# 8 × 2,048; with checkpointing and offloading 25.0%). LoRA DPO was not measured: its step is an SFT step's kind
# of work (the reference forward is counted as extra work), so it takes the LoRA rows.
EFFICIENCY: tuple[Efficiency, ...] = (
    Efficiency("packed full SFT, 16 × 2,048-token rows, Qwen2.5-0.5B", 0.314, QWEN_05B, ("none",), ("sft",),
               packing=True),
    Efficiency("packed full SFT, 32 × 2,048-token rows, Qwen2.5-0.5B", 0.385, QWEN_05B, ("none",), ("sft",),
               packing=True, min_batch_tokens=65536),
    Efficiency("padding-free full SFT at batch 16, Qwen2.5-0.5B", 0.122, QWEN_05B, ("none",), ("sft",),
               packing=False),
    Efficiency("full DPO at 16 pairs with a precomputed reference, Qwen2.5-0.5B", 0.19, QWEN_05B, ("none",),
               ("dpo",)),
    Efficiency("LoRA/QLoRA SFT at 4 × 2,048 tokens, Llama-3.1-8B", 0.40, LLAMA_8B, LORA, ("sft", "dpo")),
    Efficiency("QLoRA SFT with gradient checkpointing at 2 × 2,048 tokens, Llama-3.1-8B", 0.191, LLAMA_8B, LORA,
               ("sft", "dpo"), checkpointing=True),
    Efficiency("QLoRA SFT with gradient checkpointing at 8 × 2,048 tokens, Llama-3.1-8B", 0.306, LLAMA_8B, LORA,
               ("sft", "dpo"), checkpointing=True, min_batch_tokens=16384),
    Efficiency("QLoRA SFT with gradient checkpointing and offloading at 4 × 2,048 tokens, Llama-3.1-8B", 0.25,
               LLAMA_8B, LORA, ("sft", "dpo"), checkpointing=True, offload=True),
)


@dataclass
class Workload:
    """What the loop will train on: real tokens, and the mean length of a sequence (for attention's FLOPs)."""

    train_tokens: int | None  # None: not known before training (an online objective generates its completions)
    mean_length: float  # tokens per sequence, each capped at max_length


@dataclass
class Expected:
    tokens_per_second: float | None
    loop_seconds: float | None
    setup_seconds: float | None  # everything of the whole wait but the loop (and a wait in the queue)
    wall_seconds: float | None
    basis: str  # where the figures come from, or why there are none
    train_tokens: int | None = None
    from_run: str | None = None  # the id of the run the figures were measured on (basis 1)


@dataclass
class RunSpeed:
    """A finished run's measured speed and whole wait, beside what the estimate expected of it."""

    tokens_per_second: float | None
    train_tokens: int | None
    wall_seconds: float | None
    phases: dict[str, float]
    expected: Expected | None
    why_no_estimate: str | None = None
    warm: bool = False  # forked by the warm worker: its imports were done before Start (``imports`` about 0 s)


# ----------------------------------------------------------------------------------------------- the workload


def workload(cfg: TrainConfig, version: Any, processes: int, home: Home) -> Workload:
    """The tokens the run will train on: the mean tokens per row (a sample, the model's chat template, each
    sequence capped at ``max_length``) × the rows the loop sees (epochs, or max_steps × the effective batch)."""
    from lab.train.viability import count_steps

    per_row, mean_length = row_tokens(version.ref, version.kind, cfg.train_split, cfg.model,
                                               cfg.max_length, str(home.root))
    rows = version.rows[cfg.train_split]
    steps = count_steps(cfg, rows, processes)
    if cfg.max_steps > 0 and rows:
        epochs = math.ceil(cfg.max_steps / steps.per_epoch) if steps.per_epoch else 0
        seen = min(cfg.max_steps * steps.effective_batch, rows * epochs)
    else:
        seen = rows * cfg.epochs
    return Workload(round(per_row * seen) if per_row is not None else None, mean_length)


@functools.lru_cache(maxsize=32)
def row_tokens(ref: str, kind: str, split: str, model: str, max_length: int,
               root: str) -> tuple[float | None, float]:
    """(mean tokens per row, mean tokens per sequence) of a version's split, from a sample of its rows; cached, as
    a version never changes, in memory and on disk (``tokens_file``): measuring loads the tokenizer, which imports
    transformers and torch, seconds of every estimate in a new process (the Train tab's first, every CLI one)."""
    from lab.home import lab_home
    from lab.train.loading import resolve_model_path

    home = lab_home(root)
    path = resolve_model_path(model, home)
    saved = tokens_file(home, ref, split, path, max_length)
    if saved is not None and saved.exists():
        try:
            per_row, mean_length = json.loads(saved.read_text())
            return per_row, mean_length
        except ValueError:  # a file cut short or of another layout: measure again
            pass
    measured = measure_tokens(ref, kind, split, path, max_length, home)
    if saved is not None:
        write_whole(saved, json.dumps(measured))
    return measured


def tokens_file(home: Home, ref: str, split: str, model_path: str, max_length: int) -> Path | None:
    """Where a split's token counts are kept, under ``LAB_HOME/cache/row_tokens``: named by the version (its ref
    names its content), the split, ``max_length``, the sample's size and the tokenizer's files (name, size,
    modification time, as the SFT loss-mask check names its verdict). None for a model that is no local folder."""
    from lab.train.data_cache import tokenizer_keyed

    name = tokenizer_keyed(model_path, ref, split, max_length, SAMPLE_ROWS)
    return None if name is None else home.root / "cache" / "row_tokens" / f"{name}.json"


def measure_tokens(ref: str, kind: str, split: str, model_path: str, max_length: int,
                   home: Home) -> tuple[float | None, float]:
    """``row_tokens`` measured: the model's tokenizer over ``SAMPLE_ROWS`` rows spread over the split. Rows of
    prompts alone (online objectives) have no known training tokens."""
    from lab.data.versions import read_rows
    from lab.models import load_tokenizer

    rows = read_rows(ref, split, home)
    if not rows:
        return 0.0, 0.0
    stride = max(1, len(rows) // SAMPLE_ROWS)
    sample = rows[::stride][:SAMPLE_ROWS]
    tokenizer = load_tokenizer(model_path)
    conversations = [conversation for row in sample for conversation in sequences(row, kind)]
    if not conversations:  # prompts: the completions are generated while training
        prompts = [row["prompt"] for row in sample]
        return None, mean([min(n, max_length) for n in chat_lengths(prompts, tokenizer)])
    lengths = [min(n, max_length) for n in chat_lengths(conversations, tokenizer)]
    return sum(lengths) / len(sample), mean(lengths)


def sequences(row: dict[str, Any], kind: str) -> list[list[dict[str, Any]]]:
    """The conversations one row puts through the model: an SFT conversation; a pair's prompt with each reply."""
    if kind == "sft":
        return [row["messages"]]
    if kind == "preference":
        return [row["prompt"] + row["chosen"], row["prompt"] + row["rejected"]]
    if kind == "unpaired":
        return [row["prompt"] + row["completion"]]
    return []


def chat_lengths(conversations: list[list[dict[str, Any]]], tokenizer: Any) -> list[int]:
    """Tokens of each conversation in the model's chat template (a tokenizer without one: the texts joined)."""
    try:
        texts = [tokenizer.apply_chat_template(c, tokenize=False) for c in conversations]
    except ValueError:  # no chat template: transformers refuses rather than guessing one
        texts = ["\n".join(str(m.get("content") or "") for m in c) for c in conversations]
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def mean(values: list[int]) -> float:
    return sum(values) / len(values) if values else 0.0


# ---------------------------------------------------------------------------------------------- FLOPs per token

RECOMPUTED = "gradient checkpointing's recomputed forward"


@dataclass
class Flops:
    """Training FLOPs per token: the model's, as the benchmarks count MFU, and extra work the loop also does."""

    model: float
    extra: dict[str, float]  # what → FLOPs per token

    @property
    def executed(self) -> float:
        return self.model + sum(self.extra.values())


def flops_per_token(cfg: TrainConfig, shape: ModelShape, mean_length: float) -> Flops:
    """Model FLOPs as the benchmarks count them (bench/common.py ``training_flops``): 6 per trained parameter, 4 per
    frozen one (no weight gradient), causal attention 6·s·width per layer, the input embedding a lookup. Extra:
    gradient checkpointing's recomputed forward, tiled MLPs' recomputed MLP forward (without checkpointing), and
    DPO's reference forward each step when its log-probabilities are not precomputed."""
    from lab.train.estimate import MLP_LINEARS, decoder_linears
    from lab.train.objectives.dpo import precompute_reference

    head_in, head_out = shape.linear_shapes.get("lm_head", (0, 0))
    matmul = shape.params - shape.embedding_params + head_in * head_out  # a tied head counts once
    width = shape.linear_shapes.get("q_proj", (shape.hidden, shape.hidden))[1]
    attention = 6 * mean_length * width * shape.layers
    if cfg.adapter == "none":
        model = 6 * matmul + attention
    else:
        model = 4 * matmul + 6 * trainable_params(cfg, shape) + attention
    forward = 2 * matmul + attention / 3
    extra: dict[str, float] = {}
    if cfg.gradient_checkpointing == "on":
        extra[RECOMPUTED] = forward
    elif cfg.tiled_mlp == "on":
        mlp = sum(i * o * shape.layer_linear_count[n] for n, (i, o) in decoder_linears(shape).items()
                  if n in MLP_LINEARS)
        extra["tiled MLPs' recomputed forward"] = 2 * mlp
    if cfg.objective == "dpo" and not precompute_reference(cfg):
        extra["the reference model's forward each step"] = forward
    return Flops(model, extra)


def peak_flops(device_name: str) -> tuple[float, str] | None:
    """(dense 16-bit FLOP/s, which precision) of a GPU named so; None for a GPU not in ``PEAK_FLOPS``."""
    for pattern, flops, precision in PEAK_FLOPS:
        if re.search(pattern, device_name, re.IGNORECASE):
            return flops, precision
    return None


def measured_for(cfg: TrainConfig) -> list[Efficiency]:
    """The measurements of this method (objective, adapter, packing), at any size and batch."""
    return [e for e in EFFICIENCY if cfg.adapter in e.adapters and cfg.objective in e.objectives
            and e.packing in (None, cfg.packing)]


def efficiency(cfg: TrainConfig, batch_tokens: float, params: float) -> Efficiency | None:
    """The measurement that fits the run best: the same method, packing and memory savers on a model of about this
    size, at the largest measured micro-batch it reaches; a run with savers no measurement had takes the one
    without them (``flops_per_token`` then counts the recomputation as extra work). None: not measured."""
    checkpointing = cfg.gradient_checkpointing == "on"
    offload = checkpointing and cfg.offload_activations == "on"
    fits = [e for e in measured_for(cfg) if 1 / SIZE_RANGE <= params / e.params <= SIZE_RANGE
            and e.min_batch_tokens <= batch_tokens]
    same = [e for e in fits if (e.checkpointing, e.offload) == (checkpointing, offload)]
    chosen = same or [e for e in fits if not e.checkpointing]
    return max(chosen, key=lambda e: e.min_batch_tokens) if chosen else None


# ---------------------------------------------------------------------------------------------- the estimate


def resolved(cfg: TrainConfig, plan: Any) -> TrainConfig:
    """The config as the run goes (``plan``: its ``lab.train.speed.SpeedPlan``): no 'auto' memory saver or
    padding_free left, its micro-batches as merged."""
    return dataclasses.replace(cfg, **plan.memory_settings(), **plan.batch_settings(cfg.batch_size, cfg.grad_accum),
                               padding_free="on" if plan.padding_free else "off")


def as_run(cfg: TrainConfig, run_dir: Path) -> TrainConfig:
    """A run's config as it went, from the speed plan it recorded (``speed.json``); as written without one."""
    from lab.train.speed import SpeedPlan, read_plan

    plan = read_plan(Path(run_dir))
    return resolved(cfg, SpeedPlan(**plan)) if plan else cfg


def expected(cfg: TrainConfig, shape: ModelShape, *, device_name: str, gpus: int, work: Workload,
             home: Home, finished_before: str | None = None, exclude: str | None = None) -> Expected:
    """Tokens per second and seconds for a run of ``cfg`` (resolved: ``resolved`` / ``as_run``) on ``gpus``
    processes of ``device_name`` ('cpu' on a CPU). ``finished_before`` (an ISO time) and ``exclude`` (a run id)
    limit basis 1 to the runs that had finished when a given run was queued."""
    found = from_runs(cfg, shape, device_name=device_name, gpus=gpus, work=work, home=home,
                      finished_before=finished_before, exclude=exclude)
    if found:
        return found
    if device_name.lower() == "cpu":
        return nothing(f"no estimate on a CPU {UNTIL}", work)
    return from_flops(cfg, shape, device_name=device_name, gpus=gpus, work=work)


UNTIL = "until a run of this model with the same objective, adapter and packing has finished here"


def nothing(why: str, work: Workload) -> Expected:
    return Expected(None, None, None, None, why, work.train_tokens)


def timed(rate: float, setup: float | None, basis: str, work: Workload, run: str | None = None) -> Expected:
    loop = work.train_tokens / rate if work.train_tokens is not None else None
    wall = loop + setup if loop is not None and setup is not None else None
    return Expected(rate, loop, setup, wall, basis, work.train_tokens, run)


def from_runs(cfg: TrainConfig, shape: ModelShape, *, device_name: str, gpus: int, work: Workload, home: Home,
              finished_before: str | None, exclude: str | None) -> Expected | None:
    """Basis 1: the newest succeeded run of the same model, objective, adapter and packing on this device that
    measured its tokens per second, scaled to this run's FLOPs per token and processes; its phases outside the loop
    as the set-up. None when there is no such run."""
    from lab.train.runner import launch_info, list_runs
    from lab.train.samples import read_summary

    for run in list_runs(home, status="succeeded"):  # newest first
        if run.id == exclude or (finished_before and not (run.finished_at and run.finished_at < finished_before)):
            continue
        summary = read_summary(run.run_dir) or {}
        rate = summary.get("tokens_per_second")
        if not rate or str(summary.get("device", "")).strip().lower() != device_name.strip().lower():
            continue
        try:
            old = as_run(run.train_config, run.run_dir)
        except LabError:  # a config this version of the lab cannot read
            continue
        if (old.model, old.objective, old.adapter, old.packing) != (cfg.model, cfg.objective, cfg.adapter,
                                                                    cfg.packing):
            continue
        processes = launch_info(run.run_dir).get("processes") or 1
        ratio = (flops_per_token(old, shape, old_mean_length(old, processes, home, work)).executed
                 / flops_per_token(cfg, shape, work.mean_length).executed)
        phases = summary.get("phases") or {}
        # A one-process run forked by a ready warm worker skips the imports that run may have paid.
        skipped = ("imports",) if gpus == 1 and warm_ready(home) and phases.get("imports", 0) > 1 else ()
        setup = sum(s for name, s in phases.items() if name not in NOT_SETUP + skipped
                    and (cfg.sample_prompts or not name.startswith("samples"))) if phases else None
        where = "machine" if device_name.lower() == "cpu" else "GPU"
        notes = [f"{rate:,.0f} tokens/s measured"]
        if abs(ratio - 1) > 0.02:
            notes.append("scaled by FLOPs per token")
        if processes != gpus:
            notes.append(f"× {gpus}/{processes} processes, assuming linear scaling")
        if setup is None:
            notes.append("its set-up was not measured")
        elif skipped:
            notes.append(f"less its {phases['imports']:.0f} s of imports: the warm worker is ready")
        basis = f"from run {run.name} on this {where} ({', '.join(notes)})"
        return timed(rate * ratio * gpus / processes, setup, basis, work, run.id)
    return None


def warm_ready(home: Home) -> bool:
    """Whether this home's warm worker is up, so one-process runs start with their imports done."""
    from lab.train import warm

    return warm.enabled() is None and warm.read_state(home) is not None


def old_mean_length(cfg: TrainConfig, processes: int, home: Home, work: Workload) -> float:
    """The mean sequence length of an earlier run's data; this run's when that dataset is gone."""
    from lab.data.versions import get_version

    try:
        return workload(cfg, get_version(cfg.dataset, home), processes, home).mean_length
    except LabError:
        return work.mean_length


def from_flops(cfg: TrainConfig, shape: ModelShape, *, device_name: str, gpus: int, work: Workload) -> Expected:
    """Basis 2: the GPU's peak × the method's measured utilisation (``EFFICIENCY``) ÷ FLOPs per token."""
    from lab.train.methods import objective

    peak = peak_flops(device_name)
    if peak is None:
        return nothing(f"no estimate {UNTIL} (unknown GPU '{device_name}': its peak FLOP/s are not in the lab's "
                       "table)", work)
    flops, precision = peak
    if cfg.precision == "fp32":
        return nothing(f"no estimate {UNTIL} (the lab measured 16-bit training only, and this run is fp32)", work)
    if cfg.padding_free == "off":
        return nothing(f"no estimate {UNTIL} (the lab measured padding-free batches only, and padding_free is off)",
                       work)
    entry = objective(cfg.objective)
    length = cfg.max_length if cfg.packing else min(work.mean_length, cfg.max_length)
    measured = efficiency(cfg, cfg.batch_size * entry.sequences(cfg) * length, shape.params)
    if measured is None:
        method = cfg.method_title + (" of the full model" if cfg.adapter == "none" else "")
        sizes = sorted({e.params for e in measured_for(cfg)})
        where = (f"only on models of {' and '.join(map(size, sizes))} parameters, not of {size(shape.params)}"
                 if sizes else "never on a GPU")
        return nothing(f"no estimate {UNTIL} (the lab measured {method} {where})", work)
    per_token = flops_per_token(cfg, shape, work.mean_length)
    if measured.checkpointing:  # measured with checkpointing: its recomputation is in the utilisation already
        per_token.extra.pop(RECOMPUTED, None)
    rate = flops * measured.mfu / per_token.executed * gpus
    counted = f", counting {' and '.join(per_token.extra)}" if per_token.extra else ""
    scaled = f", × {gpus} GPUs assuming linear scaling" if gpus > 1 else ""
    basis = (f"from the {device_name}'s dense {precision} peak ({flops / 1e12:,.0f} TFLOP/s) × the {measured.mfu:.0%} "
             f"MFU the lab measured for {measured.what} (docs/benchmarks.md){counted}{scaled}; set-up not "
             f"estimated {UNTIL}")
    return timed(rate, None, basis, work)


# ---------------------------------------------------------------------------------------------- after the run


def run_speed(run: Any, home: Home) -> RunSpeed | None:
    """A finished run's measured tokens per second and whole wait (``summary.json``) beside the estimate made
    again from its config as it went, with what was known when it was queued (the same every time it is shown).
    None for a run with no measured speed."""
    from lab.train.samples import SUMMARY_FILE

    path = Path(run.run_dir) / SUMMARY_FILE
    if not path.exists():
        return None
    return cached_run_speed(run.id, path.stat().st_mtime_ns, str(home.root))


@functools.lru_cache(maxsize=64)
def cached_run_speed(run_id: str, mtime_ns: int, root: str) -> RunSpeed | None:
    """``run_speed``, once per version of the summary (the Train tab redraws a selected run every 2 s)."""
    from lab.home import lab_home
    from lab.train.datasets import resolve_version
    from lab.train.runner import get_run, launch_info
    from lab.train.samples import read_summary

    home = lab_home(root)
    run = get_run(run_id, home)
    summary = read_summary(run.run_dir) or {}
    phases = summary.get("phases") or {}
    rate = summary.get("tokens_per_second")
    if rate is None and not phases:
        return None
    wall = summary.get("wall_seconds") or (sum(phases.values()) if phases else None)
    launch = launch_info(run.run_dir)
    warm = bool(launch.get("warm"))
    try:
        cfg = as_run(run.train_config, run.run_dir)
        processes = launch.get("processes") or 1
        work = workload(cfg, resolve_version(cfg.dataset, home), processes, home)
        guess = expected(cfg, model_shape(cfg.model, home), device_name=summary.get("device") or "cpu",
                         gpus=processes, work=work, home=home, finished_before=run.created_at, exclude=run.id)
    except LabError as err:
        return RunSpeed(rate, summary.get("train_tokens"), wall, phases, None, str(err), warm=warm)
    return RunSpeed(rate, summary.get("train_tokens"), wall, phases, guess, warm=warm)


# ---------------------------------------------------------------------------------------------- in words


def duration(seconds: float) -> str:
    """'4.2 s', '45 s', '1 min 10 s', '41 min', '2 h 5 min'."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 600:
        minutes, rest = divmod(round(seconds), 60)
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    minutes = round(seconds / 60)  # from ten minutes on, seconds are noise
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def amount(tokens: float) -> str:
    """'900', '41 k', '2.7 M'."""
    if tokens < 10_000:
        return f"{tokens:,.0f}"
    if tokens < 1e6:
        return f"{tokens / 1e3:.0f} k"
    return f"{tokens / 1e6:.1f} M"


def size(params: float) -> str:
    """'3.3 M', '494 M', '8.0 B'."""
    return f"{params / 1e9:.1f} B" if params >= 1e9 else f"{params / 1e6:.2g} M" if params < 1e8 else f"{params / 1e6:.0f} M"


def rate_text(tokens_per_second: float) -> str:
    """Two significant digits: an estimate claims no more ('38,000', '4.2')."""
    rounded = float(f"{tokens_per_second:.2g}")
    return f"{rounded:,.0f}" if rounded >= 10 else f"{rounded:g}"


def expected_line(guess: Expected) -> str:
    """The estimate panel's line: the rate, the loop's time for the tokens, the set-up, and the basis."""
    if guess.tokens_per_second is None:
        tokens = f" (the run trains on about {amount(guess.train_tokens)} tokens)" if guess.train_tokens else ""
        return f"Expected speed: {guess.basis}{tokens}."
    line = f"Expected speed: **~{rate_text(guess.tokens_per_second)} tokens/s**"
    if guess.loop_seconds is not None:
        line += f", about **{duration(guess.loop_seconds)}** for {amount(guess.train_tokens)} tokens"
        if guess.setup_seconds is not None:
            line += f" (+ ~{duration(guess.setup_seconds)} before and after the loop)"
    else:
        line += " (the tokens an online objective generates are not known before it runs)"
    return f"{line} — {guess.basis}."
