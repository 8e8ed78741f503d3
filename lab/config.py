"""Config dataclasses: the single source of defaults and help text.

The CLI builds its flags from these fields (``add_arguments``), the YAML recipes load into them
(``from_dict``), and the web forms are built from the same fields (``lab.ui.forms``). A field's
help lives in its ``metadata`` and nowhere else.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, TypeVar

from lab.data.kinds import KINDS
from lab.data.kinds import NAMES as DATA_KINDS
from lab.errors import LabError
from lab.names import check_name
from lab.train.methods import ADAPTERS, OBJECTIVES
from lab.train.methods import NAMES as OBJECTIVE_NAMES
from lab.train.rewards import described as rewards_described

T = TypeVar("T")


ACRONYMS = {"lora": "LoRA", "qlora": "QLoRA", "dpo": "DPO", "mlp": "MLP", "gpu": "GPU", "gpus": "GPUs", "cpu": "CPU",
            "gib": "GiB", "id": "ID", "hf": "HF", "kto": "KTO", "kl": "KL", "vllm": "vLLM"}


def field_label(name: str) -> str:
    """How a field is named to people (forms, the speed plan): ``near_threshold`` → ``Near threshold``,
    ``gpu_memory_gib`` → ``GPU memory GiB``."""
    text = " ".join(ACRONYMS.get(word, word) for word in name.split("_") if word)
    return text[:1].upper() + text[1:]


def option(default: Any, help: str, *, choices: tuple | None = None, cli: bool = True) -> Any:
    """A config field with its help text (and optional choices) kept beside its default."""
    metadata = {"help": help, "cli": cli}
    if choices:
        metadata["choices"] = choices
    return field(default=default, metadata=metadata)


@dataclass
class DataConfig:
    """How a file becomes a dataset version: what it holds, how it is cleaned and split."""

    name: str = option("", "Name of the dataset; each save adds an immutable version under it.")
    kind: str = option("auto", "What the rows are (" + "; ".join(f"{k.name}: {k.words}" for k in KINDS.values())
                       + "); auto detects.", choices=("auto", *DATA_KINDS))
    skip_invalid: bool = option(False, "Leave out rows that fail validation (otherwise saving is refused).")
    dedup_exact: bool = option(True, "Remove rows identical to an earlier row (whitespace-normalised).")
    dedup_near: bool = option(True, "Remove near-duplicates found by MinHash/LSH.")
    near_threshold: float = option(0.8, "Estimated Jaccard similarity of word 5-grams above which rows are near-duplicates.")
    tokenizer: str = option("tiny", "Tokenizer for token-length filters and statistics: 'tiny', a local path or a hub id.")
    template: str = option("model", "Chat template: the tokenizer's own ('model'), or 'chatml' / 'alpaca'.",
                           choices=("model", "chatml", "alpaca"))
    min_tokens: int = option(0, "Drop rows shorter than this many tokens (0 = no limit).")
    max_tokens: int = option(0, "Drop rows longer than this many tokens (0 = no limit).")
    min_turns: int = option(0, "Drop conversations with fewer user turns (0 = no limit).")
    max_turns: int = option(0, "Drop conversations with more user turns (0 = no limit).")
    max_rows: int = option(0, "Keep a seeded random sample of this many rows after cleaning (0 = all).")
    val_fraction: float = option(0.1, "Fraction of rows held out as the validation split.")
    seed: int = option(0, "Seed for the train/validation split.")

    def validate(self) -> None:
        if self.name:  # empty while only checking or previewing; import_file asks for one
            self.name = check_name(self.name, "Dataset name")
        if self.kind not in ("auto", *DATA_KINDS):
            raise LabError(f"kind must be auto or one of {', '.join(DATA_KINDS)}, not '{self.kind}'.")
        if not 0.0 < self.near_threshold <= 1.0:
            raise LabError(f"near_threshold must be in (0, 1], got {self.near_threshold}.")
        if not 0.0 <= self.val_fraction < 1.0:
            raise LabError(f"val_fraction must be in [0, 1), got {self.val_fraction}.")
        if self.max_rows < 0:
            raise LabError(f"max_rows must be 0 (all rows) or positive, got {self.max_rows}.")
        for low, high in (("min_tokens", "max_tokens"), ("min_turns", "max_turns")):
            lo, hi = getattr(self, low), getattr(self, high)
            if lo < 0 or hi < 0:
                raise LabError(f"{low} and {high} must be 0 (no limit) or positive.")
            if hi and lo > hi:
                raise LabError(f"{low} ({lo}) is larger than {high} ({hi}).")

    @property
    def kind_or_none(self) -> str | None:
        return None if self.kind == "auto" else self.kind


def from_dict(cls: type[T], values: dict[str, Any], *, where: str = "config") -> T:
    """Build a config from a mapping, naming unknown keys and badly typed values."""
    upgrade = getattr(cls, "upgrade", None)
    if upgrade is not None:  # settings renamed since a stored config or recipe was written
        values = upgrade(values)
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise LabError(f"{where}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(known)}.")
    converted = {name: coerce(known[name], value, where=where) for name, value in values.items()}
    return cls(**converted)


def coerce(f: dataclasses.Field, value: Any, *, where: str = "config") -> Any:
    """Convert ``value`` (possibly a string from the command line) to the field's type."""
    kind = type(f.default) if f.default is not dataclasses.MISSING else str
    try:
        if kind is bool and isinstance(value, str):
            lowered = value.strip().lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(value)
            value = lowered in ("true", "1", "yes")
        elif kind in (int, float) and not isinstance(value, bool):
            value = kind(float(value)) if kind is int and isinstance(value, str) and "." in value else kind(value)
            if not math.isfinite(value):  # nan and inf slip past every range check (nan < 0 is False)
                raise LabError(f"{where}: {f.name} must be a finite number, got {value!r}.")
        elif kind is str and isinstance(value, bool) and is_on_off(f):
            value = on_off(value)  # YAML reads a bare on/off as a boolean
        elif kind is str and value is not None:
            value = str(value)
    except (TypeError, ValueError, OverflowError):
        raise LabError(f"{where}: {f.name} must be {kind.__name__}, got {value!r}.") from None
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        raise LabError(f"{where}: {f.name} must be one of {', '.join(map(str, choices))}, got {value!r}.")
    return value


