"""Names people give (datasets, recipes, runs, campaigns, accounts) follow one rule with one message, in the
engine, the CLI and the app; uploads the check refuses are not kept; and no error reaches a person as a
traceback or a class name.

The CLI is called in-process (``lab.cli.main``): a NUL byte cannot travel in a real process's arguments, and it
is much faster. The app is the real ``app.py`` (session fixture ``lab_app``), driven by ``gradio_client``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import pytest
from gradio_client import Client, handle_file

from lab.config import CampaignConfig, DataConfig, TrainConfig, load_yaml
from lab.data.canonical import Row
from lab.errors import LabError
from lab.home import Home, lab_home
from lab.store import Store
from tests.app_server import AppServer

ROOT = Path(__file__).resolve().parents[1]
TINY_SFT = str(ROOT / "recipes" / "tiny-sft.yaml")
RULE = "use letters, digits, '-', '_' and '.', starting with a letter or digit (at most 64 characters)"
ACCOUNT_RULE = "use letters, digits, '-', '_', '.' and '@', starting with a letter or digit (at most 64 characters)"
# Refused names and how the message quotes them: a long one cut at 40 characters, a NUL escaped.
BAD = [("x" * 300, "'" + "x" * 40 + "…'"), ("a/b", "'a/b'"), ("..", "'..'"), ("a\x00b", "'a\\x00b'")]
MESSAGES = ("Dataset name", "Recipe name", "Run name", "Campaign name", "Account name")


def refusal(what: str, shown: str | None, rule: str = RULE) -> str:
    """The one message for a refused name (``shown`` None: an empty name)."""
    return f"{what} is missing: {rule}." if shown is None else f"{what} {shown} is not allowed: {rule}."


def sft_row(i: int) -> Row:
    return Row({"messages": [{"role": "user", "content": f"question {i}"},
                             {"role": "assistant", "content": f"answer {i}"}]}, i + 1, "test")


def write_sft(path: Path, rows: int = 3) -> Path:
    path.write_text("".join(json.dumps(sft_row(i).data) + "\n" for i in range(rows)))
    return path


@pytest.fixture(scope="module")
def module_home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    return lab_home(tmp_path_factory.mktemp("names") / "home")


@pytest.fixture()
def cli(module_home: Home, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    """``python -m lab ARGS`` in this process, in ``module_home``: (exit status, stdout, stderr)."""
    from lab.cli import main

    monkeypatch.setenv("LAB_HOME", str(module_home.root))

    def run(*argv: str) -> tuple[int, str, str]:
        status = main(list(argv))
        out = capsys.readouterr()
        return status, out.out, out.err

    return run


# --------------------------------------------------------------------------- one rule, in the engine


def test_engine_refuses_bad_names_with_the_one_message(module_home: Home):
    from lab.data.versions import save_version
    from lab.label.accounts import add_account

    places = {
        "Dataset name": lambda name: save_version(name, "sft", "openai", [sft_row(0)], [], {}, home=module_home),
        "Account name": lambda name: add_account(name, "labeler", "a good password", home=module_home),
        "Run name": lambda name: TrainConfig(name=name).validate(cuda=False),
        "Campaign name": lambda name: CampaignConfig(name=name).validate(),
    }
    for what, attempt in places.items():
        rule = ACCOUNT_RULE if what == "Account name" else RULE
        cases = BAD + ([("", None)] if what in ("Dataset name", "Account name") else [])  # '' = the default name
        for name, shown in cases:
            with pytest.raises(LabError) as caught:
                attempt(name)
            assert str(caught.value) == refusal(what, shown, rule), (what, name)


def test_names_are_matched_whole_and_accounts_keep_their_at_sign(module_home: Home):
    from lab.label.accounts import add_account

    with pytest.raises(LabError, match="not allowed"):  # '$' would have let the newline through
        DataConfig(name="x\ny").validate()
    cfg = TrainConfig(name=" spaced-out ")
    cfg.validate(cuda=False)
    assert cfg.name == "spaced-out"
    add_account("boss", "admin", "a good password", home=module_home)  # the first account is an admin
    assert add_account("ann@example.org", "labeler", "a good password", home=module_home).name == "ann@example.org"
    with pytest.raises(LabError, match="Run name 'a@b' is not allowed"):
        TrainConfig(name="a@b").validate(cuda=False)


def test_names_the_lab_derives_stay_within_the_limit():
    from lab.names import check_name, derived_name

    longest = "n" * 64
    for name in (derived_name(longest, prefix="sanity-overfit-"), derived_name(longest, suffix="-sanity")):
        assert check_name(name, "Run name") == name and len(name) == 64


# --------------------------------------------------------------------------- the same rule and message, CLI


def test_cli_refuses_bad_names_with_the_engine_message(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    data = str(write_sft(tmp_path / "chats.jsonl"))
    monkeypatch.setenv("PW", "a good password")
    commands = {
        "Dataset name": lambda name: ["data", "import", data, "--name", name],
        # A missing dataset: if the name were let through, nothing would be launched anyway.
        "Run name": lambda name: ["train", TINY_SFT, "--set", f"name={name}", "--set", "dataset=no-such-dataset"],
        "Campaign name": lambda name: ["label", "create", "--name", name],
        "Account name": lambda name: ["label", "user", "add", name, "--password-env", "PW"],
    }
    for what, argv in commands.items():
        rule = ACCOUNT_RULE if what == "Account name" else RULE
        cases = BAD + ([("", None)] if what in ("Dataset name", "Account name") else [])
        for name, shown in cases:
            status, out, err = cli(*argv(name))
            assert (status, out, err) == (1, "", f"error: {refusal(what, shown, rule)}\n"), (what, name)


# --------------------------------------------------------------------------- and in the app


@pytest.fixture(scope="module")
def client(lab_app: AppServer) -> Client:
    return Client(lab_app.url, verbose=False)


def test_app_refuses_bad_names_with_the_cli_message(client: Client):
    data = client.predict(choice="SFT conversations", api_name="/data_sample")  # a file the app may read
    calls = {
        "Dataset name": lambda name: client.predict(source=data, name=name, api_name="/data_import")[0],
        "Recipe name": lambda name: client.predict(recipe_name=name, api_name="/train_save_recipe")[0],
        "Run name": lambda name: client.predict(name=name, dataset="no-such-dataset", api_name="/train_estimate")[0],
        "Campaign name": lambda name: client.predict(name=name, prompts="", responses_file=None, gold_file=None,
                                                     api_name="/label_create")[0],
        "Account name": lambda name: client.predict(name=name, password="a good password",
                                                    api_name="/label_add_account")[0],
    }
    for what, call in calls.items():
        rule = ACCOUNT_RULE if what == "Account name" else RULE
        cases = BAD + ([("", None)] if what in ("Dataset name", "Recipe name", "Account name") else [])
        for name, shown in cases:
            assert call(name) == f"**⚠ {refusal(what, shown, rule)}**", (what, name)


# --------------------------------------------------------------------------- uploads


def uploaded(client: Client, path: Path) -> tuple[str, str]:
    """Upload ``path`` as the Data tab's file box does: (the path box's value, the check's status)."""
    result = client.predict(upload=handle_file(str(path)), kind="auto", api_name="/data_upload")
    return result[0], result[1]


