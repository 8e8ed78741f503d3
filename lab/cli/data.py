"""``python -m lab data ...``: check, import, list, show, export, delete and push datasets."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from lab.cli import add_json_flag, emit, say
from lab.config import DataConfig, add_arguments, from_arguments
from lab.data.browse import WHERE
from lab.data.canonical import message_text
from lab.data.kinds import KINDS, LABEL_WORDS, MESSAGES
from lab.data.kinds import NAMES as KIND_NAMES
from lab.data.limits import LIMITS, ReadLimits, env_name, flag_name, read_limits
from lab.errors import LabError

ERRORS_SHOWN = 20


def register(commands: argparse._SubParsersAction) -> None:
    data = commands.add_parser("data", help="import, check and manage datasets",
                               description="Import, check and manage datasets.")
    sub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    check = sub.add_parser("check", help="read and validate a file without saving anything",
                           description="Read and validate a file without saving anything; report the format, "
                           "row errors and the duplicates dedup would remove.")
    add_source_arguments(check)
    add_json_flag(check)
    check.set_defaults(handler=run_check)

    imp = sub.add_parser("import", help="check, clean, split and save a dataset version",
                         description="Check, clean, split and save a new immutable dataset version. "
                         "Files with invalid rows are refused unless --skip-invalid.")
    add_source_arguments(imp, kind=False)
    add_arguments(imp, DataConfig)
    add_json_flag(imp)
    imp.set_defaults(handler=run_import)

    lst = sub.add_parser("list", help="list saved dataset versions", description="List saved dataset versions.")
    lst.add_argument("--name", help="only versions of this dataset")
    add_json_flag(lst)
    lst.set_defaults(handler=run_list)

    show = sub.add_parser("show", help="show a version's card and a page of its rows",
                          description="Show a version's card and a page of its rows, optionally only those that "
                          "hold some text or pass a filter; rows keep their number in the split.")
    show.add_argument("ref", type=dataset_ref, help="NAME (newest version) or NAME@VERSION")
    show.add_argument("--rows", type=int, default=3, help="rows per page (default: 3)")
    show.add_argument("--page", type=int, default=1, help="which page of the matching rows (default: 1)")
    show.add_argument("--search", default="", help="only rows whose text holds this (case-insensitive)")
    show.add_argument("--where", default="all", choices=list(WHERE),
                      help="only rows that: " + "; ".join(f"{k}: {w.label}" for k, w in WHERE.items()))
    show.add_argument("--split", default="train", choices=("train", "validation"))
    add_json_flag(show)
    show.set_defaults(handler=run_show)

    export = sub.add_parser("export", help="write a version's split as JSONL or Parquet",
                            description="Write a version's split as JSONL (canonical rows) or Parquet.")
    export.add_argument("ref", type=dataset_ref, help="NAME or NAME@VERSION")
    export.add_argument("--format", default="jsonl", choices=("jsonl", "parquet"))
    export.add_argument("--split", default="train", choices=("train", "validation"))
    export.add_argument("--out", help="file to write (default: LAB_HOME/exports/...)")
    add_json_flag(export)
    export.set_defaults(handler=run_export)

    delete = sub.add_parser("delete", help="delete a version (asks for confirmation)",
                            description="Delete a dataset version and its files.")
    delete.add_argument("ref", type=dataset_ref, help="NAME@VERSION (or NAME for its newest version)")
    delete.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    delete.add_argument("--force", action="store_true", help="delete it even if a queued or running run trains on "
                        "it (that run then fails)")
    add_json_flag(delete)
    delete.set_defaults(handler=run_delete)

    push = sub.add_parser("push", help="upload a version to the Hugging Face Hub (token from HF_TOKEN)",
                          description="Upload a version's splits to a dataset repo on the Hub; "
                          "the token is read from HF_TOKEN.")
    push.add_argument("ref", type=dataset_ref)
    push.add_argument("repo_id", help="owner/name of the dataset repo")
    push.add_argument("--public", action="store_true", help="make the repo public (default: private)")
    add_json_flag(push)
    push.set_defaults(handler=run_push)


def dataset_ref(text: str) -> str:
    """A dataset argument: an empty one would select the newest version of any dataset (and delete it)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("give a dataset NAME or NAME@VERSION, not an empty string")
    return text.strip()


