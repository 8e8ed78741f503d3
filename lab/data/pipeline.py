"""File → rows → cleaned splits → saved version: the steps behind both the Data tab and
``python -m lab data``. Nothing here prints; callers show the reports."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lab.config import DataConfig
from lab.data.canonical import Kind, ParsedFile, Row, RowError
from lab.data.formats import MAPPING_FIELDS, convert, detect, from_mapping
from lab.data.kinds import field_texts, kind_of
from lab.data.limits import ReadLimits, env_name, flag_name, read_limits
from lab.data.readers import read_table, refuse_wide
from lab.data.validate import RowProblem
from lab.errors import LabError
from lab.home import Home
from lab.names import check_name

__all__ = ["MAPPING_FIELDS", "CheckReport", "load_file", "peek_columns", "check_file", "plan_cleaning",
           "import_file", "parse_mapping"]

Progress = Callable[[float, str], None]


def load_file(path: str | Path, *, kind: Kind | None = None, mapping: dict[str, str] | None = None,
              source_name: str | None = None, limits: ReadLimits | None = None,
              split: str | None = None) -> ParsedFile:
    """Read (within ``limits``, by default the environment's; ``split`` of a folder or hub dataset), detect the format
    (or apply ``mapping``), convert and validate every row.

    Row problems are collected, never raised; ``LabError`` means nothing in the file is usable.
    """
    limits = limits or read_limits()
    table = read_table(path, source_name=source_name, split=split, limits=limits)
    columns = table.columns
    refuse_wide(len(columns), table.source)  # JSON records may bring any number of keys
    if not table.records:
        first = table.errors[0]
        raise LabError(f"{table.source}: no readable rows; the first problem is at {first.line}: {first.reason}.")
    if mapping:
        detected = from_mapping(mapping, columns, kind=kind, source=table.source)
    else:
        detected = detect(columns, table.records, kind=kind, source=table.source)
    parsed = ParsedFile(kind=detected.kind, format=detected.name, columns=columns, source=table.source,
                        total=table.total, errors=list(table.errors), notes=list(table.notes))
    for line, record in table.records:
        try:
            row = convert(record, detected)
            too_long(row, record, limits, detected.source_field)
            parsed.rows.append(Row(row, line, table.source))
        except RowProblem as problem:
            parsed.errors.append(RowError(line, problem.field, problem.reason, table.source))
    parsed.errors.sort(key=lambda e: (e.line is None, e.line or 0))
    return parsed


def too_long(row: dict[str, Any], record: dict[str, Any], limits: ReadLimits,
             named: Callable[[str], str | None]) -> None:
    """Refuse a row with a text longer than ``max_text_chars``, naming its field as the file does (``named``, or the
    column of ``record`` it came from: :func:`long_field`)."""
    for name in kind_of(row).fields:
        longest = max(map(len, field_texts(row, name)), default=0)
        if longest > limits.max_text_chars:
            raise RowProblem(long_field(record, named(name) or name, limits.max_text_chars),
                             f"a text of {longest:,} characters, more than the limit of "
                             f"{limits.max_text_chars:,}; set {env_name('max_text_chars')} (or pass "
                             f"--{flag_name('max_text_chars')}) higher if it is meant to be that long")


def long_field(record: dict[str, Any], field: str, limit: int) -> str:
    """Where a text over ``limit`` came from, as the file names it: ``field`` when the file has that column; else
    the column whose own text is over the limit (Alpaca's ``input``, which became part of ``messages``); else, the
    text joined from several columns, ``field`` with the column holding the longest part."""
    if field in record:
        return field
    lengths = {column: longest_text(value) for column, value in record.items()}
    column = max(lengths, key=lengths.__getitem__, default=None)
    if column is None:
        return field
    return column if lengths[column] > limit else f"{field} (longest part from {column})"


def longest_text(value: Any) -> int:
    """The length of the longest string in a value read from a file (nested lists and objects walked)."""
    stack, longest = [value], 0
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            longest = max(longest, len(item))
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return longest


def peek_columns(path: str | Path) -> list[str]:
    """The columns of a file, for mapping them by hand when detection fails."""
    return read_table(path).columns


def parse_mapping(pairs: list[str] | None) -> dict[str, str]:
    """``["question=prompt", "best=response"]`` → ``{"question": "prompt", "best": "response"}``."""
    mapping: dict[str, str] = {}
    for pair in pairs or []:
        column, sep, target = pair.partition("=")
        if not sep or not column.strip() or not target.strip():
            raise LabError(f"--map takes COLUMN=FIELD, got '{pair}'.")
        mapping[column.strip()] = target.strip()
    return mapping


@dataclass
class CheckReport:
    """What ``data check`` prints: the file read and validated, and what dedup would remove."""

    source: str
    kind: Kind
    format: str
    rows: int
    total: int
    columns: list[str]
    errors: list[RowError] = field(default_factory=list)
    exact_duplicates: int = 0
    near_duplicates: int = 0
    notes: list[str] = field(default_factory=list)  # how the file was read

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["errors"] = [e.to_dict() for e in self.errors]
        return out


def check_file(path: str | Path, *, kind: Kind | None = None, mapping: dict[str, str] | None = None,
               source_name: str | None = None, limits: ReadLimits | None = None,
               split: str | None = None) -> CheckReport:
    """Read and validate without saving; count the duplicates dedup would remove at default settings."""
    from lab.data.quality import exact_duplicates, near_duplicates

    parsed = load_file(path, kind=kind, mapping=mapping, source_name=source_name, limits=limits, split=split)
    defaults = DataConfig()
    exact = exact_duplicates(parsed.rows)
    dropped = {p.drop for p in exact}
    remaining = [row for i, row in enumerate(parsed.rows) if i not in dropped]
    near = near_duplicates(remaining, threshold=defaults.near_threshold)
    return CheckReport(source=parsed.source, kind=parsed.kind, format=parsed.format, rows=len(parsed.rows),
                       total=parsed.total, columns=parsed.columns, errors=parsed.errors,
                       exact_duplicates=len(exact), near_duplicates=len(near), notes=parsed.notes)


def plan_cleaning(parsed: ParsedFile, cfg: DataConfig, tokenizer: Any = None):
    """What cleaning would do, before anything is removed: counts per step and the duplicate pairs.

    ``tokenizer`` is loaded from ``cfg`` when token filters are set and none is given."""
    from lab.data import quality

    cfg.validate()
    lengths = None
    if cfg.min_tokens or cfg.max_tokens:
        tokenizer = tokenizer or load_cfg_tokenizer(cfg)
        lengths = quality.token_lengths(parsed.rows, tokenizer)
    return quality.clean(parsed.rows, exact=cfg.dedup_exact, near=cfg.dedup_near, threshold=cfg.near_threshold,
                         lengths=lengths, min_tokens=cfg.min_tokens or None, max_tokens=cfg.max_tokens or None,
                         min_turns=cfg.min_turns or None, max_turns=cfg.max_turns or None)


def load_cfg_tokenizer(cfg: DataConfig):
    from lab.models import load_tokenizer

    return load_tokenizer(cfg.tokenizer, template=None if cfg.template == "model" else cfg.template)


def import_file(path: str | Path, cfg: DataConfig, *, mapping: dict[str, str] | None = None,
                home: Home | None = None, progress: Progress | None = None, source_name: str | None = None,
                limits: ReadLimits | None = None, split: str | None = None):
    """Read, validate, clean, split and save a new dataset version. Refuses files with invalid rows
    unless ``cfg.skip_invalid``: rows are never dropped silently."""
    from lab.data import quality
    from lab.data.versions import refuse_other_kind, save_version

    report = progress or (lambda fraction, message: None)
    cfg.validate()
    check_name(cfg.name, "Dataset name")  # validate checks a name given; an import needs one
    report(0.05, "Reading and validating")
    parsed = load_file(path, kind=cfg.kind_or_none, mapping=mapping, source_name=source_name, limits=limits,
                       split=split)
    if parsed.errors and not cfg.skip_invalid:
        shown = "; ".join(str(e) for e in parsed.errors[:3])
        raise LabError(f"{len(parsed.errors)} of {parsed.total} rows are invalid ({shown}"
                       f"{'; …' if len(parsed.errors) > 3 else ''}). Fix the file, or choose to skip invalid rows.")
    if not parsed.rows:
        raise LabError(f"{parsed.source}: no valid rows to save.")
    refuse_other_kind(cfg.name.strip(), parsed.kind, home)  # before the cleaning; save_version checks again, locked
    report(0.4, "Removing duplicates and filtering")
    plan = plan_cleaning(parsed, cfg)
    if not plan.rows:
        raise LabError("Cleaning removed every row; loosen the filters.")
    rows = plan.rows
    limit_step = []
    if cfg.max_rows and len(rows) > cfg.max_rows:
        import random

        keep = sorted(random.Random(cfg.seed).sample(range(len(rows)), cfg.max_rows))
        limit_step = [{"step": "sample", "before": len(rows), "after": cfg.max_rows, "removed": len(rows) - cfg.max_rows,
                       "detail": f"seeded random sample of {cfg.max_rows} rows (seed {cfg.seed})"}]
        rows = [rows[i] for i in keep]
    report(0.75, "Splitting")
    train, validation = quality.split(rows, val_fraction=cfg.val_fraction, seed=cfg.seed)
    steps = [{"step": "read", "before": parsed.total, "after": len(parsed.rows),
              "removed": len(parsed.errors), "detail": "invalid rows left out" if parsed.errors else "all rows valid"}]
    steps += [asdict(s) for s in plan.steps] + limit_step
    steps.append({"step": "split", "before": len(rows), "after": len(train), "removed": 0,
                  "detail": f"{len(train)} train / {len(validation)} validation (seed {cfg.seed})"})
    card = {
        "source": str(path) if source_name is None else source_name,
        "source_format": parsed.format,
        "kind": parsed.kind,
        "columns": parsed.columns,
        "mapping": mapping or None,
        "config": asdict(cfg),
        "steps": steps,
        "invalid_rows": [e.to_dict() for e in parsed.errors[:200]],
        "invalid_count": len(parsed.errors),
        "notes": parsed.notes,
    }
    report(0.85, "Saving")
    version = save_version(cfg.name.strip(), parsed.kind, parsed.format, train, validation, card, home=home)
    report(1.0, f"{version.ref} holds these very rows already; nothing new was written" if version.reused
           else f"Saved {version.ref}")
    return version
