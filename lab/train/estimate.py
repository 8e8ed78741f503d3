"""Before launch: effective batch, steps, the learning-rate schedule, trainable parameters and a
VRAM estimate per component, from the config and the model's architecture alone (no weights are
loaded: the model is built on the meta device)."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lab.config import TrainConfig
from lab.home import Home, lab_home

GIB = 1024**3
TILE_TOKENS = 4096  # tokens per MLP tile (lab.train.memory): large enough for fast matrix products
MLP_LINEARS = ("gate_proj", "up_proj", "down_proj", "fc1", "fc2", "w1", "w2", "w3", "c_fc", "dense_h_to_4h",
               "dense_4h_to_h")
# CUDA context, allocator slack and kernels' workspaces: measured overhead beyond the tensors.
FRAMEWORK_OVERHEAD = 0.6 * GIB


@dataclass
class ModelShape:
    """What the estimate needs to know about an architecture."""

    params: int
    embedding_params: int  # input + output embeddings (kept in 16-bit under QLoRA)
    hidden: int
    layers: int
    heads: int
    vocab: int
    linear_shapes: dict[str, tuple[int, int]]  # module name -> (in, out) of every nn.Linear in one layer + lm_head
    layer_linear_count: dict[str, int]  # how many of each name in the whole model


@dataclass
class Schedule:
    effective_batch: int
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    lr: list[tuple[int, float]]  # (step, learning rate) at a few hundred points


@dataclass
class Memory:
    """Estimated peak GPU memory by component, in bytes."""

    weights: float
    gradients: float
    optimizer: float
    activations: float
    reference_model: float
    sampling_kv_cache: float  # GRPO/RLOO's decoder keeps its KV cache through training (``sampling_cache_bytes``)
    overhead: float

    @property
    def total(self) -> float:
        return sum(asdict(self).values())

    def gib(self) -> dict[str, float]:
        # Four decimals: a LoRA adapter's gradients and optimizer state (a few MiB) are not 0, and the charts say
        # "< 0.01" for them (lab.ui.plots.gib_text); people read two decimals.
        out = {k: round(v / GIB, 4) for k, v in asdict(self).items()}
        out["total"] = round(self.total / GIB, 4)
        return out


def model_shape(model: str, home: Home | None = None) -> ModelShape:
    """Build the architecture on the meta device and measure it (``model``: anything a run's ``model`` takes,
    run:<id> included: an adapter is measured by its base; or an architecture's config.json alone, as in
    bench/configs)."""
    from lab.train.loading import base_model_path

    if Path(model).is_file():
        return shape_at(model)
    return shape_at(base_model_path(model, home or lab_home()))


@functools.lru_cache(maxsize=16)
def shape_at(path: str) -> ModelShape:
    """The shape of the model whose config is at ``path`` (cached: the estimate, the checks before launch and the
    learning-rate advice all ask for it; a local config's shape also on disk, see ``shape_file``)."""
    saved = shape_file(path)
    if saved and saved.exists():
        try:
            values = json.loads(saved.read_text())
            values["linear_shapes"] = {k: tuple(v) for k, v in values["linear_shapes"].items()}
            return ModelShape(**values)
        except (ValueError, TypeError, KeyError):  # a file from another version of this class: measure again
            pass
    from transformers import AutoConfig

    from lab.models import hub_error

    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise hub_error("model config", path, err) from None
    shape = shape_of(config)
    if saved:
        write_whole(saved, json.dumps(asdict(shape)))
    return shape


def write_whole(path: Path, text: str) -> None:
    """Write a cache file whole or not at all, even with two processes writing it at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_suffix(f".{os.getpid()}.tmp")
    staging.write_text(text)
    staging.replace(path)


def shape_file(path: str) -> Path | None:
    """Where the shape of a local model's config is kept, under ``LAB_HOME/cache/shapes``: named by the config file
    (path, size, modification time) and the transformers version that built it. Measuring it imports torch and
    transformers and builds the model on the meta device, seconds of every ``python -m lab train`` before launch.
    None for a hub id (no file to name it by)."""
    from importlib.metadata import version

    config = Path(path) if Path(path).is_file() else Path(path) / "config.json"
    if not config.is_file():
        return None
    stat = config.stat()
    key = f"{config.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{version('transformers')}"
    return lab_home().root / "cache" / "shapes" / (hashlib.sha256(key.encode()).hexdigest()[:24] + ".json")


def shape_of(config: Any) -> ModelShape:
    """The shape of an architecture given its transformers config (built on the meta device)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        net = AutoModelForCausalLM.from_config(config)
    params = sum(p.numel() for p in net.parameters())
    embeddings = sum(m.weight.numel() for m in (net.get_input_embeddings(), net.get_output_embeddings())
                     if m is not None)
    if getattr(config, "tie_word_embeddings", False):
        embeddings //= 2
    shapes: dict[str, tuple[int, int]] = {}
    counts: dict[str, int] = {}
    for name, module in net.named_modules():
        if isinstance(module, torch.nn.Linear):
            short = name.rsplit(".", 1)[-1]
            shapes[short] = (module.in_features, module.out_features)
            counts[short] = counts.get(short, 0) + 1
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return ModelShape(params=params, embedding_params=embeddings, hidden=text.hidden_size,
                      layers=text.num_hidden_layers, heads=text.num_attention_heads, vocab=text.vocab_size,
                      linear_shapes=shapes, layer_linear_count=counts)


def lora_targets(cfg: TrainConfig, shape: ModelShape) -> list[str]:
    """Module names that get adapters (PEFT's 'all-linear' excludes the output head)."""
    targets = cfg.lora_target_modules()
    if targets == "all-linear":
        return list(decoder_linears(shape))
    return [name for name in targets if name in shape.linear_shapes]


def trainable_params(cfg: TrainConfig, shape: ModelShape) -> int:
    if cfg.adapter == "none":
        return shape.params
    return sum(cfg.lora_r * (shape.linear_shapes[n][0] + shape.linear_shapes[n][1]) * shape.layer_linear_count[n]
               for n in lora_targets(cfg, shape))


def schedule(cfg: TrainConfig, train_rows: int, *, gpus: int = 1, points: int = 200,
             home: Home | None = None) -> Schedule:
    """Steps as the Trainer counts them (``lab.train.viability.count_steps``), and the learning rate at each step
    from transformers' own scheduler (its curve kept under ``home``'s cache)."""
    from lab.train.viability import count_steps

    steps = count_steps(cfg, train_rows, gpus)
    return Schedule(steps.effective_batch, steps.per_epoch, steps.total, steps.warmup,
                    lr_curve(cfg, steps.total, steps.warmup, points, home or lab_home()))


def lr_curve(cfg: TrainConfig, total: int, warmup: int, points: int, home: Home) -> list[tuple[int, float]]:
    """The scheduler's learning rate at about ``points`` steps; kept on disk (``curve_file``), since transformers'
    schedulers import torch, transformers and peft: most of an estimate's time in a new process."""
    saved = curve_file(cfg, total, warmup, points, home)
    if saved.exists():
        try:
            return [(step, rate) for step, rate in json.loads(saved.read_text())]
        except ValueError:  # a file cut short or of another layout: compute it again
            pass
    curve = scheduler_curve(cfg, total, warmup, points)
    write_whole(saved, json.dumps(curve))
    return curve


def curve_file(cfg: TrainConfig, total: int, warmup: int, points: int, home: Home) -> Path:
    """Where a learning-rate curve is kept, under ``LAB_HOME/cache/schedules``: named by what the scheduler is given
    and the transformers version whose schedulers drew it."""
    from importlib.metadata import version

    key = f"{cfg.lr_scheduler}|{cfg.lr!r}|{total}|{warmup}|{points}|{version('transformers')}"
    return home.root / "cache" / "schedules" / (hashlib.sha256(key.encode()).hexdigest()[:24] + ".json")


MAX_STEPPED = 1_000_000  # a schedule without a step function (none of transformers' today) is drawn this far


def scheduler_curve(cfg: TrainConfig, total: int, warmup: int, points: int) -> list[tuple[int, float]]:
    import torch
    from transformers import get_scheduler

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    scheduler = get_scheduler(cfg.lr_scheduler, optimizer, num_warmup_steps=warmup, num_training_steps=total)
    stride = max(1, total // points)
    sampled = sorted({*range(0, total, stride), total - 1})
    if isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):
        # Each step's rate read from the schedule's own function: stepping through a run of 10¹² steps (a typo in
        # epochs) held the server's estimate for ever.
        return [(step + 1, cfg.lr * scheduler.lr_lambdas[0](step)) for step in sampled]
    curve, wanted = [], set(sampled)
    for step in range(min(total, MAX_STEPPED)):
        if step in wanted:
            curve.append((step + 1, scheduler.get_last_lr()[0]))
        optimizer.step()
        scheduler.step()
    return curve


def memory(cfg: TrainConfig, shape: ModelShape, *, bf16: bool = True, processes: int = 1) -> Memory:
    """Peak training memory on one GPU, by component, for the worst case: every sequence at ``max_length``
    (padding-free and packed batches reach it when their rows are full).

    Full fine-tuning keeps fp32 master weights, their bf16 copies for the autocast forward, fp32 gradients and
    two fp32 Adam moments; adapters freeze the base in 16-bit (or 4-bit NF4 for QLoRA, embeddings staying 16-bit)
    and train only the LoRA matrices. Activations are counted per token and layer from the architecture
    (``layer_bytes_split``); gradient checkpointing keeps each layer's input (in CPU memory with
    ``offload_activations``) and one layer's activations for its recomputation; a tiled MLP keeps its input and
    holds its intermediate tensors for one tile of ``TILE_TOKENS`` at a time. The LM head is TRL's fused one,
    which never holds the full logits (``lm_head_bytes``; SFT in one process takes its gradient in the forward,
    ``processes``: the run's). GRPO/RLOO add the KV cache their sampling keeps
    (``sampling_cache_bytes``).
    Checked against the CUDA allocator's peaks on an H100/H200 (docs/benchmarks.md)."""
    from lab.train.methods import objective
    from lab.train.speed import early_head_choice, head_tile_choice

    entry = objective(cfg.objective)
    act_bytes = 2 if bf16 else 4
    trainable = trainable_params(cfg, shape)
    if cfg.adapter == "none":
        weights = shape.params * (4 + (2 if bf16 else 0))  # fp32 masters + the autocast copies
        gradients = trainable * 4
        optimizer = trainable * 8
    else:
        frozen = shape.params - shape.embedding_params
        base = frozen * (0.5 + 0.5 / 64 * (0.25 if cfg.double_quant else 1)) if cfg.adapter == "qlora" else frozen * 2
        weights = base + shape.embedding_params * 2 + trainable * 4
        gradients = trainable * 4
        optimizer = trainable * (2 if cfg.adapter == "qlora" else 8)  # paged 8-bit AdamW under QLoRA
    sequences = cfg.batch_size * entry.sequences(cfg)  # e.g. DPO runs chosen and rejected together
    tokens = sequences * cfg.max_length
    attention, mlp = layer_bytes_split(cfg, shape, act_bytes)
    # 'auto' is decided per machine (lab.train.speed.memory_choices); here it counts as off.
    tiled = cfg.tiled_mlp == "on"
    tile = min(tokens, TILE_TOKENS)
    # A tiled MLP keeps only its input (and, with a frozen base, its norm's input, counted in the MLP above).
    mlp_kept = shape.hidden * act_bytes * (1 if cfg.adapter == "none" else 2) if tiled else mlp
    checkpointing = cfg.gradient_checkpointing == "on"
    head = lm_head_bytes(shape, tokens, trained=cfg.adapter == "none",  # as on a GPU
                         tile_tokens=head_tile_choice(checkpointing, cuda=True)[0],
                         early=early_head_choice(cfg, True, processes, checkpointing, trl_internals=True)[0])
    if checkpointing:
        inputs = 0 if cfg.offload_activations == "on" else tokens * shape.hidden * act_bytes * shape.layers
        one_layer = tokens * attention + (tile * mlp + tokens * mlp_kept if tiled else tokens * mlp)
        # The head's backward runs before any layer is recomputed, so the two do not add up; what does add is the
        # gradient passed between layers, the recomputed input, its gradient and the head's fp32 gradient of the
        # hidden states, which live through the whole backward (fitted on the long-sequence QLoRA runs).
        passing = tokens * shape.hidden * (3 * act_bytes + 4)
        activations = inputs + max(head, one_layer) + passing
    else:  # every layer's activations wait for the head
        activations = tokens * (attention + mlp_kept) * shape.layers + (tile * mlp if tiled else 0) + head
    reference = shape.params * act_bytes if entry.reference(cfg) else 0
    return Memory(weights, gradients, optimizer, activations, reference, sampling_cache_bytes(cfg, shape, bf16=bf16),
                  FRAMEWORK_OVERHEAD)


def sampling_cache_bytes(cfg: TrainConfig, shape: ModelShape, *, bf16: bool = True) -> float:
    """The static KV cache GRPO/RLOO's sampling leaves on the model (lab.train.objectives.grpo samples with
    ``lab.decode``, which keeps a cache per shape for the next step): keys and values of every layer for
    - the generation batch: TRL samples ``batch_size`` × ``grad_accum`` completions at once per process (its
      steps_per_generation defaults to the accumulation steps);
    - the prompts, at most max_length − max_completion_length tokens (the lab truncates them so), padded on the
      left to a multiple of ``lab.models.PROMPT_BUCKET``, then max_completion_length tokens;
    - in the dtypes the keys and values come out in: 16-bit over a 16-bit base (adapters); over fp32 master weights
      (full fine-tuning) the values in autocast's 16-bit but the keys in fp32, since the rotary embedding is
      applied in the fp32 embeddings' dtype.
    The longest prompts' shape is counted; the decoder keeps up to ``lab.decode.MAX_SHAPES`` shapes, so batches whose
    longest prompts pad to other lengths each add a shorter cache. 0 where the lab's decoder does not sample: other
    objectives, vLLM, ``LAB_FAST_GENERATION=0``."""
    from lab.models import FAST_GENERATION_ENV, PROMPT_BUCKET
    from lab.train.objectives.grpo import use_vllm

    if cfg.objective not in ("grpo", "rloo") or cfg.vllm == "on" or use_vllm(cfg, cuda=True) \
            or os.environ.get(FAST_GENERATION_ENV, "1") == "0":
        return 0.0
    prompt = -(-(cfg.max_length - cfg.max_completion_length) // PROMPT_BUCKET) * PROMPT_BUCKET
    key_bytes, value_bytes = (2 if cfg.adapter != "none" else 4, 2) if bf16 else (4, 4)
    _, _, kv_width = layer_widths(shape)
    tokens = cfg.batch_size * cfg.grad_accum * (prompt + cfg.max_completion_length)
    return tokens * shape.layers * kv_width * (key_bytes + value_bytes)


def layer_bytes_split(cfg: TrainConfig, shape: ModelShape, act_bytes: int) -> tuple[float, float]:
    """What one decoder layer keeps per token for the backward pass, (attention block, MLP), with flash/SDPA
    attention (no s×s matrix).

    Full fine-tuning: about 7 hidden widths for the attention block (its input, the normed input, q, k and v,
    the attention output and the residual; k and v at the key/value width under grouped-query attention) and 4
    intermediate widths for the gated MLP (gate, up, the activation and their product). Fitted on the
    Qwen2.5-0.5B architecture: within 3% of the allocator's peak. With 16-bit hidden states between the layers
    (``half_activations``, under 16-bit autocast), 5 hidden widths fewer: what the fp32 residual stream cost,
    fitted on one run (32 × 2,048 packed: 84.6 → 71.3 GiB).

    Adapters (``adapter_layer_bytes``) are counted tensor by tensor instead, since a frozen layer keeps nothing
    for its own backward pass."""
    if cfg.adapter != "none":
        return adapter_layer_bytes(cfg, shape, act_bytes)
    hidden, widest, kv_width = layer_widths(shape)
    from lab.train.speed import half_activations_choice

    half = act_bytes == 2 and half_activations_choice(cfg, cuda=True)[0]  # as a GPU run decides it
    return act_bytes * ((2 if half else 7) * hidden + 2 * kv_width), act_bytes * 4 * widest


def adapter_layer_bytes(cfg: TrainConfig, shape: ModelShape, act_bytes: int) -> tuple[float, float]:
    """Per token, (attention block, MLP), with the base frozen (LoRA, QLoRA): the frozen projections keep no
    input, so what stays is
    - attention: the norm's input, q, k and v for the attention kernel (k and v with their own, fewer heads: the
      lab's kernels take grouped-query attention as it is) and its output;
    - MLP: the norm's input, gate and up (Liger's SwiGLU recomputes their product);
    - without Liger's kernels, each of the two norms keeps its input in fp32 and the MLP also its activation;
    - each adapted layer's input for its A matrix: the block's own normed input and the MLP's product, kept once;
      with LoRA dropout outside the lab's dropout kernels (``fused_lora`` off, a rank above 128), a dropped-out
      copy and its one-byte mask per layer instead.
    Counted from the kernels' saved tensors and checked on the Llama-3.1-8B architecture (docs/benchmarks.md:
    QLoRA and LoRA 4 × 2,048, QLoRA 8 × 2,048 with tiled MLPs, all within 1%; without Liger on the
    Qwen2.5-0.5B architecture, within 3%)."""
    from lab.train.speed import drops_out_in_kernels

    linear = decoder_linears(shape)
    hidden, widest, kv_width = layer_widths(shape)
    key_value = 2 * kv_width
    liger = liger_expected(cfg)
    norms = 1 if liger else 2  # transformers' RMSNorm keeps an fp32 copy of its input
    attention = act_bytes * (norms * hidden + 2 * hidden + key_value)
    mlp = act_bytes * (norms * hidden + 2 * widest + (0 if liger else widest))
    targets = [name for name in lora_targets(cfg, shape) if name in linear]  # never the head
    if cfg.lora_dropout > 0 and not drops_out_in_kernels(cfg):  # a dropped-out copy of each input, its bool mask
        attention += sum(1.5 * act_bytes * linear[n][0] for n in targets if n not in MLP_LINEARS)
        mlp += sum(1.5 * act_bytes * linear[n][0] for n in targets if n in MLP_LINEARS)
    else:  # the inputs themselves, once per distinct tensor (o_proj's is the attention output, counted above)
        attention += act_bytes * hidden if any(n not in MLP_LINEARS and n != "o_proj" for n in targets) else 0
        mlp += act_bytes * sum({linear[n][0] for n in targets if n in MLP_LINEARS})
    return attention, mlp


def liger_expected(cfg: TrainConfig) -> bool:
    """Whether the run will use Liger's kernels: on when asked, and on ``auto`` when liger-kernel is installed
    (the speed plan turns it on for every CUDA run then)."""
    from lab.train.speed import installed

    return cfg.liger_kernels == "on" or (cfg.liger_kernels == "auto" and installed("liger_kernel"))


def decoder_linears(shape: ModelShape) -> dict[str, tuple[int, int]]:
    """The decoder layers' linear layers, {name: (in, out)}: every one but the LM head."""
    return {name: dims for name, dims in shape.linear_shapes.items() if name != "lm_head"}


def layer_widths(shape: ModelShape) -> tuple[int, int, int]:
    """(hidden, the MLP's intermediate width, the key/value width) of one decoder layer."""
    linear = decoder_linears(shape)
    widest = max((out for _, out in linear.values()), default=4 * shape.hidden)
    kv_width = linear.get("k_proj", (shape.hidden, shape.hidden))[1]
    return shape.hidden, widest, kv_width


def lm_head_bytes(shape: ModelShape, tokens: int, *, trained: bool, tile_tokens: int, early: bool = False) -> float:
    """TRL's fused LM head (trl.kernels.chunked_logprob) works through one tile of at most ``tile_tokens`` tokens ×
    32,768 vocabulary entries (``lab.train.speed.head_tile_choice``) and accumulates fp32 gradients of the hidden
    states, and of the head when it is trained (full fine-tuning; LoRA's all-linear leaves it frozen). TRL's
    4,096-token tile is counted at 4 bytes an entry (fitted); what a larger tile adds, at its 16-bit 2 (measured:
    0.75 GiB from 4,096 to 16,384 tokens). The ``early`` head (``lab.train.early_head``) holds instead a 4,096-token
    tile over the whole vocabulary and a 16-bit copy of the head, at 2 bytes each, over the fitted part of TRL's
    (measured: 0.41 GiB over the 16,384-token tile, packed Qwen2.5-0.5B at 65,536 tokens)."""
    from lab.train.speed import EARLY_HEAD_TILE_TOKENS, TRL_HEAD_TILE_TOKENS

    width = min(shape.vocab, 32768)
    if early:  # TRL's fitted part (the tile's first 2 bytes an entry), then the early head's own buffers
        tile = (min(tokens, TRL_HEAD_TILE_TOKENS) * width * 2 + min(tokens, EARLY_HEAD_TILE_TOKENS) * shape.vocab * 2
                + shape.vocab * shape.hidden * 2)
    else:
        tile = (min(tokens, TRL_HEAD_TILE_TOKENS) * width * 4
                + max(0, min(tokens, tile_tokens) - TRL_HEAD_TILE_TOKENS) * width * 2)
    return tile + tokens * shape.hidden * 4 + (shape.vocab * shape.hidden * 4 if trained else 0)


def offloaded_bytes(cfg: TrainConfig, shape: ModelShape, *, bf16: bool = True) -> float:
    """The CPU memory activation offloading fills on one process, worst case: every layer's input for the batch
    (lab.train.memory keeps it page-locked, so it cannot be swapped out)."""
    from lab.train.methods import objective

    if cfg.gradient_checkpointing != "on" or cfg.offload_activations != "on":
        return 0.0
    tokens = cfg.batch_size * objective(cfg.objective).sequences(cfg) * cfg.max_length
    return tokens * shape.hidden * (2 if bf16 else 4) * shape.layers


def host_memory_available() -> float | None:
    """Bytes of CPU memory the system can give without swapping (Linux's MemAvailable); None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def memory_budget(cfg: TrainConfig, gpu_bytes: float) -> float:
    """The GPU memory a run may use: the GPU's, or less when ``gpu_memory_gib`` caps it."""
    return min(gpu_bytes, cfg.gpu_memory_gib * GIB) if cfg.gpu_memory_gib else gpu_bytes


LARGEST_BATCH_ASKED = 4096  # largest_batch looks no further: a batch this large is "this or more"


def largest_batch(cfg: TrainConfig, shape: ModelShape, gpu_bytes: float, *, bf16: bool = True,
                  headroom: float = 0.9, processes: int = 1) -> int:
    """The largest ``batch_size`` whose worst-case estimate fits in ``headroom`` of the GPU's memory, up to
    ``LARGEST_BATCH_ASKED`` (0: not even one sequence fits, so gradient checkpointing, a shorter max_length or
    QLoRA is needed). ``processes``: the run's (:func:`memory`)."""
    budget = gpu_bytes * headroom
    low, high = 0, 1
    while memory(dataclasses.replace(cfg, batch_size=high), shape, bf16=bf16, processes=processes).total <= budget:
        if high == LARGEST_BATCH_ASKED:
            return high
        low, high = high, high * 2
    while high - low > 1:  # memory grows with the batch: bisect between a fit and a miss
        middle = (low + high) // 2
        if memory(dataclasses.replace(cfg, batch_size=middle), shape, bf16=bf16, processes=processes).total <= budget:
            low = middle
        else:
            high = middle
    return low


def estimate(cfg: TrainConfig, train_rows: int, *, gpus: int = 1, shape: ModelShape | None = None,
             home: Home | None = None) -> dict[str, Any]:
    """Everything the pre-launch panel shows, as plain data (``shape``: the architecture, if already built;
    ``home``: where the model is found and the curve kept, default ``$LAB_HOME``)."""
    shape = shape or model_shape(cfg.model, home)
    trainable = trainable_params(cfg, shape)
    plan = schedule(cfg, train_rows, gpus=gpus, home=home)
    return {
        "effective_batch": plan.effective_batch,
        "steps_per_epoch": plan.steps_per_epoch,
        "total_steps": plan.total_steps,
        "warmup_steps": plan.warmup_steps,
        "lr_curve": plan.lr,
        "params": shape.params,
        "trainable_params": trainable,
        "trainable_percent": round(100 * trainable / shape.params, 3),
        "memory_gib": memory(cfg, shape, bf16=cfg.precision != "fp32", processes=gpus).gib(),
    }


@dataclass
class RunEstimate:
    """What the Train tab's Estimate and ``python -m lab train RECIPE --estimate`` show before a launch."""

    ref: str  # the dataset version, resolved
    rows: int  # rows of the training split
    report: dict[str, Any]  # ``estimate``'s plain data: steps, schedule, parameters, memory
    text: str  # Markdown: the numbers, what fits the GPU, the speed plan, warnings
    refusal: str | None  # why the run would not train (``lab.train.viability``), None when it would
    warnings: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.ref, "rows": self.rows, "refusal": self.refusal, "warnings": self.warnings,
                **{k: v for k, v in self.report.items() if k != "lr_curve"}}


# What the estimate adds about speed (lab.train.throughput.Expected), in the report and the CLI's JSON.
SPEED_FIELDS = ("train_tokens", "tokens_per_second", "loop_seconds", "setup_seconds", "wall_seconds", "basis",
                "from_run")


def merged_note(speed: Any, cfg: TrainConfig) -> str:
    """How the effective batch runs when the speed plan merges micro-batches (the memory above is of that)."""
    if speed.merged == 1:
        return ""
    run = speed.batch_settings(cfg.batch_size, cfg.grad_accum)
    return f"; run as {run['batch_size']} × {run['grad_accum']}, micro-batches merged: see Speed below"


def estimate_run(cfg: TrainConfig, home: Home) -> RunEstimate:
    """The run as it would go on this machine: the model and dataset resolved as ``create_run`` resolves them,
    every process counted in the effective batch, the 'auto' memory choices decided, and whether it would train."""
    from lab.train import throughput
    from lab.train.convert import precision
    from lab.train.datasets import resolve_version
    from lab.train.distributed import gpus_needed, processes, visible_gpus
    from lab.train.loading import model_type
    from lab.train.methods import check_data
    from lab.train.speed import plan
    from lab.train.viability import count_steps, refusal

    shape = model_shape(cfg.model, home)  # run:<id> → its final model (an adapter: its base), as Start resolves it
    warnings = cfg.validate(params=shape.params)
    version = resolve_version(cfg.dataset, home)
    check_data(cfg, version, home)  # as Start checks it
    rows = version.rows[cfg.train_split]
    gpus = visible_gpus()
    ranks = processes(cfg, len(gpus))  # the effective batch counts every process
    unit = "GPU" if gpus_needed(cfg, len(gpus)) else "CPU process"
    units = unit if ranks == 1 else unit + ("es" if unit.endswith("s") else "s")
    speed = plan(cfg, cuda=bool(gpus), model_type=model_type(cfg.model, home),
                 gpu_bytes=gpus[0].memory_gib * GIB if gpus else None, shape=shape, processes=ranks)
    # The estimate is of the run as it would go on this machine: the speed plan's choices and precision resolved
    # (on a CPU 'auto' trains in fp32, so 16-bit would undercount what the run's outcome then reports).
    resolved = dataclasses.replace(throughput.resolved(cfg, speed),
                                   precision=precision(cfg, cuda=bool(gpus), bf16_supported=True))
    report = estimate(resolved, rows, gpus=ranks, shape=shape, home=home)
    # Tokens per second and the wait: from this machine's runs of the model, else the GPU's peak × measured MFU.
    guess = throughput.expected(resolved, shape, gpus=ranks, home=home,
                                device_name=gpus[0].name if unit == "GPU" else "cpu",
                                work=throughput.workload(cfg, version, ranks, home))
    report.update({name: getattr(guess, name) for name in SPEED_FIELDS})
    text = (f"**{version.ref}**: {rows} {cfg.train_split} rows · effective batch "
            f"**{report['effective_batch']}** ({cfg.batch_size} per {unit} × {cfg.grad_accum} accumulated × "
            f"{ranks} {units}{merged_note(speed, cfg)}) · {report['steps_per_epoch']} steps per epoch · "
            f"**{report['total_steps']}** steps in all ({report['warmup_steps']} warm-up) · trainable parameters **{report['trainable_params']:,}"
            f"** of {report['params']:,} ({report['trainable_percent']}%) · peak learning rate {cfg.lr:g}")
    if gpus:  # the first GPU stands for all: runs take whole GPUs of one machine
        budget = memory_budget(cfg, gpus[0].memory_gib * GIB)
        capped = " by gpu_memory_gib" if budget < gpus[0].memory_gib * GIB else ""
        where = f"GPU {gpus[0].index} ({budget / GIB:.0f} GiB{capped})"
        fits = largest_batch(resolved, shape, budget, bf16=resolved.precision != "fp32", processes=ranks)
        most = f"{fits:,} or more" if fits == LARGEST_BATCH_ASKED else str(fits)
        text += (f"\n\nLargest batch_size that fits {where} at max_length "
                 f"{cfg.max_length}, worst case: **{most}**" if fits else
                 f"\n\n⚠ Not even batch_size 1 fits {where} at max_length "
                 f"{cfg.max_length}: turn on gradient_checkpointing (then offload_activations and tiled_mlp), shorten "
                 "max_length, or use QLoRA.")
    if gpus and (offloaded := offloaded_bytes(resolved, shape, bf16=resolved.precision != "fp32") * ranks):
        report["offloaded_cpu_gib"] = round(offloaded / GIB, 1)
        available = host_memory_available()
        size = f"{offloaded / GIB:.1f} GiB" if offloaded >= GIB / 10 else f"{offloaded / 2**20:.0f} MiB"
        text += (f"\n\nActivation offloading keeps about **{size}** of layer inputs in page-locked "
                 f"CPU memory" + (f" ({available / GIB:.0f} GiB available now)." if available else "."))
        if available and offloaded > 0.9 * available:
            warnings.append(f"activation offloading needs about {offloaded / GIB:.0f} GiB of CPU memory at "
                            f"batch_size {cfg.batch_size} × max_length {cfg.max_length}, and this machine has "
                            f"{available / GIB:.0f} GiB available: lower max_length or batch_size")
    text += "\n\n" + throughput.expected_line(guess)
    text += ("\n\n**Speed and memory on this machine** (the Speed and Memory groups switch each part; the head "
             "tile follows gradient checkpointing):\n" + speed.markdown())
    if warnings:
        text += "\n\n" + "\n".join(f"- ⚠ {w}" for w in warnings)
    # Named by the version resolved, as create_run's refusal of the same run names it.
    reason = refusal(dataclasses.replace(cfg, dataset=version.ref), count_steps(cfg, rows, ranks))
    if reason:
        text = f"**⚠ {reason}**\n\n" + text
    return RunEstimate(version.ref, rows, report, text, reason, warnings)
