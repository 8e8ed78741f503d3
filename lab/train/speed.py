"""The fast path: which speed features a run uses, decided from its config and the machine, and the pieces
the lab adds on top of TRL to get them.

Each feature is a config field (``padding_free``, ``attention``, ``liger_kernels``, ``compile``) that is
``auto`` by default; :func:`plan` turns them into a :class:`SpeedPlan` with a reason for every choice, which
the worker applies, writes to ``speed.json`` in the run directory, and the Train tab shows.

Padding-free batches: the examples of a micro-batch are laid end to end in one row with position ids that
restart at every example, so no compute is spent on padding. For SFT, TRL's collator makes such batches (with
the sequence boundaries as ``cu_seq_lens_*``); for DPO, whose collator pads, :func:`unpad_inside` removes the
padding inside the model. Attention must then stay inside each example. TRL leaves that to flash-attn, which is
often not installed; :func:`varlen_attention` does it with PyTorch's own variable-length flash kernel
(the operator behind ``torch.nn.attention.varlen``, CUDA, torch 2.10+), or, on a CPU, with one SDPA call per
example.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import importlib.util
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lab.config import TrainConfig, field_label
from lab.errors import LabError
from lab.train.methods import objective

VARLEN = "lab_varlen"  # the attention implementations registered below: the variable-length flash kernel,
BUCKETED = "lab_bucketed"  # and the examples grouped by length for the fixed-length kernels
PADDING_FREE_ATTENTION = (VARLEN, BUCKETED)
# Memory for time, in the order memory_choices adds them (auto/on/off config fields).
MEMORY_SAVERS = ("gradient_checkpointing", "offload_activations", "tiled_mlp")
# Models whose decoder layers Liger patches (liger_kernel.transformers.monkey_patch covers these and more).
# Tokens per tile of TRL's fused LM head and loss (trl.kernels.chunked_logprob.TOKEN_CHUNK_SIZE): TRL's own, and the
# lab's where the run keeps its activations (no checkpointing: it has memory to spare). Each tile casts the head's
# weight to 16 bits, accumulates its fp32 gradient and launches its kernels once more, so fewer, larger tiles are
# faster: packed 0.5B at 32 x 2,048 on an H200, 134.4k -> 137.5k tokens/s steady, 0.75 GiB more at the peak, the
# same loss to four decimals (docs/benchmarks.md).
TRL_HEAD_TILE_TOKENS, HEAD_TILE_TOKENS = 4096, 16384
# Tokens per tile of the early-gradient head (lab.train.early_head): each holds its tokens' logits over the whole
# vocabulary at once (4,096 x 151,936 x 2 bytes = 1.2 GB for Qwen2.5).
EARLY_HEAD_TILE_TOKENS = 4096
MAX_HASHED_RANK = 128  # the largest LoRA rank lab.train.lora_dropout's tiles hold
LIGER_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "phi3", "olmo2",
                     "granite", "mixtral", "smollm3")


@dataclass
class SpeedPlan:
    """What a run uses, each with the reason it was chosen (shown to the user as is)."""

    padding_free: bool
    attention: str
    liger_kernels: bool
    compile: bool
    gradient_checkpointing: bool = False
    fused_lora: bool = False
    offload_activations: bool = False
    tiled_mlp: bool = False
    half_activations: bool = False
    head_tile_tokens: int = TRL_HEAD_TILE_TOKENS
    early_head: bool = False
    merged: int = 1  # accumulated micro-batches run as one (merge_choice): a divisor of grad_accum
    reasons: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def choices(self) -> list[tuple[str, str, str]]:
        """(feature, its value, why) for each feature."""
        on = {True: "on", False: "off"}
        values = {"padding_free": on[self.padding_free], "attention": self.attention,
                  "liger_kernels": on[self.liger_kernels], "compile": on[self.compile],
                  "fused_lora": on[self.fused_lora], "half_activations": on[self.half_activations],
                  "gradient_checkpointing": on[self.gradient_checkpointing],
                  "offload_activations": on[self.offload_activations], "tiled_mlp": on[self.tiled_mlp],
                  "head_tile_tokens": f"{self.head_tile_tokens:,}", "early_head": on[self.early_head],
                  "merge_micro_batches": f"{self.merged} into one" if self.merged > 1 else "off"}
        return [(name, value, self.reasons.get(name, "")) for name, value in values.items()]

    def memory_settings(self) -> dict[str, str]:
        """The memory savers as the run uses them, as config values ('on'/'off': no 'auto' left)."""
        return {name: "on" if getattr(self, name) else "off" for name in MEMORY_SAVERS}

    def batch_settings(self, batch_size: int, grad_accum: int) -> dict[str, int]:
        """``batch_size`` and ``grad_accum`` as the run uses them: ``merged`` micro-batches as one."""
        return {"batch_size": batch_size * self.merged, "grad_accum": grad_accum // self.merged}

    def describe(self) -> list[str]:
        """One line per feature, for the log."""
        return [f"{name}: {value} ({why})" for name, value, why in self.choices()]

    def markdown(self) -> str:
        """A bullet per feature, for the Train tab."""
        return "\n".join(f"- {field_label(name)}: **{value}** · {why}" for name, value, why in self.choices())


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def package_source(package: str, relative: str) -> Path | None:
    """A source file of an installed package (``relative`` to its folder), found without importing the package;
    None where it has no such file."""
    spec = importlib.util.find_spec(package)  # a top-level package's spec imports nothing
    folders = (spec.submodule_search_locations or []) if spec else []
    return next((Path(f) / relative for f in folders if (Path(f) / relative).is_file()), None)


@functools.cache
def torch_varlen_available() -> bool:
    """PyTorch's variable-length flash attention (torch 2.10+, CUDA), where ``torch.nn.attention.varlen`` defines
    ``varlen_attn``; the lab calls its kernel's operator (:func:`_torch_varlen`). Read from the source, not
    imported: importing it loads torch and torch._dynamo, seconds of ``lab train``'s checks on a GPU machine."""
    source = package_source("torch", "nn/attention/varlen.py")
    return source is not None and any(isinstance(node, ast.FunctionDef) and node.name == "varlen_attn"
                                      for node in ast.parse(source.read_text()).body)


