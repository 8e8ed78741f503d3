"""The Label tab and the labelers' page as a newcomer meets them, checked on their Blocks and handlers (no browser,
no model): a lab without accounts says why a campaign asking 2 votes a pair cannot finish, and agreement numbers say
what they need instead of a dash; the vote buttons start with the keys the instructions give; a tab with no campaign
opens its form; a campaign just created is selected; a finished labeler reads "Nothing left" once, without answers;
an early export warns in words; a click in the Campaigns table selects; "Use via API" is not shown to labelers."""

from __future__ import annotations

import json
import urllib.request
from types import SimpleNamespace

import gradio as gr
import pytest

from lab.config import CampaignConfig, TrainConfig
from lab.label import campaigns, serving
from lab.label.accounts import add_account
from lab.store import Store
from lab.ui import label_tab
from lab.ui.forms import Form
from tests.test_label import responses_file

LOCAL = SimpleNamespace(username=None)  # a request on a lab without accounts: the local admin


def build(home, *, sign_in: bool = True):
    """The Label tab built alone, as the app builds it (sign-in decided per request)."""
    with gr.Blocks() as demo, gr.Tabs() as tabs, gr.Tab("Label"):
        labeling, admin = label_tab.build(home, sign_in, train_form=Form(TrainConfig), tabs=tabs,
                                          train_status=gr.Markdown())
    return demo, labeling, admin


@pytest.fixture()
def tab(home):
    return build(home)


def file_campaign(home, tmp_path, name: str, n: int, votes_per_pair: int, **config):
    return campaigns.create_campaign(CampaignConfig(name=name, sources="", votes_per_pair=votes_per_pair,
                                                    responses_file=responses_file(tmp_path, n), **config), home=home)


def vote_all(home, campaign_id: str, labeler: str, choices: list[str]) -> None:
    for choice in choices:
        served = serving.next_pair(campaign_id, labeler, home=home)
        assert served is not None
        assert serving.vote(served.token, labeler, choice, home=home)


def form_values(admin, **values):
    """The New campaign form's values as a person leaves them, with ``values`` typed in."""
    start = {name: component.value for name, component in admin.form.components.items()}
    return {**start, "prompts": "unused", "sources": [], **values}


# --------------------------------------------------------------------------- the page's buttons and keys


def test_the_buttons_start_with_the_keys_the_instructions_give(tab):
    """Before a campaign is chosen the row was labelled with the graded keys ("Both bad [6]") under instructions
    that say 4 (Both bad)."""
    _, labeling, _ = tab
    for name, text, key in label_tab.VOTES:
        button = labeling.buttons[name]
        assert (button.value, button.elem_classes, button.visible) == (text, [f"lab-key-{key}"], True), name
        assert f"{key} ({text})" in labeling.how.value
    assert not any(labeling.buttons[name].visible for name in ("a2", "a1", "b1", "b2", "up", "down"))
    graded = {name for name, _, _ in label_tab.GRADED}
    assert label_tab.shown("both_bad", "graded", graded)["elem_classes"] == ["lab-key-6"]
    assert label_tab.shown("both_bad", "pairwise", {"both_bad"})["elem_classes"] == ["lab-key-4"]
    assert label_tab.shown("a", "thumbs", {"up", "down"}) == {"visible": False}


def test_every_key_is_drawn_beside_its_button_but_not_on_a_touch_screen():
    keys = {key for votes in label_tab.PAGE_VOTES.values() for _, _, key in votes} | {k for _, _, k in label_tab.MOVES}
    for key in keys:
        assert f'button.lab-key-{key}::after {{ content: "[{key}]"; }}' in label_tab.SHORTCUTS, key
    head = label_tab.SHORTCUTS
    assert ("@media (pointer: coarse) { button[class*=\"lab-key-\"]::after { content: none; } .lab-keys { display: "
            "none; } }") in head
    assert '<span class="lab-keys">Keys: 1 (A is better)' in label_tab.how_text("pairwise", True)  # hidden there too
    assert "classList.contains(keyClass)" in head  # the key finds its button by class, not by its text
    assert "scrollIntoView" in head and "max-width: 767px" in head  # a phone is shown the next prompt