def test_a_refused_upload_is_not_kept_and_an_accepted_one_stays_for_the_save(client: Client, lab_app: AppServer,
                                                                             tmp_path: Path):
    uploads = lab_app.home / "uploads"
    noise = tmp_path / "noise.jsonl"
    noise.write_bytes(b"\0" + os.urandom(256 * 1024))
    _, status = uploaded(client, noise)
    assert "not a text file" in status and "failed unexpectedly" not in status
    assert not list(uploads.rglob("noise.jsonl")), "the refused upload was kept"

    path, status = uploaded(client, write_sft(tmp_path / "good chats.jsonl"))
    assert "**Valid rows** 3 / 3" in status
    assert path.startswith("upload:") and path.endswith("/good chats.jsonl")  # a name, not the server's path
    kept = uploads / path.removeprefix("upload:")
    assert kept.read_bytes() == (tmp_path / "good chats.jsonl").read_bytes()
    status = client.predict(source=path, name="from-upload", api_name="/data_import")[0]
    assert "Saved **from-upload@" in status and kept.exists()


def test_sweep_removes_old_uploads_no_version_came_from(module_home: Home):
    from lab.data.uploads import KEEP_DAYS, sweep
    from lab.data.versions import save_version

    def upload(folder: str, age_days: float) -> Path:
        path = module_home.uploads / folder / "chats.jsonl"
        path.parent.mkdir(parents=True)
        path.write_text("{}\n")
        then = time.time() - age_days * 86_400
        for p in (path, path.parent):
            os.utime(p, (then, then))
        return path

    old, recent = upload("old", KEEP_DAYS + 1), upload("recent", KEEP_DAYS - 1)
    source = upload("source-of-a-version", KEEP_DAYS + 30)
    save_version("swept-check", "sft", "openai", [sft_row(0)], [], {"source": str(source)}, home=module_home)
    assert sweep(module_home) == [old.parent]
    assert not old.parent.exists() and recent.exists() and source.exists()