# What lab.train.early_head runs on, by module of TRL (TRL 1.16's fused head): its kernels and helpers, and the name
# the trainers' forward calls the head by (which early_head.install replaces).
TRL_HEAD_NAMES = {"kernels/chunked_logprob.py": ("_forward_kernel", "_forward_tile", "_backward_kernel",
                                                 "_backward_tile", "_addmm_fp32", "_use_triton", "_BLOCK_SIZE",
                                                 "OPTIONAL_OUTPUTS"),
                  "trainer/utils.py": ("_ChunkedLogProbFunction",)}


@functools.cache
def trl_head_internals() -> bool:
    """Whether this TRL has the fused head's internals the early-gradient head runs on (``TRL_HEAD_NAMES``). Read
    from TRL's source, not imported: importing TRL loads torch and transformers, seconds of ``lab train``'s checks
    before launch on a GPU machine."""
    for module, wanted in TRL_HEAD_NAMES.items():
        source = package_source("trl", module)
        if source is None:
            return False
        defined: set[str] = set()
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defined.add(node.name)
            elif isinstance(node, ast.Assign):
                defined.update(t.id for t in node.targets if isinstance(t, ast.Name))
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                defined.add(node.target.id)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                defined.update(alias.asname or alias.name for alias in node.names)
        if not set(wanted) <= defined:
            return False
    return True


