"""Batched generation throughput: plain ``model.generate`` on one left-padded batch (dynamic cache) against the
lab's ``generate_with`` (length-sorted batches, static cache compiled into CUDA graphs), same model, prompts and
greedy settings; prints a table and writes JSON.

    python bench/generation.py --arch qwen2.5-0.5b --prompts 256 --new-tokens 256 --out bench/results/gen.json

The model has random weights (bench/configs), so replies are random tokens; the tokenizer is the tiny one with
placeholder tokens added up to the architecture's vocabulary, so every id the model emits can be decoded. New
tokens are counted the same way for both (re-encoding each decoded reply). The lab's first call includes
compiling; the table's number is the second call with the same shapes (what the Compare tab and labeling
campaigns see after the first batch), and the first call is reported beside it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from chat_data import single_token_words, text  # noqa: E402
from common import ROOT, build_random_model, versions  # noqa: E402


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="qwen2.5-0.5b")
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--variants", default="hf,lab")
    parser.add_argument("--home", default="")
    parser.add_argument("--out", default=str(ROOT / "bench/results/generation.json"))
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lab.home import lab_home
    from lab.models import generate_with

    home = lab_home(args.home or tempfile.mkdtemp(prefix="lab-bench-"))
    model_dir = build_random_model(args.arch, home.models / args.arch, home)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16, device_map="cuda").eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.add_tokens([f"<x{i}>" for i in range(len(tokenizer), model.config.vocab_size)])
    prompts = prompts_for(tokenizer, args.prompts)
    plain_generate(model, tokenizer, prompts[:2], 4)  # CUDA context and kernels, for both variants

    results = []
    for variant in args.variants.split(","):
        first = None
        if variant == "hf":
            replies, seconds = timed(lambda: plain_generate(model, tokenizer, prompts, args.new_tokens))
        else:
            call = lambda: generate_with(model, tokenizer, prompts, max_new_tokens=args.new_tokens)  # noqa: E731
            _, first = timed(call)  # compiles the shapes of this batch
            replies, seconds = timed(call)
        tokens = count_tokens(tokenizer, replies)
        results.append({"variant": variant, "seconds": round(seconds, 2), "new_tokens": tokens,
                        "tokens_per_second": round(tokens / seconds), "first_call_seconds": round(first, 1) if first
                        else None, "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 1024**3, 2)})
        print(json.dumps(results[-1]), flush=True)
    base = next((r for r in results if r["variant"] == "hf"), None)
    for r in results:
        if base:
            r["speedup"] = round(r["tokens_per_second"] / base["tokens_per_second"], 1)
    document = {"arch": args.arch, "prompts": args.prompts, "new_tokens": args.new_tokens, "versions": versions(),
                "command": " ".join(sys.argv), "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(document, indent=1))
    print(f"\n{args.arch}: {args.prompts} prompts x {args.new_tokens} new tokens")
    print(f"{'variant':<8} {'tokens/s':>10} {'speedup':>8} {'seconds':>8} {'first call s':>12}")
    for r in results:
        print(f"{r['variant']:<8} {r['tokens_per_second']:>10,} {r.get('speedup', ''):>8} {r['seconds']:>8} "
              f"{r['first_call_seconds'] or '':>12}")


if __name__ == "__main__":
    main()