def is_on_off(f: dataclasses.Field) -> bool:
    """An auto/on/off setting, which also takes True and False."""
    return {"on", "off"} <= set(f.metadata.get("choices") or ())


def on_off(value: bool) -> str:
    return "on" if value else "off"


def add_arguments(parser: argparse.ArgumentParser, cls: type, *, skip: tuple[str, ...] = ()) -> None:
    """Add one ``--flag`` per config field, with the field's help and default."""
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.metadata.get("cli", True):
            continue
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata["help"] + default_note(f.metadata["help"], f.default)
        if isinstance(f.default, bool):
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            parser.add_argument(flag, dest=f.name, default=None, choices=f.metadata.get("choices"),
                                type=type(f.default), help=help_text)


def default_note(help_text: str, default: Any) -> str:
    """The " (default: X)" that ends a flag's help, unless its text states its default already or the default is
    empty (the text then says what leaving it out means: "Optional …", "empty = none")."""
    return "" if default == "" or "default" in help_text.lower() else f" (default: {default})"


def from_arguments(cls: type[T], args: argparse.Namespace, **overrides: Any) -> T:
    """The config with every flag the user gave applied over the defaults."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
              if getattr(args, f.name, None) is not None}
    values.update(overrides)
    return from_dict(cls, values, where="command line")


# Small, randomly initialised test models (the built-in 'tiny': a few million parameters) learn visibly in a few
# steps only at the objectives' small-model rates (lab.train.methods); below this size a model counts as small.
SMALL_MODEL_PARAMS = 50_000_000
SMALL_MODELS = ("tiny",)  # known to be small without reading their config (lab.models.TINY_MODEL)
# Recipes and stored configs from before objectives and adapters were separate settings: method → both.
LEGACY_METHODS = {"sft": ("sft", "none"), "lora": ("sft", "lora"), "qlora": ("sft", "qlora")}
LORA_TARGETS = {"all-linear": "all-linear", "attention": ["q_proj", "k_proj", "v_proj", "o_proj"]}
# Each objective in plain words, for the objective's help (lab.train.methods.Objective.help says it technically).
OBJECTIVE_WORDS = {"sft": "learns to answer like your conversations",
                   "dpo": "learns to prefer the chosen answer of each pair",
                   "reward": "a model that learns to score answers",
                   "kto": "learns more of the answers marked good, less of the bad",
                   "grpo": "learns from its own answers that your reward functions score best",
                   "rloo": "like grpo, each answer judged against the others' average"}


@dataclass
class TrainConfig:
    """One training run: what to train, on what, and how. A recipe YAML holds these fields."""

    # what
    name: str = option("", "Run name shown in the lists (default: method-model-time).")
    objective: str = option("sft", "What the run learns: " + "; ".join(
        f"{o.name}: {OBJECTIVE_WORDS.get(o.name, o.help)} (needs {KINDS[o.data_kind].words.split(' (')[0]})"
        for o in OBJECTIVES.values()) + ".", choices=OBJECTIVE_NAMES)
    adapter: str = option("none", "What is trained: every weight (none), a LoRA adapter on the frozen model, or "
                          "LoRA on the model loaded in 4 bits (qlora, CUDA only). Adapters need far less memory; "
                          "for preference objectives the frozen base is the reference model.", choices=ADAPTERS)
    model: str = option("tiny", "Base model: 'tiny' (built-in, offline), a hub id, a local path, or run:<id> "
                        "for a finished run's model.")
    dataset: str = option("sample:sft", "Dataset version NAME[@VERSION], or a bundled sample: sample:sft, "
                          "sample:preference, sample:unpaired, sample:prompts.")
    train_split: str = option("train", "Split to train on.", choices=("train", "validation"))
    eval_split: str = option("validation", "Split to evaluate on ('none' to skip evaluation).",
                             choices=("validation", "train", "none"))
    # optimisation
    learning_rate: float = option(0.0, "Peak learning rate; 0 = the objective's usual for the model's size and "
                                  "adapter: " + ", ".join(f"{o.title} {o.usual_lr['full']:g} full / "
                                                          f"{o.usual_lr['adapter']:g} adapter"
                                                          for o in OBJECTIVES.values()) + ".")
    lr_scheduler: str = option("cosine", "Learning-rate schedule after warm-up.",
                               choices=("cosine", "linear", "constant", "constant_with_warmup"))
    warmup_ratio: float = option(0.03, "Fraction of the steps spent warming the learning rate up from 0.")
    epochs: float = option(1.0, "Passes over the training split.")
    max_steps: int = option(-1, "Stop after this many optimizer steps (-1 = run all epochs).")
    batch_size: int = option(4, "Sequences per device per forward pass.")
    grad_accum: int = option(1, "Forward passes accumulated per optimizer step (effective batch = "
                             "batch_size × grad_accum × GPUs).")
    max_length: int = option(1024, "Longest sequence in tokens; longer ones are truncated.")
    packing: bool = option(False, "Pack several short examples into each sequence (" + ", ".join(
        o.title for o in OBJECTIVES.values() if o.packing) + " only).")
    max_grad_norm: float = option(1.0, "Gradient clipping norm.")
    weight_decay: float = option(0.0, "AdamW weight decay.")
    precision: str = option("auto", "Numeric precision: auto = bf16 where the GPU supports it, else fp16 on "
                            "GPU, fp32 on CPU.", choices=("auto", "bf16", "fp16", "fp32"))
    gradient_checkpointing: str = option("auto", "Recompute activations in the backward pass: less memory, about "
                                         "30% slower. auto = on only when the batch's worst case does not fit the "
                                         "GPU without it (by the memory estimate); off on a CPU.",
                                         choices=("auto", "on", "off"))
    offload_activations: str = option("auto", "With gradient checkpointing, keep each layer's saved input in the "
                                      "CPU's memory instead of the GPU's until the backward pass fetches it: moves "
                                      "layers × tokens × hidden width × 2 bytes from the GPU to (page-locked) CPU "
                                      "memory for some PCIe traffic; the estimate says how much. "
                                      "auto = on when the batch does not fit the GPU even with checkpointing. One "
                                      "process only.", choices=("auto", "on", "off"))
    tiled_mlp: str = option("auto", "Run each MLP over the sequence in tiles of 4,096 tokens and recompute it in "
                            "the backward pass, so its wide intermediate activations exist for one tile at a time "
                            "(very long sequences). auto = on when the batch does not fit even with checkpointing "
                            "and offloading.", choices=("auto", "on", "off"))
    logging_steps: int = option(5, "Log metrics every N optimizer steps.")
    eval_steps: int = option(50, "Evaluate every N steps (0 = only at the end).")
    save_steps: int = option(100, "Save a checkpoint (model and optimizer state, to resume from) every N steps; "
                                  "0 = once an epoch. The final model is saved to final/ either way.")
    save_total_limit: int = option(3, "Checkpoints kept (oldest deleted first).")
    load_best_model_at_end: bool = option(False, "Finish with the checkpoint of lowest eval loss.")
    early_stopping_patience: int = option(0, "Stop after this many evaluations without improvement (0 = off).")
    early_stopping_threshold: float = option(0.0, "Smallest eval-loss drop that counts as an improvement.")
    neftune_noise_alpha: float = option(0.0, "NEFTune embedding noise (SFT; 5 is typical, 0 = off).")
    seed: int = option(42, "Random seed for initialisation, shuffling and dropout.")
    # adapters
    lora_r: int = option(16, "LoRA rank.")
    lora_alpha: int = option(32, "LoRA scaling alpha (commonly 2 × r).")
    lora_dropout: float = option(0.05, "Dropout on the LoRA path.")
    lora_targets: str = option("all-linear", "Layers that get adapters: all-linear, attention (q/k/v/o), or a "
                               "comma-separated list of module names.")
    # qlora (bitsandbytes 4-bit)
    quant_type: str = option("nf4", "4-bit quantisation type for QLoRA.", choices=("nf4", "fp4"))
    double_quant: bool = option(True, "Quantise the quantisation constants too (saves ~0.4 bit/param).")
    # dpo
    dpo_beta: float = option(0.1, "DPO beta: how far the policy may move from the reference.")
    dpo_loss_type: str = option("sigmoid", "DPO loss.", choices=("sigmoid", "hinge", "ipo", "robust", "apo_zero"))
    max_prompt_length: int = option(512, "DPO and KTO: prompts longer than this keep their last tokens.")
    precompute_ref_log_probs: str = option("auto", "DPO and KTO: compute the reference model's log-probabilities once "
                                           "before training, so no second model copy is held or run each step. "
                                           "auto = on for full-model DPO (adapters use the frozen base as the "
                                           "reference already).", choices=("auto", "on", "off"))
    # kto (settings of the kto objective go here)
    kto_beta: float = option(0.1, "KTO beta: how far the policy may move from the reference (higher = closer).")
    kto_loss_type: str = option("kto", "KTO loss: kto (the paper's, with the KL estimate from mismatched pairs in "
                                "each batch) or apo_zero_unpaired (no KL term).", choices=("kto", "apo_zero_unpaired"))
    kto_desirable_weight: str = option("auto", "Weight of the desirable (👍) examples' loss: a number, or auto = "
                                       "balance the label counts (weight × count of the desirable side 1–4/3 × the "
                                       "undesirable side's, as the KTO paper advises).")
    kto_undesirable_weight: str = option("auto", "Weight of the undesirable (👎) examples' loss: a number, or auto "
                                         "(balanced from the label counts, with the desirable weight).")
    # reward model (settings of the reward objective go here)
    reward_center_coefficient: float = option(0.0, "Reward model: weight of a penalty on the rewards' squared "
                                              "mean, which keeps them centred on 0 so the scores of different "
                                              "runs read alike (0.01 is usual; 0 = off).")
    # grpo and rloo (settings of the grpo and rloo objectives go here)
    num_generations: int = option(8, "GRPO/RLOO: completions sampled per prompt; each is judged against its "
                                  "group. batch_size counts completions and must be a multiple of this.")
    max_completion_length: int = option(256, "GRPO/RLOO: longest completion sampled, in tokens; prompts keep their "
                                        "last max_length minus this many tokens.")
    temperature: float = option(1.0, "GRPO/RLOO: sampling temperature; a group's completions must differ for "
                                "their rewards to teach anything.")
    kl_beta: float = option(0.0, "GRPO/RLOO: weight of the KL penalty to the starting model (0 = none, and no "
                            "frozen copy is held; 0.001-0.05 keeps the policy near its start).")
    rewards: str = option("numeric_answer:1", "GRPO/RLOO: reward functions and their weights, 'name:weight, ...' "
                          "(the total is the weighted sum): " + rewards_described() + ".")
    reward_pattern: str = option(r"^-?\d[\d,]*(\.\d+)?$", "format reward: the regular expression the stripped reply "
                                 "must match (searched; anchor it with ^ and $). Default: a single number.")
    length_target: int = option(200, "length reward: the reply length in characters that scores 1.")
    reward_model: str = option("", "reward_model reward: a finished reward run (run:<id>), or the path or hub id "
                               "of a sequence-classification model with one output.")
    reward_file: str = option("", "custom reward: PATH.py:FUNCTION, your function (prompts, completions, "
                              "**kwargs) -> one number per completion; kwargs hold answer and the rows' meta "
                              "columns. The file must lie in LAB_HOME/imports or a folder the lab is allowed "
                              "to read; it is checked before launch.")
    vllm: str = option("auto", "GRPO/RLOO: sample completions with vLLM in the training process (colocated). "
                       "auto = on when vllm is installed and a CUDA GPU is there.", choices=("auto", "on", "off"))
    # speed (each 'auto' is decided by lab.train.speed from the GPU and what is installed; see speed.json)
    padding_free: str = option("auto", "Lay each batch's examples end to end with no padding (attention kept "
                               "inside each example). auto = on for SFT on a CUDA GPU.", choices=("auto", "on", "off"))
    attention: str = option("auto", "How attention is computed (the same result, only the speed differs): auto "
                            "picks the fastest installed; sdpa is PyTorch's standard attention, varlen its "
                            "variable-length one, bucketed groups padding-free examples by length for SDPA's "
                            "fixed-length kernels, flash_attention_2 needs the flash-attn package, eager is the slow "
                            "plain one.",
                            choices=("auto", "sdpa", "varlen", "bucketed", "flash_attention_2", "eager"))
    liger_kernels: str = option("auto", "Liger's fused RMSNorm, RoPE and SwiGLU Triton kernels. auto = on on a "
                                "CUDA GPU when liger-kernel is installed.", choices=("auto", "on", "off"))
    compile: str = option("auto", "torch.compile the model (auto = off). With liger_kernels off it is the fastest "
                          "steady state of a long full fine-tune (+4% on a 0.5B), after about 25 s of compiling; "
                          "with Liger's kernels on it is slower.", choices=("auto", "on", "off"))
    fused_lora: str = option("auto", "Each adapted layer as one function whose matrix products carry the adapter's "
                             "part, forward and backward, instead of PEFT's separate operators. On a GPU its "
                             "dropout is applied as the kernels read the input, so no dropped-out copy or mask is "
                             "kept: much less memory, masks drawn by the lab (the same odds as PEFT's). auto = on "
                             "for LoRA and QLoRA.", choices=("auto", "on", "off"))
    half_activations: str = option("auto", "Full fine-tunes under 16-bit autocast: hidden states between layers in "
                                   "16 bits (weights, gradients and optimizer stay fp32): fewer casts, less memory. "
                                   "off = fp32, as plain TRL; auto = on for SFT on a GPU.",
                                   choices=("auto", "on", "off"))
    early_head: str = option("auto", "SFT's LM head with its gradient taken in the forward pass: one projection of "
                             "the vocabulary fewer a token, about 1 GB more for a 128k vocabulary. auto = on for SFT "
                             "in one process on a GPU while activations are kept (no checkpointing); off = TRL's "
                             "fused head.", choices=("auto", "off"))
    merge_micro_batches: str = option("auto", "Accumulated micro-batches run as fewer, larger ones when the GPU holds "
                                      "them (batch_size 8 × grad_accum 2 as 16 × 1): the same examples per step "
                                      "and the same gradient, since SFT's loss counts the tokens of the whole "
                                      "accumulated batch; fuller kernel calls. auto = on for padding-free SFT on "
                                      "a GPU whose memory holds the larger micro-batch without a memory saver "
                                      "more; off = as configured.", choices=("auto", "off"))
    # hardware (how runs spread over GPUs: lab.train.distributed; docs/multi-gpu.md)
    gpus: str = option("1", "GPUs the run trains on, one process each: a count, or 'all' (every GPU of the "
                       "machine); 0 = on the CPU. On a machine without GPUs, 1 and all train on the CPU.")
    distributed: str = option("ddp", "How several GPUs share a run: ddp = each holds the whole model (fastest, "
                              "for models that fit one GPU); fsdp = weights, gradients and optimizer state sharded "
                              "across the GPUs, wrapped per decoder layer (full fine-tuning of models that do not "
                              "fit); deepspeed = ZeRO (needs the deepspeed package).",
                              choices=("ddp", "fsdp", "deepspeed"))
    deepspeed_stage: int = option(3, "ZeRO stage for deepspeed: 2 shards gradients and optimizer state, 3 the "
                                  "weights too (like fsdp).", choices=(2, 3))
    gpu_memory_gib: float = option(0.0, "Most GPU memory the run may take, in GiB (0 = the whole GPU): the "
                                   "allocator is capped there and the auto memory choices (checkpointing, "
                                   "offloading, tiling) plan for it, e.g. to leave room for the app's generation "
                                   "on the same GPU.")
    cpu_processes: int = option(1, "With gpus 0: how many CPU processes train together (gloo backend), to run "
                                "the multi-process path without GPUs; slower than one process.")
    # where it reports
    report_to: str = option("wandb", "Also log to Weights & Biases (offline unless WANDB_API_KEY is set), "
                            "or none.", choices=("wandb", "none"))
    wandb_project: str = option("lab", "W&B project.")
    sample_prompts: int = option(3, "At the end, answer this many fixed prompts (the first of the eval split) with "
                                 "the base and the tuned model, greedily, to compare (0 = off).")
    sample_max_new_tokens: int = option(96, "Longest before/after sample, in new tokens.")

    def __post_init__(self) -> None:
        # Python code passes True/False for the auto/on/off settings; from_dict does this for YAML and the CLI.
        for f in dataclasses.fields(self):
            if isinstance(getattr(self, f.name), bool) and is_on_off(f):
                setattr(self, f.name, on_off(getattr(self, f.name)))

    @staticmethod
    def upgrade(values: dict[str, Any]) -> dict[str, Any]:
        """A config written before objective and adapter were separate settings (``method: lora``, ``method: dpo``
        with ``dpo_adapter``), in today's fields; today's configs pass through."""
        if "method" not in values and "dpo_adapter" not in values:
            return values
        values = dict(values)
        method, dpo_adapter = values.pop("method", None), values.pop("dpo_adapter", None)
        if method == "dpo" or (method is None and dpo_adapter is not None):
            values.setdefault("objective", "dpo")
            values.setdefault("adapter", dpo_adapter or "lora")  # DPO's adapter was LoRA unless set
        elif method in LEGACY_METHODS:
            values.setdefault("objective", LEGACY_METHODS[method][0])
            values.setdefault("adapter", LEGACY_METHODS[method][1])
        elif method is not None:
            values.setdefault("objective", method)  # an objective under the old key: from_dict checks its name
        return values

    @property
    def method(self) -> str:
        """The run's method in one word, for ids, default names and lists: sft, lora, qlora (SFT), dpo, dpo-lora,
        kto-qlora, …"""
        if self.objective == "sft":
            return "sft" if self.adapter == "none" else self.adapter
        return self.objective if self.adapter == "none" else f"{self.objective}-{self.adapter}"

    @property
    def method_title(self) -> str:
        """As people read it: "SFT", "DPO with LoRA"."""
        title = OBJECTIVES[self.objective].title
        return title if self.adapter == "none" else f"{title} with {ACRONYMS[self.adapter]}"

    @property
    def usual_lr(self) -> float:
        """The objective's usual learning rate on a real-size (pretrained) model: what learning_rate 0 means."""
        return OBJECTIVES[self.objective].usual_lr[self.lr_key]

    @property
    def lr_key(self) -> str:
        return "full" if self.adapter == "none" else "adapter"

    def small_model(self, params: int | None) -> bool:
        """Whether the model is a small test model: by its measured ``params``, else by what is known without
        reading it (the built-in tiny model)."""
        return params < SMALL_MODEL_PARAMS if params is not None else self.model in SMALL_MODELS

    def usual_lr_for(self, params: int | None) -> float:
        """The usual learning rate for this method on this model (``params``: its size, None when not measured)."""
        entry = OBJECTIVES[self.objective]
        return (entry.usual_lr_small if self.small_model(params) else entry.usual_lr)[self.lr_key]

    @property
    def lr(self) -> float:
        return self.learning_rate or self.usual_lr

    def lora_target_modules(self) -> str | list[str]:
        if self.lora_targets in LORA_TARGETS:
            return LORA_TARGETS[self.lora_targets]
        return [m.strip() for m in self.lora_targets.split(",") if m.strip()]

    def validate(self, *, cuda: bool | None = None, params: int | None = None) -> list[str]:
        """Raise ``LabError`` for impossible settings; return warnings for risky ones.

        ``cuda``: whether a CUDA GPU is present (checked lazily when None). ``params``: the model's parameter count
        where the caller has measured it (``lab.train.loading.model_params``): the usual learning rate depends on it."""
        if self.name:  # a display name, but one the lists, W&B and recipes carry: the rule of every name
            self.name = check_name(self.name, "Run name")
        errors: list[str] = []
        positive = ("batch_size", "grad_accum", "max_length", "logging_steps", "lora_r", "lora_alpha")
        errors += [f"{f} must be at least 1 (got {getattr(self, f)})." for f in positive if getattr(self, f) < 1]
        nonneg = ("eval_steps", "save_steps", "early_stopping_patience", "early_stopping_threshold", "sample_prompts",
                  "sample_max_new_tokens", "weight_decay", "neftune_noise_alpha",
                  "learning_rate", "save_total_limit")
        errors += [f"{f} must not be negative (got {getattr(self, f)})." for f in nonneg if getattr(self, f) < 0]
        if not 0 <= self.warmup_ratio < 1:
            errors.append(f"warmup_ratio must be in [0, 1) (got {self.warmup_ratio}).")
        if not 0 <= self.seed < 2**32:  # numpy's and the trainer's seeding refuse more, mid-launch
            errors.append(f"seed must be a whole number from 0 to {2**32 - 1} (got {self.seed}).")
        if not 0 <= self.lora_dropout < 1:
            errors.append(f"lora_dropout must be in [0, 1) (got {self.lora_dropout}).")
        if self.epochs <= 0 and self.max_steps <= 0:
            errors.append("Set epochs above 0 or max_steps to a number of steps.")
        if self.max_steps == 0 or self.max_steps < -1:
            errors.append(f"max_steps must be -1 (use epochs) or a positive number of steps (got {self.max_steps}).")
        if self.dpo_beta <= 0:
            errors.append(f"dpo_beta must be positive (got {self.dpo_beta}).")
        entry = OBJECTIVES[self.objective]
        if entry.prompt_limit and self.max_prompt_length >= self.max_length:
            errors.append(f"max_prompt_length ({self.max_prompt_length}) must be below max_length "
                          f"({self.max_length}) to leave room for the reply.")
        if self.load_best_model_at_end and self.eval_split == "none":
            errors.append("load_best_model_at_end needs evaluation: set eval_split.")
        if self.early_stopping_patience and self.eval_split == "none":
            errors.append("early_stopping_patience needs evaluation: set eval_split.")
        if self.packing and not entry.packing:
            errors.append(f"packing does not apply to {entry.title}; turn it off.")
        if self.adapter == "qlora" or self.precision in ("bf16", "fp16"):
            if cuda is None:
                cuda = cuda_available()
            if not cuda:
                what = "QLoRA (4-bit bitsandbytes)" if self.adapter == "qlora" else f"precision {self.precision}"
                errors.append(f"{what} needs a CUDA GPU and none is visible; use lora / precision auto on CPU.")
        hardware_errors, hardware_warnings = self.hardware_checks(cuda)
        errors += hardware_errors
        if errors:
            raise LabError("Invalid run config: " + " ".join(errors))
        warnings: list[str] = list(hardware_warnings)
        usual = self.usual_lr_for(params)
        if self.learning_rate and not usual / 10 <= self.learning_rate <= usual * 10:
            size = "a small test model" if self.small_model(params) else "a real-size model"
            warnings.append(f"learning_rate {self.learning_rate:g} is more than 10× away from the usual "
                            f"{usual:g} for {self.method_title} on {size}: expect "
                            f"{'divergence' if self.learning_rate > usual else 'very slow learning'}.")
        if self.lora_alpha and self.adapter != "none" and self.lora_alpha > 4 * self.lora_r:
            warnings.append(f"lora_alpha {self.lora_alpha} is over 4 × r ({self.lora_r}): updates are strongly "
                            "scaled up; 2 × r is the usual choice.")
        return warnings

    def hardware_checks(self, cuda: bool | None) -> tuple[list[str], list[str]]:
        """Errors and warnings of the hardware fields. Whether the machine has as many GPUs as asked is checked
        when the run is queued (``lab.train.distributed.plan_for``); here only whether any GPU is visible."""
        if not (self.gpus == "all" or self.gpus.isdigit()):
            return [f"gpus must be a number of GPUs or 'all' (got {self.gpus!r})."], []
        errors: list[str] = []
        count = None if self.gpus == "all" else int(self.gpus)
        if self.gpu_memory_gib < 0:
            errors.append(f"gpu_memory_gib must be 0 (the whole GPU) or a positive number of GiB "
                          f"(got {self.gpu_memory_gib:g}).")
        if self.offload_activations == "on" and self.gradient_checkpointing == "off":
            errors.append("offload_activations: on moves gradient checkpointing's saved inputs to the CPU; it needs "
                          "gradient_checkpointing on or auto.")
        for name in ("offload_activations", "tiled_mlp"):
            if getattr(self, name) == "on" and ((count or 1) > 1 or self.cpu_processes > 1):
                errors.append(f"{name} works in one process; it cannot be on with several GPUs or processes.")
        if self.cpu_processes < 1:
            errors.append(f"cpu_processes must be at least 1 (got {self.cpu_processes}).")
        elif self.cpu_processes > 1 and count != 0:
            errors.append(f"cpu_processes {self.cpu_processes} applies to runs on the CPU: set gpus 0 with it.")
        if count == 0:
            if self.adapter == "qlora" or self.precision in ("bf16", "fp16"):
                what = "QLoRA (4-bit bitsandbytes)" if self.adapter == "qlora" else f"precision {self.precision}"
                errors.append(f"{what} needs a CUDA GPU and gpus 0 trains on the CPU.")
            if self.distributed != "ddp":
                errors.append(f"distributed {self.distributed} shards the model across GPUs; gpus 0 trains on the "
                              "CPU, where several processes are plain data-parallel: use ddp.")
        elif (count or 1) > 1 or self.distributed != "ddp":
            # 1 and 'all' fall back to the CPU on a machine without GPUs; more than one GPU cannot.
            if not (cuda if cuda is not None else cuda_available()):
                if (count or 1) > 1:
                    errors.append(f"gpus {count} asks for {count} GPUs and no CUDA GPU is visible; to try several "
                                  f"processes on the CPU, set gpus 0 and cpu_processes {count}.")
                else:
                    errors.append(f"distributed {self.distributed} shards the model across GPUs and no CUDA GPU "
                                  "is visible: use ddp on the CPU.")
        if self.distributed == "deepspeed":
            import importlib.util

            if importlib.util.find_spec("deepspeed") is None:
                errors.append("distributed deepspeed needs the deepspeed package (pip install deepspeed); fsdp "
                              "ships with PyTorch and shards like ZeRO-3.")
        warnings = []
        if self.distributed != "ddp" and count == 1:
            warnings.append(f"distributed {self.distributed} with one GPU shards nothing; it pays off from 2 GPUs.")
        if self.sample_prompts and (self.distributed == "fsdp" or self.distributed == "deepspeed" and
                                    self.deepspeed_stage == 3):
            warnings.append("No before/after samples under fsdp or ZeRO-3 (one process cannot run a sharded model "
                            "alone): compare the base and run:<id> in the Compare tab.")
        return errors, warnings