def plan(cfg: TrainConfig, *, cuda: bool, model_type: str = "", varlen: bool | None = None,
         flash_attn: bool | None = None, liger: bool | None = None, gpu_bytes: float | None = None,
         shape: Any = None, processes: int = 1, loss_counts_tokens: bool = True) -> SpeedPlan:
    """Resolve the ``auto`` speed settings of ``cfg`` for this machine. The keyword arguments describe what is
    installed (looked up when None), so tests can ask about other machines; ``gpu_bytes`` (one GPU's memory) and
    ``shape`` (``lab.train.estimate.ModelShape``) let the memory choices ask the estimate; ``processes`` is the
    run's process count (offloading and tiling work in one); ``loss_counts_tokens``: whether the Trainer will hand
    the loss the accumulated batch's token count (:func:`loss_counts_tokens`; a causal LM's forward takes it)."""
    # Only a CUDA run can use the kernel, and importing it loads torch._dynamo (seconds): not asked on a CPU.
    varlen = (cuda and torch_varlen_available()) if varlen is None else varlen
    flash_attn = installed("flash_attn") if flash_attn is None else flash_attn
    liger = installed("liger_kernel") if liger is None else liger
    reasons: dict[str, str] = {}

    # Padding-free needs attention that respects the boundaries between the examples of a row.
    kernel = "flash_attention_2" if cuda and flash_attn else VARLEN if cuda and varlen else None
    way = objective(cfg.objective).padding_free
    if cfg.packing:
        padding_free = True
        reasons["padding_free"] = "packing lays examples end to end, always padding-free in TRL"
    elif way == "off":
        if cfg.padding_free == "on":
            raise LabError(f"padding_free: on does not apply to {cfg.method_title}: its trainer makes its own "
                           "batches; set padding_free: auto or off.")
        padding_free = False
        reasons["padding_free"] = f"{cfg.method_title}'s trainer makes its own padded batches"
    elif cfg.padding_free == "auto":
        padding_free = kernel is not None
        title = objective(cfg.objective).title
        reasons["padding_free"] = ((f"the lab unpads {title}'s padded batches inside the model" if way == "unpad"
                                    else "variable-length attention is available") if padding_free else
                                   "no variable-length attention kernel on this machine (needs CUDA)")
    else:
        padding_free = cfg.padding_free == "on"
        reasons["padding_free"] = "set in the config"

    if cfg.attention != "auto":
        attention = cfg.attention
        reasons["attention"] = "set in the config"
        if padding_free and attention in ("sdpa", "eager"):
            raise LabError(f"attention: {attention} does not keep padding-free examples apart; use auto, varlen or "
                           "flash_attention_2, or set padding_free: off.")
        if attention in ("varlen", "bucketed") and not padding_free:
            raise LabError(f"attention: {attention} serves padding-free batches only, and this run's are padded "
                           f"({reasons['padding_free']}); set padding_free: on, or attention: auto.")
        attention = {"varlen": VARLEN, "bucketed": BUCKETED}.get(attention, attention)
        if attention == "flash_attention_2" and not flash_attn:
            raise LabError("attention: flash_attention_2 needs the flash-attn package; install it or use auto.")
    elif padding_free:
        attention = kernel or VARLEN  # the CPU falls back to one SDPA call per example (correct, not fast)
        reasons["attention"] = ("flash-attn is installed" if attention == "flash_attention_2" else
                                "PyTorch's variable-length flash kernel" if cuda else
                                "one SDPA call per example (CPU)")
    else:
        attention = "sdpa"
        reasons["attention"] = "padded batches: PyTorch SDPA"

    if cfg.liger_kernels == "auto":
        liger_on = cuda and liger and model_type in LIGER_MODEL_TYPES
        reasons["liger_kernels"] = ("fused RMSNorm, RoPE and SwiGLU kernels (RMSNorm's backward over blocks of rows)"
                                    if liger_on else
                                    "needs a CUDA GPU" if not cuda else "liger-kernel is not installed" if not liger
                                    else f"Liger has no kernels for model type '{model_type}'")
    else:
        liger_on = cfg.liger_kernels == "on"
        reasons["liger_kernels"] = "set in the config"
        if liger_on and not (cuda and liger):
            raise LabError("liger_kernels: on needs a CUDA GPU and the liger-kernel package "
                           "(pip install -r requirements-gpu.txt).")

    compile_on = cfg.compile == "on"
    reasons["compile"] = "set in the config" if cfg.compile != "auto" else "off unless asked: compiling costs " \
        "minutes up front and varying padding-free shapes recompile"
    if cfg.adapter == "none":
        fused = False
        reasons["fused_lora"] = "no adapters: a full fine-tune" if cfg.fused_lora != "on" else \
            "set in the config, but a full fine-tune has no adapters"
    else:
        fused = cfg.fused_lora != "off"
        reasons["fused_lora"] = "set in the config" if cfg.fused_lora != "auto" else \
            "one function a layer: the adapter inside the base's products; on a GPU, dropout without copies"
    half, reasons["half_activations"] = half_activations_choice(cfg, cuda)
    memory = memory_choices(cfg, cuda, gpu_bytes, shape, processes)
    reasons.update({name: why for name, (_, why) in memory.items()})
    tile, reasons["head_tile_tokens"] = head_tile_choice(memory["gradient_checkpointing"][0], cuda)
    early, reasons["early_head"] = early_head_choice(cfg, cuda, processes, memory["gradient_checkpointing"][0])
    settled = {name: "on" if on else "off" for name, (on, _) in memory.items()}
    merged, reasons["merge_micro_batches"] = merge_choice(cfg, cuda, padding_free, gpu_bytes, shape, processes,
                                                          settled, loss_counts_tokens)
    return SpeedPlan(padding_free, attention, liger_on, compile_on, memory["gradient_checkpointing"][0], fused,
                     memory["offload_activations"][0], memory["tiled_mlp"][0], half, tile, early, merged, reasons)


