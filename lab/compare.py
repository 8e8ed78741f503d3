"""Checkpoints side by side: answers to the same prompts with the same settings and seed (streamed token by
token, or all at once), optionally each answer's score by a reward model (``lab.train.reward_model``) with each
checkpoint's mean, training curves overlaid, the config fields that differ, and each run's final and best
numbers; comparisons are saved under LAB_HOME/comparisons/ and export as Markdown and HTML.

Generation happens in the calling process (the app's, for the Compare tab and its chat playground) through a
small cache of loaded models (reward models included), so comparing or chatting again does not reload a model
already in memory. Its size is ``$LAB_COMPARE_CACHE`` models (default 2).
"""

from __future__ import annotations

import html
import json
import os
import queue
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lab.errors import LabError
from lab.home import Home, lab_home

MAX_SOURCES = 4
CACHE_ENV = "LAB_COMPARE_CACHE"
DEFAULT_CACHE_SIZE = 2  # models kept loaded; one more evicts the least recently used
_cache: OrderedDict[str, tuple[Any, Any]] = OrderedDict()
_cache_lock = threading.Lock()
# One generation at a time in this process: seeds act on torch's global generator, so two at once would draw
# from each other's random numbers and a seeded answer could not be repeated.
_generate_lock = threading.Lock()


