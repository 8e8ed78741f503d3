"""A run's ``dataset`` setting → the rows TRL trains on.

``NAME[@VERSION]`` is a saved dataset version; ``sample:<kind>`` (``sample:sft``, ``sample:preference``,
``sample:unpaired``, ``sample:prompts``) is a bundled sample, imported as version ``sample-<kind>`` on first use so
the tiny recipes work on an empty LAB_HOME.
"""

from __future__ import annotations

from typing import Any

from lab.data.kinds import KINDS
from lab.data.samples import SAMPLE_FILES
from lab.errors import LabError
from lab.home import Home

SAMPLES = {f"sample:{kind}": f"sample-{kind}" for kind in SAMPLE_FILES}  # sample ref -> the version it imports as


def resolve_version(ref: str, home: Home | None = None):
    """The dataset version a run trains on (importing a bundled sample the first time, as the kind it holds)."""
    from lab.config import DataConfig
    from lab.data.pipeline import import_file
    from lab.data.versions import get_version, list_versions

    if not (ref or "").strip():  # get_version('') would pick the newest version of any dataset
        raise LabError(f"Choose a dataset: a saved version NAME[@VERSION], or a bundled sample ({', '.join(SAMPLES)}).")
    if ref in SAMPLES:
        name, kind = SAMPLES[ref], ref.removeprefix("sample:")
        if not list_versions(home, name=name):
            return import_file(SAMPLE_FILES[kind], DataConfig(name=name, kind=kind), home=home)
        return get_version(name, home)
    return get_version(ref, home)


def training_rows(ref: str, split: str, kind: str, home: Home | None = None,
                  optional: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The canonical rows of one split, with only the fields the trainer takes (``DataKind.trainer_fields``, TRL's
    column layout for the kind), plus each ``optional`` field (``Objective.columns``) that every row has: a reward
    model's pairs keep their graded margin, which a split column of nulls would break."""
    from lab.data.versions import read_rows

    version = resolve_version(ref, home)
    if version.kind != kind:
        raise LabError(f"Dataset {version.ref} holds {KINDS[version.kind].words}, but this run needs "
                       f"{KINDS[kind].words}; choose a {kind} dataset version.")
    rows = read_rows(version, split, home)
    fields = KINDS[kind].trainer_fields + tuple(f for f in optional
                                                if rows and all(row.get(f) is not None for row in rows))
    return [{f: row[f] for f in fields} for row in rows]


def truncate_prompts(rows: list[dict[str, Any]], tokenizer: Any, max_prompt_length: int) -> list[dict[str, Any]]:
    """DPO: keep the end of prompts longer than ``max_prompt_length`` tokens (TRL 1.16 dropped this option).
    Whole turns are dropped from the front first; a single long turn keeps its last tokens."""
    out = []
    for row in rows:
        prompt = list(row["prompt"])
        while len(prompt) > 1 and prompt_tokens(prompt, tokenizer) > max_prompt_length:
            drop = 1 if prompt[0]["role"] == "system" else 2  # keep user/assistant alternation
            prompt = prompt[drop:] if len(prompt) > drop else prompt
            if drop == 2 and prompt[0]["role"] != "user":
                break
        if prompt_tokens(prompt, tokenizer) > max_prompt_length:
            last = prompt[-1]
            ids = tokenizer(last["content"], add_special_tokens=False)["input_ids"]
            keep = max(1, max_prompt_length // 2)
            prompt[-1] = {"role": last["role"], "content": tokenizer.decode(ids[-keep:])}
        out.append({**row, "prompt": prompt})
    return out


def prompt_tokens(prompt: list[dict[str, str]], tokenizer: Any) -> int:
    return len(tokenizer.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True, return_dict=False))
