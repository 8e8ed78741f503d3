"""Batched generation, cold and warm: plain ``model.generate`` on one left-padded batch (dynamic cache) against the
lab's ``generate_with`` (length-sorted, bucketed batches, a static cache, the one-token step replayed as a CUDA
graph, or compiled with torch.compile), same model, prompts and greedy settings; prints a table and writes JSON.

    python bench/generation.py --arch qwen2.5-0.5b --prompts 8,32,256 --new-tokens 256 --out bench/results/gen.json

Each (variant, prompt count) runs in a fresh process with empty inductor and Triton caches, as on a fresh machine.
The model is loaded before the clock starts; the first call's time is everything a one-off batch (a campaign's
generation, an Eval) waits for, from the call to the texts back: for the lab that includes capturing the graph
(variant ``graph``, ``LAB_FAST_GENERATION=graph``, the default) or compiling (``compile``); for ``generate`` its
own first-call costs. The second call, same prompts in the same process, is what later batches of the same shapes
see. ``same`` is the share of replies equal to ``generate``'s (bf16 batches of other shapes may flip a near tie).
"compile pays after" is the number of such calls in one process after which compiling has beaten the graph.

The model has random weights (bench/configs), so replies are random tokens; the tokenizer is the tiny one with
placeholder tokens added up to the architecture's vocabulary, so every id the model emits can be decoded. New
tokens are counted the same way for every variant (re-encoding each decoded reply).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from chat_data import single_token_words, text
from common import ROOT, build_random_model, versions

LAB_MODES = {"graph": "graph", "compile": "compile"}  # variant → LAB_FAST_GENERATION; "hf" is plain generate


def prompts_for(tokenizer, n: int, seed: int = 0) -> list[list[dict[str, str]]]:
    """Chat prompts of 20 to 200 words."""
    import random

    rng = random.Random(seed)
    words = single_token_words(tokenizer)
    return [[{"role": "user", "content": text(rng, words, rng.randint(20, 200))}] for _ in range(n)]


def count_tokens(tokenizer, replies: list[str]) -> int:
    return sum(len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in replies)


def plain_generate(model, tokenizer, prompts, new_tokens: int) -> list[str]:
    """What a user writes: the whole batch in one call, left-padded, greedy."""
    import torch

    texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    tokenizer.padding_side = "left"
    batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return [tokenizer.decode(row[batch["input_ids"].shape[1]:], skip_special_tokens=True).strip() for row in out]


def timed(fn) -> tuple[list[str], float]:
    import torch

    torch.cuda.synchronize()
    started = time.perf_counter()
    out = fn()
    torch.cuda.synchronize()
    return out, time.perf_counter() - started


def child(variant: str, model_dir: str, n: int, new_tokens: int, replies_out: str) -> None:
    """One variant and prompt count in this (fresh) process: load, then time two identical calls. Prints one JSON
    line and writes the second call's replies to ``replies_out``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lab.models import generate_with

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16, device_map="cuda").eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.add_tokens([f"<x{i}>" for i in range(len(tokenizer), model.config.vocab_size)])
    prompts = prompts_for(tokenizer, n)
    if variant == "hf":
        call = lambda: plain_generate(model, tokenizer, prompts, new_tokens)
    else:
        call = lambda: generate_with(model, tokenizer, prompts, max_new_tokens=new_tokens)
    _, first = timed(call)
    replies, second = timed(call)
    tokens = count_tokens(tokenizer, replies)
    Path(replies_out).write_text(json.dumps(replies))
    print(json.dumps({"variant": variant, "prompts": n, "first_call_seconds": round(first, 2),
                      "second_call_seconds": round(second, 2), "new_tokens": tokens,
                      "tokens_per_second": round(tokens / second),
                      "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 1024**3, 2)}), flush=True)


def run_fresh(variant: str, model_dir: Path, n: int, new_tokens: int, scratch: Path) -> tuple[dict, list[str]]:
    """``child`` in a new process, with its own empty compile caches (a fresh machine has none)."""
    caches = Path(tempfile.mkdtemp(prefix=f"{variant}-{n}-", dir=scratch))
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(caches / "inductor"), "TRITON_CACHE_DIR": str(caches / "triton"),
           "LAB_FAST_GENERATION": LAB_MODES.get(variant, "0")}
    replies = caches / "replies.json"
    done = subprocess.run([sys.executable, __file__, "--child", variant, "--model-dir", str(model_dir), "--prompts",
                           str(n), "--new-tokens", str(new_tokens), "--replies", str(replies)],
                          env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{variant} with {n} prompts failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1]), json.loads(replies.read_text())


def compile_pays_after(graph: dict, compiled: dict) -> float | None:
    """Calls of this batch in one process after which compiling has cost less than the graph in all (None: never,
    its step is not faster): G1 + (k-1)·G2 > C1 + (k-1)·C2."""
    saving = graph["second_call_seconds"] - compiled["second_call_seconds"]
    if saving <= 0:
        return None
    return round(1 + (compiled["first_call_seconds"] - graph["first_call_seconds"]) / saving, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="qwen2.5-0.5b")
    parser.add_argument("--prompts", default="8,32,256", help="prompt counts, comma-separated")
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--variants", default="hf,graph,compile")
    parser.add_argument("--home", default="")
    parser.add_argument("--out", default=str(ROOT / "bench/results/generation.json"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--replies", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.model_dir, int(args.prompts), args.new_tokens, args.replies)

    from lab.home import lab_home

    home = lab_home(args.home or tempfile.mkdtemp(prefix="lab-bench-"))
    model_dir = build_random_model(args.arch, home.models / args.arch, home)
    scratch = Path(tempfile.mkdtemp(prefix="lab-bench-fresh-"))
    variants = args.variants.split(",")
    results = []
    for n in [int(p) for p in args.prompts.split(",")]:
        answers = {}
        for variant in variants:
            row, answers[variant] = run_fresh(variant, model_dir, n, args.new_tokens, scratch)
            results.append(row)
            print(json.dumps(row), flush=True)
        rows = [r for r in results if r["prompts"] == n]
        base = next((r for r in rows if r["variant"] == "hf"), None)
        for r in rows:
            if base:
                r["first_call_vs_generate"] = round(base["first_call_seconds"] / r["first_call_seconds"], 2)
                r["speedup"] = round(r["tokens_per_second"] / base["tokens_per_second"], 1)
                r["same"] = round(sum(a == b for a, b in zip(answers[r["variant"]], answers["hf"])) / n, 3)
        by = {r["variant"]: r for r in rows}
        if "graph" in by and "compile" in by:
            by["compile"]["compile_pays_after_calls"] = compile_pays_after(by["graph"], by["compile"])
    document = {"arch": args.arch, "prompts": args.prompts, "new_tokens": args.new_tokens, "versions": versions(),
                "command": " ".join(sys.argv), "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(document, indent=1))
    print(f"\n{args.arch}: {args.new_tokens} new tokens per prompt; each row a fresh process, model loaded")
    print(f"{'prompts':>7} {'variant':<8} {'first call s':>12} {'vs generate':>11} {'second s':>9} {'tokens/s':>10} "
          f"{'speedup':>8} {'same':>6} {'compile pays after':>18}")
    for r in results:
        pays = r.get("compile_pays_after_calls", "")
        vs = f"{r['first_call_vs_generate']}×" if "first_call_vs_generate" in r else ""
        print(f"{r['prompts']:>7} {r['variant']:<8} {r['first_call_seconds']:>12} "
              f"{vs:>11} {r['second_call_seconds']:>9} "
              f"{r['tokens_per_second']:>10,} {r.get('speedup', ''):>8} {r.get('same', ''):>6} "
              f"{'never' if pays is None else pays:>18}")


if __name__ == "__main__":
    main()