MAX_ASPECTS = 8  # per-aspect votes a campaign may ask for: the labeling page builds this many rows once


def aspect_names(text: str) -> list[str]:
    """A campaign's aspects as written ('helpful, harmless'), in order (a stored campaign's config keeps the text)."""
    return [a.strip() for a in text.split(",") if a.strip()]


@dataclass
class CampaignConfig:
    """A labeling campaign: which prompts, which sources answer them, how, and how many votes each pair needs."""

    name: str = option("", "Campaign name shown to labelers (default: campaign-<time>).")
    mode: str = option("pairwise", "pairwise = two answers side by side, which is better (exports preference pairs); "
                       "thumbs = one answer at a time, 👍 or 👎 (exports unpaired data for KTO; one source is "
                       "enough).", choices=("pairwise", "thumbs"))
    prompts: str = option("sample:sft", "Prompts: a dataset version NAME[@VERSION] (or sample:sft), a JSONL/CSV/"
                          "text file path, or pasted text with one prompt per line.")
    prompts_split: str = option("validation", "Split of the dataset version to take prompts from.",
                                choices=("train", "validation"))
    max_prompts: int = option(20, "Use at most this many prompts (the first ones; 0 = all). A responses file is "
                              "used whole.")
    sources: str = option("", "Comma-separated models that answer: 'tiny', run:<id> (a run's final model or "
                          "adapter), a local path or a hub id; NAME#2 adds a second sample of the same model. Two or "
                          "more, unless a responses file gives them.")
    responses_file: str = option("", "Optional JSONL/CSV of ready responses: a 'prompt' column and one column per "
                                 "source (the column name is the source's name).")
    gold_file: str = option("", "Optional JSONL/CSV of gold pairs with a known answer: prompt, response_a, "
                            "response_b, answer (a, b or tie); mixed in to check labelers.")
    temperature: float = option(0.7, "Sampling temperature for the responses (0 = greedy).")
    top_p: float = option(0.95, "Nucleus sampling: keep the smallest set of tokens with this much probability.")
    max_new_tokens: int = option(128, "Longest response, in new tokens.")
    seed: int = option(0, "Seed for sampling (distinct models share the random stream; NAME#tag copies get their own).")
    votes_per_pair: int = option(2, "Votes wanted per pair (overlap between labelers, for agreement).")
    guidelines: str = option("", "What labelers should judge, shown above every pair (Markdown), e.g. 'Prefer the correct answer; then the shorter one.'")
    rubric: str = option("", "The rubric (Markdown): what each grade or aspect means, with examples; shown in the "
                         "labeler's first-time introduction and behind a button beside every pair.")
    graded: bool = option(False, "Graded votes: A ≫ B, A > B, tie, B > A, B ≫ A (keys 1-5). The strength is "
                          "exported as a margin (reward models) and can filter DPO pairs.")
    aspects: str = option("", "Optional comma-separated aspects voted on besides the overall choice, e.g. "
                          "'helpful,harmless,follows instructions' (each: A, B or tie).")
    serving: str = option("balanced", "Which pair next: balanced = finish pairs in a fixed random order (fewest "
                          "votes still wanted first); active = where a vote is worth most: pairs whose outcome is "
                          "most uncertain under the Bradley–Terry fit and the votes so far, and pairs labelers "
                          "disagree on.", choices=("balanced", "active"))
    gold_share: float = option(0.0, "Share of the pairs served that are gold pairs (0 = mixed in at random, each "
                               "once per labeler, as the gold file's size makes it).")
    extra_votes: int = option(1, "Active serving: extra votes a pair gets when its votes disagree; still split "
                              "after those, it waits for an admin's decision (adjudication). Balanced serving sends "
                              "a split pair to adjudication at once. 0 = none.")
    judge: str = option("", "An LLM judge that pre-labels every pair (as Eval's judge: 'tiny', run:<id>, a path, a "
                        "hub id or 'endpoint'); empty = none. Its agreement with people is measured on the pairs "
                        "both answered.")
    judge_fills_at: float = option(0.0, "Let the judge label the pairs people have not reached once its Cohen's κ "
                                   "with them is at least this (0 = never). Exports say which labels came from whom.")
    previous: str = option("", "The campaign this one is the next round of (set by 'Next round'); its prompts are "
                           "held out from this round's.")

    def validate(self) -> None:
        if self.name:  # the default export is named labels-<campaign name>
            self.name = check_name(self.name, "Campaign name")
        errors = []
        if self.max_prompts < 0:
            errors.append(f"max_prompts must be 0 (all) or positive, got {self.max_prompts}.")
        if self.votes_per_pair < 1:
            errors.append(f"votes_per_pair must be at least 1, got {self.votes_per_pair}.")
        if self.max_new_tokens < 1:
            errors.append(f"max_new_tokens must be at least 1, got {self.max_new_tokens}.")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            errors.append(f"temperature must be >= 0 and top_p in (0, 1] (got {self.temperature}, {self.top_p}).")
        if not self.prompts.strip():
            errors.append("Give prompts: a dataset version, a file, or pasted text.")
        if not 0 <= self.gold_share < 1:
            errors.append(f"gold_share must be in [0, 1), got {self.gold_share}.")
        if self.extra_votes < 0:
            errors.append(f"extra_votes must be 0 or more, got {self.extra_votes}.")
        if not 0 <= self.judge_fills_at <= 1:
            errors.append(f"judge_fills_at is a κ between 0 (never) and 1, got {self.judge_fills_at}.")
        if self.judge_fills_at and not self.judge.strip():
            errors.append("judge_fills_at needs a judge to fill with; name one (judge) or set it to 0.")
        try:
            self.aspect_list()
        except LabError as err:
            errors.append(str(err))
        if self.mode == "thumbs" and (self.graded or self.aspects.strip()):
            errors.append("Graded and per-aspect votes compare two answers; a thumbs campaign takes neither.")
        if errors:
            raise LabError("Invalid campaign: " + " ".join(errors))

    def aspect_list(self) -> list[str]:
        names = aspect_names(self.aspects)
        if len(set(names)) != len(names):
            raise LabError(f"Aspect names must be unique: {self.aspects}.")
        if len(names) > MAX_ASPECTS:
            raise LabError(f"A campaign takes at most {MAX_ASPECTS} aspects (the labeling page's rows); this one "
                           f"names {len(names)}: {', '.join(names)}.")
        return names

    def source_list(self) -> list[str]:
        return [s.strip() for s in self.sources.split(",") if s.strip()]


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def load_yaml(path: str, cls: type[T] = TrainConfig, overrides: list[str] | None = None) -> T:
    """A recipe file into a config, with ``key=value`` overrides applied (as from ``--set``)."""
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            values = yaml.safe_load(f) or {}
    except FileNotFoundError:
        raise LabError(f"Recipe {path} not found.") from None
    except IsADirectoryError:
        raise LabError(f"Recipe {path} is a folder; give a YAML file of settings (see recipes/).") from None
    except UnicodeDecodeError:
        raise LabError(f"Recipe {path} is not a text file; give a YAML file of settings (see recipes/).") from None
    except OSError as err:
        raise LabError(f"Recipe {path} cannot be read: {err.strerror}.") from None
    except yaml.YAMLError as err:
        raise LabError(f"Recipe {path} is not valid YAML: {err}".splitlines()[0]) from None
    if not isinstance(values, dict):
        raise LabError(f"Recipe {path} must be a mapping of settings, got {type(values).__name__}.")
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise LabError(f"--set takes key=value, got '{item}'.")
        key = key.strip()
        if key in ("method", "dpo_adapter"):  # the old setting, given last, wins over the recipe's new ones
            values.pop("objective", None)
            values.pop("adapter", None)
        values[key] = override_value(value)
    return from_dict(cls, values, where=path)


def override_value(text: str) -> Any:
    """A ``--set`` value as YAML reads it (numbers, booleans, null), or the text itself where YAML cannot read it
    (``lora_targets=,q_proj``, a stray bracket or control character): the setting's own check then says what is
    wrong with it."""
    import yaml

    if not text.strip():
        return ""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def to_yaml(config: Any) -> str:
    """A config as YAML, fields in declaration order."""
    import yaml

    return yaml.safe_dump(dataclasses.asdict(config), sort_keys=False, allow_unicode=True)