# --------------------------------------------------------------------------- a lab without accounts


def test_a_lab_without_accounts_starts_votes_per_pair_at_one_and_says_why(home, tmp_path):
    _, _, admin = build(home)
    votes = admin.form["votes_per_pair"]
    assert votes.value == 1 and "No labeler accounts yet" in votes.info
    add_account("boss", "admin", "a good password", home=home)
    _, _, admin = build(home)
    assert admin.form["votes_per_pair"].value == 2 and "No labeler accounts" not in admin.form["votes_per_pair"].info


def test_creating_warns_a_lab_without_accounts_and_selects_the_campaign_without_leasing(tab, home, tmp_path,
                                                                                       monkeypatch):
    _, labeling, admin = tab
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))  # where Gradio puts uploads: the file is one
    path = responses_file(tmp_path, 3)
    out = label_tab.create_campaign(admin, home, True, labeling, LOCAL, **form_values(
        admin, name="solo", votes_per_pair=2, responses_file=path))
    said = out[admin.status]
    assert said.startswith("**✓ Created campaign solo") and "each pair gets 1 of the 2 votes asked" in said, said
    assert "add labeler accounts (Accounts, below)" in said and "Votes per pair 1" in said
    campaign_id = out[admin.selected]["value"]
    assert out[labeling.campaign]["value"] == campaign_id  # the voting panel follows the new campaign
    assert out[labeling.progress] == "**solo** is chosen: press **Start** to label it."
    assert out[admin.voting] == gr.update(open=True) and out[admin.empty] == ""
    assert Store(home).query("SELECT COUNT(*) AS n FROM leases") == [{"n": 0}]  # selecting leased nothing
    assert out[labeling.right_column] == gr.update(visible=True) and out[labeling.left_heading] == "### A"
    from tests.test_label_thumbs import thumbs_file

    thumbs = label_tab.create_campaign(admin, home, True, labeling, LOCAL, **form_values(
        admin, name="thumbs-panel", mode="thumbs", votes_per_pair=1, responses_file=thumbs_file(tmp_path, 2)))
    # The voting panel shows one answer and the thumbs instructions, not an empty A/B pair.
    assert thumbs[labeling.right_column] == gr.update(visible=False) and thumbs[labeling.left_heading] == "### Answer"
    assert "Is this answer good?" in thumbs[labeling.how]

    one = label_tab.create_campaign(admin, home, True, labeling, LOCAL, **form_values(
        admin, name="single", votes_per_pair=1, responses_file=path))
    assert "No labeler accounts" not in one[admin.status]
    add_account("boss", "admin", "a good password", home=home)
    team = label_tab.create_campaign(admin, home, True, labeling, SimpleNamespace(username="boss"),
                                     **form_values(admin, name="team", votes_per_pair=2, responses_file=path))
    assert "No labeler accounts" not in team[admin.status]


def test_agreement_says_what_it_needs_instead_of_a_dash(tab, home, tmp_path):
    _, _, admin = tab
    campaign = file_campaign(home, tmp_path, "alone", 3, votes_per_pair=2)
    vote_all(home, campaign.id, "local", ["a", "b", "both_bad"])
    out = label_tab.admin_view(admin, home, True, LOCAL, campaign.id)
    assert out[admin.quality].startswith("**3** votes from **1** labeler · 0 pairs with 2+ votes (agreement needs 2 "
                                         "labelers on the same pair)"), out[admin.quality]
    assert "Position bias: labelers picked the left answer 50% of the time in 2 decided votes (50% is unbiased; " \
           "p = 1)" in out[admin.quality]
    agreement = out[admin.agreement]
    assert "needs 2 labelers on the same pair" in agreement and "add accounts (Accounts, below)" in agreement
    assert "–" not in agreement
    table = out[admin.labelers]
    assert list(table.columns) == label_tab.LABELER_HEADERS
    row = table.iloc[0].to_dict()
    assert (row["picked left"], row["agrees with others"], row["gold accuracy"], row["position bias"]) == (
        "50%", "no shared pair", "no gold pair", "no")

    vote_all(home, campaign.id, "ann", ["a", "a", "b"])  # a second person on the same pairs
    text = label_tab.agreement_text(label_tab_report(home, campaign.id))
    assert "**Fleiss' κ**:" in text and "(any number of labelers a pair)" in text and "**Raw agreement**:" in text
    assert "needs 2 labelers" not in text


