"""Every objective × adapter through the lab's own path on a CUDA GPU: each objective's tiny recipe
(``recipes/tiny-<objective>.yaml``) is run by ``python -m lab train`` (runner → accelerate launch → worker) with
the adapter set, and the outcome, the objective's own headline metric, the real tokens/s and the peak GPU memory
are tabulated. It shows QLoRA (4-bit bitsandbytes, CUDA only, so never run in CI) working for every objective,
a reward model's sequence-classification head included.

    python bench/objectives_gpu.py --adapters none,qlora --steps 10 --out bench/results/objectives.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from common import ROOT, lab_env, versions  # noqa: E402

# objective -> (its tiny recipe, the metric that says it learned: the last logged value is reported)
RECIPES = {"sft": ("tiny-sft.yaml", "loss"), "dpo": ("tiny-dpo.yaml", "rewards/margins"),
           "kto": ("tiny-kto.yaml", "rewards/margins"), "reward": ("tiny-reward.yaml", "eval_accuracy"),
           "grpo": ("tiny-grpo.yaml", "reward"), "rloo": ("tiny-rloo.yaml", "reward")}


def run(home, objective: str, adapter: str, steps: int) -> dict:
    recipe, metric = RECIPES[objective]
    sets = {"adapter": adapter, "max_steps": steps, "report_to": "none", "sample_prompts": 0, "save_steps": 0,
            "logging_steps": 1}
    command = [sys.executable, "-m", "lab", "train", str(ROOT / "recipes" / recipe), "--wait", "--json"]
    for key, value in sets.items():
        command += ["--set", f"{key}={value}"]
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, env=lab_env(home), cwd=ROOT)
    wall = time.monotonic() - started
    try:
        answer = json.loads(result.stdout)
    except json.JSONDecodeError:
        return {"objective": objective, "adapter": adapter, "status": "error", "error": result.stderr[-600:]}
    row = {"objective": objective, "adapter": adapter, "status": answer.get("status"),
           "error": answer.get("error"), "wall_s": round(wall, 1)}
    run_dir = Path(answer.get("run_dir", ""))
    if (run_dir / "metrics.jsonl").exists():
        logs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        values = [r[metric] for r in logs if metric in r]
        speeds = [r["tokens_per_second"] for r in logs if "tokens_per_second" in r]
        row.update(metric=metric, first=values[0] if values else None, last=values[-1] if values else None,
                   tokens_per_second=sorted(speeds)[len(speeds) // 2] if speeds else None)
    if (run_dir / "summary.json").exists():
        summary = json.loads((run_dir / "summary.json").read_text())
        row.update(peak_gib=summary.get("peak_gpu_memory_gib"), device=summary.get("device"),
                   precision=summary.get("precision"))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objectives", default=",".join(RECIPES))
    parser.add_argument("--adapters", default="none,lora,qlora")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--out", default=str(ROOT / "bench/results/objectives.json"))
    args = parser.parse_args()

    from lab.home import lab_home
    from lab.models import tiny_model_path

    home = lab_home(tempfile.mkdtemp(prefix="objectives-"))
    tiny_model_path(home)
    rows = []
    for objective in args.objectives.split(","):
        for adapter in args.adapters.split(","):
            rows.append(run(home, objective, adapter, args.steps))
            print(json.dumps(rows[-1]), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"versions": versions(), "steps": args.steps, "rows": rows}, indent=1))
    print("\n| objective | adapter | status | metric: first → last | tokens/s | peak GiB | wall s |")
    print("|---|---|---|---|---:|---:|---:|")
    for r in rows:
        change = (f"{r.get('metric')}: {r['first']:.3g} → {r['last']:.3g}" if r.get("first") is not None else "")
        print(f"| {r['objective']} | {r['adapter']} | {r['status']}{': ' + str(r['error'])[:80] if r.get('error') else ''}"
              f" | {change} | {r.get('tokens_per_second') or ''} | {r.get('peak_gib') or ''} | {r.get('wall_s', '')} |")


if __name__ == "__main__":
    main()
