"""What exists now, as people name it: the choices every picker offers and the names every view shows.

One place answers "which datasets, models and campaigns are there?" for the web app's pickers and the CLI, newest
first, labelled with the name the user gave (the id is the value a picker returns). Sanity-check runs and their
small datasets are working files of the sanity check, left out unless asked for. A dataset version is labelled
with the rows of both its splits ("347 train + 38 val", as its statistics count them); one that a run, campaign
or evaluation imported on its own from a bundled sample (``sample-sft``) says so, after the versions people saved.

A model is named as the store names it: ``tiny``, ``run:<id>`` (a finished run's final model), optionally with
``#tag`` for a second sample in a campaign; ``display_names`` turns those into the runs' names for columns,
legends and leaderboards.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from lab.home import Home, lab_home

TINY = "tiny"
# Said once where tiny answers (Compare, the chat playground, Eval's details): its noise is expected, not a bug.
TINY_NOTE = "tiny is a randomly initialised test model: before training it writes noise."
Choice = tuple[str, str]  # (label shown, value returned)


def when(stamp: str | None) -> str:
    """'12-03 09:25' from an ISO time: enough to tell this week's runs apart in a list."""
    return f"{stamp[5:10]} {stamp[11:16]}" if stamp and len(stamp) >= 16 else ""


def is_sanity_run(run: Any) -> bool:
    from lab.train.sanity import SANITY_PREFIXES

    return run.name.startswith(SANITY_PREFIXES)


def is_sanity_dataset(version: Any) -> bool:
    from lab.train.sanity import SANITY_STEP

    return any(step.get("step") == SANITY_STEP for step in version.card.get("steps", []))


def dataset_versions(home: Home | None = None, *, kind: str | None = None, sanity: bool = False) -> list[Any]:
    """The saved versions ``dataset_choices`` offers, as ``DatasetVersion``s for tables (newest first, sanity-check
    working files left out unless asked for)."""
    from lab.data.versions import list_versions

    return [v for v in list_versions(home or lab_home())
            if (kind is None or v.kind == kind) and (sanity or not is_sanity_dataset(v))]


def bundled_sample(version: Any) -> str | None:
    """The bundled sample (``sample:sft``, …) a version was imported from on its own, or None: a run, a campaign or
    an evaluation on ``sample:<kind>`` imports it once as the version ``sample-<kind>`` (``lab.train.datasets``),
    which nobody saved by hand. A sample saved under a name of one's own is that person's version."""
    from pathlib import Path

    from lab.data.sources import SAMPLES
    from lab.train.datasets import SAMPLES as IMPORTED

    source = str(version.card.get("source") or "")
    for sample, name in IMPORTED.items():
        if version.name == name and (source == sample or (sample in SAMPLES and source
                                                          and Path(source).name == SAMPLES[sample].name)):
            return sample
    return None


def split_rows(version: Any) -> str:
    """'347 train + 38 val': both splits, so a picker's count matches the statistics (which count both)."""
    return f"{version.rows.get('train', 0):,} train + {version.rows.get('validation', 0):,} val"


def version_label(version: Any) -> str:
    """A saved version as pickers show it: its ref (short), kind, rows of both splits and when it was saved; a
    bundled sample imported on its own says so, so nobody wonders where it came from."""
    origin = " · auto-imported sample" if bundled_sample(version) else ""
    return (f"{version.name}@{version.version[:8]} · {version.kind} · {split_rows(version)}{origin} · "
            f"{when(version.created_at)}")


def dataset_choices(home: Home | None = None, *, kind: str | None = None, samples: bool = True,
                    sanity: bool = False) -> list[Choice]:
    """Saved dataset versions, newest first (``name@version`` values), the ones imported on their own from a
    bundled sample after those saved by hand; then the bundled samples."""
    from lab.data.sources import SAMPLES

    versions = dataset_versions(home, kind=kind, sanity=sanity)
    found = [(version_label(v), v.ref) for v in sorted(versions, key=lambda v: bundled_sample(v) is not None)]
    bundled = [(f"{s} (bundled sample)", s) for s in SAMPLES if kind is None or s == f"sample:{kind}"] if samples else []
    return found + bundled


def tiny_note(sources: Iterable[str]) -> str:
    """``TINY_NOTE`` when the built-in ``tiny`` is among ``sources`` (``#tag``s aside), else ""."""
    return TINY_NOTE if any(str(s).split("#", 1)[0] == TINY for s in sources) else ""


def run_label(run: Any) -> str:
    """A run as every picker names it: by the time it was created, as the Train tab's runs table shows it."""
    return f"{run.name} · {run.method.upper()} · {when(run.created_at)}"