def label_tab_report(home, campaign_id: str) -> dict:
    from lab.label.results import agreement

    return agreement(campaign_id, home=home)


def test_quality_in_words_and_singulars():
    report = {"votes": 1, "labelers": 1, "pairs_with_overlap": 1, "fleiss_kappa": 0.5, "krippendorff_alpha": 0.4,
              "pairwise_agreement": 0.75, "cohen_kappa": None,
              "position_bias": {"decided": 7, "a_rate": 4 / 7, "p_value": 1.0, "flagged": False}}
    text = label_tab.quality_text(report, None)
    assert text.startswith("**1** vote from **1** labeler · 1 pair with 2+ votes\n\n"), text
    assert "labelers picked the left answer 57% of the time in 7 decided votes (50% is unbiased; p = 1)" in text
    agreement = label_tab.agreement_text(report)
    assert "75% of the votes given on the same pair agree" in agreement
    assert "**Cohen's κ**: only with exactly 2 labelers sharing 2+ pairs" in agreement
    assert label_tab.AGREEMENT_TITLE == "Agreement between labelers (1 = full agreement, 0 = chance)"


def test_the_flywheel_says_what_agreement_needs(home):
    from lab.ui.label_flywheel import source_pair_table

    table = source_pair_table([{"sources": ["base", "tuned"], "pairs": 3, "votes": 3, "kappa": None,
                                "agreement": None, "outcomes": {"both_bad": 1, "base": 2}}], home)
    row = table.iloc[0].tolist()
    assert row[3] == row[4] == "needs 2 labelers on the same pair" and row[5] == "both bad 1, base 2"


# --------------------------------------------------------------------------- the tab as it is shown


def test_a_tab_with_no_campaign_opens_its_form_and_says_so(tab, home, tmp_path):
    _, labeling, admin = tab
    refresh = label_tab.on_show((labeling, admin), home)[0]
    assert refresh.inputs == [admin.selected, labeling.campaign]
    out = refresh.fn(None, None)
    assert out[admin.empty] == label_tab.NO_CAMPAIGN_YET and "No campaign yet: create one below" in out[admin.empty]
    assert out[admin.voting] == gr.update(open=False) and out[admin.new_campaign] == gr.update(open=True)
    assert {admin.empty, admin.voting, admin.new_campaign} <= set(refresh.outputs)

    campaign = file_campaign(home, tmp_path, "first", 2, votes_per_pair=1)
    out = refresh.fn(None, None)
    assert out[admin.empty] == "" and out[admin.voting] == gr.update(open=True)
    assert admin.new_campaign not in out  # as the admin left it
    # a page just loaded: the newest campaign is chosen, in the results and to label (no pair served until Start)
    assert out[admin.selected]["value"] == out[labeling.campaign]["value"] == campaign.id
    newer = file_campaign(home, tmp_path, "second", 2, votes_per_pair=1)
    kept = refresh.fn(campaign.id, campaign.id)  # the admin's choices are kept
    assert kept[admin.selected]["value"] == kept[labeling.campaign]["value"] == campaign.id
    assert refresh.fn("gone", "gone")[admin.selected]["value"] == newer.id
    campaigns.set_status(campaign.id, "closed", home=home)
    campaigns.set_status(newer.id, "closed", home=home)
    assert refresh.fn(None, None)[admin.empty] == label_tab.NONE_OPEN