# --------------------------------------------------------------------------- no unexpected errors


def test_an_unexpected_error_is_one_sentence_in_the_app_without_its_class():
    from lab.ui.common import user_message

    def save_recipe() -> None: ...

    message = user_message(save_recipe, OSError(36, "File name too long", "/lab/recipes/" + "x" * 300 + ".yaml"))
    assert message.startswith("Save recipe failed unexpectedly: File name too long: /lab/recipes/xxx")
    assert message.endswith("(the full error is in the app's log).") and "OSError" not in message
    assert len(message) < 300


def test_an_unexpected_error_is_one_sentence_in_the_cli_and_its_traceback_is_logged(
        cli, module_home: Home, monkeypatch: pytest.MonkeyPatch):
    import lab.data.versions

    def broken(*args, **kwargs):
        raise RuntimeError("the disk caught fire")

    monkeypatch.setattr(lab.data.versions, "list_versions", broken)
    log = module_home.root / "logs" / "cli-errors.log"
    status, out, err = cli("data", "list")
    assert status == 1 and out == ""
    assert err == f"error: data list failed unexpectedly: the disk caught fire; the traceback is in {log}.\n"
    assert "Traceback" in log.read_text() and "RuntimeError: the disk caught fire" in log.read_text()
    status, out, _ = cli("data", "list", "--json")
    assert status == 1 and "the disk caught fire" in json.loads(out)["error"]


def test_cli_commands_answer_hostile_input_with_a_sentence(cli, module_home: Home, tmp_path: Path):
    noise = tmp_path / "noise.bin"
    noise.write_bytes(b"\xff\xfe\0" + os.urandom(1024))
    folder = tmp_path / "a-folder"
    folder.mkdir()
    expected = {
        ("train", str(folder)): "is a folder; give a YAML file",
        ("train", str(noise)): "is not a text file; give a YAML file",
        ("train", TINY_SFT, "--set", "epochs=nan"): "epochs must be a finite number, got nan",
        ("train", TINY_SFT, "--set", "learning_rate=.inf"): "learning_rate must be a finite number, got inf",
        ("train", TINY_SFT, "--set", "dataset=", "--set", "model=owner/model"): "Choose a dataset",
        ("train", TINY_SFT, "--set", f"model={noise}"): "is a file, not a model",
        ("train", TINY_SFT, "--set", f"model={folder}"): "has no config.json, so it holds no model",
        ("train", TINY_SFT, "--set", "model=run:no-such-run"): "No run 'no-such-run'",
        ("eval", "judge", "--prompt-file", str(noise), "--print-prompt"): "is not UTF-8 text",
        ("label", "leaderboard", "no-such-campaign"): "No campaign 'no-such-campaign'",
        ("runs", "cancel", " "): "Give a run id",
        ("eval", "show", ""): "Give an evaluation id",
        ("label", "close", ""): "Give a campaign id or name",
    }
    fake_rows(module_home)  # one of each: '' would have picked it
    for argv, text in expected.items():
        status, _, err = cli(*argv)
        assert status == 1 and err.endswith("\n") and text in err.splitlines()[-1], (argv, err)
        assert "Traceback" not in err, (argv, err)
    from lab.data.versions import save_version

    version = save_version("export-me", "sft", "openai", [sft_row(1)], [], {}, home=module_home)
    status, _, err = cli("data", "export", version.ref, "--out", str(folder))
    assert status == 1 and "is a folder; give the path of the file to write" in err
    with pytest.raises(SystemExit):  # '' would have selected the newest version of any dataset, and deleted it
        cli("data", "delete", "", "--yes")
    assert (module_home.datasets / "export-me").is_dir()


