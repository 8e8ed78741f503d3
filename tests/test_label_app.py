"""The labeling loop through the real app with sign-in on, driven by ``gradio_client`` as people would:
an admin creates a campaign, two labelers vote it to completion at /label, roles hold on the server,
and the admin's export trains a DPO run that succeeds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from gradio_client import Client

from lab.home import lab_home
from lab.store import Store
from tests.app_server import start_app, stop_app
from tests.test_label import responses_file

ROOT = Path(__file__).resolve().parents[1]
PASSWORDS = {"boss": "admin password", "ann": "ann password", "bob": "bob password"}


@pytest.fixture(scope="module")
def signed_app(tmp_path_factory):
    """The app started on a home that holds accounts, so sign-in is on."""
    home = tmp_path_factory.mktemp("signed") / "home"
    for name, role in (("boss", "admin"), ("ann", "labeler"), ("bob", "labeler")):
        added = subprocess.run([sys.executable, "-m", "lab", "label", "user", "add", name, "--role", role,
                                "--password-env", "PW"], capture_output=True, text=True, cwd=ROOT,
                               env={**os.environ, "LAB_HOME": str(home), "PW": PASSWORDS[name]})
        assert added.returncode == 0, added.stderr
    server = start_app(home)
    yield server
    stop_app(server.process)


def signed_in(url: str, name: str) -> Client:
    return Client(url, auth=(name, PASSWORDS[name]), verbose=False)


def test_two_labelers_finish_a_campaign_and_dpo_trains_on_the_export(signed_app, tmp_path):
    admin = signed_in(signed_app.url, "boss")
    status, _, selected = admin.predict(name="loop", prompts="unused", sources=[], votes_per_pair=2,
                                        responses_file=responses_file(tmp_path, 6), api_name="/label_create")
    assert "created" in status, status
    campaign_id = selected["value"]
    for name in ("ann", "bob"):
        labeler = signed_in(signed_app.url + "label/", name)
        assert "Signed in as **" + name in labeler.predict(api_name="/label_campaigns")[0]
        pair = labeler.predict(campaign_id, api_name="/label_next")
        votes = 0
        while pair[1]:  # the lease token; empty when nothing is left for this labeler
            left = pair[4]
            pair = labeler.predict(campaign_id, pair[1], "", api_name="/label_vote_a" if "Thank you" in left
                                   else "/label_vote_b")
            votes += 1
        assert votes == 6 and "Nothing left for you" in pair[3]
    store = Store(lab_home(signed_app.home))
    rows = store.query("SELECT pair_id, COUNT(*) AS n, COUNT(DISTINCT labeler) AS who FROM votes GROUP BY pair_id")
    assert len(rows) == 6 and all(r["n"] == 2 == r["who"] for r in rows)
    assert {r["labeler"] for r in store.query("SELECT labeler FROM votes")} == {"ann", "bob"}

    view = admin.predict(campaign_id, api_name="/label_admin_view")
    assert "**12** votes from **2** labelers" in view[3] and "Leader: **tuned**" in view[3]
    status, result = admin.predict(campaign_id, "labels-loop", 2, 1.0, 0, api_name="/label_export")
    assert "Exported labels-loop@" in status and "6 train" in result, result
    ref = result.split("`")[1]
    status, method, adapter, model, dataset = admin.predict(result, "tiny", api_name="/label_train_dpo")
    assert (method, model, dataset) == ("dpo", "tiny", ref)

    from lab.config import TrainConfig

    form = {**{f: getattr(TrainConfig(), f) for f in TrainConfig.__dataclass_fields__},
            "method": "dpo", "model": "tiny", "dataset": ref, "report_to": "none", "max_steps": 4, "batch_size": 2,
            "eval_split": "none", "save_steps": 0, "max_length": 128, "max_prompt_length": 64, "sample_prompts": 0}
    status, _, selected = admin.predict(**form, api_name="/train_start")
    run_id = selected["value"]
    deadline = time.time() + 240
    while time.time() < deadline:
        progress = admin.predict(run_id, api_name="/train_run_view")[1]
        if "succeeded" in progress or "failed" in progress:
            break
        time.sleep(2)
    assert "succeeded" in progress, progress


def test_roles_are_enforced_by_the_server(signed_app):
    with pytest.raises(Exception):  # a labeler cannot sign in to the full lab (Data, Train, admin handlers)
        signed_in(signed_app.url, "ann")
    with pytest.raises(Exception):
        Client(signed_app.url + "label/", auth=("ann", "wrong password"), verbose=False)
    labeler_page = signed_in(signed_app.url + "label/", "ann")
    endpoints = json.dumps(labeler_page.view_api(return_format="dict", print_info=False)["named_endpoints"])
    assert "/label_vote_a" in endpoints
    assert "/label_create" not in endpoints and "/train_start" not in endpoints and "/label_export" not in endpoints