def add_source_arguments(parser: argparse.ArgumentParser, *, kind: bool = True) -> None:
    from lab.data.sources import SAMPLES

    parser.add_argument("path", help="a JSON, JSONL, CSV, Parquet or Arrow file, a dataset folder (save_to_disk's, "
                        "or shards such as data/train-00000-of-00002.parquet), a hub dataset id owner/name[:split], "
                        f"or a bundled sample ({', '.join(SAMPLES)})")
    parser.add_argument("--split", help="which split of a dataset folder or hub dataset to read (default: the only "
                        "one, else train)")
    if kind:  # import takes --kind from DataConfig, whose choices are the same registry's
        parser.add_argument("--kind", choices=KIND_NAMES, help="what the rows are (default: detect; a file of "
                            "questions and answers is SFT data unless you say prompts): " + "; ".join(
                                f"{k.name}: {k.words}" for k in KINDS.values()))
    parser.add_argument("--map", action="append", metavar="COLUMN=FIELD", default=[],
                        help="map a column by hand when detection fails (repeatable); FIELD " + "; ".join(
                            f"for {k.name}: {', '.join(k.mapping_fields)}" for k in KINDS.values())
                        + " (text: a chat transcript; meta: a JSON object of metadata)")
    add_limit_arguments(parser)


def add_limit_arguments(parser: argparse.ArgumentParser) -> None:
    """``--max-import-bytes`` and ``--max-import-rows``: the limits of ``lab.data.limits``, over their variables."""
    for name, f in LIMITS.items():
        meta = f.metadata
        parser.add_argument(f"--{flag_name(name)}", dest=name, metavar=meta["metavar"],
                            help=f"{meta['help']} {meta['metavar']}: {meta['expects']} "
                            f"(default: ${env_name(name)}, else {meta['show'](f.default)})")


def source_path(text: str) -> str:
    """The file a sample's or an upload's name stands for (``lab.data.sources``), else ``text`` as given."""
    from lab.data.sources import named_path
    from lab.home import lab_home

    return str(named_path(text, lab_home()) or text)


def limits_from(args: argparse.Namespace) -> ReadLimits:
    return read_limits(**{name: getattr(args, name) for name in LIMITS})


def run_check(args: argparse.Namespace) -> int:
    from lab.data.formats import describe_format
    from lab.data.pipeline import check_file, parse_mapping

    report = check_file(source_path(args.path), kind=args.kind, mapping=parse_mapping(args.map),
                        limits=limits_from(args), split=args.split)

    def human() -> None:
        print(f"{report.source}: {report.kind} data, format {describe_format(report.format, detected=not args.kind)}")
        for note in report.notes:
            print(f"  note: {note}")
        print(f"  rows: {report.rows} valid of {report.total}")
        print(f"  duplicates: {report.exact_duplicates} exact, {report.near_duplicates} near "
              "(removed on import by default)")
        print_errors(report.errors)

    emit(args, report.to_dict(), human)
    if not report.rows:  # nothing in it could be imported: a script checking files must see it fail
        say(f"error: {report.source}: no row is valid ({report.total} read); there is nothing to import.")
        return 1
    return 0


def print_errors(errors: list) -> None:
    if not errors:
        print("  no invalid rows")
        return
    print(f"  invalid rows: {len(errors)}")
    for error in errors[:ERRORS_SHOWN]:
        print(f"    {error}")
    if len(errors) > ERRORS_SHOWN:
        print(f"    … and {len(errors) - ERRORS_SHOWN} more (use --json for all)")


def run_import(args: argparse.Namespace) -> int:
    from lab.data.pipeline import import_file, parse_mapping

    cfg = from_arguments(DataConfig, args)
    version = import_file(source_path(args.path), cfg, mapping=parse_mapping(args.map), progress=progress_printer(),
                          limits=limits_from(args), split=args.split)
    emit(args, {**version.summary(), "reused": version.reused, "card": version.card}, lambda: print_card(version))
    return 0


def progress_printer():
    def report(fraction: float, message: str) -> None:
        say(f"[{fraction:4.0%}] {message}")
    return report


