"""The lab as a Hugging Face Space: the Space's metadata, its environment (LAB_HOME, training off without a GPU),
the sync's choice of files (through the real CommitScheduler, with a Hub client that records instead of pushing:
there is no network here), Sign in with Hugging Face through Gradio's local OAuth mock, and the built folder
started as the Space starts it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import Future
from pathlib import Path

import gradio
import httpx
import pytest

from lab import space
from lab.errors import LabError
from lab.home import lab_home
from lab.label import accounts
from tests.app_server import ROOT, answers, free_port, stop_app
from tests.test_label import file_campaign, prefer_thanks, vote_all


def front_matter(readme: Path) -> dict[str, str]:
    block = readme.read_text().split("---\n")[1]
    return dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)


def test_the_space_pins_the_installed_gradio_and_names_its_entry():
    meta = front_matter(space.SPACE_TEMPLATE / "README.md")
    assert meta["sdk"] == "gradio" and meta["sdk_version"] == gradio.__version__
    assert (space.SPACE_TEMPLATE / meta["app_file"]).is_file() and meta["hf_oauth"] == "true"
    assert "**Hardware.**" in (space.SPACE_TEMPLATE / "README.md").read_text()
    requirements = (space.SPACE_TEMPLATE / "requirements.txt").read_text()
    assert "-r requirements-lab.txt" in requirements and space.BUILD_COPIES["requirements.txt"] == "requirements-lab.txt"


def test_prepare_puts_the_home_on_persistent_storage_and_turns_training_off_without_a_gpu(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env: dict[str, str] = {}
    space.prepare(env, cuda=False, persistent=tmp_path / "no-data")
    assert env["LAB_HOME"] == str(tmp_path / "lab_home") and env[space.NO_TRAINING_ENV] == space.CPU_ONLY
    assert (env["LAB_HOST"], env["LAB_PORT"], env["FORWARDED_ALLOW_IPS"]) == ("0.0.0.0", "7860", "*")
    (tmp_path / "data").mkdir()
    env = {space.NO_TRAINING_ENV: "0", "GRADIO_SERVER_PORT": "8080"}
    space.prepare(env, cuda=False, persistent=tmp_path / "data")
    assert env["LAB_HOME"] == str(tmp_path / "data" / "lab_home") and space.NO_TRAINING_ENV not in env
    assert env["LAB_PORT"] == "8080"
    env = {"LAB_HOME": "/elsewhere", space.NO_TRAINING_ENV: "Training is off: this lab labels only."}
    space.prepare(env, cuda=True)
    assert env["LAB_HOME"] == "/elsewhere" and env[space.NO_TRAINING_ENV] == "Training is off: this lab labels only."
    env = {}
    space.prepare(env, cuda=True, persistent=tmp_path / "data")
    assert space.NO_TRAINING_ENV not in env


def test_the_storage_warning_only_on_a_space_off_persistent_storage(tmp_path):
    home = lab_home(tmp_path / "home")
    assert space.storage_warning(home, {}) is None  # not a Space: a local folder is the operator's choice
    warning = space.storage_warning(home, {"SPACE_ID": "team/lab"}, persistent=tmp_path / "data")
    assert warning.startswith("This Space has no persistent storage") and "LAB_SYNC_REPO" in warning
    assert space.storage_warning(home, {"SPACE_ID": "team/lab"}, persistent=tmp_path) is None


class RecordingHub:
    """What CommitScheduler asks of the Hub, recorded instead of sent; futures run at once."""

    def __init__(self) -> None:
        self.commits: list[list[str]] = []

    def create_repo(self, repo_id: str, **kwargs):
        assert kwargs["repo_type"] == "dataset" and kwargs["private"] is True
        return type("RepoUrl", (), {"repo_id": repo_id})()

    def create_commit(self, *, operations, **kwargs):
        self.commits.append(sorted(op.path_in_repo for op in operations))

    def run_as_future(self, fn) -> Future:
        future: Future = Future()
        future.set_result(fn())
        return future


def test_the_sync_pushes_votes_and_dataset_versions_and_nothing_else(home, tmp_path):
    from lab.label.results import export_preferences

    campaign = file_campaign(home, tmp_path, n=3, votes=1)
    vote_all(campaign.id, "ann", home, rule=prefer_thanks)
    version = export_preferences(campaign.id, home=home)
    (home.runs / "r1").mkdir()
    (home.runs / "r1" / "log.txt").write_text("a run's files stay on the Space")
    (home.uploads / "upload.jsonl").write_text("{}\n")
    selected = space.sync_selection(home)
    dataset = f"datasets/{version.name}/{version.version}"
    assert selected == sorted([f"{dataset}/card.json", f"{dataset}/train.parquet", f"{dataset}/validation.parquet",
                               space.VOTES_FILE])  # not store.sqlite, runs/, uploads/, models/
    votes = [json.loads(line) for line in (home.root / space.VOTES_FILE).read_text().splitlines()]
    assert len(votes) == 3 and {v["labeler"] for v in votes} == {"ann"} and all(v["prompt"] for v in votes)
    stamp = (home.root / space.VOTES_FILE).stat().st_mtime_ns
    space.export_votes(home)
    assert (home.root / space.VOTES_FILE).stat().st_mtime_ns == stamp  # unchanged votes are not uploaded again

    assert space.start_sync(home, {}) is None  # off unless LAB_SYNC_REPO is set
    hub = RecordingHub()
    sync = space.start_sync(home, {space.SYNC_REPO_ENV: "team/lab-votes"}, hf_api=hub)
    try:
        deadline = time.monotonic() + 30
        while not hub.commits and time.monotonic() < deadline:  # the scheduler's thread pushes once at start
            time.sleep(0.05)
        assert hub.commits == [selected]
        sync.trigger().result()
        assert len(hub.commits) == 1  # nothing changed: no commit
    finally:
        sync.stop()


@pytest.fixture
def hf_mock(monkeypatch: pytest.MonkeyPatch):
    """Gradio's local OAuth mock signs everyone in as the user huggingface_hub's whoami names: that call needs the
    network, so it is replaced by a fixed answer (as is the token check before it)."""
    import gradio.oauth

    monkeypatch.setattr(gradio.oauth, "get_token", lambda: "hf_not_a_real_token")
    monkeypatch.setattr(gradio.oauth, "whoami", lambda: {"type": "user", "name": "Ann-HF", "fullname": "Ann",
                                                         "avatarUrl": ""})
    monkeypatch.setenv(accounts.HF_ADMINS_ENV, "boss-hf")
    monkeypatch.setenv(accounts.HF_LABELERS_ENV, "*")
    monkeypatch.setenv(accounts.HF_MOCK_ENV, "1")  # off a Space the stand-in is refused unless asked for
    return monkeypatch


@pytest.mark.filterwarnings("ignore:Gradio does not support OAuth features outside of a Space")
def test_sign_in_with_hugging_face_gives_the_role_the_operator_listed(home, hf_mock):
    from starlette.testclient import TestClient

    from lab.ui.app import server_app

    # In-process, without the app's start-up (no queue: pages and sign-in only); https because Gradio's OAuth session
    # cookie is Secure, as on a Space.
    browser = TestClient(server_app(home), base_url="https://lab.test", follow_redirects=False)
    page = browser.get("/")
    assert '"auth_required":true' in page.text.replace(" ", "") and "/login/huggingface" in page.text
    assert browser.get("/label/config").status_code == 401  # HF sign-in configured: no open lab
    signed = browser.get("/login/huggingface?_target_url=/label/", follow_redirects=True)
    assert signed.url.path == "/label/" and "auth_required" not in signed.text
    assert "Sign out of Hugging Face" in signed.text  # Gradio's login button, at the top of the page
    assert browser.get("/label/config").status_code == 200
    assert browser.get("/config").status_code == 401  # a labeler, by LAB_HF_LABELERS=*
    assert browser.get("/").headers["location"] == "label/"
    hf_mock.setenv(accounts.HF_ADMINS_ENV, "boss-hf,ann-hf")  # the operator's list, read on each request
    assert browser.get("/config").status_code == 200
    hf_mock.setenv(accounts.HF_ADMINS_ENV, "boss-hf")
    hf_mock.setenv(accounts.HF_LABELERS_ENV, "someone-else")
    assert browser.get("/label/config").status_code == 401  # signed in with HF, but not listed
    browser.get("/logout", follow_redirects=True)
    hf_mock.setenv(accounts.HF_LABELERS_ENV, "*")
    assert browser.get("/label/config").status_code == 401  # signed out
    assert accounts.identify("hf:Ann-HF", sign_in=True, home=home).role == "labeler"


def test_hugging_face_sign_in_off_a_space_is_refused_unless_its_stand_in_is_asked_for_on_this_machine(
        home, monkeypatch):
    """Off a Space, Gradio's stand-in signs every visitor in as this machine's Hugging Face user and keeps sessions
    under a key anyone can compute: a probe wrote itself an admin's session. The lab refuses to serve so."""
    from lab.ui.app import main, server_app

    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.delenv(accounts.HF_MOCK_ENV, raising=False)
    monkeypatch.setenv(accounts.HF_ADMINS_ENV, "boss-hf")
    with pytest.raises(LabError, match="works on a Hugging Face Space only"):
        server_app(home)
    with pytest.raises(SystemExit, match="works on a Hugging Face Space only"):
        main(["--home", str(home.root)])
    monkeypatch.setenv(accounts.HF_MOCK_ENV, "1")
    with pytest.raises(SystemExit, match="on 127.0.0.1 only, not on 0.0.0.0"):
        main(["--home", str(home.root), "--host", "0.0.0.0"])


