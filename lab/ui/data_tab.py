"""The Data tab: bring a file in, check it, preview the cleaning, save a version, explore it.

Three inner tabs:

1. **Import** — a file (upload, local path, hub id or bundled sample) is checked (format, kind,
   row errors); unrecognised columns can be mapped by hand; cleaning is previewed (counts per
   step, duplicate pairs side by side, rows the filters drop) before a version is saved.
2. **Versions** — saved versions: card, export, delete, push to the hub.
3. **Explore** — statistics, a row browser (chat bubbles; rows per page, search, filters) and the
   loss-mask view, for a file or a saved version (``name@version``).

Each new file starts a clean form when it is checked: the name box is refilled from the new file's name
(never the last dataset's), and nothing of the previous file's check, preview or save stays on screen;
preview and save refuse a file typed over the checked one until it is checked. No server path is
shown: the bundled samples and uploads appear by their names (``lab.data.sources``), a version's source
as its file's name. Pickers list what exists now (``lab.catalog``), refreshed when the tab is shown.

Every handler here only calls ``lab`` functions and formats their results; each is wired with a
stable ``api_name`` (``data_check``, ``data_import``, …) so scripts and tests can call it with
``gradio_client``. Handlers return ``{component: value}`` dicts. A ``LabError`` becomes a toast
and a status message; any other exception is logged with its traceback and said in one sentence
("Save version failed unexpectedly: …").
"""

from __future__ import annotations

import functools
import html
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
from gradio.utils import get_upload_folder

from lab import catalog
from lab.config import DataConfig
from lab.data.browse import PAGE_SIZE, PAGE_SIZES, WHERE, page_of
from lab.data.canonical import Row, is_context, message_text
from lab.data.formats import describe_format
from lab.data.kinds import KINDS, LABEL_WORDS, kind_of, row_text
from lab.data.pipeline import MAPPING_FIELDS, check_file, load_cfg_tokenizer, load_file, peek_columns, plan_cleaning
from lab.data.readers import DATA_SUFFIXES
from lab.data.sources import SAMPLES, named_path, shown, source_name
from lab.data.versions import name_from_file, suggested_name
from lab.errors import LabError
from lab.home import Home
from lab.paths import server_path
from lab.ui import plots
from lab.ui.common import OnShow, error_text, guarded
from lab.ui.forms import Form, build_form, component_for, slider

log = logging.getLogger(__name__)

NONE = "(none)"
MAX_ERRORS_SHOWN = 1000
PREVIEW_CHARS = 300


def sample_label(name: str) -> str:
    """A bundled sample as the picker shows it, by what it holds: ``sample:preference`` → "Preference pairs"."""
    rows = KINDS[name.removeprefix("sample:")].rows
    return rows[:1].upper() + rows[1:]


SAMPLE_CHOICES = {sample_label(name): name for name in SAMPLES}  # one per kind (lab.data.sources)
FILE_TYPES = list(DATA_SUFFIXES)  # the upload takes every file the readers read, by the one list
# Every field a column can be mapped to (every kind's), each once, in a stable order.
MAPPING_TARGETS: list[str] = list(dict.fromkeys(f for fields in MAPPING_FIELDS.values() for f in fields))
MAPPING_HELP = {
    "prompt": "The user's request (every kind).",
    "response": "The assistant's reply (SFT).",
    "system": "A system prompt (optional).",
    "context": "Extra input appended to the prompt (SFT, optional).",
    "messages": "A whole conversation as a list of messages (SFT; instead of prompt/response).",
    "chosen": "The preferred reply (preference).",
    "rejected": "The worse reply (preference).",
    "completion": "The one reply that was rated (unpaired).",
    "label": "Whether the reply is desirable: true/false, 1/0, yes/no, up/down, 👍/👎 (unpaired).",
    "answer": "The reference answer rewards compare with (prompts, optional).",
    "meta": "A JSON object of metadata for reward functions (prompts, optional; unmapped columns go there too).",
    "tools": "The functions the conversation may call, as a JSON list of schemas (SFT, optional).",
}
# What each kind's mapping must give, for the mapping panel's help and its refusals.
REQUIRED = "; ".join(f"{k.name} needs {' + '.join(k.required)}" for k in KINDS.values())
CLEANING_ROWS = (("dedup_exact", "dedup_near", "near_threshold"),
                 ("min_tokens", "max_tokens", "min_turns", "max_turns"),
                 ("tokenizer", "template"),
                 ("max_rows", "val_fraction", "seed"))
STEP_HEADERS = ["step", "before", "after", "removed", "detail"]
PAIR_HEADERS = ["type", "similarity", "kept (row A)", "removed (row B)"]
FILTER_HEADERS = ["line", "reason", "text"]
ERROR_HEADERS = ["line", "field", "reason"]
CLEAN_HINT = "Nothing is removed until you save; the preview shows what would be."
CHOOSE_HINT = "Choose a file above, then press **Check file**."
VERSION_HEADERS = ["ref", "kind", "format", "train rows", "validation rows", "created"]


# --------------------------------------------------------------------------- components


@dataclass
class ImportUI:
    upload: gr.File
    path: gr.Textbox
    sample: gr.Dropdown
    load_sample: gr.Button
    kind: gr.Dropdown
    check: gr.Button
    status: gr.Markdown
    errors: gr.Dataframe
    mapping_panel: gr.Group
    mapping: dict[str, gr.Dropdown]
    recheck: gr.Button
    mapped: gr.State  # {"source": path, "mapping": {column: field}} from the last manual mapping
    checked: gr.State  # the source (as in the path box) whose check the form shows; None after a failed check


@dataclass
class CleanUI:
    form: Form
    preview: gr.Button
    status: gr.Markdown
    steps: gr.Dataframe
    pairs: gr.Dataframe
    filtered: gr.Dataframe


@dataclass
class SaveUI:
    form: Form  # name, skip_invalid
    save: gr.Button
    status: gr.Markdown
    card: gr.Markdown


@dataclass
class VersionsUI:
    tab: gr.Tab
    table: gr.Dataframe
    ref: gr.Dropdown
    refresh: gr.Button
    card: gr.Markdown
    fmt: gr.Radio
    export: gr.Button
    download: gr.File
    confirm: gr.Checkbox
    delete: gr.Button
    repo: gr.Textbox
    push: gr.Button
    status: gr.Markdown


@dataclass
class ExploreUI:
    source: gr.Dropdown
    form: Form  # tokenizer, template
    status: gr.Markdown
    show_stats: gr.Button
    summary: gr.Dataframe
    lengths: gr.Plot
    turns: gr.Plot
    roles: gr.Plot
    show_rows: gr.Button
    per_page: gr.Dropdown
    search: gr.Textbox
    where: gr.Dropdown
    prev: gr.Button
    next: gr.Button
    page: gr.Number
    page_info: gr.Markdown
    rows: gr.HTML
    row: gr.Number
    max_length: gr.Number
    show_mask: gr.Button
    mask_summary: gr.Markdown
    mask_warnings: gr.Markdown
    mask_html: gr.HTML


@dataclass
class DataUI:
    imp: ImportUI
    clean: CleanUI
    save: SaveUI
    versions: VersionsUI
    explore: ExploreUI
    home: Home