def print_card(version: Any) -> None:
    card = version.card
    print(f"{version.ref}  ({version.kind}, from {card.get('source_format', version.format)})")
    print(f"  source: {card.get('source')}")
    for note in card.get("notes", []):
        print(f"  note: {note}")
    print(f"  rows: {version.rows['train']} train, {version.rows['validation']} validation")
    print("  steps:")
    for step in card.get("steps", []):
        print(f"    {step['step']:<10} {step['before']:>8} → {step['after']:<8} {step['detail']}")


def run_list(args: argparse.Namespace) -> int:
    from lab.data.versions import list_versions

    versions = list_versions(name=args.name)

    def human() -> None:
        if not versions:
            print("no datasets yet: python -m lab data import FILE --name NAME")
            return
        print(f"{'dataset':<32} {'kind':<11} {'format':<24} {'train':>7} {'val':>6}  created")
        for v in versions:
            print(f"{v.ref:<32} {v.kind:<11} {v.format:<24} {v.rows['train']:>7} {v.rows['validation']:>6}  "
                  f"{v.created_at}")

    emit(args, [v.summary() for v in versions], human)
    return 0


def run_show(args: argparse.Namespace) -> int:
    from lab.data.browse import page_of
    from lab.data.versions import get_version, version_rows

    version = get_version(args.ref)
    found = page_of(version_rows(version, split=args.split), page=args.page, per_page=args.rows,
                    search=args.search, where=args.where)
    rows = [{"number": number, **row.data, "source": row.source, "line": row.line} for number, row in found.rows]

    def human() -> None:
        print_card(version)
        print(f"  {args.split} rows {found.matched} of {found.total} match · page {found.page} of {found.pages}")
        for row in rows:
            print(f"  --- row {row['number']} · {row['source']}:{row['line']}")
            print_fields(row, KINDS[version.kind].fields)

    emit(args, {**version.summary(), "card": version.card, "rows": rows, "page": found.page, "pages": found.pages,
                "matched": found.matched, "total": found.total}, human)
    return 0


def print_fields(row: dict[str, Any], fields: dict[str, str]) -> None:
    """A row's fields as lines: a conversation or prompt by role, a reply by its side, a label by its words, a text
    (a reference answer, metadata) when it holds one."""
    for field, how in fields.items():
        value = row.get(field)
        if how == MESSAGES:
            for message in value or []:
                label = message["role"] if field in ("messages", "prompt") else field
                print(f"  {label:>10}: {message_text(message)[:200]}")
        elif isinstance(value, bool):
            print(f"  {field:>10}: {LABEL_WORDS[value]}")
        elif value and value != "{}":
            print(f"  {field:>10}: {value[:200]}")


def run_export(args: argparse.Namespace) -> int:
    from lab.data.versions import export_version

    if args.out and Path(args.out).is_dir():
        raise LabError(f"--out {args.out} is a folder; give the path of the file to write.")
    path = export_version(args.ref, args.format, dest=args.out, split=args.split)
    emit(args, {"path": str(path)}, lambda: print(path))
    return 0


def run_delete(args: argparse.Namespace) -> int:
    from lab.data.versions import delete_version, get_version, refuse_if_trained_on
    from lab.home import lab_home

    version = get_version(args.ref)
    if not args.force:
        refuse_if_trained_on(version, lab_home())  # before asking for a confirmation that would be for nothing
    if not args.yes:
        if not sys.stdin.isatty():
            raise LabError(f"Deleting {version.ref} needs confirmation: add --yes.")
        say(f"Delete {version.ref} ({version.rows['train']} train / {version.rows['validation']} validation rows)? "
            "Type the dataset name to confirm:")
        if input().strip() != version.name:
            raise LabError("Not deleted: the name did not match.")
    delete_version(version, force=args.force)
    emit(args, {"deleted": version.ref}, lambda: say(f"deleted {version.ref}"))
    return 0


def run_push(args: argparse.Namespace) -> int:
    from lab.data.versions import push_to_hub

    url = push_to_hub(args.ref, args.repo_id, private=not args.public)
    emit(args, {"url": url}, lambda: print(url))
    return 0