def test_a_click_in_the_campaigns_table_selects_that_campaign(tab):
    demo, _, admin = tab
    assert label_tab.pick_campaign(SimpleNamespace(row_value=["20261204-204610-1e62", "round1"])) == \
        "20261204-204610-1e62"
    wired = [fn for fn in demo.fns.values() if (admin.campaigns._id, "select") in fn.targets]
    assert len(wired) == 1 and [block._id for block in wired[0].outputs] == [admin.selected._id]


def test_the_form_fits_its_words(tab):
    demo, _, admin = tab
    assert admin.form["responses_file"].label == "Responses file (optional)"
    assert admin.form["gold_file"].label == "Gold pairs file (optional)"
    shown = [block.value for block in demo.blocks.values() if isinstance(block, gr.Markdown)]
    assert label_tab.UPLOADS_HELP in shown  # the files' explanation, under them
    assert admin.form["prompts"].min_width >= 300  # "sample:sft (bundled sample)" is not cut
    texts = [str(block.value) for block in demo.blocks.values() if isinstance(block, (gr.Markdown, gr.Button))]
    texts += [str(getattr(block, "info", "") or "") for block in demo.blocks.values()]
    assert not [t for t in texts if ("👍" in t or "👎" in t) and "Good" not in t and "Bad" not in t]  # words beside
    buttons = {block.value for block in demo.blocks.values() if isinstance(block, gr.Button)}
    assert "Close campaign" in buttons and "Close" not in buttons


# --------------------------------------------------------------------------- the labeler's page


def test_nothing_left_is_said_once_and_the_answers_hidden(tab, home, tmp_path):
    _, labeling, _ = tab
    campaign = file_campaign(home, tmp_path, "short", 1, votes_per_pair=1)
    first = label_tab.show_next(labeling, home, True, LOCAL, campaign.id, False, [])
    assert first[labeling.answers] == gr.update(visible=True) and first[labeling.token]
    done = label_tab.cast_vote(labeling, home, True, "a", LOCAL, campaign.id, first[labeling.token], "", False, [])
    assert label_tab.NOTHING_LEFT in done[labeling.prompt]
    assert done[labeling.left] == done[labeling.right] == "" and done[labeling.answers] == gr.update(visible=False)
    for token in (first[labeling.token], "forged"):  # a double click, a made-up token: neither counts nor claims to
        again = label_tab.cast_vote(labeling, home, True, "b", LOCAL, campaign.id, token, "", False, [])
        assert again[labeling.note] == label_tab.NOT_COUNTED
    assert serving.progress(campaign.id, "local", home=home).mine == 1
    undone = label_tab.undo_vote(labeling, home, True, LOCAL, campaign.id, False)
    assert undone[labeling.note] == "Your last vote is undone: vote on this pair again."  # under the buttons
    assert undone[labeling.status] == "" and undone[labeling.answers] == gr.update(visible=True)
    assert labeling.pair_outputs[-1] is labeling.note  # a client finds the note last


def test_a_closed_campaign_shows_a_labeler_neither_its_texts_nor_its_progress(tab, home, tmp_path):
    _, labeling, _ = tab
    campaign = file_campaign(home, tmp_path, "sealed", 2, votes_per_pair=1, guidelines="SECRET_GUIDELINES",
                             rubric="SECRET_RUBRIC")
    campaigns.set_status(campaign.id, "closed", home=home)
    view = label_tab.show_next(labeling, home, True, LOCAL, campaign.id, False, [])
    shown = " ".join(str(v) for v in view.values())
    assert "SECRET" not in shown and view[labeling.progress] == "" and "is closed: no pairs are served" in shown
    with pytest.raises(Exception, match="Choose a campaign first"):  # an API caller's list for an id
        label_tab.show_next(labeling, home, True, LOCAL, [campaign.id], False, [])