# --------------------------------------------------------------------------- sources and rows


def require_source(source: str | None, home: Home) -> str:
    """The source in a box as the engine should read it: a sample's or an upload's file (``lab.data.sources``), a
    path inside the folders this server may read, or a hub id (``lab.paths.server_path``)."""
    text = (source or "").strip()
    if not text:
        raise LabError("Choose a file first: upload one, type a local path or hub dataset id, "
                       "or load a bundled sample.")
    named = named_path(text, home)
    return server_path(str(named) if named else text, home)


def kind_or_none(kind: str | None) -> str | None:
    return None if kind in (None, "", "auto") else kind


def mapping_for(mapped: dict | None, source: str) -> dict[str, str] | None:
    """The manual mapping, if one was made for this very source."""
    if mapped and mapped.get("source") == source and mapped.get("mapping"):
        return dict(mapped["mapping"])
    return None


def mapping_from_choices(choices: dict[str, str | None]) -> dict[str, str]:
    """``{field: column}`` as chosen in the dropdowns → the engine's ``{column: field}``."""
    mapping: dict[str, str] = {}
    for target, column in choices.items():
        if not column or column == NONE:
            continue
        if column in mapping:
            raise LabError(f"Column '{column}' is mapped to both {mapping[column]} and {target}; "
                           "map each column once.")
        mapping[column] = target
    if not mapping:
        raise LabError(f"Pick at least one column in the mapping ({REQUIRED}).")
    return mapping


def looks_like_version(source: str, home: Home) -> bool:
    """``name@version`` or a saved dataset's name (checked without touching any path outside LAB_HOME)."""
    from lab.data.versions import NAME

    name, at, _ = source.partition("@")
    return bool(NAME.match(name)) and (bool(at) or (home.datasets / name).is_dir())


def rows_of(source: str, kind: str | None, mapped: dict | None, home: Home) -> tuple[list[Row], str, str]:
    """The rows to explore, their kind and a label: a file (re-read each time) or a saved version."""
    source = (source or "").strip()
    if not source:
        raise LabError("Choose what to explore: check a file on the Import tab, select a saved "
                       "version, or type a file path or name@version above.")
    if looks_like_version(source, home):
        from lab.data.versions import get_version, version_rows

        version = get_version(source, home=home)
        return version_rows(version, home=home), version.kind, version.ref
    path = require_source(source, home)
    parsed = load_file(path, kind=kind_or_none(kind), mapping=mapping_for(mapped, path))
    return parsed.rows, parsed.kind, parsed.source or Path(path).name