def merge_choice(cfg: TrainConfig, cuda: bool, padding_free: bool, gpu_bytes: float | None, shape: Any,
                 processes: int, memory: dict[str, str], loss_counts_tokens: bool = True) -> tuple[int, str]:
    """(how many accumulated micro-batches run as one, why): the largest divisor of ``grad_accum`` whose merged
    micro-batch's worst case fits the GPU with the memory savers ``memory`` already settled (a merge never turns
    one on). The sampler's order is unchanged, so each optimizer step sees the same examples, and a loss that sums
    over the accumulated batch's tokens (``Objective.sums_tokens``, given the count: ``loss_counts_tokens``) gives
    the same gradient up to the order of summation. Padding-free batches only: a padded one pads every example to
    the longest of the larger batch. Plain TRL's 8 × 2 of the 0.5B leaves the GPU waiting on the CPU between
    3,600-token micro-batches (docs/benchmarks.md)."""
    from lab.train.estimate import GIB, largest_batch, memory_budget

    if cfg.merge_micro_batches == "off":
        return 1, "set in the config"
    if cfg.grad_accum == 1:
        return 1, "grad_accum is 1: one micro-batch a step already"
    if not objective(cfg.objective).sums_tokens:
        return 1, f"{cfg.method_title}'s loss is a mean per micro-batch: merging would weigh examples differently"
    if not loss_counts_tokens:
        return 1, "this model's forward takes no token count, so its loss is a mean per micro-batch"
    if not cuda:
        return 1, "off on a CPU (measured on GPUs only)"
    if not padding_free:
        return 1, "padded batches: a merged one pads every example to the longest of more"
    if gpu_bytes is None or shape is None:
        return 1, "off: the GPU's memory is not known here"
    budget = memory_budget(cfg, gpu_bytes)
    fits = largest_batch(dataclasses.replace(cfg, **memory), shape, budget, processes=processes)
    merged = max(k for k in range(1, cfg.grad_accum + 1) if cfg.grad_accum % k == 0 and cfg.batch_size * k <= fits)
    if merged == 1:
        smallest = min(k for k in range(2, cfg.grad_accum + 1) if cfg.grad_accum % k == 0)
        return 1, (f"a micro-batch of {cfg.batch_size * smallest} would not fit the GPU's {budget / GIB:.0f} GiB "
                   f"(at most {fits})")
    return merged, (f"batch {cfg.batch_size} × grad_accum {cfg.grad_accum} runs as {cfg.batch_size * merged} × "
                    f"{cfg.grad_accum // merged}: the same examples a step and the same gradient (the loss counts "
                    f"the tokens of the whole accumulated batch), fuller kernel calls; fits the GPU's "
                    f"{budget / GIB:.0f} GiB (up to {fits})")


def loss_counts_tokens(model: Any) -> bool:
    """Whether the Trainer hands ``model``'s loss the accumulated batch's token count (``num_items_in_batch``): as
    transformers decides it, from ``accepts_loss_kwargs`` or a forward taking ``**kwargs``."""
    import inspect

    from peft import PeftModel

    base = model.get_base_model() if isinstance(model, PeftModel) else model
    if hasattr(base, "accepts_loss_kwargs"):
        return bool(base.accepts_loss_kwargs)
    try:
        parameters = inspect.signature(base.forward).parameters.values()
    except (TypeError, ValueError):  # a forward inspect cannot read (compiled, built in C): do not merge
        return False
    return any(p.kind == inspect.Parameter.VAR_KEYWORD for p in parameters)


def head_tile_choice(checkpointing: bool, cuda: bool = True) -> tuple[int, str]:
    """(tokens per tile of the fused LM head, why): larger tiles where a GPU run keeps its activations, TRL's where
    it recomputes them to save memory (lab.train.estimate counts the same) and on a CPU (measured on GPUs only)."""
    if not cuda:
        return TRL_HEAD_TILE_TOKENS, "TRL's tile on a CPU"
    if checkpointing:
        return TRL_HEAD_TILE_TOKENS, "TRL's tile: gradient checkpointing is on, so memory is what counts"
    return HEAD_TILE_TOKENS, "fewer, larger tiles of the fused LM head: faster, for up to 0.75 GiB more"


