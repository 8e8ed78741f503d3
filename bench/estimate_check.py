"""The Train tab's memory estimate against peaks the CUDA allocator measured on the GPU machine (the figures and
the commands that produced them are in docs/benchmarks.md); prints a table. Runs on any machine: the estimate
needs only the architecture (built on the meta device).

    python bench/estimate_check.py

The estimate is for the worst case, every sequence at max_length, which is what these runs trained on
(packed rows, or synthetic rows longer than max_length). It is compared without the fixed framework overhead
(CUDA context and allocator slack), which ``torch.cuda.max_memory_allocated`` does not see.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]
from lab.config import TrainConfig  # noqa: E402
from lab.train.estimate import FRAMEWORK_OVERHEAD, GIB, memory, model_shape  # noqa: E402

CONFIGS = Path(__file__).resolve().parent / "configs"
LAB = dict(liger_kernels="on")  # the lab's GPU runs use Liger's kernels (auto); this machine may lack them
# Adapter runs measured before the dropout kernels (2026-12-04, sixth session) kept PEFT's dropped-out copies, as
# fused_lora=off (PEFT's own layers, which plain TRL runs) still does.
COPIES = dict(fused_lora="off")
# (what, architecture, settings, measured peak GiB, where it was measured). Rows without ``processes=1`` were
# measured before the early-gradient head (2026-12-05), which one-process SFT without checkpointing now takes, so
# they are estimated as runs without it (``processes`` 2 does that: the head is chosen in one process only).
# Runs without checkpointing measured
# before 2026-12-04's fifth session had TRL's 4,096-token head tiles; the estimate now counts the 16,384-token
# tiles such runs get (up to 0.75 GiB more), so their ratios read up to 0.02 high.
MEASURED = [
    ("full SFT, packed 16 × 2,048, fp32 hidden states", "qwen2.5-0.5b",
     dict(objective="sft", batch_size=16, max_length=2048, half_activations="off"), 45.91,
     "H200, 2026-12-01, train_throughput.py packed"),
    ("full SFT, packed 32 × 2,048, fp32 hidden states", "qwen2.5-0.5b",
     dict(objective="sft", batch_size=32, max_length=2048, half_activations="off"), 84.62,
     "H200, 2026-12-04, step_anatomy.py"),
    ("full SFT, packed 32 × 2,048, 16-bit hidden states", "qwen2.5-0.5b",
     dict(objective="sft", batch_size=32, max_length=2048, half_activations="on"), 71.28,
     "H200, 2026-12-04, step_anatomy.py (the fit of half_activations)"),
    ("  the same, 16,384-token head tiles", "qwen2.5-0.5b",
     dict(objective="sft", batch_size=32, max_length=2048, half_activations="on"), 72.03,
     "H200, 2026-12-04 (fifth session), step_anatomy.py"),
    ("  the same, the early-gradient head (default)", "qwen2.5-0.5b",
     dict(objective="sft", batch_size=32, max_length=2048, half_activations="on", processes=1), 72.44,
     "H200, 2026-12-05 (thirteenth session), step_anatomy.py"),
    ("QLoRA 8 × 512", "qwen2.5-0.5b", dict(adapter="qlora", batch_size=8, max_length=512, liger_kernels="off", **COPIES), 7.33,
     "H100, 2026-11-23, qlora_smoke.py"),
    ("QLoRA 4 × 2,048", "qwen2.5-0.5b", dict(adapter="qlora", batch_size=4, max_length=2048, liger_kernels="off", **COPIES), 13.90,
     "H100, 2026-11-23, qlora_smoke.py"),
    ("QLoRA 4 × 2,048, checkpointing", "qwen2.5-0.5b",
     dict(adapter="qlora", batch_size=4, max_length=2048, gradient_checkpointing=True, liger_kernels="off",
          **COPIES), 1.54,
     "H100, 2026-11-23, qlora_smoke.py"),
    # Llama-3.1-8B architecture on the H200, 2026-12-01 (train_throughput.py and longest_sequence.py). Plain TRL
    # runs without Liger, the lab with it. The term for the gradients passed between layers under checkpointing
    # was fitted on the long-sequence rows; the adapters' per-tensor count (estimate.adapter_layer_bytes) was
    # written after the 4 × 2,048 rows were measured with the batched SDPA path, so none of these is held out.
    ("8B LoRA 2 × 2,048, checkpointing (plain TRL)", "llama-3.1-8b",
     dict(adapter="lora", batch_size=2, max_length=2048, gradient_checkpointing="on", liger_kernels="off",
          **COPIES), 18.33,
     "train_throughput"),
    ("8B LoRA 4 × 2,048 (lab)", "llama-3.1-8b", dict(adapter="lora", batch_size=4, max_length=2048, **LAB, **COPIES), 67.72,
     "train_throughput, session 3 call 1"),
    ("8B QLoRA 2 × 2,048, checkpointing (plain TRL)", "llama-3.1-8b",
     dict(adapter="qlora", batch_size=2, max_length=2048, gradient_checkpointing="on", liger_kernels="off",
          **COPIES), 7.82,
     "train_throughput"),
    ("8B QLoRA 2 × 2,048, checkpointing (lab)", "llama-3.1-8b",
     dict(adapter="qlora", batch_size=2, max_length=2048, gradient_checkpointing="on", **LAB, **COPIES), 7.55,
     "train_throughput, session 3 call 1"),
    ("8B QLoRA 4 × 2,048 (lab)", "llama-3.1-8b", dict(adapter="qlora", batch_size=4, max_length=2048, **LAB, **COPIES), 57.56,
     "train_throughput, session 4 call 3"),
    ("8B QLoRA 8 × 2,048, tiled MLP (lab)", "llama-3.1-8b",
     dict(adapter="qlora", batch_size=8, max_length=2048, tiled_mlp="on", **LAB, **COPIES), 52.28,
     "train_throughput, session 4 call 4"),
    ("8B QLoRA 4 × 2,048, checkpointing + offload (lab)", "llama-3.1-8b",
     dict(adapter="qlora", batch_size=4, max_length=2048, gradient_checkpointing="on", offload_activations="on",
          **LAB, **COPIES), 7.72, "train_throughput, session 3 call 2"),
    # The dropout kernels (sixth session, call 4): no dropped-out copies or masks kept
    ("8B LoRA 4 × 2,048 (lab, dropout kernels)", "llama-3.1-8b", dict(adapter="lora", batch_size=4, max_length=2048,
                                                                      **LAB), 50.55, "H200, 2026-12-04, call 4"),
    ("8B LoRA 8 × 2,048 (lab, dropout kernels)", "llama-3.1-8b", dict(adapter="lora", batch_size=8, max_length=2048,
                                                                      **LAB), 85.21, "H200, 2026-12-04, call 4"),
    ("8B LoRA 4 × 2,048 (lab, early head)", "llama-3.1-8b", dict(adapter="lora", batch_size=4, max_length=2048,
                                                                 processes=1, **LAB), 51.04, "H200, 2026-12-05, call 2"),
    ("8B LoRA 8 × 2,048 (lab, early head)", "llama-3.1-8b", dict(adapter="lora", batch_size=8, max_length=2048,
                                                                 processes=1, **LAB), 85.22, "H200, 2026-12-05, call 2"),
    ("8B QLoRA 4 × 2,048 (lab, dropout kernels)", "llama-3.1-8b",
     dict(adapter="qlora", batch_size=4, max_length=2048, **LAB), 40.39, "H200, 2026-12-04, call 4"),
    ("8B QLoRA 4 × 2,048, checkpointing + offload (lab, dropout kernels)", "llama-3.1-8b",
     dict(adapter="qlora", batch_size=4, max_length=2048, gradient_checkpointing="on", offload_activations="on",
          **LAB), 7.16, "H200, 2026-12-04, call 4"),
    ("8B QLoRA 1 × 16,384, checkpointing (plain TRL)", "llama-3.1-8b",
     dict(adapter="qlora", batch_size=1, max_length=16384, gradient_checkpointing="on", liger_kernels="off",
          **COPIES), 14.44,
     "longest_sequence"),
    ("8B QLoRA 1 × 32,768, checkpointing + offload (lab)", "llama-3.1-8b",
     dict(adapter="qlora", batch_size=1, max_length=32768, gradient_checkpointing="on", offload_activations="on",
          **LAB, **COPIES), 14.49, "longest_sequence"),
    ("8B QLoRA 1 × 49,152, + offload + tiled MLP (lab)", "llama-3.1-8b",
     dict(adapter="qlora", batch_size=1, max_length=49152, gradient_checkpointing="on", offload_activations="on",
          tiled_mlp="on", **LAB, **COPIES), 12.89, "longest_sequence"),
    ("8B QLoRA 1 × 57,344, + offload + tiled MLP (lab)", "llama-3.1-8b",
     dict(adapter="qlora", batch_size=1, max_length=57344, gradient_checkpointing="on", offload_activations="on",
          tiled_mlp="on", **LAB, **COPIES), 14.12, "longest_sequence"),
    ("8B QLoRA 1 × 344,064, + offload + tiled MLP (lab)", "llama-3.1-8b",
     dict(adapter="qlora", batch_size=1, max_length=344064, gradient_checkpointing="on", offload_activations="on",
          tiled_mlp="on", **LAB, **COPIES), 54.38, "H200, 2026-12-04, longest_sequence.py --cap-gib 80"),
]


def main() -> None:
    print(f"{'run':<68} {'estimate GiB':>12} {'measured GiB':>12} {'estimate/measured':>18}")
    for what, arch, settings, measured, _ in MEASURED:
        folder = Path(tempfile.mkdtemp())
        (folder / "config.json").write_text(json.dumps(json.loads((CONFIGS / f"{arch}.json").read_text())))
        processes = settings.pop("processes", 2)  # measured before the early head: a run without it (above)
        estimate = memory(TrainConfig(**settings), model_shape(str(folder)), processes=processes)
        tensors = (estimate.total - FRAMEWORK_OVERHEAD) / GIB
        print(f"{what:<68} {tensors:>12.2f} {measured:>12.2f} {tensors / measured:>18.3f}")


if __name__ == "__main__":
    main()