def test_the_built_space_starts_as_a_space_does_and_says_what_is_off(tmp_path):
    built = tmp_path / "space"
    made = subprocess.run([sys.executable, "-m", "lab", "space", "build", str(built), "--json"], cwd=ROOT, check=False,
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0 and json.loads(made.stdout) == {"path": str(built)}, made.stderr
    assert {p.name for p in built.iterdir()} >= {"README.md", "requirements.txt", "requirements-lab.txt", "app.py",
                                                 "lab", "recipes"}
    assert not list(built.rglob("__pycache__"))
    again = subprocess.run([sys.executable, "-m", "lab", "space", "build", str(built)], cwd=ROOT, check=False,
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 1 and "is not an empty folder" in again.stderr

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAB_", "HF_TOKEN", "PYTHONPATH"))}
    env.update(SPACE_ID="team/lab", GRADIO_SERVER_PORT=str(port), HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False")
    log = tmp_path / "space.log"
    with log.open("wb") as out:  # what the Space runs: `python app.py` in its folder, nothing else set
        process = subprocess.Popen([sys.executable, "app.py"], cwd=built, env=env, stdout=out,
                                   stderr=subprocess.STDOUT)
    try:
        url, started = f"http://127.0.0.1:{port}/", time.monotonic()
        while not answers(url):
            assert process.poll() is None and time.monotonic() - started < 90, log.read_text()[-3000:]
            time.sleep(0.2)
        page = httpx.get(url, timeout=30).text
        assert "This Space has no persistent storage" in page and space.CPU_ONLY.split(" (")[0] in page
        assert (built / "lab_home" / "store.sqlite").is_file()  # a fresh LAB_HOME beside the entry
    finally:
        stop_app(process)
