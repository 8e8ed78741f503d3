"""A GRPO step, generation included: plain TRL's ``GRPOTrainer`` (the tutorial's script) against ``python -m lab
train`` with objective grpo and the same settings, on the same model, prompts and seed; seconds per optimizer step
(the median after the warm-up steps, and the first step on its own); prints a table and writes JSON.

    python bench/grpo_step.py --arch qwen2.5-0.5b --steps 10 --out bench/results/grpo-step.json

Settings on both sides: 8 completions per prompt (``num_generations``), one prompt per step (8 completions per
device batch, no accumulation), ``max_completion_length`` 256, temperature 1, top-p 1, no KL term (TRL's default
beta 0), learning rate 1e-6, bf16, one reward: the lab's ``length`` preset (1 − |characters − target| / target),
written out as a plain function for TRL. Plain keeps GRPOConfig's defaults (gradient checkpointing on, as its
tutorials train) and samples with transformers' ``generate``; the lab keeps its own defaults (its speed plan: no
checkpointing where the batch fits, Liger's layer kernels when installed, fused AdamW) and samples with its
static-cache decoder (lab/train/objectives/grpo.py). The model has random weights (bench/configs, the tiny
tokenizer), so completions are random tokens and run to ``max_completion_length`` on both sides (an end of sequence
is one token in 150k): the table's mean completion length shows it. Random ids outside the tiny tokenizer decode to
nothing, so the rewards are small, but they differ within a group, so the gradient is not zero (shown).

A step's time is the interval between the trainer's logs of consecutive steps (``logging_steps`` 1), as the lab's
metrics.jsonl records them and the plain script's callback does; the first step is measured from the start of
``train()`` (its end minus ``train_runtime``). ``--plain-only`` runs the plain side alone in this process (what the
benchmark starts it as, so that nothing of the lab is imported there).
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from chat_data import single_token_words, text  # noqa: E402
from common import ROOT, build_random_model, import_rows, lab_train, versions  # noqa: E402

GENERATIONS = 8
LENGTH_TARGET = 64  # characters; the random model's decodable tokens make a few dozen
LEARNING_RATE = 1e-6  # GRPOConfig's default
SEED = 42


def prompt_rows(tokenizer: Any, n: int, seed: int = 0) -> list[dict[str, Any]]:
    """Chat prompts of 32 to 160 single-token words."""
    rng = random.Random(seed)
    words = single_token_words(tokenizer)
    return [{"prompt": [{"role": "user", "content": text(rng, words, rng.randint(32, 160))}]} for _ in range(n)]


# --------------------------------------------------------------------------- plain TRL, nothing of the lab


def plain(args: argparse.Namespace) -> None:
    """The tutorial's GRPO script: the model by path (TRL loads it in fp32 and trains with bf16 autocast), GRPOConfig's
    defaults but for the shared settings; every log with its time, and the peak GPU memory, to ``--out``."""
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    def length_reward(completions: list, **kwargs: Any) -> list[float]:
        return [max(0.0, 1.0 - abs(len(c[0]["content"].strip()) - LENGTH_TARGET) / LENGTH_TARGET) for c in completions]

    log: list[dict[str, Any]] = []

    class Timeline(TrainerCallback):
        def on_log(self, targs, state, control, logs=None, **kwargs):
            log.append({"time": time.time(), "step": state.global_step,
                        **{k: v for k, v in (logs or {}).items() if isinstance(v, (int, float))}})

    cuda = torch.cuda.is_available()  # False only when the harness itself is tried on a CPU
    rows = [json.loads(line) for line in Path(args.data).read_text().splitlines()]
    config = GRPOConfig(output_dir=str(Path(args.out).with_suffix("")) + "-out",
                        per_device_train_batch_size=GENERATIONS, num_generations=GENERATIONS,
                        max_completion_length=args.completion_length, max_steps=args.steps,
                        learning_rate=LEARNING_RATE, logging_steps=1, save_strategy="no", report_to="none", seed=SEED,
                        bf16=cuda, use_cpu=not cuda, disable_tqdm=True)
    trainer = GRPOTrainer(model=args.plain_only, reward_funcs=length_reward, args=config,
                          train_dataset=Dataset.from_list(rows), callbacks=[Timeline()])
    trainer.train()
    peak = torch.cuda.max_memory_allocated() / 1024**3 if cuda else None
    Path(args.out).write_text(json.dumps({"log": log, "peak_gpu_memory_gib": peak,
                                          "gradient_checkpointing": config.gradient_checkpointing}))


def run_plain(args: argparse.Namespace, model_dir: Path, data: Path, out: Path) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--plain-only", str(model_dir), "--data", str(data),
               "--steps", str(args.steps), "--completion-length", str(args.completion_length), "--out", str(out)]
    started = time.time()
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)
    if result.returncode != 0:
        return {"variant": "plain", "error": result.stderr[-3000:]}
    report = json.loads(out.read_text())
    return {"variant": "plain", "wall_seconds": time.time() - started, **report}


# --------------------------------------------------------------------------- the lab


def run_lab(args: argparse.Namespace, home: Any, model_dir: Path, dataset: str) -> dict[str, Any]:
    sets = {"objective": "grpo", "adapter": "none", "model": str(model_dir), "dataset": dataset,
            "batch_size": GENERATIONS, "grad_accum": 1, "num_generations": GENERATIONS,
            "max_completion_length": args.completion_length, "max_length": 1024, "temperature": 1.0, "kl_beta": 0,
            "learning_rate": LEARNING_RATE, "lr_scheduler": "linear", "warmup_ratio": 0, "max_steps": args.steps,
            "epochs": 1, "logging_steps": 1, "eval_split": "none", "save_steps": 10**6, "report_to": "none",
            "sample_prompts": 0, "rewards": "length:1", "length_target": LENGTH_TARGET, "seed": SEED, "vllm": "off"}
    for item in args.lab_set:
        key, _, value = item.partition("=")
        sets[key] = value
    started = time.time()
    run = lab_train(home, sets)
    wall = time.time() - started
    if "run_dir" not in run:
        return {"variant": "lab", "error": run.get("error") or "no run was made"}
    run_dir = Path(run["run_dir"])
    if run["status"] != "succeeded":
        return {"variant": "lab", "error": run["error"], "log_tail": (run_dir / "log.txt").read_text()[-4000:]}
    summary = json.loads((run_dir / "summary.json").read_text())
    sampler = [line for line in (run_dir / "log.txt").read_text().splitlines() if "sampling completions" in line]
    return {"variant": "lab", "wall_seconds": wall, "settings": sets,
            "log": [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()],
            "peak_gpu_memory_gib": summary.get("peak_gpu_memory_gib"), "phases": summary.get("phases"),
            "speed": json.loads((run_dir / "speed.json").read_text()), "sampler": sampler[0] if sampler else None}


# --------------------------------------------------------------------------- both


def step_times(log: list[dict[str, Any]]) -> tuple[float, list[float]]:
    """(the first step's seconds, every later step's) from the trainer's logs: one per step, and a closing one
    with ``train_runtime`` logged when ``train()`` ends."""
    steps = sorted((r for r in log if "loss" in r and "train_runtime" not in r), key=lambda r: r["step"])
    closing = next(r for r in log if "train_runtime" in r)
    start = closing["time"] - closing["train_runtime"]
    times = [start] + [r["time"] for r in steps]
    seconds = [b - a for a, b in itertools.pairwise(times)]
    return seconds[0], seconds[1:]


def summarise(report: dict[str, Any], warmup: int) -> dict[str, Any]:
    if "error" in report:
        return {"variant": report["variant"], "error": report["error"][-1500:], "log_tail": report.get("log_tail")}
    first, later = step_times(report["log"])
    steady = later[max(0, warmup - 1):] or later
    rows = [r for r in report["log"] if "loss" in r and "train_runtime" not in r]
    lengths = [r["completions/mean_length"] for r in rows if "completions/mean_length" in r]
    norms = [r["grad_norm"] for r in rows if r.get("grad_norm") is not None]
    # TRL's own timer of training_step (generation, rewards, forward and backward; not the optimizer step)
    trl_times = [r["step_time"] for r in rows[len(rows) - len(steady):] if "step_time" in r]
    return {"variant": report["variant"], "steps": len(rows), "first_step_s": round(first, 2),
            "median_step_s": round(statistics.median(steady), 3), "steady_steps": len(steady),
            "trl_step_time_s": round(statistics.median(trl_times), 3) if trl_times else None,
            "step_seconds": [round(s, 3) for s in [first, *later]],
            "mean_completion_length": round(statistics.mean(lengths), 1) if lengths else None,
            "mean_reward": round(statistics.mean(r["reward"] for r in rows if "reward" in r), 4),
            "max_grad_norm": round(max(norms), 6) if norms else None,
            "peak_gpu_memory_gib": round(report["peak_gpu_memory_gib"], 2) if report.get("peak_gpu_memory_gib")
            else None, "wall_seconds": round(report["wall_seconds"], 1),
            **{k: report[k] for k in ("phases", "speed", "sampler", "gradient_checkpointing") if k in report}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="qwen2.5-0.5b", help="a file in bench/configs, without .json")
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps each side (one prompt each)")
    parser.add_argument("--warmup", type=int, default=2, help="steps left out of the median (the first among them)")
    parser.add_argument("--completion-length", type=int, default=256)
    parser.add_argument("--variants", default="plain,lab")
    parser.add_argument("--lab-set", action="append", default=[], help="key=value for the lab's run (repeat)")
    parser.add_argument("--home", default="", help="LAB_HOME to keep the model and data between calls")
    parser.add_argument("--out", default=str(ROOT / "bench/results/grpo-step.json"))
    parser.add_argument("--plain-only", default="", metavar="MODEL_DIR", help=argparse.SUPPRESS)
    parser.add_argument("--data", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_only:
        plain(args)
        return

    from lab.home import lab_home
    from lab.models import load_tokenizer

    home = lab_home(args.home or tempfile.mkdtemp(prefix="lab-bench-"))
    model_dir = build_random_model(args.arch, home.models / args.arch, home)
    rows = prompt_rows(load_tokenizer("tiny", home=home), args.steps + 8)
    name = f"bench-grpo-{len(rows)}"
    dataset = import_rows(home, rows, name)
    data = home.root / f"{name}.jsonl"  # the plain side reads the same rows from the file import_rows wrote
    results_dir = Path(args.out).with_suffix("")
    results_dir.mkdir(parents=True, exist_ok=True)
    reports = []
    for variant in args.variants.split(","):
        print(f"[bench] {args.arch} GRPO step: {variant} ...", flush=True)
        report = (run_lab(args, home, model_dir, dataset) if variant == "lab"
                  else run_plain(args, model_dir, data, results_dir / "plain.json"))
        reports.append(summarise(report, args.warmup))
        print(json.dumps(reports[-1]), flush=True)
    base = next((r for r in reports if r["variant"] == "plain" and "error" not in r), None)
    for r in reports:
        if base and "error" not in r:
            r["speedup"] = round(base["median_step_s"] / r["median_step_s"], 2)
            r["first_step_speedup"] = round(base["first_step_s"] / r["first_step_s"], 2)
    document = {"arch": args.arch, "steps": args.steps, "warmup": args.warmup, "generations": GENERATIONS,
                "completion_length": args.completion_length, "prompts": len(rows), "versions": versions(),
                "command": " ".join(sys.argv), "results": reports}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(document, indent=1))
    print(f"\n{args.arch}: GRPO, 1 prompt x {GENERATIONS} completions of up to {args.completion_length} tokens a step, "
          f"median of steps {args.warmup + 1}-{args.steps}")
    print(f"{'variant':<8} {'median s/step':>13} {'speedup':>8} {'first step s':>12} {'first ×':>8} "
          f"{'completion len':>14} {'max grad norm':>13} {'peak GiB':>9} {'wall s':>7}")
    for r in reports:
        if "error" in r:
            print(f"{r['variant']:<8} ERROR {r['error'][-600:]}")
            continue
        print(f"{r['variant']:<8} {r['median_step_s']:>13} {r.get('speedup', ''):>8} {r['first_step_s']:>12} "
              f"{r.get('first_step_speedup', ''):>8} {r['mean_completion_length'] or 0:>14} "
              f"{r['max_grad_norm'] or 0:>13.3g} {r['peak_gpu_memory_gib'] or 0:>9} {r['wall_seconds']:>7}")
        if r.get("sampler"):
            print(f"{'':<8} {r['sampler'].removeprefix('[lab] ')}")


if __name__ == "__main__":
    main()
