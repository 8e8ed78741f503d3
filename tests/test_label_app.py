"""The labeling loop through the real app with sign-in on, driven by ``gradio_client`` as people would:
an admin creates a campaign from an uploaded file, two labelers vote it to completion at /label (and undo a
vote), roles hold on the server, and "Train DPO on this" fills the Train form with settings that train on the
export: the run succeeds (a run whose model did not change fails)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from gradio_client import Client, handle_file

from lab.home import lab_home
from lab.store import Store
from tests.app_server import start_app_with_accounts
from tests.test_label import responses_file

ROOT = Path(__file__).resolve().parents[1]
PASSWORDS = {"boss": "admin password", "ann": "ann password", "bob": "bob password"}
ACCOUNTS = {"boss": ("admin", PASSWORDS["boss"]), "ann": ("labeler", PASSWORDS["ann"]),
            "bob": ("labeler", PASSWORDS["bob"])}


@pytest.fixture(scope="module")
def signed_app(tmp_path_factory):
    """The app started on a home that holds accounts, so sign-in is on."""
    yield from start_app_with_accounts(tmp_path_factory.mktemp("signed") / "home", ACCOUNTS)


def signed_in(url: str, name: str) -> Client:
    return Client(url, auth=(name, PASSWORDS[name]), verbose=False)


def test_two_labelers_finish_a_campaign_and_dpo_trains_on_the_export(signed_app, tmp_path):
    admin = signed_in(signed_app.url, "boss")
    status, _, selected, state = admin.predict(name="loop", prompts="unused", sources=[], votes_per_pair=2,
                                               responses_file=handle_file(responses_file(tmp_path, 6)), gold_file=None,
                                               api_name="/label_create")[:4]
    assert "Created campaign loop" in status and "open for labeling · 0/12 votes" in state, (status, state)
    campaign_id = selected["value"]
    for name in ("ann", "bob"):
        labeler = signed_in(signed_app.url + "label/", name)
        assert labeler.predict(api_name="/label_campaigns")[1]["value"] == campaign_id  # the newest open campaign
        pair = labeler.predict(campaign_id, False, api_name="/label_next")
        votes = 0
        while pair[1]:  # the lease token; empty when nothing is left for this labeler
            left = pair[4]
            pair = labeler.predict(campaign_id, pair[1], "", False, api_name="/label_vote_a" if "Thank you" in left
                                   else "/label_vote_b")
            votes += 1
        assert votes == 6 and "Nothing left for you" in pair[3] and pair[4] == pair[5] == ""  # said once, no answers
    store = Store(lab_home(signed_app.home))
    rows = store.query("SELECT pair_id, COUNT(*) AS n, COUNT(DISTINCT labeler) AS who FROM votes GROUP BY pair_id")
    assert len(rows) == 6 and all(r["n"] == 2 == r["who"] for r in rows)
    assert {r["labeler"] for r in store.query("SELECT labeler FROM votes")} == {"ann", "bob"}

    view = admin.predict(campaign_id, api_name="/label_admin_view")
    assert "**12** votes from **2** labelers" in view[4] and "Leader: **tuned**" in view[4]
    assert "every vote is in" in view[3]
    status, result, policy = admin.predict(campaign_id, "labels-loop", 2, 1.0, 0, api_name="/label_export")
    assert "Exported labels-loop@" in status and "6 train" in result, result
    ref = result.split("`")[1]
    filled = admin.predict("tiny", api_name="/label_train_dpo")  # the exported ref is the session's state
    assert "6 pairs of " + ref in filled[0] and "optimizer step" in filled[0], filled[0]
    assert filled[-1] == filled[0]  # said in the Train tab's status line too, where the page goes (not only a toast)
    names = [p["parameter_name"] for p in admin.view_api(return_format="dict", print_info=False)[
        "named_endpoints"]["/train_start"]["parameters"]]
    from lab.config import TrainConfig

    form = {name: getattr(TrainConfig(), name) for name in names}  # fields the proposal leaves are not updated
    for name, value in zip(names, filled[1:]):
        if not isinstance(value, dict):
            form[name] = value
        elif "value" in value:  # a picker comes with its choices
            form[name] = value["value"]
    assert (form["objective"], form["adapter"], form["model"], form["dataset"]) == ("dpo", "lora", "tiny", ref)
    assert form["warmup_ratio"] == 0 and form["learning_rate"] > 0

    form.update(report_to="none", eval_split="none", save_steps=0, max_length=128, max_prompt_length=64,
                sample_prompts=0)
    status, _, selected = admin.predict(**form, api_name="/train_start")[:3]
    run_id = selected["value"]
    deadline = time.time() + 240
    while time.time() < deadline:
        progress = admin.predict(run_id, api_name="/train_run_view")[1]
        if "succeeded" in progress or "failed" in progress:
            break
        time.sleep(2)
    assert "succeeded" in progress, progress


def test_a_labeler_undoes_a_vote_on_the_page(signed_app, tmp_path):
    admin = signed_in(signed_app.url, "boss")
    campaign_id = admin.predict(name="undo", prompts="unused", sources=[], votes_per_pair=1,
                                responses_file=handle_file(responses_file(tmp_path, 3)), gold_file=None,
                                api_name="/label_create")[2]["value"]
    labeler = signed_in(signed_app.url + "label/", "ann")
    pair = labeler.predict(campaign_id, False, api_name="/label_next")
    after = labeler.predict(campaign_id, pair[1], "", False, api_name="/label_vote_a")
    assert "You: **1** vote ·" in after[2]
    undone = labeler.predict(campaign_id, False, api_name="/label_undo")
    assert "undone" in undone[-1] and undone[4:6] == pair[4:6] and "You: **0** votes" in undone[2]  # the note: last
    raw = labeler.predict(campaign_id, True, api_name="/label_next")
    # Raw: the exact text in a code block (rendered by the lab as HTML, as every answer is).
    assert raw[4].startswith('<pre><code class="language-text">') and raw[4] != pair[4]
    counted = Store(lab_home(signed_app.home)).query("SELECT COUNT(*) AS n FROM live_votes WHERE campaign_id = ?",
                                                     (campaign_id,))
    assert counted == [{"n": 0}]


def test_the_leaderboard_names_no_leader_when_all_are_tied():
    from lab.ui.label_tab import leader_line

    tied = {"comparisons": 40, "ratings": [{"source": s, "rating": 1000.0, "low": 950, "high": 1050}
                                           for s in ("sft", "dpo")]}
    assert leader_line(tied).startswith("No leader: all 2 models are tied (1000, 50%")
    ahead = {**tied, "ratings": [{**tied["ratings"][1], "rating": 1040.0}, {**tied["ratings"][0], "rating": 960.0}]}
    assert leader_line(ahead).startswith("Leader: **dpo** (1040")


def test_roles_are_enforced_by_the_server(signed_app):
    with pytest.raises(Exception):  # a labeler cannot sign in to the full lab (Data, Train, admin handlers)
        signed_in(signed_app.url, "ann")
    with pytest.raises(Exception):
        Client(signed_app.url + "label/", auth=("ann", "wrong password"), verbose=False)
    labeler_page = signed_in(signed_app.url + "label/", "ann")
    endpoints = json.dumps(labeler_page.view_api(return_format="dict", print_info=False)["named_endpoints"])
    assert "/label_vote_a" in endpoints
    assert "/label_create" not in endpoints and "/train_start" not in endpoints and "/label_export" not in endpoints