def short(text: str, limit: int = PREVIEW_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def frame(rows: list[list[Any]], headers: list[str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=headers)


# --------------------------------------------------------------------------- 1 · import: check


def check_summary(report: Any, mapped: bool, detected: bool = True) -> str:
    """The check's result; ``detected``: the kind was detected, not chosen (a format's other reading is said)."""
    invalid = len(report.errors)
    columns = ", ".join(f"`{c}`" for c in report.columns) or "(none)"
    described = describe_format(report.format, detected=detected)
    lines = [
        f"### {'⚠' if invalid else '✓'} {html.escape(report.source)}",
        f"**Format** {'columns mapped by hand' if mapped else html.escape(described)} · "
        f"**Kind** {report.kind} · "
        f"**Valid rows** {report.rows} / {report.total} · **Columns** {columns}",
        "",
        f"At default settings, cleaning would remove **{report.exact_duplicates}** exact and "
        f"**{report.near_duplicates}** near duplicates (preview below to see them).",
    ]
    if invalid:
        lines += ["", f"**{invalid} invalid row{'s' if invalid != 1 else ''}** (listed below): fix the file, "
                      "or tick **Skip invalid rows** when saving."]
    lines += ["", *(f"*Note: {html.escape(note)}*" for note in report.notes)] if report.notes else []
    return "\n".join(lines)


def check_source(ui: DataUI, source: str, kind: str, checked: str | None = None) -> dict:
    """Read and validate a file (path, hub id, sample or upload) with format detection; no mapping."""
    return run_check(ui, source, kind, None, checked)[0]


def check_mapped(ui: DataUI, source: str, kind: str, checked: str | None = None, **columns: str) -> dict:
    """Read and validate a file with columns mapped by hand (one column per field, or "(none)")."""
    return run_check(ui, source, kind, mapping_from_choices(columns), checked)[0]


def run_check(ui: DataUI, source: str, kind: str, mapping: dict[str, str] | None,
              checked: str | None) -> tuple[dict, bool]:
    """The check report over a clean slate, and whether the file could be read. A file other than the one checked
    last is a new file: its name is proposed afresh (from the file's name, never a name that holds another kind),
    and nothing of the previous file stays on screen, even when this one cannot be read."""
    text = (source or "").strip()
    new_file = text != (checked or "")
    slate = {**clean_slate(ui, text if new_file else None), ui.imp.checked: text}
    try:
        path = require_source(text, ui.home)
        report, kind_found = check_report(ui.imp, ui.explore, path, kind, mapping, ui.home)
    except LabError as err:
        gr.Warning(str(err))  # the form shows no file's results now: nothing for a preview or save to contradict
        return {**slate, ui.imp.status: error_text(str(err)), ui.imp.checked: None}, False
    if new_file:
        slate[ui.save.form["name"]] = suggested_name(path, kind_found, ui.home)
    return {**slate, **report}, True


def check_report(imp: ImportUI, explore: ExploreUI, path: str, kind: str, mapping: dict[str, str] | None,
                 home: Home) -> tuple[dict, str | None]:
    """What the check shows of the file at ``path``, and the kind found (None: the columns need mapping)."""
    try:
        report = check_file(path, kind=kind_or_none(kind), mapping=mapping)
    except LabError as err:
        columns = safe_columns(path)
        if not columns:
            raise
        gr.Warning(str(err))
        return {
            imp.status: error_text(str(err)) + "\n\nPick the columns by hand below, then check again.",
            imp.errors: gr.Dataframe(visible=False),
            imp.mapping_panel: gr.Group(visible=True),
            **mapping_dropdowns(imp, columns, mapping),
            imp.mapped: None,
        }, None
    shown_errors = report.errors[:MAX_ERRORS_SHOWN]
    label = f"Invalid rows ({len(report.errors)}" + (f", first {len(shown_errors)} shown)"
                                                     if len(shown_errors) < len(report.errors) else ")")
    return {
        imp.status: check_summary(report, mapped=bool(mapping), detected=kind_or_none(kind) is None),
        imp.errors: gr.Dataframe(value=frame([[e.line, e.field or "—", e.reason] for e in shown_errors],
                                             ERROR_HEADERS), visible=bool(shown_errors), label=label),
        imp.mapping_panel: gr.Group(visible=bool(mapping)),
        imp.mapped: {"source": path, "mapping": mapping} if mapping else None,
        explore.source: source_name(path, home),
    }, report.kind


def safe_columns(path: str) -> list[str]:
    try:
        return peek_columns(path)
    except Exception:  # noqa: BLE001 - unreadable: the original error is the one to show
        return []


def mapping_dropdowns(imp: ImportUI, columns: list[str], mapping: dict[str, str] | None) -> dict:
    """Fill the mapping dropdowns with the file's columns, pre-selecting same-named ones."""
    chosen = {target: column for column, target in (mapping or {}).items()}
    out = {}
    for target, dropdown in imp.mapping.items():
        value = chosen.get(target) or (target if target in columns else NONE)
        out[dropdown] = gr.Dropdown(choices=[NONE, *columns], value=value)
    return out


def started(action: str, source: str | None) -> str:
    """The status line of a step that takes seconds, shown at once: the step's progress appears over it. Short,
    so the progress text (centred) stays readable over it."""
    return f"{action} **{html.escape(shown(source) or 'the file')}**…"


def use_sample(choice: str) -> str:
    """The bundled sample's name (``sample:<kind>``), which the path box shows (SFT's for anything unknown)."""
    return SAMPLE_CHOICES.get(choice, "sample:sft") if isinstance(choice, str) else "sample:sft"


def keep_upload(ui: DataUI, upload: str | None, kind: str, checked: str | None = None) -> dict:
    """Check an uploaded file from its copy under LAB_HOME/uploads, which outlives Gradio's temp file for the
    preview, save and explore that follow; the path box shows the copy's name (``upload:<digest>/<file>``), not
    its path. A file the check refuses is not kept (``lab.data.uploads``)."""
    from lab.data import uploads

    if not upload:
        return {}  # nothing changes
    kept, new = uploads.keep(ui.home, upload, upload_folder=get_upload_folder())
    name = source_name(kept, ui.home)
    try:
        report, readable = run_check(ui, name, kind, None, checked)
    except Exception:
        if new:
            uploads.discard(ui.home, kept)
        raise
    if readable:
        return {ui.imp.path: name, **report}
    if new:  # only a copy made here: one found there was accepted before and may still be in use
        uploads.discard(ui.home, kept)
    return {**report, ui.imp.path: ""}  # the box names no file that is not there


def clear_upload(ui: DataUI, path: str | None, checked: str | None = None) -> dict:
    """The upload was taken away (its ×): when the path box names it, nothing of its check, cleaning preview or save
    stays on screen and the form is as at the start; otherwise (another file was checked since) nothing changes."""
    from lab.data.sources import UPLOAD

    text = (path or "").strip()
    if not text.startswith(UPLOAD) and not (checked or "").startswith(UPLOAD):
        return {}  # nothing changes
    return {**clean_slate(ui, ""), ui.imp.path: "", ui.imp.checked: None, ui.imp.status: CHOOSE_HINT}


def clean_slate(ui: DataUI, new_file: str | None) -> dict:
    """Nothing of the last check's results, cleaning preview or save stays; for a ``new_file`` (its source as in
    the path box) the name box also gets a name from its file name, never the previous dataset's."""
    imp, clean, save = ui.imp, ui.clean, ui.save
    slate = {imp.errors: gr.Dataframe(visible=False), imp.mapping_panel: gr.Group(visible=False), imp.mapped: None,
             clean.status: CLEAN_HINT, clean.steps: gr.Dataframe(visible=False),
             clean.pairs: gr.Dataframe(visible=False), clean.filtered: gr.Dataframe(visible=False),
             save.status: "", save.card: ""}
    if new_file is not None:
        slate[save.form["name"]] = name_from_file(SAMPLES.get(new_file, new_file)) if new_file else ""
    return slate


# --------------------------------------------------------------------------- 1 · import: clean and save


def pair_rows(parsed_rows: list[Row], pairs: list[Any], label: str) -> list[list[Any]]:
    out = []
    for pair in pairs:
        keep, drop = parsed_rows[pair.keep], parsed_rows[pair.drop]
        out.append([label, f"{pair.similarity:.2f}",
                    f"line {keep.line}: {short(row_text(keep.data))}",
                    f"line {drop.line}: {short(row_text(drop.data))}"])
    return out


def filtered_rows(result: Any) -> list[list[Any]]:
    """Rows the token/turn filters drop, with the limit each one broke."""
    details = {step.step: step.detail for step in result.steps}
    return [[row.line, f"{step}: {details.get(step, '')}".rstrip(": "), short(row_text(row.data))]
            for step, rows in result.removed_by_filters.items() for row in rows]


def the_checked_file(source: str | None, checked: str | None) -> None:
    """Preview and save act on the file whose check the form shows: a file typed over it is checked first (so its
    name is proposed and its problems shown). With no check on show (none yet, or a failed one: a script's calls)
    there is nothing to contradict."""
    text = (source or "").strip()
    if checked is not None and text != checked:
        raise LabError(f"Press Check file first: the form shows what the check found in {shown(checked) or 'no file'}, "
                       f"and the box now names {shown(text) or 'no file'}.")


def preview_cleaning(clean: CleanUI, home: Home, mapped: dict | None, source: str, kind: str,
                     checked: str | None = None, progress: gr.Progress = gr.Progress(), **settings: Any) -> dict:
    """What cleaning would do, before anything is removed: counts, duplicate pairs, filtered rows."""
    the_checked_file(source, checked)
    path = require_source(source, home)
    cfg = clean.form.to_config(settings, kind=kind or "auto")
    progress(0.05, desc=f"Reading {shown(source)}")
    parsed = load_file(path, kind=cfg.kind_or_none, mapping=mapping_for(mapped, path))
    tokenizer = None
    if cfg.min_tokens or cfg.max_tokens:
        progress(0.2, desc=f"Loading the tokenizer {cfg.tokenizer} to count tokens (the first time takes a while)")
        tokenizer = load_cfg_tokenizer(cfg)
    progress(0.5, desc=f"Looking for duplicates and rows outside the limits among {len(parsed.rows)} rows")
    result = plan_cleaning(parsed, cfg, tokenizer)
    progress(0.95, desc="Laying out the preview")
    read = [["read", parsed.total, len(parsed.rows), len(parsed.errors),
             "invalid rows left out (tick Skip invalid rows to save without them)" if parsed.errors
             else "all rows valid"]]
    steps = read + [[s.step, s.before, s.after, s.removed, s.detail] for s in result.steps]
    pairs = pair_rows(parsed.rows, result.exact_pairs, "exact") + pair_rows(parsed.rows, result.near_pairs, "near")
    filtered = filtered_rows(result)
    kept = len(result.rows)
    status = (f"Cleaning would keep **{kept} of {len(parsed.rows)}** valid rows: "
              f"{len(result.exact_pairs)} exact duplicate(s), {len(result.near_pairs)} near duplicate(s), "
              f"{len(filtered)} row(s) outside the length/turn limits. Nothing is removed until you save.")
    return {
        clean.status: status,
        clean.steps: gr.Dataframe(value=frame(steps, STEP_HEADERS), visible=True),
        clean.pairs: gr.Dataframe(value=frame(pairs, PAIR_HEADERS), visible=True,
                                  label=f"Duplicate pairs, side by side ({len(pairs)})"),
        clean.filtered: gr.Dataframe(value=frame(filtered, FILTER_HEADERS), visible=bool(filtered),
                                     label=f"Rows the filters would remove ({len(filtered)})"),
    }


def save_version(ui: DataUI, mapped: dict | None, source: str, kind: str, name: str, skip_invalid: bool,
                 checked: str | None = None, progress: gr.Progress = gr.Progress(), **settings: Any) -> dict:
    """Import the file as a new immutable dataset version (validated, cleaned, split, saved)."""
    from lab.data.pipeline import import_file

    the_checked_file(source, checked)
    path = require_source(source, ui.home)
    cfg = ui.clean.form.to_config(settings, kind=kind or "auto", name=(name or "").strip(),
                                  skip_invalid=bool(skip_invalid))
    version = import_file(path, cfg, mapping=mapping_for(mapped, path), home=ui.home,
                          progress=lambda fraction, message: progress(fraction, desc=message))
    return {
        ui.save.status: (f"✓ **{version.ref}** holds these very rows already (saved {version.created_at}); "
                         "nothing new was written: " if version.reused else f"✓ Saved **{version.ref}**: ")
                        + f"{version.rows.get('train', 0)} train and "
                        f"{version.rows.get('validation', 0)} validation rows. See it on the **Versions** tab, "
                        "or explore it on the **Explore** tab.",
        ui.save.card: card_markdown(version),
        ui.versions.table: versions_frame(ui.home),
        ui.versions.ref: version_choices(ui.home, version.ref),
        ui.explore.source: explore_choices(ui.home, version.ref),
    }


# --------------------------------------------------------------------------- 2 · versions


def versions_frame(home: Home) -> pd.DataFrame:
    """Saved versions, newest first, sanity-check working files left out (``lab.catalog``)."""
    rows = [[v.ref, v.kind, v.format, v.rows.get("train", 0), v.rows.get("validation", 0),
             str(v.created_at)[:19].replace("T", " ")] for v in catalog.dataset_versions(home)]
    return frame(rows, VERSION_HEADERS)


def card_markdown(version: Any) -> str:
    """A dataset version's card: where it came from and what each step did, with counts."""
    card = version.card or {}
    sample = catalog.bundled_sample(version)
    lines = [
        f"### {version.ref}",
        *([(f"*The bundled sample {sample}, imported on its own the first time a run, a campaign or an evaluation "
            f"used `{sample}`.*"), ""] if sample else []),
        f"**Kind** {version.kind} · **Format** {html.escape(describe_format(version.format, detected=False))} · "
        f"**Rows** {version.rows.get('train', 0)} train / {version.rows.get('validation', 0)} validation · "
        f"**Created** {str(version.created_at)[:19].replace('T', ' ')}",
        "",
        f"**Source** `{shown(card.get('source')) or '?'}`" + (f" · **Columns** {', '.join(card['columns'])}"
                                                                if card.get("columns") else ""),
    ]
    if card.get("mapping"):
        lines.append("**Mapping** " + ", ".join(f"{c} → {f}" for c, f in card["mapping"].items()))
    lines += [f"*Note: {html.escape(note)}*" for note in card.get("notes", [])]
    steps = card.get("steps") or []
    if steps:
        lines += ["", "| step | before | after | removed | detail |", "|---|---:|---:|---:|---|"]
        for s in steps:
            detail = str(s.get("detail", "")).replace("|", "\\|")
            removed = s.get("removed")
            if s.get("step") == "split":  # nothing is removed there: the rows "after" leaves out are validation
                held = (s.get("before") or 0) - (s.get("after") or 0)
                removed = f"{removed} (→ {held} to validation)" if held else removed
            lines.append(f"| {s.get('step')} | {s.get('before')} | {s.get('after')} | {removed} | {detail} |")
    if card.get("invalid_count"):
        lines += ["", f"{card['invalid_count']} invalid row(s) were left out."]
    config = card.get("config") or {}
    if config:
        lines += ["", "<details><summary>Cleaning settings</summary>", "",
                  html.escape(settings_words(config)), "", "</details>"]
    return "\n".join(lines)


def settings_words(config: dict[str, Any]) -> str:
    """A version's cleaning settings (``DataConfig`` as its card keeps it) in plain words, one phrase per setting
    that mattered; a setting this does not know (a newer one) as ``name value``."""
    c = dict(config)
    done = {"name", "kind"}
    said = []

    def take(*keys: str) -> list[Any]:
        done.update(keys)
        return [c.get(k) for k in keys]

    exact, near, threshold = take("dedup_exact", "dedup_near", "near_threshold")
    if exact is not None:
        said.append("exact duplicates removed" if exact else "exact duplicates kept")
    if near is not None:
        said.append(f"near duplicates removed (similarity {threshold} or more)" if near else "near duplicates kept")
    tokenizer, template = take("tokenizer", "template")  # they count tokens only for the token limits
    counted = f" ({tokenizer} tokenizer" + (f", {template} template)" if template not in (None, "model") else ")")
    for low, high, unit in (("min_tokens", "max_tokens", "tokens"), ("min_turns", "max_turns", "user turns")):
        lo, hi = take(low, high)
        if lo or hi:
            span = f"{lo} to {hi}" if lo and hi else f"at most {hi}" if hi else f"{lo} or more"
            said.append(f"kept rows of {span} {unit}"
                        + (counted if unit == "tokens" and tokenizer else ""))
    limit, fraction, seed = take("max_rows", "val_fraction", "seed")
    if limit:
        said.append(f"a random sample of {limit} rows kept")
    if fraction is not None:
        said.append(f"{fraction:.0%} held out for validation" + (f" (seed {seed})" if seed is not None else ""))
    (skip,) = take("skip_invalid")
    if skip is not None:
        said.append("invalid rows skipped" if skip else "invalid rows refused")
    said += [f"{k} {v}" for k, v in c.items() if k not in done]
    text = "; ".join(said)
    return text[:1].upper() + text[1:] + "." if text else ""


def version_choices(home: Home, selected: str | None = None) -> gr.Dropdown:
    """The version picker's choices (``lab.catalog``); keeps ``selected`` if it still exists, else selects nothing."""
    choices = catalog.dataset_choices(home, samples=False)
    return gr.Dropdown(choices=choices, value=selected if selected in {v for _, v in choices} else None)


def explore_choices(home: Home, selected: str | None = None) -> gr.Dropdown:
    """What Explore can open: saved versions, newest first, and the bundled samples; a file's name is typed or
    filled in by a check. With ``selected``, that is selected too."""
    choices = catalog.dataset_choices(home)
    return gr.Dropdown(choices=choices) if selected is None else gr.Dropdown(choices=choices, value=selected)


def list_saved(ver: VersionsUI, home: Home, selected: str | None = None) -> dict:
    """The table of saved dataset versions (and the version picker's choices)."""
    table = versions_frame(home)
    return {ver.table: table, ver.ref: version_choices(home, selected),
            ver.status: "" if len(table) else "No versions yet: import a file on the **Import** tab."}


def pick_version(evt: gr.SelectData) -> str:
    """A click in the versions table selects that row's version."""
    row = evt.row_value or []
    return row[0] if row else gr.skip()


def show_card(ver: VersionsUI, explore: ExploreUI, home: Home, ref: str) -> dict:
    """A saved version's card (source, steps with counts, settings)."""
    from lab.data.versions import get_version

    if not ref:
        return {ver.card: "Select a version above to see its card.", ver.status: ""}
    version = get_version(ref, home=home)
    return {ver.card: card_markdown(version), explore.source: version.ref, ver.confirm: False, ver.status: ""}


def export(ver: VersionsUI, home: Home, ref: str, fmt: str) -> dict:
    """Write both splits of a version as JSONL or Parquet files to download."""
    from lab.data.versions import SPLITS, export_version

    if not ref:
        raise LabError("Select a version to export.")
    paths = [str(export_version(ref, fmt=(fmt or "jsonl").lower(), split=split, home=home)) for split in SPLITS]
    return {ver.download: gr.File(value=paths, visible=True),
            ver.status: f"Exported **{ref}** as {fmt}: " + ", ".join(f"`{Path(p).name}`" for p in paths)}


def delete(ver: VersionsUI, home: Home, ref: str, confirm: bool) -> dict:
    """Delete a version (only with the confirmation ticked)."""
    from lab.data.versions import delete_version

    if not ref:
        raise LabError("Select a version to delete.")
    if not confirm:
        raise LabError(f"Tick 'Yes, delete {ref}' first: deleting a version cannot be undone.")
    delete_version(ref, home=home)
    out = list_saved(ver, home)
    out.update({ver.status: f"Deleted **{ref}**.", ver.confirm: False, ver.card: ""})
    return out


def push(ver: VersionsUI, home: Home, ref: str, repo_id: str) -> dict:
    """Upload a version to the Hugging Face Hub (needs HF_TOKEN in the app's environment)."""
    from lab.data.versions import push_to_hub

    if not ref:
        raise LabError("Select a version to push.")
    if not (repo_id or "").strip():
        raise LabError("Type the hub repository id to push to, e.g. your-name/my-dataset.")
    url = push_to_hub(ref, repo_id.strip(), home=home)
    return {ver.status: f"Pushed **{ref}** to `{repo_id.strip()}`" + (f": {url}" if url else ".")}


# --------------------------------------------------------------------------- 3 · explore


def tokenizer_for(name: str, template: str, home: Home):
    from lab.models import load_tokenizer

    return load_tokenizer((name or "tiny").strip(), template=None if template in (None, "", "model") else template,
                          home=home)


SUMMARY_HEADERS = ["measure", "mean", "median", "p95", "max"]


def summary_frame(stats: Any) -> pd.DataFrame:
    """The summary table: one line per length list (in the stats' unit) and for turns."""
    names = {"prompt_tokens": f"prompt {stats.unit}", "response_tokens": f"{stats.reply} {stats.unit}",
             "rejected_tokens": f"rejected {stats.unit}", "turns": "user turns"}
    rows = [[names.get(name, name), d["mean"], d["median"], d["p95"], d["max"]]
            for name, d in stats.summary().items()]
    return frame(rows, SUMMARY_HEADERS)


def statistics(ex: ExploreUI, home: Home, mapped: dict | None, source: str, kind: str,
               tokenizer: str, template: str, progress: gr.Progress = gr.Progress()) -> dict:
    """Length histograms, turns and roles, and a summary table for a file or a version."""
    from lab.data.stats import dataset_stats

    progress(0.05, desc=f"Reading {shown(source)}")
    rows, _, label = rows_of(source, kind, mapped, home)
    tok = None
    if (tokenizer or "").strip():
        progress(0.2, desc=f"Loading the tokenizer {tokenizer.strip()} (the first time takes a few seconds)")
        tok = tokenizer_for(tokenizer, template, home)
    progress(0.6, desc=f"Counting the lengths of {len(rows)} rows")
    stats = dataset_stats(rows, tokenizer=tok)
    progress(0.85, desc="Drawing the charts")
    figures = plots.stats_figures(stats)
    return {
        ex.status: (f"Statistics of **{html.escape(label)}**: {stats.n_rows} rows ({stats.kind}), "
                    f"lengths in {stats.unit}." + "".join(f" {note}." for note in stats.notes())),
        ex.summary: gr.Dataframe(value=summary_frame(stats), label=f"Summary of {stats.n_rows} rows", visible=True),
        ex.lengths: gr.Plot(value=figures["lengths"], visible=True),
        ex.turns: gr.Plot(value=figures["turns"], visible=True),
        ex.roles: gr.Plot(value=figures["roles"], visible=True),
    }


BUBBLE = ("padding:8px 12px;border-radius:12px;white-space:pre-wrap;word-break:break-word;"
          "font-size:14px;line-height:1.45;color:#111827;max-width:80%;")
STYLE = {
    "system": "align-self:stretch;max-width:100%;background:#f3f4f6;color:#4b5563;font-size:13px;"
              "border:1px dashed #d1d5db;",
    "user": "align-self:flex-end;background:#dbeafe;border-bottom-right-radius:4px;",
    "assistant": "align-self:flex-start;background:#ecfdf5;border:1px solid #a7f3d0;border-bottom-left-radius:4px;",
}


def marked(text: str, search: str) -> str:
    """``text`` escaped for HTML, each occurrence of ``search`` (any case) highlighted."""
    escaped = html.escape(text)
    needle = html.escape((search or "").strip())
    if not needle:
        return escaped
    return re.sub(re.escape(needle), lambda m: f'<mark style="background:#fde68a;">{m.group(0)}</mark>', escaped,
                  flags=re.IGNORECASE)


def bubble(message: dict[str, Any], search: str = "") -> str:
    role = str(message.get("role", ""))
    style = BUBBLE + STYLE.get(role, STYLE["assistant"])
    content = marked(message_text(message), search)  # its tool calls too, as name({arguments})
    label = html.escape(role)
    if is_context(message):
        label += " · weight 0: context, not trained on"
        style += "opacity:.6;border-style:dashed;"
    return (f'<div style="{style}"><div style="font-size:11px;font-weight:600;opacity:.65;'
            f'margin-bottom:2px;text-transform:uppercase;">{label}</div>{content}</div>')


def thread(messages: list[dict[str, Any]], search: str = "") -> str:
    return ('<div style="display:flex;flex-direction:column;gap:6px;">'
            + "".join(bubble(m, search) for m in messages) + "</div>")


SIDE = ('<div style="flex:1;min-width:0;border:2px solid {color};border-radius:10px;padding:8px;">'
        '<div style="font-size:12px;font-weight:700;color:{color};margin-bottom:6px;">{title}</div>{body}</div>')
SIDES = '<div style="display:flex;gap:10px;margin-top:8px;">{}</div>'
GOOD, BAD, PLAIN = "#059669", "#dc2626", "#6b7280"


def sft_body(data: dict[str, Any], search: str) -> str:
    return thread(data["messages"], search)


def preference_body(data: dict[str, Any], search: str) -> str:
    """The prompt, then chosen and rejected side by side."""
    return thread(data["prompt"], search) + SIDES.format(
        SIDE.format(color=GOOD, title="✓ CHOSEN", body=thread(data["chosen"], search))
        + SIDE.format(color=BAD, title="✗ REJECTED", body=thread(data["rejected"], search)))


def unpaired_body(data: dict[str, Any], search: str) -> str:
    """The prompt, then the completion framed in its label's colour, 👍 or 👎."""
    return thread(data["prompt"], search) + SIDES.format(SIDE.format(
        color=GOOD if data["label"] else BAD, title=LABEL_WORDS[data["label"]].upper(),
        body=thread(data["completion"], search)))


def prompts_body(data: dict[str, Any], search: str) -> str:
    """The prompt, its reference answer (or that it has none) and its metadata, key by key."""
    answer = data.get("answer") or ""
    body = (f'<div style="{BUBBLE}">{marked(answer, search)}</div>' if answer
            else '<div style="font-size:13px;color:#6b7280;">no reference answer</div>')
    meta = json.loads(data.get("meta") or "{}")
    if meta:
        items = "".join(f"<li><b>{marked(str(key), search)}</b>: "
                        f"{marked(json.dumps(value, ensure_ascii=False), search)}</li>" for key, value in meta.items())
        body += ('<div style="font-size:12px;font-weight:700;color:#6b7280;margin-top:6px;">METADATA</div>'
                 f'<ul style="margin:2px 0 0 16px;font-size:13px;">{items}</ul>')
    return thread(data["prompt"], search) + SIDES.format(SIDE.format(color=PLAIN, title="REFERENCE ANSWER",
                                                                      body=body))


# How each kind's row reads in the browser (a test holds it to the registry: every kind has one).
BODIES = {"sft": sft_body, "preference": preference_body, "unpaired": unpaired_body, "prompts": prompts_body}


def row_html(row: Row, number: int, total: int, search: str = "") -> str:
    """One canonical row as chat bubbles, as its kind reads (``BODIES``): a preference row shows chosen and rejected
    side by side, an unpaired row its completion under 👍 or 👎, a prompts row its reference answer."""
    head = (f'<div style="font-size:12px;color:#6b7280;margin-bottom:6px;">Row {number} of {total}'
            f' · {html.escape(row.source)} line {row.line}</div>')
    body = BODIES[kind_of(row.data).name](row.data, search)
    return (f'<div style="border:1px solid #e5e7eb;border-radius:12px;padding:12px;margin-bottom:12px;'
            f'background:#ffffff;">{head}{body}</div>')


def browse(ex: ExploreUI, home: Home, mapped: dict | None, source: str, kind: str, page: int = 1,
           per_page: int = PAGE_SIZE, search: str = "", where: str = "all") -> dict:
    """One page of the rows that hold ``search`` and pass the filter ``where`` (``lab.data.browse``), rendered as
    chat bubbles; ``page`` is 1-based and clamped. Rows keep their number in the whole dataset."""
    rows, _, label = rows_of(source, kind, mapped, home)
    found = page_of(rows, page=page, per_page=per_page, search=search, where=where or "all")
    body = "".join(row_html(row, number, found.total, search) for number, row in found.rows)
    narrowed = bool((search or "").strip()) or (where or "all") != "all"
    counted = f"{found.matched} of {found.total} rows match" if narrowed else f"{found.total} rows"
    empty = "No row matches: change the search or the filter." if rows else "No rows."
    return {
        ex.rows: body or f'<p style="color:#6b7280">{empty}</p>',
        ex.page: found.page,
        ex.page_info: f"**{html.escape(label)}** · page {found.page} of {found.pages} · {counted}",
        ex.status: "",
    }


def mask(ex: ExploreUI, home: Home, mapped: dict | None, source: str, kind: str, row: int,
         tokenizer: str, template: str, max_length: int) -> dict:
    """Which tokens of one row carry loss under a tokenizer and chat template."""
    from lab.data.masking import mask_html, mask_view

    rows, row_kind, label = rows_of(source, kind, mapped, home)
    if not rows:
        raise LabError(f"{label} has no rows.")
    number = int(row or 1)
    if not 1 <= number <= len(rows):
        raise LabError(f"Row {number} does not exist: {label} has rows 1 to {len(rows)}.")
    data = rows[number - 1].data
    if row_kind == "prompts":
        raise LabError(f"{label} holds prompts: their replies are generated during training (GRPO, RLOO), so no "
                       "token of a row carries loss yet; the loss mask shows SFT, preference and unpaired rows.")
    reply = data.get("chosen", data.get("completion"))  # a preference row's chosen reply, an unpaired completion
    messages = data["messages"] if "messages" in data else [*data["prompt"], *reply]
    tok = tokenizer_for(tokenizer, template, home)
    view = mask_view(messages, tok, tools=data.get("tools"), max_length=int(max_length or 1024))
    share = view.n_loss_tokens / view.n_tokens if view.n_tokens else 0.0
    summary = (f"Row {number} of **{html.escape(label)}**: {view.n_tokens} tokens, "
               f"**{view.n_loss_tokens} carry loss** ({share:.0%})"
               + (" · **truncated** at the max length" if view.truncated else ""))
    if row_kind == "preference":
        summary += " · preference row: shown as prompt + chosen reply"
    elif row_kind == "unpaired":
        summary += f" · unpaired row: prompt + its completion, labelled {LABEL_WORDS[data['label']]}"
    warnings = "\n".join(f"- ⚠ {html.escape(w)}" for w in view.warnings)
    return {
        ex.mask_summary: summary,
        ex.mask_warnings: gr.Markdown(value=f"**Warnings**\n{warnings}" if warnings else "", visible=bool(warnings)),
        ex.mask_html: mask_html(view),
        ex.status: "",
    }


# --------------------------------------------------------------------------- layout


def build_import(home: Home, explore_source: list) -> tuple[ImportUI, CleanUI, SaveUI]:
    gr.Markdown("Bring a file in, see what is wrong with it, preview the cleaning, then save it as an "
                "immutable dataset version.")
    gr.Markdown("### 1 · Choose a file and check it")
    with gr.Row(equal_height=True):
        with gr.Column(scale=3):
            upload = gr.File(label="Upload a file (JSON, JSONL, CSV, Parquet)", file_types=FILE_TYPES, height=250)
        with gr.Column(scale=4):
            path = gr.Textbox(label="… or a local path or Hugging Face dataset id",
                              placeholder="/data/chats.jsonl  or  HuggingFaceH4/no_robots",
                              info="Press Enter or 'Check file' to read it. The server reads files in LAB_HOME/imports "
                                   "and the folders it was started with (--allow-path); upload anything else.")
            with gr.Row(equal_height=True):
                sample = gr.Dropdown(list(SAMPLE_CHOICES), value=next(iter(SAMPLE_CHOICES)),
                                     label="… or a bundled sample", scale=3)
                load_sample = gr.Button("Load sample", scale=1)
            kind = component_for(DataConfig.__dataclass_fields__["kind"])
    check = gr.Button("Check file", variant="primary")
    status = gr.Markdown(CHOOSE_HINT, elem_classes=["lab-status"])
    errors = gr.Dataframe(headers=ERROR_HEADERS, visible=False, label="Invalid rows", wrap=True,
                          interactive=False, max_height=300, column_widths=["10%", "20%", "70%"])
    with gr.Group(visible=False) as mapping_panel:
        gr.Markdown("**Map the columns by hand.** For each field pick the column that holds it (or leave "
                    f"(none)): {REQUIRED} (SFT: or *messages* alone); the kind picked above says which kind the "
                    "mapping is for (auto: the kind whose fields you map). A prompts file keeps the columns left "
                    "unmapped as metadata.", padding=True)
        with gr.Row():
            mapping = {target: gr.Dropdown([NONE], value=NONE, label=target, info=MAPPING_HELP.get(target),
                                           min_width=150)
                       for target in MAPPING_TARGETS}
        recheck = gr.Button("Check again with this mapping", variant="primary")
    imp = ImportUI(upload, path, sample, load_sample, kind, check, status, errors, mapping_panel, mapping,
                   recheck, gr.State(None), gr.State(None))

    gr.Markdown("### 2 · Preview the cleaning", elem_classes=["lab-step"])
    with gr.Accordion("Cleaning options", open=True):
        form = build_form(DataConfig, rows=CLEANING_ROWS,
                          overrides={"near_threshold": slider(0.5, 1.0, 0.01), "val_fraction": slider(0.0, 0.5, 0.01)})
    preview = gr.Button("Preview cleaning")
    clean_status = gr.Markdown(CLEAN_HINT, elem_classes=["lab-status"])
    steps = gr.Dataframe(headers=STEP_HEADERS, visible=False, label="Rows per step", interactive=False, wrap=True)
    pairs = gr.Dataframe(headers=PAIR_HEADERS, visible=False, label="Duplicate pairs", interactive=False, wrap=True,
                         max_height=420, column_widths=["8%", "10%", "41%", "41%"])
    filtered = gr.Dataframe(headers=FILTER_HEADERS, visible=False, label="Rows the filters would remove",
                            interactive=False, wrap=True, max_height=300, column_widths=["10%", "25%", "65%"])
    clean = CleanUI(form, preview, clean_status, steps, pairs, filtered)

    gr.Markdown("### 3 · Save a version", elem_classes=["lab-step"])
    with gr.Row(equal_height=True):
        save_form = build_form(DataConfig, only=("name", "skip_invalid"),
                               extra={"name": {"placeholder": "e.g. support-chats", "scale": 3},
                                      "skip_invalid": {"label": "Skip invalid rows", "scale": 2}})
    save_button = gr.Button("Save version", variant="primary")
    save_status = gr.Markdown(elem_classes=["lab-status"])
    card = gr.Markdown()
    return imp, clean, SaveUI(save_form, save_button, save_status, card)


def build_versions() -> VersionsUI:
    with gr.Tab("Versions", id="data-versions") as tab:
        gr.Markdown("Every save is an immutable version `name@version`. Select one to see its card, "
                    "export it, push it to the hub or delete it. A version named `sample-<kind>` is a bundled "
                    "sample, imported on its own the first time a run, a campaign or an evaluation used "
                    "`sample:<kind>`.")
        table = gr.Dataframe(headers=VERSION_HEADERS, label="Saved versions", interactive=False)
        with gr.Row(equal_height=True):
            ref = gr.Dropdown([], label="Version", scale=4, allow_custom_value=True)
            refresh = gr.Button("Refresh", scale=1)
        status = gr.Markdown(elem_classes=["lab-status"])
        card = gr.Markdown("Select a version above to see its card.")
        with gr.Accordion("Export", open=True):
            with gr.Row(equal_height=True):
                fmt = gr.Radio(["JSONL", "Parquet"], value="JSONL", label="Format", scale=2)
                export_button = gr.Button("Export", scale=1)
            download = gr.File(label="Download", visible=False, interactive=False, file_count="multiple")
        with gr.Accordion("Push to the Hugging Face Hub", open=False):
            with gr.Row(equal_height=True):
                repo = gr.Textbox(label="Repository id", placeholder="your-name/my-dataset",
                                  info="Needs HF_TOKEN set where the app runs.", scale=3)
                push_button = gr.Button("Push", scale=1)
        with gr.Accordion("Delete", open=False):
            with gr.Row(equal_height=True):
                confirm = gr.Checkbox(label="Yes, delete the selected version (cannot be undone)", scale=3)
                delete_button = gr.Button("Delete version", variant="stop", scale=1)
    return VersionsUI(tab, table, ref, refresh, card, fmt, export_button, download, confirm, delete_button,
                      repo, push_button, status)


def build_explore(home: Home) -> ExploreUI:
    with gr.Tab("Explore", id="data-explore"):
        with gr.Row(equal_height=True):
            source = gr.Dropdown(catalog.dataset_choices(home), value=None, label="Dataset", scale=4,
                                 allow_custom_value=True,
                                 info="A saved version or a bundled sample, or type a file's path. Filled in when "
                                      "you check a file or select a version.")
            form = build_form(DataConfig, only=("tokenizer", "template"),
                              extra={"tokenizer": {"scale": 2}, "template": {"scale": 2}})
        status = gr.Markdown(elem_classes=["lab-status"])
        with gr.Tabs():
            with gr.Tab("Statistics"):
                show_stats = gr.Button("Compute statistics", variant="primary")
                summary = gr.Dataframe(label="Summary", interactive=False, visible=False)
                lengths = gr.Plot(label="Lengths", visible=False)
                with gr.Row():
                    turns = gr.Plot(label="Turns", visible=False)
                    roles = gr.Plot(label="Roles", visible=False)
            with gr.Tab("Rows"):
                with gr.Row(equal_height=True):
                    search = gr.Textbox("", label="Search", placeholder="text in the row (Enter searches)", scale=3)
                    where = gr.Dropdown([(w.label, key) for key, w in WHERE.items()], value="all", label="Show",
                                        scale=2)
                    per_page = gr.Dropdown(list(PAGE_SIZES), value=PAGE_SIZE, label="Rows per page", scale=1,
                                           min_width=110)
                with gr.Row(equal_height=True):
                    show_rows = gr.Button("Show rows", variant="primary", scale=2)
                    prev = gr.Button("◀ Previous", scale=1)
                    page = gr.Number(1, precision=0, label="Page", show_label=False, container=False, minimum=1,
                                     scale=1, min_width=80)
                    next_ = gr.Button("Next ▶", scale=1)
                page_info = gr.Markdown()
                rows = gr.HTML()
            with gr.Tab("Loss mask"):
                gr.Markdown("Which tokens the model learns from: highlighted tokens carry loss; the rest "
                            "(prompts, system, template markup) are masked out.")
                with gr.Row():
                    row = gr.Number(1, precision=0, label="Row number", minimum=1,
                                    info="As numbered in the Rows tab.")
                    max_length = gr.Number(1024, precision=0, label="Max length (tokens)", minimum=1,
                                           info="Tokens beyond this are cut, as the trainer would.")
                show_mask = gr.Button("Show loss mask", variant="primary")
                mask_summary = gr.Markdown()
                mask_warnings = gr.Markdown(visible=False, elem_classes=["lab-warning"])
                mask_view = gr.HTML()
    return ExploreUI(source, form, status, show_stats, summary, lengths, turns, roles, show_rows, per_page, search,
                     where, prev, next_, page, page_info, rows, row, max_length, show_mask, mask_summary,
                     mask_warnings, mask_view)


def build(home: Home) -> DataUI:
    """Lay out the Data tab (inside the current ``gr.Tab``) and wire its events."""
    with gr.Tabs():
        with gr.Tab("Import", id="data-import"):
            imp, clean, save = build_import(home, [])
        versions = build_versions()
        explore = build_explore(home)
    ui = DataUI(imp, clean, save, versions, explore, home)
    wire(ui)
    sweep_uploads(home)
    return ui


def sweep_uploads(home: Home) -> None:
    """At the app's start: uploads nobody has used for days, and no dataset version came from, go."""
    from lab.data.uploads import KEEP_DAYS, sweep

    removed = sweep(home)
    if removed:
        log.info("Removed %d upload(s) unused for %d days from %s", len(removed), KEEP_DAYS, home.uploads)


def wire(ui: DataUI) -> None:
    """Connect the Data tab's events; every engine call gets a stable ``api_name``."""
    imp, clean, save, ver, ex, home = ui.imp, ui.clean, ui.save, ui.versions, ui.explore, ui.home
    name = save.form["name"]

    check_outputs = [imp.status, imp.errors, imp.mapping_panel, *imp.mapping.values(), imp.mapped, ex.source,
                     clean.status, clean.steps, clean.pairs, clean.filtered, save.status, save.card, name, imp.checked]
    check_inputs = {"source": imp.path, "kind": imp.kind}
    check = guarded(check_source, imp.status, ui)
    check_io = dict(inputs_kwargs={**check_inputs, "checked": imp.checked}, outputs=check_outputs)

    imp.check.click(check, api_name="data_check", **check_io)
    imp.path.submit(check, api_visibility="private", **check_io)
    imp.load_sample.click(use_sample, imp.sample, imp.path, api_name="data_sample") \
       .then(check, api_visibility="private", **check_io)
    imp.upload.upload(guarded(keep_upload, imp.status, ui),
                      inputs_kwargs={"upload": imp.upload, "kind": imp.kind, "checked": imp.checked},
                      outputs=[imp.path, *check_outputs], api_name="data_upload")
    # Pressing × on the upload takes its results off the page with it (check, preview, save), when the form shows
    # that upload's; a file checked since (a sample, a path) keeps its own.
    imp.upload.clear(guarded(clear_upload, imp.status, ui), inputs_kwargs={"path": imp.path, "checked": imp.checked},
                     outputs=[imp.path, imp.status, *check_outputs], api_visibility="private")
    imp.recheck.click(guarded(check_mapped, imp.status, ui),
                      inputs_kwargs={**check_inputs, "checked": imp.checked, **imp.mapping}, outputs=check_outputs,
                      api_name="data_check_mapped")

    clean.preview.click(functools.partial(started, "Previewing the cleaning of"), imp.path, clean.status,
                        api_visibility="private", queue=False) \
         .then(guarded(preview_cleaning, clean.status, clean, home),
               inputs_kwargs={"mapped": imp.mapped, "checked": imp.checked, **check_inputs, **clean.form.components},
               outputs=[clean.status, clean.steps, clean.pairs, clean.filtered], api_name="data_preview_cleaning")
    save.save.click(guarded(save_version, save.status, ui),
                    inputs_kwargs={"mapped": imp.mapped, "checked": imp.checked, **check_inputs, "name": name,
                                   "skip_invalid": save.form["skip_invalid"], **clean.form.components},
                    outputs=[save.status, save.card, ver.table, ver.ref, ex.source], api_name="data_import")

    listing = guarded(list_saved, ver.status, ver, home)
    listing_io = dict(inputs_kwargs={"selected": ver.ref}, outputs=[ver.table, ver.ref, ver.status])
    ver.tab.select(listing, api_visibility="private", **listing_io)
    ver.refresh.click(listing, api_name="data_versions", **listing_io)
    ver.table.select(pick_version, None, ver.ref, api_visibility="private")
    ver.ref.change(guarded(show_card, ver.status, ver, ex, home), inputs_kwargs={"ref": ver.ref},
                   outputs=[ver.card, ex.source, ver.confirm, ver.status], api_name="data_version_card")
    ver.export.click(guarded(export, ver.status, ver, home), inputs_kwargs={"ref": ver.ref, "fmt": ver.fmt},
                     outputs=[ver.download, ver.status], api_name="data_export")
    ver.delete.click(guarded(delete, ver.status, ver, home), inputs_kwargs={"ref": ver.ref, "confirm": ver.confirm},
                     outputs=[ver.table, ver.ref, ver.status, ver.confirm, ver.card], api_name="data_delete") \
       .then(lambda: explore_choices(home), None, ex.source, api_visibility="private", queue=False)
    ver.push.click(guarded(push, ver.status, ver, home), inputs_kwargs={"ref": ver.ref, "repo_id": ver.repo},
                   outputs=[ver.status], api_name="data_push")

    explore_inputs = {"mapped": imp.mapped, "source": ex.source, "kind": imp.kind}
    tokenizer_inputs = {"tokenizer": ex.form["tokenizer"], "template": ex.form["template"]}
    # The status line first, at once: the charts are hidden until drawn, so the progress needs a line to show on.
    ex.show_stats.click(functools.partial(started, "Computing statistics of"), ex.source, ex.status,
                        api_visibility="private", queue=False) \
      .then(guarded(statistics, ex.status, ex, home), inputs_kwargs={**explore_inputs, **tokenizer_inputs},
            outputs=[ex.status, ex.summary, ex.lengths, ex.turns, ex.roles], api_name="data_stats")
    browse_fn = guarded(browse, ex.status, ex, home)
    browse_io = dict(inputs_kwargs={**explore_inputs, "page": ex.page, "per_page": ex.per_page, "search": ex.search,
                                    "where": ex.where},
                     outputs=[ex.rows, ex.page, ex.page_info, ex.status])
    ex.show_rows.click(browse_fn, api_name="data_browse", **browse_io)
    for button, step in ((ex.prev, -1), (ex.next, 1)):
        button.click(functools.partial(turn_page, step), ex.page, ex.page, api_visibility="private", queue=False) \
              .then(browse_fn, api_visibility="private", **browse_io)
    for event in (ex.search.submit, ex.where.input, ex.per_page.input):  # a new question starts at its first page
        event(lambda: 1, None, ex.page, api_visibility="private", queue=False) \
            .then(browse_fn, api_visibility="private", **browse_io)
    ex.show_mask.click(guarded(mask, ex.status, ex, home),
                       inputs_kwargs={**explore_inputs, "row": ex.row, **tokenizer_inputs, "max_length": ex.max_length},
                       outputs=[ex.mask_summary, ex.mask_warnings, ex.mask_html, ex.status], api_name="data_mask")


def turn_page(step: int, page: int | None) -> int:
    return max(1, int(page or 1) + step)


def on_show(ui: DataUI, home: Home) -> list[OnShow]:
    """What this tab refreshes when shown (lab.ui.common.wire_on_show): the saved versions' table and picker, and
    Explore's dataset picker, so a version saved elsewhere (a campaign's export, the CLI) is there."""
    ver, ex = ui.versions, ui.explore

    def refresh() -> dict:
        return {ver.table: versions_frame(home), ex.source: explore_choices(home),
                ver.ref: gr.Dropdown(choices=catalog.dataset_choices(home, samples=False))}

    return [OnShow(refresh, [ver.table, ver.ref, ex.source])]