def early_head_choice(cfg: TrainConfig, cuda: bool, processes: int, checkpointing: bool,
                      trl_internals: bool | None = None) -> tuple[bool, str]:
    """(on, why) for the LM head's gradient taken in the forward (``lab.train.early_head``): exact where every
    scored token's upstream gradient is the same (SFT's mean log-likelihood), measured faster on a GPU (packed 0.5B
    at 32 x 2,048: 134.1k -> 137.3k tokens/s steady, 0.41 GiB more at the peak; docs/benchmarks.md), in one process
    (a sharded head would need gathering), and where the run keeps its activations (its whole-vocabulary tile is
    about 1 GB for a 128k vocabulary: too much where checkpointing saves memory). ``trl_internals``: whether this
    TRL has the fused head's internals it runs on (looked up when None)."""
    if cfg.early_head == "off":
        return False, "set in the config: TRL's fused head"
    if cfg.objective != "sft":
        return False, f"{cfg.method_title}'s loss weighs tokens unequally: TRL's fused head as it is"
    if not cuda:
        return False, "TRL's fused head on a CPU (measured on GPUs only)"
    if processes != 1:
        return False, "TRL's fused head: more than one process"
    if checkpointing:
        return False, "TRL's fused head: gradient checkpointing is on, so memory is what counts"
    if not (trl_head_internals() if trl_internals is None else trl_internals):
        return False, "this TRL's fused head has other internals than the ones it runs on"
    return True, "SFT's head: its gradient taken in the forward, one projection fewer a token"


def use_head_tile(tokens: int) -> None:
    """Set the tile of TRL's fused LM head for this process (a module constant TRL reads at every call)."""
    from trl.kernels import chunked_logprob

    chunked_logprob.TOKEN_CHUNK_SIZE = tokens


def half_activations_choice(cfg: TrainConfig, cuda: bool) -> tuple[bool, str]:
    """(on, why) for 16-bit hidden states: only a full fine-tune under autocast has fp32 ones to halve."""
    if cfg.adapter != "none":
        return False, "adapters train over a 16-bit base, whose hidden states are 16-bit already"
    if not cuda or cfg.precision == "fp32":
        return False, "fp32 precision: no 16-bit autocast"
    if cfg.half_activations == "auto":
        if not objective(cfg.objective).half_activations:
            return False, (f"off unless asked: {cfg.method_title}'s loss with 16-bit hidden states is not shown to "
                           "match plain TRL's on a GPU")
        return True, "16-bit hidden states between layers: fewer casts, less memory, plain's loss within noise"
    return cfg.half_activations == "on", "set in the config"


def half_activations(model: Any) -> Any:
    """Cast the input embeddings' output to autocast's 16-bit dtype whenever the model runs under autocast, so
    every decoder layer, norm and residual addition after it works on 16-bit hidden states (the weights stay fp32
    and autocast still casts them for each product). Evaluation and DPO's reference pass run under the same
    autocast, so they see what training sees. Returns the hook's handle; the model is marked
    (``HALF_ACTIVATIONS``) so that cached reference log-probabilities are keyed by it."""
    import torch

    def cast(module: Any, inputs: Any, output: Any) -> Any:
        kind = output.device.type
        if output.dtype == torch.float32 and torch.is_autocast_enabled(kind):
            return output.to(torch.get_autocast_dtype(kind))
        return output

    setattr(model, HALF_ACTIVATIONS, True)
    return model.get_input_embeddings().register_forward_hook(cast)


HALF_ACTIVATIONS = "_lab_half_activations"  # set on a model whose hidden states half_activations casts


