"""The method registry: what each training objective needs from the lab, one entry per objective.

A run is an objective (what it learns: ``sft``, ``dpo``, ``kto``, …) with an adapter (what is trained:
``none`` = every weight, ``lora``, ``qlora`` = LoRA on a 4-bit base). The worker, the estimate, the speed plan,
the sanity check, the Train tab and the CLI read the entry; how the objective's TRL trainer is built lives in
its own module, ``lab/train/objectives/<name>.py``: ``config(cfg, common)`` and ``build(b: Build)``. Adding an objective is an entry here,
that module (``config`` and ``build``), its settings in ``TrainConfig`` and a recipe (docs/architecture.md, "Adding a training method").

A leaf module: it imports nothing from the lab at module level but ``lab.errors``, so ``lab.config`` takes its
names for the ``objective`` and ``adapter`` choices.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab.errors import LabError

if TYPE_CHECKING:
    from lab.config import TrainConfig

ADAPTERS = ("none", "lora", "qlora")
# (panel title, ((metric logged by the trainer, its name in the legend), ...)): a metric may be a glob, whose name
# "*" stands for the part the glob matched (GRPO's rewards/<function>/mean: the function's name).
Panels = tuple[tuple[str, tuple[tuple[str, str], ...]], ...]


@dataclass(frozen=True)
class Headline:
    """The number a finished run is judged by (the runs table, its status and progress lines): the last value a run
    logged of ``metric`` ('loss': the final loss, as the store keeps it), called ``words``, written with ``spec``."""
    metric: str
    words: str
    spec: str = ".4f"


FINAL_LOSS = Headline("loss", "final loss")


def one(cfg: TrainConfig) -> int:
    return 1


def never(cfg: TrainConfig) -> bool:
    return False


@dataclass(frozen=True)
class Objective:
    name: str
    title: str  # as people write it: "SFT", "DPO"
    help: str  # one line: what it learns from what
    data_kind: str  # the lab.data.kinds entry its dataset version must hold
    usual_lr: dict[str, float]  # {"full", "adapter"}: the usual peak learning rate on real-size pretrained models
    # Small, randomly initialised test models (the built-in tiny, a few million parameters) learn visibly in a
    # few steps only at rates like these (recipes/tiny-*.yaml); a rate that would wreck a pretrained 7B is usual.
    usual_lr_small: dict[str, float]
    settings: tuple[str, ...] = ()  # the TrainConfig fields only this objective reads (its group in the form)
    sequences: Callable[[TrainConfig], int] = one  # sequences one example puts through the model per step
    reference: Callable[[TrainConfig], bool] = never  # whether a frozen copy of the model is held in memory
    packing: bool = False  # whether examples can be packed into one sequence
    # How padding-free batches are made: 'collator' (the lab's collator lays examples end to end), 'unpad' (the
    # model unpads the trainer's padded batches inside), or 'off' (the trainer's own padded batches).
    padding_free: str = "off"
    prompt_limit: bool = False  # truncates prompts to max_prompt_length (which must leave room for the reply)
    generates: bool = True  # the trained model answers prompts (before/after samples); a reward model scores
    panels: Panels = ()  # live metrics beside the loss, one panel each (the Train tab)
    # What a finished run's result is, the first of these the run logged: the loss says little of an online objective
    # (it sits near 0 while the reward climbs) or of a reward model (its pairs ranked right say more).
    headline: tuple[Headline, ...] = (FINAL_LOSS,)
    # The sanity check's overfit verdict on the series ``sanity_metric``: the loss must fall below this fraction of
    # where it started; any other series (an online objective's reward, whose loss sits near 0) must rise.
    overfit_fraction: float = 0.5
    sanity_metric: str = "loss"
    loss_mask: bool = False  # the sanity check shows which tokens carry the loss (SFT's assistant-only mask)
    model_kind: str = "causal-lm"  # what is loaded: a causal LM, or 'score' (a sequence classifier with one output)
    # Batch entries one dataset row becomes (the optimizer-step count): GRPO samples several completions per prompt.
    entries_per_row: Callable[[TrainConfig], int] = one
    # Before launch (create_run, the estimate): raise LabError for settings that cannot work, e.g. a reward
    # function file whose signature is wrong; None when there is nothing beyond TrainConfig.validate to check.
    precheck: Callable[[TrainConfig, Any], None] | None = None
    # Optional dataset fields the trainer reads when every row of the split has one (the reward trainer's margin)
    columns: tuple[str, ...] = ()
    # Settings that train on a dataset version from a model: (dataset_ref, model, home) -> a Proposal
    # (lab.train.viability); the Label tab's "Train DPO/KTO on this" and `lab train --propose-dpo`.
    propose: Callable[[str, str, Any], Any] | None = None
    # The TRL trainer class ``build`` makes (a name in ``trl``): the warm worker imports it ahead of the runs, as TRL
    # imports its trainers lazily and one costs 1-3 s of a run's set-up.
    trainer: str = ""
    # Whether the loss is the sum over the accumulated batch's scored tokens divided by their count (TRL's SFT with
    # the Trainer's num_items_in_batch): then its micro-batches merged into one give the same gradient, so the speed
    # plan may merge them (lab.train.speed.merge_choice). Losses averaged per micro-batch weigh a partial last one
    # differently.
    sums_tokens: bool = False
    # Whether ``half_activations: auto`` turns on for a full fine-tune on a GPU: where its loss was checked against
    # plain TRL's on one (docs/benchmarks.md). Elsewhere it stays off unless asked: DPO was checked and is left off,
    # as its summed log-probabilities carry the 16-bit rounding (policy and reference disagree at step 1).
    half_activations: bool = False

    def module(self) -> Any:
        """``lab/train/objectives/<name>.py``: ``config(cfg, common)`` → the TRL config, ``build(b)`` → the
        trainer."""
        return importlib.import_module(f"lab.train.objectives.{self.name}")


def usual_rates(full: float, adapter: float) -> dict[str, float]:
    return {"full": full, "adapter": adapter}


def chosen_and_rejected(cfg: TrainConfig) -> int:
    return 2


def deferred(module: str, function: str) -> Callable[..., Any]:
    """``module.function`` (``module`` under ``lab.train``), imported when first called: the objectives' modules
    import ``lab.config``, which imports this one."""
    def call(*args: Any) -> Any:
        return getattr(importlib.import_module(f"lab.train.{module}"), function)(*args)

    call.__name__ = f"{module}.{function}"
    return call


OBJECTIVES: dict[str, Objective] = {
    "sft": Objective(
        "sft", "SFT", "supervised fine-tuning on conversations: the loss on the assistant's replies only", "sft",
        usual_rates(2e-5, 2e-4), usual_rates(1e-3, 2e-3), settings=("neftune_noise_alpha",), packing=True,
        padding_free="collator", loss_mask=True, precheck=deferred("objectives.sft", "precheck"),
        trainer="SFTTrainer", half_activations=True, sums_tokens=True),
    "dpo": Objective(
        "dpo", "DPO", "direct preference optimisation on chosen/rejected pairs", "preference",
        usual_rates(5e-7, 5e-6), usual_rates(1e-4, 5e-4),
        settings=("dpo_beta", "dpo_loss_type", "max_prompt_length", "precompute_ref_log_probs"),
        sequences=chosen_and_rejected, reference=deferred("objectives.dpo", "reference"), padding_free="unpad",
        prompt_limit=True, propose=deferred("viability", "propose_dpo"),
        panels=(("DPO rewards", (("rewards/chosen", "chosen"), ("rewards/rejected", "rejected"),
                                 ("rewards/margins", "margin"))),
                ("DPO reward accuracy", (("rewards/accuracies", "accuracy"),))),
        overfit_fraction=0.9, trainer="DPOTrainer"),
    "reward": Objective(
        "reward", "Reward model", "a reward model (a score per answer) from chosen/rejected pairs", "preference",
        usual_rates(1e-5, 1e-4), usual_rates(1e-3, 5e-3), settings=("reward_center_coefficient",),
        sequences=chosen_and_rejected, generates=False, model_kind="score",
        panels=(("Reward accuracy (pairs ranked right)", (("accuracy", "train"), ("eval_accuracy", "held out"))),
                ("Reward margin (chosen − rejected)", (("margin", "train"), ("eval_margin", "held out")))),
        headline=(Headline("eval_accuracy", "held-out accuracy", ".0%"), FINAL_LOSS),
        precheck=deferred("objectives.reward", "precheck"), columns=("margin",), trainer="RewardTrainer"),
    "kto": Objective(
        "kto", "KTO", "Kahneman-Tversky optimisation on single completions labelled desirable or not (👍/👎)",
        "unpaired", usual_rates(5e-7, 5e-6), usual_rates(1e-4, 5e-4),
        settings=("kto_beta", "kto_loss_type", "kto_desirable_weight", "kto_undesirable_weight", "max_prompt_length",
                  "precompute_ref_log_probs"),
        sequences=deferred("objectives.kto", "sequences"), reference=deferred("objectives.kto", "reference"),
        precheck=deferred("objectives.kto", "precheck"), propose=deferred("objectives.kto", "propose_kto"),
        padding_free="unpad", prompt_limit=True,
        panels=(("KTO rewards", (("rewards/chosen", "desirable"), ("rewards/rejected", "undesirable"),
                                 ("rewards/margins", "margin"))),
                ("KTO KL estimate", (("kl", "KL"),))),
        # the loss starts at 0.5 (a sigmoid at 0) and falls slowly, as DPO's does
        overfit_fraction=0.9, trainer="KTOTrainer"),
    **{name: Objective(  # GRPO and RLOO share settings, rewards and panels; their functions live in objectives/grpo.py
        name, title, words, "prompts", usual_rates(1e-6, 1e-5), usual_rates(5e-3, 1e-2),
        settings=("num_generations", "max_completion_length", "temperature", "kl_beta", "rewards", "reward_pattern",
                  "length_target", "reward_model", "reward_file", "vllm"),
        reference=deferred("objectives.grpo", "reference"), sanity_metric="reward",
        entries_per_row=lambda cfg: cfg.num_generations,  # batch_size counts completions: one sequence each
        precheck=deferred("objectives.grpo", "precheck"),
        # The reward panel's key is a pattern: one line per reward function chosen (rewards/<name>/mean).
        panels=(("Reward per function (mean)", (("rewards/*/mean", "*"),)),
                ("Total reward (mean and spread)", (("reward", "mean"), ("reward_std", "spread (std)"))),
                ("KL to the starting model", (("kl", "KL"),)),
                ("Completion length (tokens)", (("completions/mean_length", "mean"),
                                                ("completions/max_length", "longest")))),
        headline=(Headline("reward", "mean total reward at the end", "+.3f"),),
        trainer=f"{title}Trainer")
      for name, title, words in (
          ("grpo", "GRPO", ("group relative policy optimisation: sampled completions scored by reward functions, "
                            "each judged against its group")),
          ("rloo", "RLOO", ("REINFORCE leave-one-out: sampled completions scored by reward functions, each judged "
                            "against the mean of the others")))},
}
NAMES = tuple(OBJECTIVES)


def objective(name: str) -> Objective:
    try:
        return OBJECTIVES[name]
    except KeyError:
        raise LabError(f"Unknown objective '{name}'; objectives: {', '.join(NAMES)}.") from None


def check_data(cfg: TrainConfig, version: Any, home: Any) -> None:
    """Before launch (create_run, the estimate): the dataset version holds the objective's data kind, and the
    objective's own checks pass (``precheck``)."""
    from lab.data.kinds import KINDS

    entry = objective(cfg.objective)
    if version.kind != entry.data_kind:
        raise LabError(f"Dataset {version.ref} holds {KINDS[version.kind].words}; {entry.title} trains on "
                       f"{KINDS[entry.data_kind].words}: choose a dataset version of kind {entry.data_kind}.")
    if entry.precheck is not None:
        entry.precheck(cfg, home)


