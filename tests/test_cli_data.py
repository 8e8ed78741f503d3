"""``python -m lab data ...`` as scripts use it: one JSON document on stdout, exit status, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DATA

ROOT = Path(__file__).resolve().parents[1]


def lab(*args: str, home: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "LAB_HOME": str(home), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "lab", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, input=stdin, timeout=120)


def as_json(result: subprocess.CompletedProcess):
    return json.loads(result.stdout)  # raises unless stdout is exactly one JSON document


def test_check_reports_kind_format_rows_errors_and_duplicates(tmp_path):
    result = lab("data", "check", str(DATA / "invalid_sft.jsonl"), "--json", home=tmp_path)
    assert result.returncode == 0, result.stderr
    report = as_json(result)
    assert (report["kind"], report["format"], report["rows"]) == ("sft", "openai", 1)
    assert report["errors"][0] == {"line": 2, "field": "messages[1]", "reason": "empty assistant reply"}
    assert [e["line"] for e in report["errors"]] == [2, 3, 4, 5, 6, 7, 8, 9]
    assert report["exact_duplicates"] == 0 and report["near_duplicates"] == 0
    assert not (tmp_path / "datasets").exists() or not any((tmp_path / "datasets").iterdir())


def test_check_counts_exact_then_near_duplicates(tmp_path):
    long = "the quick brown fox jumps over the lazy dog near the quiet river bank at dawn every day " * 3
    rows = [{"prompt": f"{long} {i}", "completion": "ok"} for i in range(3)]  # near-duplicates of each other
    rows.append(dict(rows[0]))  # an exact duplicate of row 1
    rows.append({"prompt": "something else entirely", "completion": "yes"})
    path = tmp_path / "dups.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = as_json(lab("data", "check", str(path), "--json", home=tmp_path))
    assert report["exact_duplicates"] == 1
    assert report["near_duplicates"] == 2


def test_unusable_file_exits_non_zero_with_one_sentence(tmp_path):
    result = lab("data", "check", str(DATA / "unrecognised.csv"), "--json", home=tmp_path)
    assert result.returncode != 0
    assert "columns found: foo, bar, baz" in as_json(result)["error"]
    assert "Traceback" not in result.stderr
    empty = lab("data", "check", str(DATA / "empty.jsonl"), home=tmp_path)
    assert empty.returncode != 0 and "is empty" in empty.stderr and empty.stdout == ""


def test_check_with_manual_mapping(tmp_path):
    path = tmp_path / "custom.csv"
    path.write_text("q,a\nWhy?,Because.\n")
    report = as_json(lab("data", "check", str(path), "--map", "q=prompt", "--map", "a=response", "--json",
                         home=tmp_path))
    assert (report["format"], report["rows"]) == ("mapped", 1)


def test_import_refuses_invalid_rows_unless_skipped_then_list_show_export_delete(tmp_path):
    refused = lab("data", "import", str(DATA / "broken.jsonl"), "--name", "demo", "--json", home=tmp_path)
    assert refused.returncode != 0 and "2 of 4 rows are invalid" in as_json(refused)["error"]

    saved = as_json(lab("data", "import", str(DATA / "broken.jsonl"), "--name", "demo", "--skip-invalid",
                        "--val-fraction", "0.5", "--json", home=tmp_path))
    assert saved["train_rows"] + saved["validation_rows"] == 2
    steps = {s["step"]: s for s in saved["card"]["steps"]}
    assert steps["read"]["before"] == 4 and steps["read"]["after"] == 2
    ref = saved["ref"]

    listed = as_json(lab("data", "list", "--json", home=tmp_path))
    assert [v["ref"] for v in listed] == [ref]
    shown = as_json(lab("data", "show", "demo", "--json", home=tmp_path))
    assert shown["ref"] == ref and shown["rows"][0]["line"] in (1, 4)

    out = tmp_path / "out.jsonl"
    assert as_json(lab("data", "export", ref, "--out", str(out), "--json", home=tmp_path))["path"] == str(out)
    exported = [json.loads(line) for line in out.read_text().splitlines()]
    assert set(exported[0]) == {"messages"}

    no_confirm = lab("data", "delete", ref, home=tmp_path, stdin="")
    assert no_confirm.returncode != 0 and "--yes" in no_confirm.stderr
    assert as_json(lab("data", "delete", ref, "--yes", "--json", home=tmp_path)) == {"deleted": ref}
    assert as_json(lab("data", "list", "--json", home=tmp_path)) == []


def test_bad_config_value_is_named(tmp_path):
    result = lab("data", "import", str(DATA / "openai.jsonl"), "--name", "x", "--val-fraction", "1.5", home=tmp_path)
    assert result.returncode != 0 and "val_fraction must be in [0, 1)" in result.stderr


@pytest.mark.parametrize("command", [[], ["data"], ["data", "check"], ["data", "import"], ["data", "list"],
                                     ["data", "show"], ["data", "export"], ["data", "delete"], ["data", "push"],
                                     ["serve"], ["train"], ["runs"], ["label"], ["label", "create"], ["label", "export"],
                                     ["label", "user", "add"], ["compare"], ["eval"],
                                     ["eval", "perplexity"]])
def test_every_command_has_help(tmp_path, command):
    result = lab(*command, "--help", home=tmp_path)
    assert result.returncode == 0 and "usage:" in result.stdout