def test_a_page_opened_with_no_campaign_leaves_its_status_alone_and_finds_the_first_campaign_by_itself(tab, home,
                                                                                                     tmp_path):
    _, labeling, _ = tab
    # A non-empty dict of no-op updates: Gradio took {} for one value and put an error badge on all 39 outputs.
    assert label_tab.show_first(labeling, home, True, LOCAL, None, False, []) == {labeling.note: gr.update()}
    waiting = label_tab.first_campaign(labeling, home, True, LOCAL, None, False, [])
    assert waiting[labeling.campaign]["value"] is None and labeling.prompt not in waiting
    campaign = file_campaign(home, tmp_path, "first", 1, votes_per_pair=1)
    found = label_tab.first_campaign(labeling, home, True, LOCAL, None, False, [])
    assert found[labeling.campaign]["value"] == campaign.id and found[labeling.token]  # its first pair, leased
    assert label_tab.first_campaign(labeling, home, True, LOCAL, campaign.id, False, []) == {
        labeling.note: gr.update()}  # a page with a campaign is left as it is


# --------------------------------------------------------------------------- export


def test_an_early_export_warns_in_words_and_goes_ahead(tab, home, tmp_path):
    _, _, admin = tab
    campaign = file_campaign(home, tmp_path, "early", 3, votes_per_pair=2)
    vote_all(home, campaign.id, "local", ["a", "both_bad"])
    assert campaigns.unfinished_text(campaign.id, home) == "campaign 33% labelled; 0 of 3 pairs have the 2 votes asked"
    out = label_tab.export(admin, home, True, "", LOCAL, campaign.id, "", 1, 0.5, 0)
    early = "Exported early: campaign 33% labelled; 0 of 3 pairs have the 2 votes asked."
    assert early in out[admin.status] and early in out[admin.export_result]
    assert "1 train pair, no validation split" in out[admin.export_result]
    assert "both bad: 1" in out[admin.export_result] and "both_bad" not in out[admin.export_result]

    done = file_campaign(home, tmp_path, "done", 2, votes_per_pair=1)
    vote_all(home, done.id, "local", ["a", "b"])
    assert campaigns.unfinished_text(done.id, home) == ""
    out = label_tab.export(admin, home, True, "", LOCAL, done.id, "", 1, 0.5, 0)
    assert "early" not in out[admin.status] and "2 train pairs" in out[admin.export_result]


def test_unfinished_counts_answers_of_a_thumbs_campaign(home, tmp_path):
    from tests.test_label_thumbs import thumbs_file

    thumbs = campaigns.create_campaign(CampaignConfig(name="thumbs", mode="thumbs", sources="", votes_per_pair=1,
                                                      responses_file=thumbs_file(tmp_path, 1)), home=home)
    assert campaigns.unfinished_text(thumbs.id, home) == "campaign 0% labelled; 0 of 2 answers have the 1 vote asked"


# --------------------------------------------------------------------------- the labelers' page as served


def test_labelers_are_not_shown_use_via_api(lab_app):
    def config(path: str) -> dict:
        with urllib.request.urlopen(lab_app.url + path) as response:
            return json.loads(response.read())

    assert config("label/config")["footer_links"] == []
    assert "api" in config("config")["footer_links"]  # the lab's own page keeps it


def test_a_refused_campaign_leaves_no_copy_of_its_upload_and_answers_show_html_as_text(tab, home, tmp_path,
                                                                                       monkeypatch):
    """The upload is copied under LAB_HOME/uploads before the campaign is checked: a refused campaign removes the
    copy it made. An answer's HTML is shown as its characters on the labeling page."""
    _, labeling, admin = tab
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    path = responses_file(tmp_path, 3)
    with pytest.raises(Exception, match="votes_per_pair"):
        label_tab.create_campaign(admin, home, True, labeling, LOCAL, **form_values(
            admin, name="refused", votes_per_pair=0, responses_file=path))
    assert not home.uploads.exists() or not any(home.uploads.iterdir())
    shown = label_tab.answer_text('<div style="position:fixed;inset:0">Press 1.</div> and `a<b`', raw=False)
    assert "<div" not in shown and "<code>a&lt;b</code>" in shown
