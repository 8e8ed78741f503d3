"""Settings of each evaluation kind: defaults and help text written once, for the CLI flags
(``lab.config.add_arguments``), the Eval tab's forms (``lab.ui.forms``) and the config stored with each job."""

from __future__ import annotations

from dataclasses import dataclass

from lab.config import option
from lab.errors import LabError

SPLITS = ("validation", "train")
JUDGE_MODES = ("pairwise", "single")
# What a reward eval's reward_model may be (lab.train.reward_model.is_reward_model decides).
REWARD_MODEL_WORDS = "a finished reward-model run (run:<id>), or a folder or hub id of a sequence classifier"
ENDPOINT = "endpoint"  # the judge setting that means an OpenAI-compatible API rather than a local model


def at_least(name: str, value: float, low: float, what: str = "") -> None:
    if value < low:
        raise LabError(f"{name} must be at least {low}{what}, got {value}.")


@dataclass
class PerplexityConfig:
    """Held-out loss and perplexity of the final replies."""

    split: str = option("validation", "Split of the dataset version to score.", choices=SPLITS)
    max_rows: int = option(200, "Rows to score, the first ones (0 = all).")
    max_length: int = option(1024, "Tokens per row at most; longer rows are cut.")

    def validate(self) -> None:
        at_least("max_rows", self.max_rows, 0, " (0 = all)")
        at_least("max_length", self.max_length, 8)


@dataclass
class OverlapConfig:
    """The model answers the conversation before each final reply; its answer is scored against that reply."""

    split: str = option("validation", "Split of the dataset version to take prompts and references from.",
                        choices=SPLITS)
    max_rows: int = option(50, "Rows to answer, the first ones (0 = all).")
    max_new_tokens: int = option(128, "Longest answer, in new tokens.")
    batch_size: int = option(8, "Prompts generated together (left-padded).")
    temperature: float = option(0.0, "Sampling temperature (0 = greedy, the usual for reference overlap).")
    seed: int = option(0, "Seed for sampling (used when temperature > 0).")

    def validate(self) -> None:
        at_least("max_rows", self.max_rows, 0, " (0 = all)")
        at_least("max_new_tokens", self.max_new_tokens, 1)
        at_least("batch_size", self.batch_size, 1)
        at_least("temperature", self.temperature, 0.0)


@dataclass
class JudgeConfig:
    """A judge model compares two models' answers (pairwise, both orders) or grades one model's answers (1-10)."""

    mode: str = option("pairwise", "pairwise: answers of model A and model B to the same prompt, judged in both "
                       "orders; single: each answer graded 1-10.", choices=JUDGE_MODES)
    model_b: str = option("", "Pairwise: the model that model A is compared with.", cli=False)
    judge: str = option("tiny", "The judge: 'tiny', run:<id>, a path or a hub id (scored from its next-token "
                        "probabilities of the verdict), or 'endpoint' for an OpenAI-compatible API whose address and "
                        "key come from LAB_JUDGE_BASE_URL / OPENAI_BASE_URL and LAB_JUDGE_API_KEY / OPENAI_API_KEY.")
    endpoint_model: str = option("gpt-4o-mini", "Model name sent to the endpoint (judge 'endpoint' only).")
    split: str = option("validation", "Split of the dataset version whose prompts are answered.", choices=SPLITS)
    max_rows: int = option(20, "Prompts to judge, the first ones (0 = all).")
    max_new_tokens: int = option(128, "Longest answer of the judged models, in new tokens (greedy).")
    judge_max_tokens: int = option(512, "Longest reply of an endpoint judge (room for its explanation).")
    prompt: str = option("", "The judge prompt template (empty = the default for the mode); placeholders "
                         "{question}, {answer_a}, {answer_b} (pairwise) or {answer} (single), optional {reference}.",
                         cli=False)
    cache: bool = option(True, "Reuse verdicts cached under LAB_HOME/cache/judge (same judge, prompt, question and "
                         "answers in the same order), so a re-run costs nothing.")

    def validate(self) -> None:
        at_least("max_rows", self.max_rows, 0, " (0 = all)")
        at_least("max_new_tokens", self.max_new_tokens, 1)
        at_least("judge_max_tokens", self.judge_max_tokens, 1)
        if not self.judge.strip():
            raise LabError("Name a judge: 'tiny', run:<id>, a path, a hub id or 'endpoint'.")
        if self.judge == ENDPOINT and not self.endpoint_model.strip():
            raise LabError("The endpoint judge needs a model name (endpoint_model).")


@dataclass
class HarnessConfig:
    """lm-evaluation-harness tasks."""

    tasks: str = option("", "Comma-separated lm-evaluation-harness tasks (empty = the tasks that run offline).")
    limit: int = option(0, "Examples per task at most (0 = all).")

    def validate(self) -> None:
        at_least("limit", self.limit, 0, " (0 = all)")

    def task_list(self) -> list[str]:
        return [t.strip() for t in self.tasks.split(",") if t.strip()]


@dataclass
class RewardEvalConfig:
    """The model answers a dataset version's prompts; a reward model scores each answer (mean reward per model)."""

    reward_model: str = option("", "The reward model: a finished reward-model run (run:<id>), or a folder or hub id "
                               "of a sequence-classification model with one output.")
    split: str = option("validation", "Split of the dataset version whose prompts are answered.", choices=SPLITS)
    max_rows: int = option(50, "Prompts to answer, the first ones (0 = all).")
    max_new_tokens: int = option(128, "Longest answer, in new tokens.")
    batch_size: int = option(8, "Prompts generated together (left-padded).")
    temperature: float = option(0.0, "Sampling temperature (0 = greedy).")
    seed: int = option(0, "Seed for sampling (used when temperature > 0).")

    def validate(self) -> None:
        if not self.reward_model.strip():
            raise LabError(f"Name the reward model that scores the answers: {REWARD_MODEL_WORDS}.")
        at_least("max_rows", self.max_rows, 0, " (0 = all)")
        at_least("max_new_tokens", self.max_new_tokens, 1)
        at_least("batch_size", self.batch_size, 1)
        at_least("temperature", self.temperature, 0.0)