def fake_rows(home: Home) -> None:
    """One finished run, closed campaign and finished evaluation in the store (no process behind them)."""
    with Store(home).write() as conn:
        conn.execute("INSERT OR IGNORE INTO runs (id, name, method, model, dataset, status, run_dir, config, "
                     "created_at) VALUES ('20250101-000000-sft-aaaa', 'r', 'sft', 'tiny', 'x@1', 'succeeded', '/x', "
                     "'{}', '2025-01-01')")
        conn.execute("INSERT OR IGNORE INTO campaigns (id, name, status, config, sources, created_at) VALUES "
                     "('20250101-000000-bbbb', 'c', 'closed', '{}', '[]', '2025-01-01')")
        conn.execute("INSERT OR IGNORE INTO evals (id, kind, model, dataset, config, status, created_at) VALUES "
                     "('20250101-000000-cccc', 'perplexity', 'tiny', 'x@1', '{}', 'succeeded', '2025-01-01')")


def test_engine_refuses_what_is_no_model_and_no_dataset(module_home: Home, tmp_path: Path):
    from lab.data.versions import save_version
    from lab.train.datasets import resolve_version
    from lab.train.loading import resolve_model_path

    (tmp_path / "weights.bin").write_bytes(b"\0")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    for model, text in ((tmp_path / "weights.bin", "is a file, not a model"), (tmp_path, "has no config.json")):
        with pytest.raises(LabError, match=text):
            resolve_model_path(str(model), module_home)
    assert resolve_model_path(str(tmp_path / "model"), module_home) == str(tmp_path / "model")
    assert resolve_model_path("owner/some-model", module_home) == "owner/some-model"  # a hub id: checked on use
    save_version("newest", "sft", "openai", [sft_row(2)], [], {}, home=module_home)
    with pytest.raises(LabError, match="Choose a dataset"):
        resolve_version(" ", module_home)


def test_recipe_overrides_yaml_cannot_read_are_taken_as_text():
    cfg = load_yaml(TINY_SFT, overrides=["lora_targets=,q_proj", "name=run-1"])
    assert cfg.lora_targets == ",q_proj" and cfg.lora_target_modules() == ["q_proj"] and cfg.name == "run-1"


def test_compare_export_to_a_folder_is_refused_in_a_sentence(tmp_path: Path):
    from lab.cli.compare import export

    document = {"created_at": "now", "settings": {}, "prompts": [], "answers": [], "sources": []}
    with pytest.raises(LabError, match="Could not write .*: Is a directory"):
        export(argparse.Namespace(markdown=str(tmp_path), html=None), document)


def test_app_views_without_a_status_line_still_say_what_went_wrong(client: Client):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="No evaluation 'no-such-job'"):
        client.predict("no-such-job", api_name="/eval_show")
    status = client.predict("no-such-campaign", api_name="/label_admin_view")[0]
    assert "No campaign 'no-such-campaign'" in status