def model_choices(home: Home | None = None, *, tiny: bool = True, sanity: bool = False) -> list[Choice]:
    """What can answer prompts: every succeeded run (its final model or adapter) but reward models, newest first,
    then ``tiny``."""
    from lab.train.runner import list_runs

    home = home or lab_home()
    runs = [(run_label(r), f"run:{r.id}") for r in list_runs(home, status="succeeded")
            if not scores(r) and (sanity or not is_sanity_run(r))]  # a reward model scores answers, writes none
    return runs + ([(f"{TINY} (built-in test model)", TINY)] if tiny else [])


def scores(run: Any) -> bool:
    """Whether a run trained a model that scores answers (a reward model) rather than one that writes them."""
    from lab.config import TrainConfig
    from lab.train.methods import OBJECTIVES

    # The stored config's objective (older configs through upgrade), without building and checking a whole config
    # for every run each time a picker is refreshed.
    entry = OBJECTIVES.get(TrainConfig.upgrade(run.config).get("objective", "sft"))
    return entry is not None and entry.model_kind == "score"


def run_choices(home: Home | None = None, *, sanity: bool = False) -> list[Choice]:
    """Every run, whatever its status, newest first (the value is the run id)."""
    from lab.train.runner import list_runs

    return [(f"{r.name} · {r.status} · {when(r.created_at)}", r.id) for r in list_runs(home or lab_home())
            if sanity or not is_sanity_run(r)]


def campaign_choices(home: Home | None = None, *, status: Iterable[str] | None = None) -> list[Choice]:
    """Labeling campaigns, newest first (the value is the campaign id)."""
    from lab.label.campaigns import STATUSES, list_campaigns

    found = list_campaigns(home or lab_home(), status=tuple(status or STATUSES))
    return [(f"{c.name} · {c.status} · {when(c.created_at)}", c.id) for c in found]


def display_names(sources: Iterable[str], home: Home | None = None) -> dict[str, str]:
    """Each source as people know it: ``run:<id>`` becomes the run's name (with the id's tail when two runs share a
    name), ``#tag`` is kept; anything else is shown as it is."""
    from lab.train.runner import list_runs

    sources = list(dict.fromkeys(sources))
    runs = {f"run:{r.id}": r for r in list_runs(home or lab_home())}
    model = {s: s.split("#", 1)[0] for s in sources}
    named = {m: runs[m].name for m in set(model.values()) if m in runs}
    taken: dict[str, int] = {}
    for name in named.values():
        taken[name] = taken.get(name, 0) + 1
    names = {}
    for source in sources:
        base, tag = model[source], source[len(model[source]):]
        if base in named:
            name = named[base]
            names[source] = (f"{name} ({base[-4:]})" if taken[name] > 1 else name) + tag
        else:
            names[source] = source
    return names


def display_name(source: str, home: Home | None = None) -> str:
    return display_names([source], home)[source]



def reward_model_choices(home: Home | None = None, *, sanity: bool = False) -> list[Choice]:
    """Finished reward-model runs (objectives that load a scoring model), newest first: what can score answers
    (the reward eval, Compare's scorer, GRPO's reward-model reward). The value is ``run:<id>``."""
    from lab.train.runner import list_runs

    return [(run_label(r), f"run:{r.id}") for r in list_runs(home or lab_home(), status="succeeded")
            if scores(r) and (sanity or not is_sanity_run(r))]


def eval_scores(models: Iterable[str], home: Home | None = None) -> dict[str, dict[str, Any]]:
    """Per model (``run:<id>``, ``tiny``, …), the reward and judge numbers of its latest finished evaluations where
    Eval has them: ``reward`` and ``reward_model`` (mean reward under that reward model), ``judge_win_rate`` and
    ``judge_vs`` (a pairwise judge's win rate, ties half, and against whom), ``judge_grade``; models with none are
    left out. Here, not in ``lab.label``, which sits below ``lab.eval`` (the labeling chain reads it)."""
    from lab.eval.jobs import list_evals
    from lab.eval.summary import automatic

    wanted = set(models)
    keys = ("reward", "reward_model", "judge_win_rate", "judge_vs", "judge_grade")
    rows = automatic(list_evals(home or lab_home())) if wanted else {}
    return {model: numbers for model, row in rows.items() if model in wanted
            if (numbers := {k: row[k] for k in keys if row[k] is not None})}


def judge_choices(home: Home) -> list[tuple[str, str]]:
    """What can judge (Eval's judge, a campaign's pre-labels): the models, newest run first, and the
    OpenAI-compatible endpoint."""
    from lab.eval.config import ENDPOINT

    return model_choices(home) + [(f"{ENDPOINT} (an OpenAI-compatible API)", ENDPOINT)]