def memory_choices(cfg: TrainConfig, cuda: bool, gpu_bytes: float | None, shape: Any,
                   processes: int = 1) -> dict[str, tuple[bool, str]]:
    """Gradient checkpointing, then activation offloading, then tiled MLPs, each costing time for memory: an
    ``auto`` one is turned on only when the batch's worst case (``lab.train.estimate``) does not fit the GPU
    (or ``gpu_memory_gib``) with the ones before it. {field: (on, why)}."""
    import dataclasses

    from lab.train.estimate import GIB, largest_batch, memory_budget

    fixed = {name: getattr(cfg, name) for name in MEMORY_SAVERS}
    if processes > 1:
        for name in MEMORY_SAVERS[1:]:
            if fixed[name] == "auto":
                fixed[name] = "off"
    budget = memory_budget(cfg, gpu_bytes) if gpu_bytes else None
    size = f"{budget / GIB:.0f} GiB" if budget else ""
    where = ("the cap of " if cfg.gpu_memory_gib else "the GPU's ") + size
    out: dict[str, tuple[bool, str]] = {}
    settled: dict[str, str] = {}
    for name in MEMORY_SAVERS:
        value = fixed[name]
        if value != "auto":
            out[name] = (value == "on", "set in the config" if getattr(cfg, name) != "auto" else
                         "off: the run has several processes")
        elif not cuda:
            out[name] = (False, "off on a CPU")
        elif budget is None or shape is None:
            out[name] = (False, "off: the GPU's memory is not known here")
        else:
            without = dataclasses.replace(cfg, **settled, **{n: "off" for n in MEMORY_SAVERS if n not in settled})
            fits = largest_batch(without, shape, budget, processes=processes)
            if fits >= cfg.batch_size:
                out[name] = (False, f"batch {cfg.batch_size} × {cfg.max_length} fits {where} without it"
                                    f"{' (up to ' + str(fits) + ')' if name == MEMORY_SAVERS[0] else ''}")
            else:
                out[name] = (True, f"batch {cfg.batch_size} × {cfg.max_length} does not fit {where} without it"
                                   f"{' (at most ' + str(fits) + ' would)' if fits else ''}")
        settled[name] = "on" if out[name][0] else "off"
    if out["offload_activations"][0] and not out["gradient_checkpointing"][0]:
        out["offload_activations"] = (False, "off: it moves gradient checkpointing's saved inputs, and "
                                             "checkpointing is off")
    return out


def drops_out_in_kernels(cfg: TrainConfig) -> bool:
    """Whether a CUDA run of this config applies LoRA dropout in :mod:`lab.train.lora_dropout`'s kernels (the fused
    layers, a rank their tiles hold, no torch.compile), so keeps no dropped-out copies: for the memory estimate. A
    CUDA build of torch brings Triton."""
    return cfg.adapter != "none" and cfg.fused_lora != "off" and cfg.lora_dropout > 0 and \
        cfg.lora_r <= MAX_HASHED_RANK and cfg.compile != "on"


def liger_config() -> dict[str, bool]:
    """Liger's layer kernels only: TRL's own fused LM head already avoids the full logits, and Liger's fused
    cross-entropy would replace the forward TRL patches (TRL refuses it)."""
    return {"rope": True, "rms_norm": True, "swiglu": True, "cross_entropy": False,
            "fused_linear_cross_entropy": False}


def write_plan(run_dir: Path, speed: SpeedPlan) -> None:
    (run_dir / "speed.json").write_text(json.dumps(speed.to_dict(), indent=1))