def described() -> str:
    """The objectives and adapters in a few lines, for ``lab train --help``."""
    lines = [f"  {o.name:<8} {o.help} (data: {o.data_kind})" for o in OBJECTIVES.values()]
    return ("objectives:\n" + "\n".join(lines) + "\nadapters:\n  none     every weight\n  lora     a LoRA "
            "adapter on the frozen model\n  qlora    a LoRA adapter on the model loaded in 4 bits (CUDA)")


@dataclass
class Build:
    """What an objective's ``build`` gets from the worker: the loaded model and tokenizer, the rows of its data kind
    (TRL's column layout), the TrainingArguments every objective shares, and the callbacks."""

    cfg: TrainConfig
    run_dir: Path
    model: Any
    tokenizer: Any
    train_rows: list[dict[str, Any]]
    eval_rows: list[dict[str, Any]]
    args: dict[str, Any]  # lab.train.convert.common_args, evaluation switched off when there are no eval rows
    speed: Any  # lab.train.speed.SpeedPlan
    callbacks: list[Any] = field(default_factory=list)

    def trainer_kwargs(self, train_rows: list[dict[str, Any]] | None = None,
                       eval_rows: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The keyword arguments every TRL trainer takes (the config object ``args`` is the objective's own). The
        datasets are saved by content (``lab.train.data_cache``), so what TRL derives from them is kept for the next
        run of the same rows."""
        from lab.home import lab_home
        from lab.train.convert import peft_config
        from lab.train.data_cache import cached_dataset

        train = self.train_rows if train_rows is None else train_rows
        evals = self.eval_rows if eval_rows is None else eval_rows
        home = lab_home()
        return dict(model=self.model, processing_class=self.tokenizer, peft_config=peft_config(self.cfg),
                    train_dataset=cached_dataset(train, home),
                    eval_dataset=cached_dataset(evals, home) if evals else None, callbacks=self.callbacks)