@dataclass(frozen=True)
class Sampling:
    """How an answer is generated; every source of a comparison gets the same."""

    max_new_tokens: int = field(default=96, metadata={"help": "tokens an answer may add at most"})
    temperature: float = field(default=0.0, metadata={"help": "0 = greedy: the same answer every time"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling mass (used when temperature > 0)"})
    seed: int = field(default=0, metadata={"help": "seeds sampling, so an answer can be repeated"})

    def __post_init__(self) -> None:
        if not 1 <= self.max_new_tokens <= 8192:
            raise LabError(f"max_new_tokens must be between 1 and 8192 (got {self.max_new_tokens}).")
        if self.temperature < 0:
            raise LabError(f"temperature must be 0 (greedy) or more (got {self.temperature}).")
        if not 0 < self.top_p <= 1:
            raise LabError(f"top_p must be in (0, 1] (got {self.top_p}).")

    @classmethod
    def help(cls) -> dict[str, str]:
        return {f.name: f.metadata["help"] for f in fields(cls)}


# --------------------------------------------------------------------------- loaded models


def cache_size() -> int:
    raw = os.environ.get(CACHE_ENV, "").strip()
    if not raw:
        return DEFAULT_CACHE_SIZE
    if not raw.isdigit() or int(raw) < 1:
        raise LabError(f"{CACHE_ENV}={raw!r}: set it to how many models to keep loaded (a whole number, 1 or more).")
    return int(raw)


def cached_model(source: str, home: Home) -> tuple[Any, Any]:
    """Model and tokenizer of a source ('tiny', run:<id>, a path or a hub id), loaded once and kept while it is
    among the ``cache_size()`` most recently used."""
    from lab.models import load_for_generation
    from lab.train.loading import resolve_model_path

    path = resolve_model_path(source, home)
    return cached(path, lambda: load_for_generation(path, home))


def cached_scorer(reward_model: str, home: Home) -> Any:
    """The reward model's ``Scorer`` (``lab.train.reward_model.load_scorer``), kept in the same cache as the
    models that answer."""
    from lab.train.loading import resolve_model_path
    from lab.train.reward_model import load_scorer

    return cached("score:" + resolve_model_path(reward_model, home), lambda: load_scorer(reward_model, home))


def cached(key: str, load: Callable[[], Any]) -> Any:
    """What ``load`` gives, kept under ``key`` while it is among the ``cache_size()`` most recently used."""
    size = cache_size()
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
        loaded = load()
        _cache[key] = loaded
        while len(_cache) > size:
            _cache.popitem(last=False)
        return loaded


# --------------------------------------------------------------------------- generation


class _StepStreamer:
    """Receives each decoding step's new tokens from ``model.generate`` (one per row of the batch) and hands
    them to the reading thread; raising from ``put`` is how a reader that went away stops generation."""

    def __init__(self) -> None:
        self.steps: queue.SimpleQueue = queue.SimpleQueue()
        self.cancelled = False

    def put(self, value: Any) -> None:
        if self.cancelled:
            raise _Cancelled
        if value.dim() == 1:  # the first call carries the prompts (2-D): not new tokens
            self.steps.put(value.tolist())

    def end(self) -> None:
        pass


class _Cancelled(Exception):
    pass


@dataclass
class Generated:
    texts: list[str]
    finished: bool = False  # False while streaming: the texts so far
    new_tokens: int = 0  # once finished: the tokens generated for all rows, each up to its end of sequence


def stream_generate(model: Any, tokenizer: Any, prompts: list[list[dict[str, str]]],
                    settings: Sampling) -> Iterator[Generated]:
    """Replies to chat prompts in one left-padded batch, as they grow: the texts so far after each decoding step
    (steps that pile up while the reader is busy are merged), then the final texts with their token count.

    The batch and the ``generate`` arguments are those of ``lab.models.generate_with`` on a CPU (the same
    functions make them), and the final texts are decoded the same way, so streaming changes no answer. (On a GPU
    ``generate_with`` sorts the prompts into bucketed batches for compiled decoding; other padding can change the
    last digits of the logits.)"""
    import torch

    from lab.models import chat_texts, generate_kwargs, left_padded

    batch = left_padded(tokenizer, chat_texts(tokenizer, prompts), model.device)
    check_length(model, batch["input_ids"].shape[1], settings.max_new_tokens)
    streamer = _StepStreamer()
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            with _generate_lock, torch.no_grad():
                if streamer.cancelled:
                    return
                torch.manual_seed(settings.seed)
                outcome["out"] = model.generate(**batch, streamer=streamer, **generate_kwargs(
                    tokenizer, max_new_tokens=settings.max_new_tokens, temperature=settings.temperature,
                    top_p=settings.top_p))
        except _Cancelled:
            pass
        except BaseException as err:  # noqa: BLE001 - re-raised in the reading thread
            outcome["error"] = err
        finally:
            streamer.steps.put(None)

    thread = threading.Thread(target=work, name="lab-generate", daemon=True)
    thread.start()
    rows: list[list[int]] = [[] for _ in prompts]
    try:
        while True:
            steps = [streamer.steps.get()]
            while not streamer.steps.empty():
                steps.append(streamer.steps.get())
            for step in steps:
                if step is not None:
                    for row, token in zip(rows, step):
                        row.append(token)
            if steps[-1] is None:
                break
            # A byte-level BPE may end mid-character: hold the replacement character back until it completes.
            yield Generated([tokenizer.decode(r, skip_special_tokens=True).rstrip("\ufffd").strip() for r in rows])
    finally:
        streamer.cancelled = True  # the reader closed this generator early: stop at the next step
        thread.join()
    if "error" in outcome:
        raise outcome["error"]
    generated = outcome["out"][:, batch["input_ids"].shape[1]:]
    texts = [tokenizer.decode(row, skip_special_tokens=True).strip() for row in generated]
    yield Generated(texts, True, sum(generated_length(row.tolist(), model, tokenizer) for row in generated))


def generated_length(row: list[int], model: Any, tokenizer: Any) -> int:
    """Tokens of one generated row up to and including its end of sequence (then the batch pads it)."""
    eos = model.generation_config.eos_token_id if model.generation_config.eos_token_id is not None \
        else tokenizer.eos_token_id
    ends = {eos} if isinstance(eos, int) else set(eos or [])
    return next((i + 1 for i, token in enumerate(row) if token in ends), len(row))


def check_length(model: Any, prompt_tokens: int, max_new_tokens: int) -> None:
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit and prompt_tokens + max_new_tokens > limit:
        raise LabError(f"The prompt is {prompt_tokens} tokens and the answer may add {max_new_tokens}: more than the "
                       f"model's {limit} positions. Shorten the prompt (in the playground: Undo or Clear) or lower "
                       "max new tokens.")


def count_tokens(tokenizer: Any, answers: list[str]) -> int:
    """Tokens in the answers, counted again (``generate_with`` returns text only)."""
    return sum(len(tokenizer(a, add_special_tokens=False)["input_ids"]) for a in answers)


@dataclass
class SourceAnswers:
    source: str
    answers: list[str] = field(default_factory=list)
    new_tokens: int = 0
    seconds: float = 0.0
    finished: bool = True  # False while streaming: the answers so far

    @property
    def tokens_per_second(self) -> float:
        return round(self.new_tokens / self.seconds, 1) if self.seconds else 0.0

    def record(self) -> dict[str, Any]:
        return {"source": self.source, "answers": self.answers, "new_tokens": self.new_tokens,
                "seconds": round(self.seconds, 3), "tokens_per_second": self.tokens_per_second}


def check_request(sources: list[str], prompts: list[list[dict[str, str]]], reward_model: str = "",
                  home: Home | None = None) -> None:
    """Refuse what cannot be compared: no prompt, too many sources, a reward model among the sources (it scores
    answers and writes none) or a scorer that is no reward model."""
    from lab.train.reward_model import NOT_A_REWARD_MODEL, is_reward_model

    if not 1 <= len(sources) <= MAX_SOURCES:
        raise LabError(f"Compare 1 to {MAX_SOURCES} sources at a time (got {len(sources)}).")
    if not prompts:
        raise LabError("Give at least one prompt.")
    home = home or lab_home()
    for source in sources:
        if is_reward_model(source, home):
            raise LabError(f"'{source}' is a reward model: it scores answers and writes none. Pick it as the reward "
                           "model that scores the answers, and checkpoints that answer.")
    if reward_model and not is_reward_model(reward_model, home):
        raise LabError(f"'{reward_model}' is not a reward model: {NOT_A_REWARD_MODEL}.")


def score_answers(reward_model: str, prompts: list[list[dict[str, str]]], answers: list[SourceAnswers],
                  home: Home | None = None) -> list[list[float]]:
    """Each source's answers scored by the reward model, in the order of ``answers``."""
    scorer = cached_scorer(reward_model, home or lab_home())
    with _generate_lock:  # one model computes at a time in this process
        return [scorer.score(prompts, a.answers) for a in answers]


def side_by_side(sources: list[str], prompts: list[list[dict[str, str]]], settings: Sampling | None = None,
                 home: Home | None = None) -> Iterator[SourceAnswers]:
    """Each source's answers to the same prompts (batched, left-padded, through ``lab.models.generate_with`` and
    so its fastest backend), one source at a time as it finishes. That returns text: tokens/s counts the answers'
    tokens again, which can differ a little from the tokens generated."""
    from lab.models import generate_with

    home, settings = home or lab_home(), settings or Sampling()
    check_request(sources, prompts, home=home)
    for source in sources:
        model, tokenizer = cached_model(source, home)
        started = time.perf_counter()
        answers = generate_with(model, tokenizer, prompts, **asdict(settings))
        yield SourceAnswers(source, answers, count_tokens(tokenizer, answers), time.perf_counter() - started)


def stream_side_by_side(sources: list[str], prompts: list[list[dict[str, str]]], settings: Sampling | None = None,
                        home: Home | None = None) -> Iterator[SourceAnswers]:
    """``side_by_side`` token by token: one source at a time, its answers so far after every decoding step
    (``finished`` False), then its final answers with tokens/s (``finished`` True)."""
    home, settings = home or lab_home(), settings or Sampling()
    check_request(sources, prompts, home=home)
    for source in sources:
        model, tokenizer = cached_model(source, home)
        started = time.perf_counter()
        for step in stream_generate(model, tokenizer, prompts, settings):
            seconds = time.perf_counter() - started
            yield SourceAnswers(source, step.texts, step.new_tokens, seconds if step.finished else 0.0, step.finished)


# --------------------------------------------------------------------------- runs


def run_ids(sources: list[str]) -> list[str]:
    return [s.removeprefix("run:") for s in sources if s.startswith("run:")]


def source_names(sources: list[str], home: Home | None = None) -> dict[str, str]:
    """Each source, and each run's bare id (how the run numbers and config differences key a run), to the name
    people know it by (``lab.catalog.display_names``)."""
    from lab.catalog import display_names

    names = display_names(sources, home)
    return {**names, **{s.removeprefix("run:"): names[s] for s in sources if s.startswith("run:")}}


def name_in(document: dict[str, Any], key: str) -> str:
    """A source's or run id's name as the comparison recorded it (comparisons saved before names: the key)."""
    return (document.get("names") or {}).get(key, key)


def config_diff(ids: list[str], home: Home | None = None) -> list[dict[str, Any]]:
    """The config fields that differ between the runs, as each run used them: ``{"field", <run id>: value, ...}``.
    A field left to the lab (learning rate 0, an ``auto`` setting) shows the value the run got, so two runs that
    both say 0 but trained at different rates are listed too (``used_config``)."""
    from lab.train.runner import get_run

    configs = {run_id: used_config(get_run(run_id, home), home) for run_id in ids}
    fields_ = sorted({k for c in configs.values() for k in c} - {"name"})  # the name labels a run; it is no setting
    return [{"field": f, **{run_id: c.get(f) for run_id, c in configs.items()}} for f in fields_
            if len({json.dumps(c.get(f), sort_keys=True) for c in configs.values()}) > 1]


def used_config(run: Any, home: Home | None = None) -> dict[str, Any]:
    """A run's config with what the lab decided in place of 0 and ``auto``: the learning rate from
    ``TrainConfig.lr``, DPO's reference precomputation from ``objectives.dpo.precompute_reference``, the precision from
    the run's ``summary.json`` and the speed and memory settings from its ``speed.json`` (both written by the
    worker; absent before it got that far, when ``auto`` stays). Decided values read ``VALUE (auto)``; a base model
    that is an earlier run reads as that run's name."""
    from lab.catalog import display_name
    from lab.train.methods import objective
    from lab.train.samples import read_summary
    from lab.train.speed import SpeedPlan, read_plan

    cfg, used = run.train_config, dict(run.config)
    used["model"] = display_name(cfg.model, home)  # a run trained from another names it (run:<id> → its name)
    if not cfg.learning_rate:
        used["learning_rate"] = f"{cfg.lr:g} (0 = the method's usual)"
    decided: dict[str, str] = {}
    if "precompute_ref_log_probs" in objective(cfg.objective).settings:
        from lab.train.objectives.dpo import precompute_reference

        decided["precompute_ref_log_probs"] = "on" if precompute_reference(cfg) else "off"
    if summary := read_summary(run.run_dir):
        decided["precision"] = summary["precision"]
    if plan := read_plan(run.run_dir):
        decided.update({name: value for name, value, _ in SpeedPlan(**plan).choices()})
    for name, value in decided.items():
        if used.get(name) == "auto":
            used[name] = f"{value} (auto)"
    return used


def run_numbers(ids: list[str], home: Home | None = None) -> list[dict[str, Any]]:
    """Final and best numbers of each run, from its metrics."""
    from lab.train.runner import get_run, read_metrics

    out = []
    for run_id in ids:
        run = get_run(run_id, home)
        rows = read_metrics(run.id, home)
        train = [r["loss"] for r in rows if r.get("split") == "train" and "loss" in r]
        evals = [r["eval_loss"] for r in rows if "eval_loss" in r]
        summary = next((r for r in rows if r.get("split") == "summary"), {})
        out.append({"run": run.id, "name": run.name, "method": run.method, "status": run.status,
                    "steps": rows[-1]["step"] if rows else 0, "final_train_loss": train[-1] if train else None,
                    "best_train_loss": min(train) if train else None, "final_eval_loss": evals[-1] if evals else None,
                    "best_eval_loss": min(evals) if evals else None, "runtime_s": summary.get("train_runtime")})
    return out


# --------------------------------------------------------------------------- saved comparisons


def comparison_document(sources: list[str], prompts: list[list[dict[str, str]]], settings: Sampling,
                        answers: list[SourceAnswers], home: Home | None = None,
                        reward_model: str = "") -> dict[str, Any]:
    """Everything a comparison showed, as one JSON-able document (what is saved and exported). ``names``: each
    source and run id as people know it (``lab.catalog.display_names``), kept so a saved comparison still names
    a run deleted since. With a ``reward_model``, every answer is scored by it: each source's ``rewards`` (one per
    prompt) and ``mean_reward``."""
    ids = run_ids(sources)
    records = [a.record() for a in answers]
    if reward_model:
        for record, rewards in zip(records, score_answers(reward_model, prompts, answers, home)):
            record.update(rewards=rewards, mean_reward=round(sum(rewards) / len(rewards), 4))
    return {"created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "settings": asdict(settings),
            "sources": sources, "names": source_names([*sources, *([reward_model] if reward_model else [])], home),
            "prompts": prompts, "answers": records, "reward_model": reward_model,
            "runs": run_numbers(ids, home) if ids else [],
            "config_diff": config_diff(ids, home) if len(ids) > 1 else []}


def reward_note(source: dict[str, Any], i: int | None = None) -> str:
    """'reward +0.53' for answer ``i`` of a source's record, or its mean ('mean reward +0.12') when ``i`` is None;
    '' when the comparison was not scored."""
    if "rewards" not in source:
        return ""
    return f"mean reward {source['mean_reward']:+.3f}" if i is None else f"reward {source['rewards'][i]:+.3f}"


def comparisons_dir(home: Home) -> Path:
    return home.root / "comparisons"


def save_comparison(document: dict[str, Any], home: Home | None = None) -> Path:
    """Keep a comparison to reopen later: ``LAB_HOME/comparisons/<id>.json``, the id a UTC time stamp."""
    folder = comparisons_dir(home or lab_home())
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    comparison_id, n = stamp, 1
    while (folder / f"{comparison_id}.json").exists():  # two saves within one second
        n += 1
        comparison_id = f"{stamp}-{n}"
    path = folder / f"{comparison_id}.json"
    staging = path.with_suffix(".tmp")
    staging.write_text(json.dumps({"id": comparison_id, **document}, indent=1, ensure_ascii=False))
    os.replace(staging, path)  # a listing never sees half a file
    return path


def list_comparisons(home: Home | None = None) -> list[dict[str, Any]]:
    """Saved comparisons, newest first: id, time, sources, number of prompts and the first prompt."""
    out = []
    for path in sorted(comparisons_dir(home or lab_home()).glob("*.json"), key=natural_order, reverse=True):
        try:
            document = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            out.append({"id": path.stem, "error": f"unreadable ({err})"})
            continue
        prompts = document.get("prompts") or [[{"content": ""}]]
        sources = document.get("sources") or []
        out.append({"id": path.stem, "created_at": document.get("created_at"), "sources": sources,
                    "names": [name_in(document, s) for s in sources],
                    "prompts": len(document.get("prompts") or []), "first_prompt": prompts[0][-1]["content"]})
    return out


def natural_order(path: Path) -> list[int | str]:
    """Ids are time stamps, with "-2" for a second save within the same second: compare their numbers."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.stem)]


def load_comparison(comparison_id: str, home: Home | None = None) -> dict[str, Any]:
    folder = comparisons_dir(home or lab_home())
    if not re.fullmatch(r"[\w-]{1,100}", comparison_id or ""):  # time stamps: nothing that walks out of the folder
        raise LabError(f"'{comparison_id}' is no comparison id (ids look like 20250101-120000).")
    path = folder / f"{comparison_id}.json"
    if not path.exists():
        raise LabError(f"No saved comparison '{comparison_id}' in {folder}; `python -m lab compare list` shows them.")
    try:
        return json.loads(path.read_text())
    except ValueError as err:
        raise LabError(f"The saved comparison {path} is not valid JSON ({err}).") from None


def export_comparison(document: dict[str, Any], stem: Path) -> list[Path]:
    """Write the comparison as ``<stem>.md`` and ``<stem>.html``."""
    paths = [stem.with_suffix(".md"), stem.with_suffix(".html")]
    paths[0].write_text(to_markdown(document))
    paths[1].write_text(to_html(document))
    return paths


def numbers_table(document: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """The runs' numbers as a table for people: the run's name first (its id kept in the saved document)."""
    keys = [k for k in document["runs"][0] if k not in ("run", "name")]
    names = document.get("names") or {}
    return ["run", *keys], [[names.get(r["run"]) or r.get("name") or r["run"], *(r[k] for k in keys)]
                            for r in document["runs"]]


def shown_table(headers: list[str], rows: list[list[Any]]) -> tuple[list[str], list[list[str]]]:
    """A table as the exports write it: headers in words (final_train_loss → final train loss), cells by ``shown``."""
    return [h.replace("_", " ") for h in headers], [[shown(v) for v in row] for row in rows]


def shown(value: Any) -> str:
    """A cell of an exported table: a number to four significant digits (a loss of 5.8385162353515625 overflowed its
    column), text as it is (not JSON-quoted), a list as its items, nothing as a dash (not None)."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(shown(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def diff_table(document: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The config fields that differ, a column per run by its name, as the exports write them."""
    ids = [k for k in document["config_diff"][0] if k != "field"]
    return (["field", *(name_in(document, i) for i in ids)],
            [[d["field"], *(shown(d[i]) for i in ids)] for d in document["config_diff"]])


def title_of(document: dict[str, Any]) -> str:
    return f"Comparison {document.get('id') or document.get('created_at', '')}".strip()


def to_markdown(document: dict[str, Any]) -> str:
    """A comparison as Markdown: settings, then each prompt with every source's answer, then the run numbers."""
    lines = [f"# {title_of(document)}", "",
             "Settings: " + ", ".join(f"{k} {v}" for k, v in document["settings"].items()), ""]
    if document.get("reward_model"):
        lines += [f"Scored by the reward model {name_in(document, document['reward_model'])}: " + " · ".join(
            f"{name_in(document, a['source'])} {reward_note(a)}" for a in document["answers"]), ""]
    for i, prompt in enumerate(document["prompts"]):
        lines += [f"## Prompt {i + 1}", "", f"> {prompt[-1]['content']}", ""]
        for source in document["answers"]:
            note = f", {reward_note(source, i)}" if "rewards" in source else ""
            lines += [f"**{name_in(document, source['source'])}** ({source['tokens_per_second']} tokens/s{note})", "",
                      source["answers"][i] or "*(empty)*", ""]
    for title, present, table in (("Runs", "runs", lambda: shown_table(*numbers_table(document))),
                                  ("Config fields that differ", "config_diff", lambda: diff_table(document))):
        if document.get(present):
            headers, rows = table()
            lines += [f"## {title}", "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers),
                      *("| " + " | ".join(row) + " |" for row in rows), ""]
    return "\n".join(lines).rstrip("\n") + "\n"


HTML_STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; padding: 0 1rem; color: #0f172a; }
table { border-collapse: collapse; width: 100%; table-layout: fixed; margin: 0.5rem 0 1.5rem; }
th, td { border: 1px solid #cbd5e1; padding: 6px 10px; text-align: left; vertical-align: top;
         overflow-wrap: anywhere; }
th { background: #f1f5f9; }
td.answer { white-space: pre-wrap; overflow-wrap: anywhere; }
.prompt { background: #f8fafc; border-left: 4px solid #94a3b8; padding: 6px 12px; white-space: pre-wrap; }
.role { color: #64748b; font-size: 0.85em; text-transform: uppercase; }
.empty { color: #94a3b8; font-style: italic; }
"""


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    e = html.escape
    head = "".join(f"<th>{e(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{e('' if v is None else str(v))}</td>" for v in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def to_html(document: dict[str, Any]) -> str:
    """A comparison as one self-contained HTML page (styles inline, no scripts): settings, a table per prompt
    with each source's answer, the run numbers and the config fields that differ. All text is escaped."""
    e = html.escape
    title = title_of(document)
    parts = [f"<h1>{e(title)}</h1>", f"<p>Created {e(str(document.get('created_at', '')))}</p>", "<h2>Settings</h2>",
             _table(["setting", "value"], [[k, v] for k, v in document["settings"].items()])]
    if document.get("reward_model"):
        parts += [f"<h2>Reward model: {e(name_in(document, document['reward_model']))}</h2>",
                  _table(["checkpoint", "mean reward"], [[name_in(document, a["source"]), f"{a['mean_reward']:+.3f}"]
                                                         for a in document["answers"]])]
    for i, prompt in enumerate(document["prompts"]):
        said = "".join(f"<div><span class=\"role\">{e(m['role'])}</span> {e(m['content'])}</div>" for m in prompt)
        head = "".join(f"<th>{e(name_in(document, a['source']))} ({e(str(a['tokens_per_second']))} tokens/s)"
                       "</th>" for a in document["answers"])

        def cell(a: dict[str, Any]) -> str:
            note = f"<div class=\"role\">{e(reward_note(a, i))}</div>" if "rewards" in a else ""
            text = e(a["answers"][i]) if a["answers"][i] else "(empty)"
            return f"<td class=\"answer{'' if a['answers'][i] else ' empty'}\">{note}{text}</td>"

        cells = "".join(cell(a) for a in document["answers"])
        parts += [f"<h2>Prompt {i + 1}</h2>", f"<div class=\"prompt\">{said}</div>",
                  f"<table><thead><tr>{head}</tr></thead><tbody><tr>{cells}</tr></tbody></table>"]
    if document.get("runs"):
        parts += ["<h2>Runs</h2>", _table(*shown_table(*numbers_table(document)))]
    if document.get("config_diff"):
        parts += ["<h2>Config fields that differ</h2>", _table(*diff_table(document))]
    return (f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{e(title)}</title>\n"
            f"<style>{HTML_STYLE}</style>\n</head>\n<body>\n" + "\n".join(parts) + "\n</body>\n</html>\n")