def read_plan(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / "speed.json"
    return json.loads(path.read_text()) if path.exists() else None


# --------------------------------------------------------------------------- padding-free batches


def padding_free_collator(tokenizer: Any, max_length: int, pad_to_multiple_of: int | None = None):
    """TRL's own collator in padding-free mode, for runs without packing (TRL itself only goes padding-free for
    packing or with flash-attn). ``max_length_q/k`` are set to ``max_length``, an upper bound, so their value
    does not change from batch to batch (it only sizes the kernel's grid)."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    class PaddingFreeCollator(DataCollatorForLanguageModeling):
        def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
            batch = super().torch_call(examples)
            batch["max_length_q"] = batch["max_length_k"] = max(max_length, int(batch["max_length_q"]))
            return batch

    return PaddingFreeCollator(pad_token_id=tokenizer.pad_token_id, padding_free=True,
                               pad_to_multiple_of=pad_to_multiple_of)


def varlen_attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, scaling: float | None = None,
                     dropout: float = 0.0, **kwargs: Any) -> tuple[Any, None]:
    """Causal attention over a padding-free row: every example attends only to itself.

    ``query`` is (1, heads, tokens, dim) and ``kwargs`` carries ``cu_seq_lens_q`` (example boundaries) from
    TRL's padding-free collator. Returns (1, tokens, heads, dim), as transformers' attention functions do."""
    return _padding_free(module, query, key, value, attention_mask, scaling, dropout, kwargs, bucketed=False)


def bucketed_attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any,
                       scaling: float | None = None, dropout: float = 0.0, **kwargs: Any) -> tuple[Any, None]:
    """As :func:`varlen_attention`, with the examples grouped by length into padded batches for SDPA's
    fixed-length kernels (:mod:`lab.train.bucketed_attention`)."""
    return _padding_free(module, query, key, value, attention_mask, scaling, dropout, kwargs, bucketed=True)


def _padding_free(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, scaling: float | None, dropout: float,
                  kwargs: dict[str, Any], bucketed: bool) -> tuple[Any, None]:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    boundaries = kwargs.get("cu_seq_lens_q")
    if boundaries is None:
        if query.shape[0] == 1 and attention_mask is None:  # one unpadded sequence (e.g. a single prompt)
            return sdpa_attention_forward(module, query, key, value, None, dropout=dropout, scaling=scaling,
                                          is_causal=True)
        raise LabError("The lab's variable-length attention got a padded batch; it serves padding-free batches "
                       "only. Switch the model back to sdpa for padded batches (lab.train.speed.use_attention).")
    if dropout:
        raise LabError("Attention dropout is not supported by the lab's variable-length attention.")
    longest = kwargs.get("max_length_q")  # an upper bound on every example's length
    if longest is not None and (boundaries.numel() - 1) * int(longest) == query.shape[2]:
        return _equal_rows_sdpa(query, key, value, boundaries.numel() - 1, scaling), None
    if bucketed:
        from lab.train import bucketed_attention as buckets

        return buckets.bucketed_attention(query, key, value, boundaries, scaling), None
    if query.is_cuda and torch_varlen_available():
        return _torch_varlen(query, key, value, boundaries, int(longest), scaling), None
    return _per_example_sdpa(query, key, value, boundaries, scaling), None


def _equal_rows_sdpa(query: Any, key: Any, value: Any, rows: int, scaling: float | None) -> Any:
    """A row whose examples all have the bound's length (sequences truncated at max_length, DPO batches without
    padding) is an ordinary batch: one causal SDPA call over (rows, heads, length, dim), which on a GPU takes
    cuDNN's or flash's fixed-length kernel, faster than the variable-length one. Known from shapes alone: the
    examples' total is rows × bound only when each is exactly the bound."""
    import torch

    def batched(t: Any) -> Any:  # (1, heads, rows·length, dim) → (rows, heads, length, dim)
        heads, tokens, dim = t.shape[1:]
        return t.squeeze(0).view(heads, rows, tokens // rows, dim).transpose(0, 1)  # a view: see _token_major

    out = torch.nn.functional.scaled_dot_product_attention(
        batched(query), batched(key), batched(value), is_causal=True, scale=scaling,
        enable_gqa=query.shape[1] != key.shape[1])
    return out.transpose(1, 2).reshape(1, query.shape[2], query.shape[1], value.shape[-1])


def _torch_varlen(query: Any, key: Any, value: Any, boundaries: Any, max_len: int, scaling: float | None) -> Any:
    """PyTorch's variable-length flash kernel (FlashAttention 2) as its aten operator, whose backward autograd
    knows. Called directly rather than through ``varlen_attn`` because the kernel takes grouped-query attention
    itself (fewer key/value heads), which torch 2.10/2.11's wrapper refuses: repeating k and v to every query head
    cost a copy of each and its sum in the backward (about 6 ms of the packed 0.5B's 446 ms step on an H200, and
    their memory). The inputs reach the kernel as views: it reads any token and head strides."""
    import torch

    # The flash kernel takes 16-bit inputs only; a forward outside autocast on fp32 weights (DPO's precomputed
    # reference) hands it fp32, so it runs in bf16 and the result goes back in the caller's dtype.
    dtype = query.dtype
    if dtype not in (torch.bfloat16, torch.float16):
        query, key, value = (t.to(torch.bfloat16) for t in (query, key, value))
    q, k, v = (_token_major(t) for t in (query, key, value))
    cu = boundaries.to(device=q.device, dtype=torch.int32)

    def flash(q: Any, k: Any, v: Any) -> Any:
        return torch.ops.aten._flash_attention_forward(q, k, v, cu, cu, max_len, max_len, 0.0, True, False,
                                                       scale=scaling)[0]

    try:
        out = flash(q, k, v)
    except RuntimeError:  # a flash build that refuses fewer key/value heads or strided inputs: the safe layout
        if q.shape[1] != k.shape[1]:
            k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
            v = v.repeat_interleave(q.shape[1] // v.shape[1], dim=1)
        out = flash(q.contiguous(), k.contiguous(), v.contiguous())
    return out.unsqueeze(0).to(dtype)


def _token_major(t: Any) -> Any:
    """(1, heads, tokens, dim) → (tokens, heads, dim) as a view. ``squeeze(0)``, not ``t[0]``: a selection's
    backward writes a zeroed tensor of the input's size and copies the gradient into it, a view's costs nothing
    (the select's copies were about 5 ms of the packed 0.5B's step)."""
    t = t.squeeze(0).transpose(0, 1)
    return t if t.stride(-1) == 1 else t.contiguous()


def _per_example_sdpa(query: Any, key: Any, value: Any, boundaries: Any, scaling: float | None) -> Any:
    """The reference implementation (and the CPU path): one causal SDPA call per example."""
    import torch

    groups = query.shape[1] // key.shape[1]
    parts = []
    for start, end in zip(boundaries[:-1].tolist(), boundaries[1:].tolist()):
        q, k, v = query[:, :, start:end], key[:, :, start:end], value[:, :, start:end]
        if groups > 1:
            k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        parts.append(torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scaling))
    return torch.cat(parts, dim=2).transpose(1, 2).contiguous()


def unpad_inside(model: Any) -> None:
    """Make the model's backbone drop the padding of padded batches: the rows are laid end to end (position ids
    restarting per row, boundaries for the variable-length attention), run, and the hidden states put back in
    their padded places. TRL's DPO collator pads chosen and rejected replies to the longest of the batch (a third
    to a half of the tokens are padding at chat lengths) and TRL 1.x has no padding-free DPO; with this the
    trainer keeps its padded batches and the model computes only real tokens. Calls with a cache (generation)
    are passed through unchanged. Apply before the trainer is built, so DPO's precomputed reference uses it."""
    import torch

    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    backbone = causal_lm.base_model
    if "_lab_padded_forward" in backbone.__dict__:
        return
    padded_forward = backbone.forward

    def forward(input_ids: Any = None, attention_mask: Any = None, position_ids: Any = None, **kwargs: Any) -> Any:
        if (input_ids is None or attention_mask is None or attention_mask.dim() != 2 or kwargs.get("use_cache")
                or kwargs.get("past_key_values") is not None or input_ids.shape[0] == 1):
            return padded_forward(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                                  **kwargs)
        keep = attention_mask.bool()
        lengths = keep.sum(dim=1)
        boundaries = torch.nn.functional.pad(lengths.cumsum(0), (1, 0)).to(torch.int32)
        width = input_ids.shape[1]  # an upper bound on every row's length, known without a device sync
        out = padded_forward(input_ids=input_ids[keep][None], attention_mask=None,
                             position_ids=(keep.cumsum(dim=1) - 1)[keep][None], cu_seq_lens_q=boundaries,
                             cu_seq_lens_k=boundaries, max_length_q=width, max_length_k=width, **kwargs)
        hidden = out.last_hidden_state
        padded = hidden.new_zeros(*input_ids.shape, hidden.shape[-1])
        padded[keep] = hidden[0]
        out.last_hidden_state = padded
        return out

    backbone.__dict__["_lab_padded_forward"] = padded_forward
    backbone.forward = forward


def register_attention() -> None:
    """Make ``lab_varlen`` and ``lab_bucketed`` valid ``attn_implementation`` values. No mask function is registered
    on purpose: then transformers builds no attention mask at all for them (a padding-free row needs none)."""
    from transformers import AttentionInterface

    AttentionInterface.register(VARLEN, varlen_attention)
    AttentionInterface.register(BUCKETED, bucketed_attention)


def use_attention(model: Any, implementation: str) -> None:
    """Switch the attention of a loaded model (and of the PEFT wrapper's base) in place."""
    if implementation in PADDING_FREE_ATTENTION:
        register_attention()
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if hasattr(base, "set_attn_implementation"):
        base.set_attn_implementation(implementation)
    else:
        base.config._attn_implementation = implementation
