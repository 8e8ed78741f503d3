"""The Label tab: the labeler's blind A/B page (or, for a thumbs campaign, one answer at a time with 👍/👎),
and (for admins) campaigns, quality, leaderboard, export and accounts.

The labeling page is built twice: inside the Label tab of the full app, and alone as the app mounted at
``/label`` that labelers sign in to (they never see the other tabs, and the full app's sign-in admits
admins only). Every handler asks ``lab.label.accounts.identify`` who is calling; admin handlers refuse
labelers on the server, whatever the page shows. Stable ``api_name``s: ``label_campaigns``,
``label_next``, ``label_vote_a``, ``label_vote_b``, ``label_vote_tie``, ``label_vote_both_bad``,
``label_vote_a2`` (A ≫ B), ``label_vote_a1`` (A > B), ``label_vote_b1``, ``label_vote_b2`` (graded; each vote also
takes the aspects rated, in the campaign's order: a, b, tie or ''), ``label_vote_up``, ``label_vote_down`` (thumbs),
``label_skip``, ``label_undo``, and for admins ``label_create``,
``label_admin_view``, ``label_close``, ``label_reopen``, ``label_resume``, ``label_export`` (the campaign's usual
kind), ``label_export_unpaired``, ``label_train_dpo``, ``label_train_kto``, ``label_wandb``,
``label_add_account``.

No ``from __future__ import annotations`` here: Gradio finds the ``gr.Request`` parameter by its
annotation, which must be the class itself, not a string, once ``guarded`` wraps the handler.
"""

import re
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
from gradio.utils import get_upload_folder

from lab import catalog
from lab.config import MAX_ASPECTS, CampaignConfig
from lab.errors import LabError
from lab.home import Home
from lab.label.accounts import Identity, identify, require_admin, sign_in_required
from lab.paths import server_path
from lab.ui import label_flywheel, plots
from lab.ui.common import (
    OnShow,
    chat_html,
    guarded,
    number,
    percent,
    refresh_button,
    safe_html,
    signed_in_line,
    status_ok,
)
from lab.ui.forms import Form, build_form

# A page's votes: (button, text, key). The key is drawn beside the button's text (the class ``lab-key-<key>``, see
# SHORTCUTS) and the page's script finds the button of a pressed key by that class.
VOTES = (("a", "A is better", "1"), ("b", "B is better", "2"), ("tie", "Tie", "3"), ("both_bad", "Both bad", "4"))
GRADED = (("a2", "A ≫ B", "1"), ("a1", "A > B", "2"), ("tie", "Tie", "3"), ("b1", "B > A", "4"), ("b2", "B ≫ A", "5"),
          ("both_bad", "Both bad", "6"))  # a graded campaign's votes; tie and both bad are the same buttons
THUMBS = (("up", "👍 Good", "1"), ("down", "👎 Bad", "2"))  # a thumbs campaign's votes, on the same keys as A and B
MOVES = (("skip", "Skip", "s"), ("undo", "Undo last vote", "u"))
PAGE_VOTES = {"pairwise": VOTES, "graded": GRADED, "thumbs": THUMBS}
GRADES = {"a2": ("a", 2), "a1": ("a", 1), "b1": ("b", 1), "b2": ("b", 2)}  # a graded button: its vote and strength
# Every vote button in the order of the row: each campaign shows its own in order (pairwise a, b, tie, both bad;
# graded a2, a1, tie, b1, b2, both bad).
BUTTON_ORDER = ("up", "down", "a2", "a1", "a", "b", "tie", "b1", "b2", "both_bad")
KEY_CLASS = "lab-key-{}"  # a button's key, drawn after its text and read by the page's script
HOW = {"pairwise": ("Which answer is better?", ("Read the prompt, then both answers, and vote. Which model wrote "
                                                "which answer is hidden and the sides are shuffled.")),
       "graded": ("Which answer is better, and by how much?", ("Read the prompt, then both answers, and vote: ≫ when "
                                                              "one is clearly better, > when it is somewhat better. "
                                                              "Which model wrote which answer is hidden and the sides "
                                                              "are shuffled.")),
       "thumbs": ("Is this answer good?", ("Read the prompt, then the answer, and vote: good or bad. "
                                           "Which model wrote it is hidden."))}
ASPECT_SLOTS = MAX_ASPECTS  # the page's aspect rows, built once (CampaignConfig.validate refuses more)
NOT_RATED = ""  # an aspect the labeler leaves alone
ASPECT_CHOICES = [("A", "a"), ("Tie", "tie"), ("B", "b"), ("–", NOT_RATED)]
CAMPAIGN_HEADERS = ["id", "name", "sources", "status", "responses", "votes", "pairs ready", "created"]
CAMPAIGN_WIDTHS = ["17%", "12%", "19%", "10%", "10%", "9%", "10%", "13%"]  # headers stay whole words
# The labelers table: the columns of a pairwise (or graded) campaign, and of a thumbs campaign.
LABELER_HEADERS = ["labeler", "votes", "median s/vote", "agrees with others", "gold accuracy", "picked left",
                   "position bias"]
THUMBS_LABELER_HEADERS = ["labeler", "votes", "median s/vote", "agrees with others", "rated good"]
ACCOUNT_HEADERS = ["name", "role", "created"]
UPLOADS = ("responses_file", "gold_file")  # campaign files come as uploads: a team on a Space has no server paths
UPLOAD_LABELS = {"responses_file": "Responses file (optional)", "gold_file": "Gold pairs file (optional)"}
UPLOADS_HELP = ("**Responses file** (JSONL/CSV): ready answers instead of generating them: a `prompt` column and one "
                "column per source, named by the source. **Gold pairs file** (JSONL/CSV): pairs with a known answer "
                "(`prompt`, `response_a`, `response_b`, `answer`: a, b or tie), mixed in to check labelers.")
# The New campaign form: the usual settings in rows (a string is a line of help between them), then two closed
# sections. ``previous`` is left out: "Next round" sets it.
CAMPAIGN_ROWS = {"": [("name", "mode", "prompts", "prompts_split", "max_prompts"), ("sources", *UPLOADS),
                      UPLOADS_HELP, ("temperature", "top_p", "max_new_tokens", "seed", "votes_per_pair"),
                      ("guidelines",)],
                 "Labeling: rubric, graded and per-aspect votes": [("rubric",), ("graded", "aspects")],
                 "Quality: which pair next, gold pairs, extra votes, the LLM judge": [
                     ("serving", "gold_share", "extra_votes"), ("judge", "judge_fills_at")]}
SOURCES_HELP = ("Two or more models that answer, newest run first: pick finished runs by name, or tiny; type a local "
                "path or hub id; NAME#2 adds a second sample of the same model. Not needed with a responses file.")
MODE_HELP = ("pairwise = two answers side by side, which is better (exports preference pairs, for DPO); thumbs = one "
             "answer at a time, rated good or bad (exports unpaired data, for KTO; one source is enough).")
VOTES_HELP = "Votes wanted per pair; 2 or more measure agreement between labelers."
ALONE_HELP = (" No labeler accounts yet: every browser votes as the same person, so a pair gets 1 vote (add accounts "
              "under Accounts for more).")
ANSWER_HEIGHT = 360  # px: the most an answer's box takes; a longer answer scrolls inside its box
RUBRIC_HEIGHT = 420  # px: a long rubric scrolls inside the introduction and its panel, the buttons stay in reach
NOTHING_LEFT = "Nothing left for you in this campaign. Thank you!"
NO_CAMPAIGN_YET = "**No campaign yet: create one below** (New campaign), then label it here."
NONE_OPEN = "No campaign is open for labeling: create one below, or reopen one in the Campaigns list."
NO_OVERLAP = "needs 2 labelers on the same pair"
AGREEMENT_TITLE = "Agreement between labelers (1 = full agreement, 0 = chance)"
# The labeling page's head, shared by the full app and /label (lab.ui.app).
# - A key presses the visible vote, skip or undo button whose class is lab-key-<key> (the keys are written once, in
#   the tables above, and drawn after each button's text), not while typing (a comment, the campaign's name); a
#   radio button (an aspect) or checkbox in focus does not stop them. A touch screen (coarse pointer) shows no keys.
# - On a narrow screen the next pair's prompt is scrolled into view once a vote, skip or undo has brought it (the
#   buttons sit below both answers there, and the new pair would start off-screen), and it flashes, to say the pair
#   changed.
# - Each aspect on one compact line: its name, then A / Tie / B / –. An answer's box as tall as its text, up to
#   ANSWER_HEIGHT; side by side, both as tall as the taller one.
SHORTCUTS = """
<script>
document.addEventListener('keydown', (event) => {
  const active = document.activeElement;
  const typing = active && (active.tagName === 'TEXTAREA' || active.isContentEditable ||
    (active.tagName === 'INPUT' && !['radio', 'checkbox', 'button'].includes(active.type)));
  if (typing || event.ctrlKey || event.metaKey || event.altKey) return;
  const keyClass = 'lab-key-' + event.key;
  const button = [...document.querySelectorAll('button[id^="lab-vote-"], #lab-skip, #lab-undo')]
    .find((b) => b.offsetParent !== null && b.classList.contains(keyClass));
  if (button && !button.disabled) { event.preventDefault(); button.click(); }
});
(() => {
  const PAIR = ['lab-progress', 'lab-prompt', 'lab-answer-a', 'lab-answer-b', 'lab-note'];
  const pairText = () => PAIR.map((id) => (document.getElementById(id) || {}).textContent || '').join('\\u0000');
  const showPrompt = () => {
    const prompt = document.getElementById('lab-prompt');
    if (!prompt || prompt.offsetParent === null) return;
    prompt.scrollIntoView({block: 'start', behavior: 'smooth'});
    prompt.classList.remove('lab-fresh');
    void prompt.offsetWidth;
    prompt.classList.add('lab-fresh');
  };
  document.addEventListener('click', (event) => {
    const button = event.target.closest && event.target.closest('button[id^="lab-vote-"], #lab-skip, #lab-undo');
    if (!button || !window.matchMedia('(max-width: 767px)').matches) return;
    const before = pairText();
    const started = Date.now();
    const wait = () => {
      if (pairText() !== before || Date.now() - started > 4000) { requestAnimationFrame(showPrompt); return; }
      setTimeout(wait, 50);
    };
    setTimeout(wait, 50);
  }, true);
})();
</script>
<style>
fieldset.lab-aspect { display: flex; flex-direction: row; align-items: center; flex-wrap: wrap; gap: 4px 16px;
  padding: 4px 10px !important; }
fieldset.lab-aspect > [data-testid="block-info"] { min-width: 12rem; margin: 0; }
#lab-intro { border: 1px solid #93c5fd; background: #eff6ff; border-radius: 8px; padding: 12px 16px; }
button[class*="lab-key-"]::after { margin-left: 0.4em; font-weight: normal; opacity: 0.8; }
button.lab-key-1::after { content: "[1]"; } button.lab-key-2::after { content: "[2]"; }
button.lab-key-3::after { content: "[3]"; } button.lab-key-4::after { content: "[4]"; }
button.lab-key-5::after { content: "[5]"; } button.lab-key-6::after { content: "[6]"; }
button.lab-key-s::after { content: "[s]"; } button.lab-key-u::after { content: "[u]"; }
#lab-answers .block.lab-response { flex-grow: 1 !important; }
#lab-answers .block.lab-answer-heading { flex-grow: 0 !important; }
#lab-note { min-height: 1.5em; }
#lab-prompt.lab-fresh { animation: lab-fresh 1s ease-out; }
@keyframes lab-fresh { from { box-shadow: 0 0 0 3px #818cf8; } to { box-shadow: 0 0 0 0 transparent; } }
@media (pointer: coarse) { button[class*="lab-key-"]::after { content: none; } .lab-keys { display: none; } }
@media (max-width: 767px) { div.block.lab-response { min-height: 0 !important; } }  /* over the app's 140px */
</style>
"""


@dataclass
class LabelingUI:
    status: gr.Markdown
    campaign: gr.Dropdown
    progress: gr.Markdown
    guidelines: gr.Markdown
    prompt: gr.Markdown
    left: gr.Markdown
    right: gr.Markdown
    comment: gr.Textbox
    token: gr.Textbox  # the lease token: hidden, and all the page knows of the pair
    raw: gr.Checkbox
    buttons: dict[str, gr.Button]  # every vote (BUTTON_ORDER), then skip and undo
    how: gr.Markdown  # what to do, for the campaign's kind
    titled: bool  # the page alone (/label): ``how`` carries the page's heading
    left_heading: gr.Markdown  # "A", or "Answer" on a thumbs campaign
    right_column: gr.Column  # answer B: hidden on a thumbs campaign
    intro: gr.Column  # the first-time introduction: guidelines, rubric and keys, with "Start labeling"
    intro_text: gr.Markdown
    pair: gr.Column  # the pair and its votes: hidden while the introduction shows
    rubric_panel: gr.Accordion  # the rubric beside every pair, closed: shown on campaigns that have one
    rubric: gr.Markdown
    aspects: gr.Column  # the aspect rows: shown on campaigns that name aspects
    aspect_votes: list[gr.Radio]  # ASPECT_SLOTS rows, the campaign's aspects in order, the rest hidden
    introduced: gr.State  # campaigns whose introduction this page's labeler has dismissed
    answers: gr.Column  # both answers and the raw-text box: hidden when there is no pair to show
    note: gr.Markdown  # under the buttons: a word on the last move (undone, skipped, already counted)

    @property
    def pair_outputs(self) -> list:
        # The first seven are the api's positions (tests and clients read them), the buttons and layout follow; the
        # note comes last (a client finds it at -1).
        return [self.status, self.token, self.progress, self.prompt, self.left, self.right, self.comment,
                self.guidelines, *self.buttons.values(), self.how, self.left_heading, self.right_column, self.intro,
                self.intro_text, self.pair, self.rubric_panel, self.rubric, self.aspects, *self.aspect_votes,
                self.answers, self.note]


@dataclass
class AdminUI:
    status: gr.Markdown
    form: Form
    campaigns: gr.Dataframe
    selected: gr.Dropdown
    state: gr.Markdown  # where the selected campaign stands now
    quality: gr.Markdown
    labelers: gr.Dataframe
    ratings: gr.Plot
    matrix: gr.Plot
    export_result: gr.Markdown
    exported: gr.State  # the exported version's ref, for "Train DPO on this" / "Train KTO on this"
    policy: gr.Dropdown
    accounts: gr.Dataframe
    password: gr.Textbox
    account_status: Any = None  # gr.Markdown under the Accounts panel's buttons: what the last of them did
    flywheel: Any = None  # lab.ui.label_flywheel.FlywheelUI: its panels, built below the export
    voting: Any = None  # gr.Accordion: the voting panel ("Label"), closed while no campaign exists
    new_campaign: Any = None  # gr.Accordion: the New campaign form, opened while no campaign exists
    empty: Any = None  # gr.Markdown at the tab's top: that no campaign exists (or is open) yet
    agreement: Any = None  # gr.Markdown in the "Agreement between labelers" accordion: κ, α and raw agreement
    train_status: Any = None  # the Train tab's status line, where "Train DPO on this" says what it filled


def who(home: Home, sign_in: bool, request: gr.Request | None) -> Identity:
    return identify(getattr(request, "username", None), sign_in=sign_in, home=home)


LABELABLE = ("generating", "open")  # campaigns whose pairs a labeler may be served


def open_campaigns(home: Home) -> list[tuple[str, str]]:
    from lab.label.campaigns import reconcile

    reconcile(home)
    return catalog.campaign_choices(home, status=LABELABLE)


def kept_or_newest(value: str | None, choices: list[tuple[str, str]]) -> str | None:
    """A picker's value on a refresh: the one chosen while it is still offered, else the newest (``choices`` are
    newest first), else none."""
    values = [v for _, v in choices]
    return value if value in values else values[0] if values else None


# --------------------------------------------------------------------------- the labeler's page


def how_text(kind: str, titled: bool) -> str:
    """What to do on the labeling page for the campaign's kind (pairwise, graded or thumbs), with its keys: the
    page's heading (alone at /label) or a bold line (in the Label tab)."""
    title, text = HOW[kind]
    text = f'{text} <span class="lab-keys">Keys: {keys_text(kind)}.</span>'  # not on a touch screen (see SHORTCUTS)
    return f"# {title}\n{text}" if titled else f"**{title}** {text}"


def keys_text(kind: str) -> str:
    return ", ".join(f"{key} ({text})" for _, text, key in PAGE_VOTES[kind] + MOVES)


def build_labeling(home: Home, sign_in: bool, *, titled: bool = False) -> LabelingUI:
    how = gr.Markdown(how_text("pairwise", titled))
    status = gr.Markdown(elem_classes="lab-status")
    with gr.Row():
        campaign = gr.Dropdown(label="Campaign", choices=[], scale=4, allow_custom_value=True,
                               info="Open campaigns, newest first; pick one and press Start.")
        refresh = refresh_button()
        start = gr.Button("Start", variant="primary", scale=1)
    progress = gr.Markdown(elem_id="lab-progress")
    with gr.Column(visible=False, elem_id="lab-intro") as intro:
        intro_text = gr.Markdown(max_height=RUBRIC_HEIGHT + 160)
        begin = gr.Button("Start labeling", variant="primary", elem_id="lab-intro-start")
    with gr.Column() as pair:
        guidelines = gr.Markdown(elem_classes="lab-guidelines")
        with gr.Accordion("Rubric", open=False, visible=False, elem_id="lab-rubric") as rubric_panel:
            rubric = gr.Markdown(max_height=RUBRIC_HEIGHT)
        prompt = gr.Markdown(elem_classes="lab-prompt", elem_id="lab-prompt")
        with gr.Column(elem_id="lab-answers") as answers:  # hidden when there is no pair to show
            with gr.Row(equal_height=True):
                with gr.Column():
                    left_heading = gr.Markdown("### A", elem_classes="lab-answer-heading")
                    left = gr.Markdown(elem_classes="lab-response", elem_id="lab-answer-a", max_height=ANSWER_HEIGHT)
                with gr.Column() as right_column:
                    gr.Markdown("### B", elem_classes="lab-answer-heading")
                    right = gr.Markdown(elem_classes="lab-response", elem_id="lab-answer-b", max_height=ANSWER_HEIGHT)
            raw = gr.Checkbox(label="Show the answers as raw text (no Markdown or code formatting)", value=False)
        with gr.Column(visible=False, elem_id="lab-aspects") as aspects:
            gr.Markdown("**Aspects** (optional): which answer is better on each; cleared after every vote.")
            aspect_votes = [gr.Radio(ASPECT_CHOICES, value=NOT_RATED, label=f"aspect {i + 1}", visible=False,
                                     elem_classes="lab-aspect", elem_id=f"lab-aspect-{i}")
                            for i in range(ASPECT_SLOTS)]
        with gr.Row(equal_height=True):  # a narrow window wraps a label onto two lines: the row stays even
            # Labelled as a pairwise campaign's until a campaign is chosen (the instructions above say the same).
            texts = {name: (text, key) for name, text, key in GRADED + THUMBS + VOTES}
            buttons = {name: gr.Button(texts[name][0], elem_id=f"lab-vote-{name}",
                                       elem_classes=KEY_CLASS.format(texts[name][1]), interactive=False,
                                       visible=name in {n for n, _, _ in VOTES}, min_width=100,
                                       variant="secondary" if name in ("tie", "both_bad") else "primary")
                       for name in BUTTON_ORDER}
            for name, text, key in MOVES:
                buttons[name] = gr.Button(text, elem_id=f"lab-{name}", elem_classes=KEY_CLASS.format(key),
                                          variant="secondary", interactive=False,
                                          min_width=160 if name == "undo" else 100)
        # Under the buttons: a word on the last move (undone, skipped) appears here without moving them.
        note = gr.Markdown(elem_id="lab-note", elem_classes="lab-status")
        comment = gr.Textbox(label="Comment (optional)", placeholder="Why? Anything wrong?", lines=1)
    token = gr.Textbox(visible=False)
    introduced = gr.State([])
    ui = LabelingUI(status, campaign, progress, guidelines, prompt, left, right, comment, token, raw, buttons, how,
                    titled, left_heading, right_column, intro, intro_text, pair, rubric_panel, rubric, aspects,
                    aspect_votes, introduced, answers, note)
    outputs = ui.pair_outputs
    # Voting bypasses Gradio's queue (queue=False: one plain HTTP POST per vote): the engine's transaction
    # takes ~10 ms, and the queue's join-then-stream round trips would cost more than that.
    # A pair is leased when a person picks a campaign (``input``), presses Start or ↻, or opens /label; not when
    # the picker is set by another event (a campaign just created is selected, and waits for Start).
    refresh.click(guarded(campaign_choices, status, ui, home, sign_in), inputs=None, outputs=[status, campaign],
                  api_name="label_campaigns") \
        .then(guarded(show_first, status, ui, home, sign_in), inputs=[campaign, raw, introduced], outputs=outputs,
              api_visibility="private", queue=False)
    start.click(guarded(show_next, status, ui, home, sign_in), inputs=[campaign, raw, introduced], outputs=outputs,
                api_name="label_next", queue=False)
    for trigger in (campaign.input, raw.change):
        trigger(guarded(show_next, status, ui, home, sign_in), inputs=[campaign, raw, introduced], outputs=outputs,
                api_visibility="private")
    begin.click(guarded(start_labeling, status, ui, home, sign_in), inputs=[campaign, raw, introduced],
                outputs=[*outputs, introduced], api_visibility="private", queue=False)
    for name in BUTTON_ORDER:
        buttons[name].click(guarded(cast_vote, status, ui, home, sign_in, name),
                            inputs=[campaign, token, comment, raw, introduced, *aspect_votes], outputs=outputs,
                            api_name=f"label_vote_{name}", queue=False)
    buttons["skip"].click(guarded(skip_pair, status, ui, home, sign_in), inputs=[campaign, token, raw, introduced],
                          outputs=outputs, api_name="label_skip", queue=False)
    buttons["undo"].click(guarded(undo_vote, status, ui, home, sign_in), inputs=[campaign, raw], outputs=outputs,
                          api_name="label_undo", queue=False)
    return ui


def campaign_choices(ui: LabelingUI, home: Home, sign_in: bool, request: gr.Request) -> dict:
    """The open campaigns, newest chosen (who is signed in is the page's top line: ``common.signed_in_line``)."""
    who(home, sign_in, request)  # a visitor the lab does not know is refused here
    choices = open_campaigns(home)
    return {ui.status: "" if choices else "No campaign is open yet.",
            ui.campaign: gr.update(choices=choices, value=choices[0][1] if choices else None)}


def answer_text(text: str, raw: bool) -> str:
    """An answer as the labeler reads it: Markdown and code rendered, or (raw) the exact text in a fence longer
    than any run of backticks inside it."""
    if not text.strip():
        return safe_html("*(empty response)*")
    if not raw:
        return safe_html(text)
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return safe_html(f"{fence}text\n{text}\n{fence}")


def pair_view(ui: LabelingUI, home: Home, campaign_id: str, labeler: str, *, raw: bool = False, note: str = "",
              served=None, introduced: list[str] | None = None) -> dict:
    """The next pair for this labeler (``served``, or the one ``next_pair`` gives), or a word on why there is
    none, said once where the prompt goes, with the answers hidden and the vote buttons off; their progress, the
    campaign's guidelines, rubric and aspects, and ``note`` (undone, skipped) under the buttons. A campaign with a
    rubric opens on its introduction for a labeler with no vote in it who has not dismissed it on this page
    (``introduced``); the pair is leased behind it all the same."""
    from lab.label.campaigns import get_campaign
    from lab.label.serving import next_pair, progress

    served = served or next_pair(campaign_id, labeler, home=home)
    mine = progress(campaign_id, labeler, home=home)
    campaign = get_campaign(campaign_id, home)
    config = campaign.campaign_config
    kind = page_kind(campaign)
    share = f"{100 * mine.votes / mine.wanted:.0f}%" if mine.wanted else "0%"
    items = ("answer" if campaign.thumbs else "pair") + ("s" if mine.available != 1 else "")
    text = (f"You: **{mine.mine}** vote{'s' if mine.mine != 1 else ''} · {mine.available} {items} left for you · "
            f"campaign {share} "
            f"({mine.votes}/{mine.wanted} votes)")
    if campaign.status not in ("generating", "open"):  # a closed campaign's texts are no labeler's business now
        text, config = "", replace(config, guidelines="", rubric="", aspects="")
    guidelines, rubric = config.guidelines.strip(), config.rubric.strip()
    intro = bool(served and rubric and mine.mine == 0 and campaign_id not in (introduced or []))
    view = {ui.status: "", ui.note: note, ui.progress: text, ui.comment: "",
            ui.guidelines: f"**Guidelines:** {guidelines}" if guidelines else "",
            ui.buttons["undo"]: gr.update(interactive=mine.mine > 0), **layout(ui, kind),
            ui.intro: gr.update(visible=intro), ui.pair: gr.update(visible=not intro),
            ui.intro_text: intro_text(campaign.name, guidelines, rubric, kind) if intro else "",
            ui.rubric_panel: gr.update(visible=bool(rubric)), ui.rubric: rubric,
            ui.answers: gr.update(visible=served is not None),
            **aspect_rows(ui, [] if campaign.thumbs or served is None else config.aspect_list())}
    votes = {name for name, _, _ in PAGE_VOTES[kind]}
    if served is None:
        done = ("Responses are still being generated; pairs appear here as they are ready: press Start again in a "
                "moment." if campaign.status == "generating" and mine.available == 0 else
                f"{campaign.name} is {campaign.status}: no pairs are served." if campaign.status not in
                ("generating", "open") else NOTHING_LEFT)
        off = {ui.buttons[name]: gr.update(interactive=False, **shown(name, kind, votes)) for name in ui.buttons
               if name != "undo"}
        return {**view, **off, ui.token: "", ui.prompt: f"**{done}**", ui.left: "", ui.right: ""}
    on = {ui.buttons[name]: gr.update(interactive=True, **shown(name, kind, votes)) for name in ui.buttons
          if name != "undo"}
    return {**view, **on, ui.token: served.token, ui.prompt: chat_html(served.prompt),
            ui.left: answer_text(served.left, raw), ui.right: "" if campaign.thumbs else answer_text(served.right, raw)}


def page_kind(campaign) -> str:
    """Which votes the page offers: thumbs, graded (five grades) or pairwise (A, B, tie, both bad)."""
    if campaign.thumbs:
        return "thumbs"
    return "graded" if campaign.config.get("graded") else "pairwise"


def intro_text(name: str, guidelines: str, rubric: str, kind: str) -> str:
    """The first-time introduction: what to judge (guidelines, rubric) and how to vote (the keys)."""
    parts = [f"## Before you start: {name}"]
    if guidelines:
        parts.append(f"**Guidelines:** {guidelines}")
    parts += [f"**Keys:** {keys_text(kind)}. The rubric stays one click away, beside every pair.",
              f"### Rubric\n\n{rubric}"]
    return "\n\n".join(parts)


def aspect_rows(ui: LabelingUI, names: list[str]) -> dict:
    """One row per aspect of the campaign, each left unrated (they are cleared after every vote)."""
    rows = {ui.aspects: gr.update(visible=bool(names))}
    for i, radio in enumerate(ui.aspect_votes):
        rows[radio] = (gr.update(visible=True, label=names[i], value=NOT_RATED) if i < len(names) else
                       gr.update(visible=False, value=NOT_RATED))
    return rows


def shown(button: str, kind: str, votes: set[str]) -> dict:
    """A vote button is shown only on campaigns that take its vote, labelled with that kind's text and key (both
    bad is 4, or 6 on a graded campaign); skip shows on every campaign."""
    if button == "skip":
        return {}
    keys = {name: (text, key) for name, text, key in PAGE_VOTES[kind]}
    if button not in keys:
        return {"visible": False}
    text, key = keys[button]
    return {"visible": button in votes, "value": text, "elem_classes": [KEY_CLASS.format(key)]}


def layout(ui: LabelingUI, kind: str) -> dict:
    """Two answers side by side (pairwise, graded), or one answer alone (thumbs), with the instructions."""
    thumbs = kind == "thumbs"
    return {ui.how: how_text(kind, ui.titled), ui.left_heading: "### Answer" if thumbs else "### A",
            ui.right_column: gr.update(visible=not thumbs)}


def require_campaign(campaign_id: str | None) -> str:
    if not campaign_id or not isinstance(campaign_id, str):  # an API caller may send anything
        raise LabError("Choose a campaign first.")
    return campaign_id


def show_next(ui: LabelingUI, home: Home, sign_in: bool, request: gr.Request, campaign_id: str | None,
              raw: bool, introduced: list[str] | None) -> dict:
    identity = who(home, sign_in, request)
    return pair_view(ui, home, require_campaign(campaign_id), identity.name, raw=raw, introduced=introduced)


def show_first(ui: LabelingUI, home: Home, sign_in: bool, request: gr.Request, campaign_id: str | None,
               raw: bool, introduced: list[str] | None) -> dict:
    """The first pair of the campaign the page's picker was just set to (on loading /label, on ↻), leaving the
    status line (who is signed in, or that no campaign is open) as it was; nothing when no campaign is open."""
    if not campaign_id:
        return {ui.note: gr.update()}  # no change (an empty dict is not a dict of updates to Gradio, but an error)
    view = show_next(ui, home, sign_in, request, campaign_id, raw, introduced)
    view.pop(ui.status, None)
    return view


def first_campaign(ui: LabelingUI, home: Home, sign_in: bool, request: gr.Request, campaign_id: str | None,
                   raw: bool, introduced: list[str] | None) -> dict:
    """On a page with no campaign chosen: the campaigns open now, and the first pair of the newest, once there is
    one; nothing at all once a campaign is chosen (the labeler's page is theirs)."""
    if campaign_id:
        return {ui.note: gr.update()}
    found = campaign_choices(ui, home, sign_in, request)
    chosen = found[ui.campaign]["value"]
    return {**found, **show_first(ui, home, sign_in, request, chosen, raw, introduced)} if chosen else found


def start_labeling(ui: LabelingUI, home: Home, sign_in: bool, request: gr.Request, campaign_id: str | None,
                   raw: bool, introduced: list[str] | None) -> dict:
    """The introduction is dismissed: the pair behind it shows, and the introduction does not come back on this
    page (after the first vote it does not come back at all)."""
    identity = who(home, sign_in, request)
    campaign_id = require_campaign(campaign_id)
    introduced = [*(introduced or []), campaign_id]
    return {**pair_view(ui, home, campaign_id, identity.name, raw=raw, introduced=introduced),
            ui.introduced: introduced}


# A vote whose lease is gone: a double click (the first click counted), or a page left open on a pair since skipped,
# undone or never served to this labeler. The store cannot tell these apart, so the note is true of all of them.
NOT_COUNTED = "Nothing more was counted: that pair was already voted on, skipped or undone."


def cast_vote(ui: LabelingUI, home: Home, sign_in: bool, button: str, request: gr.Request, campaign_id: str | None,
              token: str, comment: str, raw: bool, introduced: list[str] | None, *aspects: str | None) -> dict:
    """Vote with ``button`` (a graded button carries its strength), with the aspects the labeler rated, by
    the campaign's aspect names in the rows' order."""
    from lab.label.campaigns import get_campaign
    from lab.label.serving import vote

    identity = who(home, sign_in, request)
    campaign_id = require_campaign(campaign_id)
    if not token:
        return pair_view(ui, home, campaign_id, identity.name, raw=raw, introduced=introduced)
    choice, strength = GRADES.get(button, (button, None))
    campaign = get_campaign(campaign_id, home)
    names = [] if campaign.thumbs else campaign.campaign_config.aspect_list()
    rated = {name: side for name, side in zip(names, aspects) if side}
    counted = vote(token, identity.name, choice, strength=strength, aspects=rated, comment=comment or "", home=home)
    return pair_view(ui, home, campaign_id, identity.name, raw=raw, introduced=introduced,
                     note="" if counted else NOT_COUNTED)


def skip_pair(ui: LabelingUI, home: Home, sign_in: bool, request: gr.Request, campaign_id: str | None,
              token: str, raw: bool, introduced: list[str] | None) -> dict:
    from lab.label.serving import skip

    identity = who(home, sign_in, request)
    campaign_id = require_campaign(campaign_id)
    if token:
        skip(token, identity.name, home=home)
    return pair_view(ui, home, campaign_id, identity.name, raw=raw, introduced=introduced,
                     note="Skipped: the pair comes back after the others.")


def undo_vote(ui: LabelingUI, home: Home, sign_in: bool, request: gr.Request, campaign_id: str | None,
              raw: bool) -> dict:
    """Undo the labeler's last vote: they have voted here, so the introduction is not shown again."""
    from lab.label.serving import undo

    identity = who(home, sign_in, request)
    campaign_id = require_campaign(campaign_id)
    served = undo(campaign_id, identity.name, home=home)
    return pair_view(ui, home, campaign_id, identity.name, raw=raw, served=served, introduced=[campaign_id],
                     note="Your last vote is undone: vote on this pair again.")


CAMPAIGN_POLL_S = 10.0  # how often a page without a campaign looks for one


def labeling_app(home: Home, sign_in: bool) -> gr.Blocks:
    """The page labelers sign in to (mounted at /label): only the labeling widgets, its campaign list read
    afresh on every load."""
    with gr.Blocks(title="Labeling · Fine-tuning lab", analytics_enabled=False) as demo:
        if sign_in:
            signed_in_line(demo, home, logout="/label/logout")
        ui = build_labeling(home, sign_in, titled=True)
        demo.load(guarded(campaign_choices, ui.status, ui, home, sign_in), inputs=None, outputs=[ui.status, ui.campaign],
                  api_visibility="private") \
            .then(guarded(show_first, ui.status, ui, home, sign_in), inputs=[ui.campaign, ui.raw, ui.introduced],
                  outputs=ui.pair_outputs, api_visibility="private", queue=False)
        # A page opened before any campaign was looks again on its own: labelers need not know to press ↻.
        gr.Timer(CAMPAIGN_POLL_S).tick(guarded(first_campaign, ui.status, ui, home, sign_in),
                                       inputs=[ui.campaign, ui.raw, ui.introduced],
                                       outputs=[ui.status, ui.campaign, *ui.pair_outputs], api_visibility="private")
    demo.queue(default_concurrency_limit=8)
    return demo


# --------------------------------------------------------------------------- the admin's panels


def build(home: Home, sign_in: bool, *, train_form: Form, tabs: gr.Tabs,
          train_status: gr.Markdown | None = None) -> tuple[LabelingUI, AdminUI]:
    """The Label tab. ``train_status``: the Train tab's status line, where "Train DPO on this" says what it filled
    (the page switches to that tab)."""
    gr.Markdown("Blind A/B preference labeling, or one answer at a time rated good or bad (a thumbs campaign). "
                "Labelers vote here (or, with accounts, at **/label**); below, admins create campaigns and "
                "turn votes into a DPO or KTO dataset.")
    # While no campaign exists the tab says so here, with the voting panel closed and New campaign open (on_show:
    # on every load and every time the tab is shown, so a lab started empty changes as campaigns come).
    empty = gr.Markdown(elem_classes="lab-status", elem_id="lab-no-campaign")
    with gr.Accordion("Label", open=True) as voting:
        labeling = build_labeling(home, sign_in)
    status = gr.Markdown(elem_classes="lab-status")
    with gr.Accordion("New campaign", open=False) as new_campaign:
        form = campaign_form(home, alone=alone(home, sign_in))
        create = gr.Button("Create campaign", variant="primary")
    gr.Markdown("### Campaigns\nClick a row to select its campaign.")
    campaigns = gr.Dataframe(headers=CAMPAIGN_HEADERS, interactive=False, wrap=True, column_widths=CAMPAIGN_WIDTHS,
                             elem_id="lab-campaigns")
    with gr.Row():
        selected = gr.Dropdown(label="Campaign", choices=catalog.campaign_choices(home), value=None, scale=3,
                               allow_custom_value=True,
                               info="Newest first.")
        close = gr.Button("Close campaign", scale=1)
        reopen = gr.Button("Reopen", scale=1)
        resume = gr.Button("Resume generation", scale=1)
        wandb_btn = gr.Button("Log to W&B", scale=1)
    state = gr.Markdown(elem_classes="lab-status")
    with gr.Row():
        with gr.Column():
            quality = gr.Markdown()
            with gr.Accordion(AGREEMENT_TITLE, open=False, elem_id="lab-agreement"):
                agreement = gr.Markdown()
        with gr.Column():
            ratings = gr.Plot(label="Leaderboard")
    labelers = gr.Dataframe(headers=LABELER_HEADERS, interactive=False, label="Labelers")
    matrix = gr.Plot(label="Win rates")
    with gr.Accordion("Export votes as a DPO or KTO dataset", open=True):
        with gr.Row():
            export_name = gr.Textbox(label="Dataset name", placeholder="labels-<campaign>", scale=2)
            min_votes = gr.Number(label="Min votes for the winner", value=1, precision=0, scale=1)
            min_agreement = gr.Slider(label="Min agreement", minimum=0.5, maximum=1.0, step=0.05, value=0.5, scale=2,
                                      info="Share of a pair's votes the winner needs; ties, both-bad and unclear "
                                      "pairs are left out and counted.")
            val_fraction = gr.Number(label="Validation fraction", value=0.0, scale=1)
        with gr.Row():
            drop_unreliable = gr.Checkbox(label="Drop unreliable labelers", value=False, scale=1,
                                          info="Leave out the votes of labelers the reliability table flags.")
            weighted = gr.Checkbox(label="Weight votes by reliability", value=False, scale=1,
                                   info="A pair's majority weighs each vote by its labeler's reliability score.")
            min_margin = gr.Number(label="Min margin (graded campaigns)", value=0.0, scale=1,
                                   info="Keep pairs whose winning votes' mean strength reaches this (1 = >, "
                                   "2 = ≫); 0 keeps all.")
            earlier_rounds = gr.Checkbox(label="With earlier rounds", value=False, scale=1,
                                         info="Also the pairs of every earlier round of this campaign's chain, under "
                                         "the same rule: the next DPO learns from all the votes so far (ticked "
                                         "when a later round is chosen).")
        gr.Markdown("**Export** gives a pairwise campaign's preference pairs (for DPO) and a thumbs campaign's "
                    "answers labelled good or bad (for KTO). **Export as unpaired** turns a pairwise campaign's votes "
                    "into KTO data too: a pair's winner desirable and loser undesirable, both-bad two undesirable "
                    "answers, ties left out. A campaign whose votes are not all in exports the votes so far, with a "
                    "warning.")
        with gr.Row():
            export_btn = gr.Button("Export", variant="primary")
            export_unpaired_btn = gr.Button("Export as unpaired (KTO)")
        export_result = gr.Markdown()
        exported = gr.State("")
        with gr.Row():
            policy = gr.Dropdown(label="Policy to train with DPO", choices=catalog.model_choices(home), value=None,
                                 scale=3, allow_custom_value=True, info="The model DPO or KTO starts from (usually the "
                                 "SFT run you labeled), newest first.")
            train_dpo = gr.Button("Train DPO on this", scale=1)
            train_kto = gr.Button("Train KTO on this", scale=1)
    flywheel_area = gr.Column()  # the flywheel's panels, built below once AdminUI exists, shown above Accounts
    with gr.Accordion("Accounts", open=False):
        gr.Markdown("Accounts apply at once. With no account the lab is open to anyone who can reach it; from the "
                    "first account (an admin) on, everyone signs in: admins to the full lab, labelers to **/label** "
                    "and see nothing else. Name an account, then add it (with a role and a password), give it the "
                    "role chosen, set its password (its sessions end), or remove it (its votes stay). The only "
                    "admin stays an admin while other accounts exist.")
        with gr.Row():
            account_name = gr.Textbox(label="Name", scale=2)
            account_role = gr.Dropdown(label="Role", choices=["labeler", "admin"], value="labeler", scale=1)
            account_password = gr.Textbox(label="Password (8+ characters)", type="password", scale=2)
        with gr.Row():
            add_account = gr.Button("Add account")
            change_role = gr.Button("Change role")
            change_password = gr.Button("Set password")
            remove = gr.Button("Remove account", variant="stop")
        account_status = gr.Markdown(elem_classes="lab-status")
        accounts = gr.Dataframe(headers=ACCOUNT_HEADERS, interactive=False)
    admin = AdminUI(status, form, campaigns, selected, state, quality, labelers, ratings, matrix, export_result,
                    exported, policy, accounts, account_password, account_status, voting=voting,
                    new_campaign=new_campaign, empty=empty, agreement=agreement, train_status=train_status)
    with flywheel_area:
        admin.flywheel = label_flywheel.build(home, sign_in, admin)

    bound = (admin, home, sign_in)
    # The api's positions: status, the table, the admin's picker, the state, the voting panel's picker, then the
    # voting panel's progress line, the tab's note on campaigns, the voting panel's accordion and its layout.
    create.click(guarded(create_campaign, status, *bound, labeling), inputs_kwargs=form.components,
                 outputs=[status, campaigns, selected, state, labeling.campaign, labeling.progress, empty, voting,
                          labeling.how, labeling.left_heading, labeling.right_column],
                 api_name="label_create")
    campaigns.select(pick_campaign, None, selected, api_visibility="private", queue=False)
    view_outputs = [status, campaigns, selected, state, quality, labelers, ratings, matrix, accounts, agreement]
    selected.change(guarded(admin_view, status, *bound), inputs=selected, outputs=view_outputs,
                    api_name="label_admin_view")
    selected.change(guarded(exports_earlier_rounds, None, home), inputs=selected, outputs=earlier_rounds,
                    api_visibility="private", show_progress="hidden")
    gr.Timer(3.0).tick(guarded(admin_view, status, *bound), inputs=selected, outputs=view_outputs,
                       api_visibility="private", show_progress="hidden")
    # The voting panel's picker names each campaign with its state ("generating" until it opens): kept current too.
    gr.Timer(3.0).tick(lambda: gr.update(choices=catalog.campaign_choices(home, status=LABELABLE)),
                       outputs=labeling.campaign, api_visibility="private", show_progress="hidden", queue=False)
    for button, target, api in ((close, "closed", "label_close"), (reopen, "open", "label_reopen"),
                                (resume, "generating", "label_resume")):
        button.click(guarded(set_campaign_status, status, *bound, target), inputs=selected, outputs=[status, state],
                     api_name=api)
    for button, kind, api in ((export_btn, "", "label_export"), (export_unpaired_btn, "unpaired",
                                                                  "label_export_unpaired")):
        button.click(guarded(export, status, *bound, kind), inputs=[selected, export_name, min_votes, min_agreement,
                                                                    val_fraction, drop_unreliable, weighted,
                                                                    min_margin, earlier_rounds],
                     outputs=[status, export_result, exported, policy], api_name=api)
    for button, objective, api in ((train_dpo, "dpo", "label_train_dpo"), (train_kto, "kto", "label_train_kto")):
        button.click(guarded(train_on_export, status, *bound, train_form, tabs, objective),
                     inputs=[exported, policy, selected],
                     outputs=[status, *train_form, tabs, *([train_status] if train_status else [])], api_name=api)
    wandb_btn.click(guarded(log_wandb, status, *bound), inputs=selected, outputs=[status], api_name="label_wandb")
    account_outputs = [account_status, accounts, account_password]
    add_account.click(guarded(create_account, account_status, *bound),
                      inputs=[account_name, account_role, account_password], outputs=account_outputs,
                      api_name="label_add_account")
    change_role.click(guarded(set_account_role, account_status, *bound), inputs=[account_name, account_role],
                      outputs=account_outputs, api_name="label_set_role")
    change_password.click(guarded(set_account_password, account_status, *bound),
                          inputs=[account_name, account_password], outputs=account_outputs,
                          api_name="label_set_password")
    remove.click(guarded(delete_account, account_status, *bound), inputs=[account_name], outputs=account_outputs,
                 api_name="label_remove_account")
    return labeling, admin


def campaign_form(home: Home, *, alone: bool = False) -> Form:
    """The New campaign form: CAMPAIGN_ROWS's first rows open, each further section in a closed accordion; a string
    among the rows is a line of help there. ``alone``: no labeler accounts, so every browser is one labeler and
    Votes per pair starts at 1 (more can never be reached)."""
    parts = []
    widgets = campaign_widgets(home, alone=alone)
    for title, rows in CAMPAIGN_ROWS.items():
        with gr.Accordion(title, open=False) if title else nullcontext():
            group: list[tuple[str, ...]] = []
            for row in [*rows, None]:
                if isinstance(row, tuple):
                    group.append(row)
                    continue
                if group:
                    parts.append(build_form(CampaignConfig, rows=group, overrides=widgets,
                                            extra={"rubric": {"lines": 4, "max_lines": 12}}))
                    group = []
                if row:
                    gr.Markdown(row, elem_classes="lab-form-help")
    return parts[0].union(*parts[1:])


def judge_choices(home: Home) -> list[tuple[str, str]]:
    """A campaign's judge: none, or what can judge."""
    return [("none", ""), *catalog.judge_choices(home)]


def campaign_widgets(home: Home, *, alone: bool = False) -> dict:
    """The campaign form's widgets that are not a plain box: prompts, sources and the judge picked from what
    exists, the two campaign files as uploads under short labels (``gr.File`` has no help line: UPLOADS_HELP says
    what they hold, below them), the mode's help in words, and Votes per pair, 1 when the lab has no labeler
    accounts (``alone``)."""
    def judge(f, kw):
        return gr.Dropdown(choices=judge_choices(home), allow_custom_value=True, **kw)

    def sources(f, kw):
        return gr.Dropdown(choices=catalog.model_choices(home), multiselect=True, allow_custom_value=True,
                           **{**kw, "value": [], "info": SOURCES_HELP})

    def upload(f, kw):
        return gr.File(label=UPLOAD_LABELS[f.name], file_types=[".jsonl", ".json", ".csv", ".parquet"], height=170,
                       elem_id=f"lab-{f.name}")

    def prompts(f, kw):  # pasted prompts (the CLI's third way) need a text box: the form offers datasets and files
        return gr.Dropdown(choices=catalog.dataset_choices(home, kind="sft"), allow_custom_value=True, scale=2,
                           min_width=300, **{**kw, "info": "The prompts: a saved SFT dataset (newest first) or a "
                                                           "bundled sample; or type a JSONL/CSV/text file's path."})

    def mode(f, kw):
        return gr.Dropdown(choices=list(f.metadata["choices"]), **{**kw, "info": MODE_HELP})

    def votes_per_pair(f, kw):
        return gr.Number(precision=0, **{**kw, "value": 1 if alone else kw["value"],
                                                    "info": VOTES_HELP + (ALONE_HELP if alone else "")})

    return {"prompts": prompts, "sources": sources, "judge": judge, "mode": mode, "votes_per_pair": votes_per_pair,
            **{name: upload for name in UPLOADS}}


def campaigns_table(home: Home) -> pd.DataFrame:
    from lab.label.campaigns import Counts, campaign_counts, list_campaigns, reconcile

    reconcile(home)
    campaigns = list_campaigns(home)
    counts = campaign_counts(home)
    names = catalog.display_names([s["name"] for c in campaigns for s in c.sources], home)
    rows = []
    for c in campaigns:
        n = counts.get(c.id, Counts())
        generated = f"{c.generated}/{c.to_generate}" if c.to_generate else "from file"
        rows.append([c.id, c.name, ", ".join(names[s["name"]] for s in c.sources if s["kind"] != "gold"),
                     c.status + (f": {c.error}" if c.error else ""), generated, f"{n.votes}/{n.wanted}",
                     f"{n.ready}/{n.pairs}", catalog.when(c.created_at)])
    return pd.DataFrame(rows, columns=CAMPAIGN_HEADERS)


def campaign_state(home: Home, campaign_id: str | None) -> str:
    """The selected campaign's state now (a status line that follows it, refreshed with the view)."""
    from lab.label.campaigns import Counts, campaign_counts, get_campaign, state_text

    if not campaign_id:
        return ""
    campaign = get_campaign(campaign_id, home)
    return f"**{campaign.name}**: " + state_text(campaign, campaign_counts(home, campaign.id).get(campaign.id,
                                                                                              Counts()))


def confined(cfg: CampaignConfig, home: Home) -> CampaignConfig:
    """A prompts file is read only inside the folders this server may read (``lab.paths.server_path``); pasted
    prompts and dataset names pass as they are. The campaign's other files are uploads (``kept_uploads``)."""
    prompts = cfg.prompts.strip()
    if prompts and "\n" not in prompts and Path(prompts).expanduser().is_file():
        cfg.prompts = server_path(prompts, home)
    return cfg


def kept_uploads(home: Home, values: dict[str, Any]) -> dict[str, tuple[Path, bool]]:
    """The campaign's uploaded files, copied under LAB_HOME/uploads (Gradio's copy does not last, and the
    campaign's config names its files), each with whether this call made the copy (``uploads.keep``)."""
    from lab.data import uploads

    return {name: uploads.keep(home, values[name], upload_folder=get_upload_folder()) for name in UPLOADS
            if values.get(name)}


def alone(home: Home, sign_in: bool) -> bool:
    """Whether every browser votes as one labeler (``local``): the app runs without sign-in, or no account exists
    yet (``lab.label.accounts.identify``)."""
    return not sign_in or not sign_in_required(home)


def lone_labeler_warning(votes_per_pair: int) -> str:
    """Why a campaign asking ``votes_per_pair`` votes of each pair cannot finish on a lab without accounts."""
    return (f"No labeler accounts yet: every browser votes as the same person, so each pair gets 1 of the "
            f"{votes_per_pair} votes asked and the campaign cannot finish. To get {votes_per_pair} votes a pair, add "
            "labeler accounts (Accounts, below); or create campaigns with Votes per pair 1.")


def create_campaign(ui: AdminUI, home: Home, sign_in: bool, labeling: LabelingUI, request: gr.Request,
                    **values: Any) -> dict:
    """Create the campaign and select it, in the admin's list and in the voting panel above (where Start leases
    its first pair: selecting it leases none). On a lab where everyone votes as one person, a campaign that asks
    more than one vote a pair is created with a warning that it cannot finish."""
    from lab.data import uploads
    from lab.label.campaigns import create_campaign as create

    require_admin(who(home, sign_in, request))
    if isinstance(values.get("sources"), list):
        values["sources"] = ",".join(values["sources"])
    files = kept_uploads(home, values)
    try:
        cfg = confined(ui.form.to_config({**values, **{k: str(path) for k, (path, _) in files.items()}}), home)
        campaign = create(cfg, home=home)
    except Exception:
        for path, new in files.values():
            if new:  # a refused campaign's files are of no use (one kept before may serve another campaign)
                uploads.discard(home, path)
        raise
    said = status_ok(f"Created campaign {campaign.name} ({campaign.id}).")
    if cfg.votes_per_pair > 1 and alone(home, sign_in):
        said += f"\n\n⚠ {lone_labeler_warning(cfg.votes_per_pair)}"
    return {ui.status: said,
            ui.campaigns: campaigns_table(home),
            ui.selected: gr.update(choices=catalog.campaign_choices(home), value=campaign.id),
            ui.state: campaign_state(home, campaign.id),
            labeling.campaign: gr.update(choices=open_campaigns(home), value=campaign.id),
            labeling.progress: f"**{campaign.name}** is chosen: press **Start** to label it.",
            ui.empty: "", ui.voting: gr.update(open=True),
            **layout(labeling, page_kind(campaign))}  # a thumbs campaign shows one answer, not A and B


def pick_campaign(evt: gr.SelectData) -> Any:
    """A click in the Campaigns table selects that row's campaign (its id, the first column)."""
    row = evt.row_value or []
    return row[0] if row else gr.skip()


def quality_text(report: dict[str, Any], board: dict[str, Any] | None) -> str:
    """How many votes from how many people, position bias and who leads, in people's names (``board`` already
    uses display names; None for a thumbs campaign, whose leaderboard is its approval rates). The agreement
    numbers are in ``agreement_text``."""
    bias = report["position_bias"]
    people = report["labelers"]
    overlap = report["pairs_with_overlap"]
    head = (f"**{report['votes']}** vote{'s' if report['votes'] != 1 else ''} from **{people}** "
            f"labeler{'s' if people != 1 else ''} · {overlap} pair{'s' if overlap != 1 else ''} with 2+ votes")
    if not overlap:
        head += f" (agreement {NO_OVERLAP})"
    lines = [head]
    if bias["decided"]:
        flag = " ⚠ **position bias**: far from 50%" if bias["flagged"] else ""
        lines.append(f"Position bias: labelers picked the left answer {bias['a_rate']:.0%} of the time in "
                     f"{bias['decided']} decided vote{'s' if bias['decided'] != 1 else ''} (50% is unbiased; "
                     f"p = {bias['p_value']:.2g}){flag}")
    if board and board["ratings"]:
        lines.append(leader_line(board))
    return "\n\n".join(lines)


def agreement_text(report: dict[str, Any], lone: bool = False) -> str:
    """The agreement numbers, each with what it measures (1 = full agreement, 0 = what chance gives), or why it is
    not there yet. ``lone``: every browser votes as one person (no accounts), which is why no pair has 2 votes."""
    if not report["pairs_with_overlap"]:
        why = (" Without labeler accounts every browser votes as the same person: add accounts (Accounts, below) "
               "for a second labeler." if lone else "")
        return f"Every agreement number {NO_OVERLAP}: no pair has votes from 2 labelers yet.{why}"
    cohen = (number(report["cohen_kappa"]) if report["cohen_kappa"] is not None else
             "only with exactly 2 labelers sharing 2+ pairs")
    raw = report["pairwise_agreement"]
    return "\n".join([
        f"- **Raw agreement**: {percent(raw)} of the votes given on the same pair agree (not corrected for chance)",
        f"- **Fleiss' κ**: {number(report['fleiss_kappa'])} (any number of labelers a pair)",
        f"- **Krippendorff's α**: {number(report['krippendorff_alpha'])} (also fair with few votes or missing ones)",
        f"- **Cohen's κ**: {cohen} (two labelers)"])


def leader_line(board: dict[str, Any]) -> str:
    """Who leads, or that nobody does: when every model sits at the same rating (all 1000, every win rate 50%)
    there is no leader to name."""
    few = (" · few votes yet: intervals from a bootstrap of so few votes understate the uncertainty"
           if board["comparisons"] < 20 else "")
    ratings = board["ratings"]
    if ratings[0]["rating"] - ratings[-1]["rating"] < 0.5:
        return f"No leader: all {len(ratings)} models are tied ({ratings[0]['rating']:.0f}, 50% against each other)" + few
    best = ratings[0]
    return f"Leader: **{best['source']}** ({best['rating']:.0f}, 95% interval {best['low']}–{best['high']})" + few


def named_board(board: dict[str, Any], home: Home) -> dict[str, Any]:
    """The leaderboard with run names instead of run:<id> (for people; the engine keeps the sources)."""
    names = catalog.display_names(board["models"] + [r["source"] for r in board["ratings"]], home)
    return {**board, "ratings": [{**r, "source": names[r["source"]]} for r in board["ratings"]],
            "models": [names[m] for m in board["models"]]}


def accounts_table(home: Home) -> pd.DataFrame:
    from lab.label.accounts import list_accounts

    return pd.DataFrame([[a["name"], a["role"], a["created_at"]] for a in list_accounts(home=home)],
                        columns=ACCOUNT_HEADERS)


def admin_view(ui: AdminUI, home: Home, sign_in: bool, request: gr.Request, campaign_id: str | None) -> dict:
    from lab.label.campaigns import get_campaign
    from lab.label.results import agreement, approval, leaderboard

    require_admin(who(home, sign_in, request))
    out = {ui.campaigns: campaigns_table(home), ui.selected: gr.update(choices=catalog.campaign_choices(home)),
           ui.accounts: accounts_table(home)}
    if not campaign_id:
        return {**out, ui.state: "", ui.quality: "Select a campaign (or click its row above) to see its agreement "
                                                  "and leaderboard.", ui.agreement: ""}
    campaign = get_campaign(campaign_id, home)  # an unknown id is an error, not empty statistics
    campaign_id = campaign.id
    report = agreement(campaign_id, home=home)
    out = {**out, ui.state: campaign_state(home, campaign_id), ui.labelers: labelers_table(report, campaign.thumbs),
           ui.agreement: agreement_text(report, alone(home, sign_in))}
    if campaign.thumbs:  # one answer at a time: each source's share rated good, no ratings or win rates
        rates = approval(campaign_id, home=home)
        none = "A thumbs campaign compares no pairs: each source's share rated good is listed beside."
        return {**out, ui.quality: quality_text(report, None) + "\n\n" + approval_text(rates, home),
                ui.ratings: plots.empty_figure(none), ui.matrix: plots.empty_figure(none)}
    board = named_board(leaderboard(campaign_id, home=home), home)
    return {**out, ui.quality: quality_text(report, board), ui.ratings: plots.ratings_plot(board["ratings"]),
            ui.matrix: plots.win_matrix_plot(board["models"], board["win_rates"], board["counts"])}


def labelers_table(report: dict[str, Any], thumbs: bool) -> pd.DataFrame:
    """Per labeler, in words where a number is missing, shares as percentages; a thumbs campaign's table has its
    share rated good instead of the sides picked."""
    rows = []
    for r in report["per_labeler"]:
        seconds = r["median_seconds"] if r["median_seconds"] is not None else "–"
        shared = percent(r["agreement_with_others"]) if r["agreement_with_others"] is not None else "no shared pair"
        if thumbs:
            rows.append([r["labeler"], r["votes"], seconds, shared, percent(r["up_rate"])])
            continue
        gold = percent(r["gold_accuracy"]) if r["gold_accuracy"] is not None else "no gold pair"
        bias = ("⚠ flagged" if r["position_bias_flagged"] else "no") if r["left_rate"] is not None else "–"
        rows.append([r["labeler"], r["votes"], seconds, shared, gold, percent(r["left_rate"]), bias])
    return pd.DataFrame(rows, columns=THUMBS_LABELER_HEADERS if thumbs else LABELER_HEADERS)


def exports_earlier_rounds(home: Home, campaign_id: str | None) -> bool:
    """The export's "With earlier rounds" as a campaign is chosen: on for a round after the first, so that the
    next DPO learns from all the votes so far (set on choosing only: the admin's change stands until the next)."""
    from lab.label.campaigns import get_campaign

    return bool(campaign_id) and get_campaign(campaign_id, home).round > 1


def approval_text(rates: dict[str, Any], home: Home) -> str:
    """A thumbs campaign's leaderboard: per source (by name), its share rated good with a 95% interval, best
    first."""
    if not rates["sources"]:
        return "No votes yet: each source's share rated good appears with the first votes."
    names = catalog.display_names([r["source"] for r in rates["sources"]], home)
    lines = [f"| {names[r['source']]} | {r['rate']:.0%} | {r['low']:.0%}–{r['high']:.0%} | {r['up']} | {r['down']} |"
             for r in rates["sources"]]
    return ("**Approval** (share rated good, Wilson 95% interval)\n\n| source | rated good | 95% interval | "
            "good votes | bad votes |\n|---|---|---|---|---|\n" + "\n".join(lines))


def set_campaign_status(ui: AdminUI, home: Home, sign_in: bool, target: str, request: gr.Request,
                        campaign_id: str | None) -> dict:
    from lab.label.campaigns import set_status

    require_admin(who(home, sign_in, request))
    campaign = set_status(require_campaign(campaign_id), target, home=home)
    done = {"closed": "Closed", "open": "Reopened", "generating": "Resumed generating for"}[target]
    return {ui.status: status_ok(f"{done} {campaign.name}."), ui.state: campaign_state(home, campaign.id)}


def export(ui: AdminUI, home: Home, sign_in: bool, kind: str, request: gr.Request, campaign_id: str | None,
           name: str, min_votes: float, min_agreement: float, val_fraction: float, drop_unreliable: bool = False,
           weighted: bool = False, min_margin: float | None = 0.0, earlier_rounds: bool = False) -> dict:
    """Export the votes as ``kind`` ("" = the campaign's usual: pairs, or unpaired for thumbs); the version's ref
    is kept (``exported``) for "Train DPO/KTO on this", whose policy picker is set to the campaign's first
    finished run (the model that was labeled, usually). A campaign whose votes are not all in is exported all the
    same, with a warning that says how far it is (``unfinished_text``)."""
    from lab.label.campaigns import get_campaign, model_of, unfinished_text
    from lab.label.results import export_votes

    require_admin(who(home, sign_in, request))
    campaign = get_campaign(require_campaign(campaign_id), home)
    version = export_votes(campaign.id, kind, name=(name or "").strip(), min_votes=int(min_votes or 1),
                           min_agreement=float(min_agreement), val_fraction=float(val_fraction or 0),
                           drop_unreliable=bool(drop_unreliable), weighted=bool(weighted),
                           min_margin=float(min_margin or 0), earlier_rounds=bool(earlier_rounds), home=home)
    counts = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in sorted(version.card["counts"].items()))
    models = catalog.model_choices(home)
    labeled = [model_of(s) for s in campaign.model_sources if model_of(s) in {value for _, value in models}]
    unit, method = ("pair", "DPO") if version.kind == "preference" else ("row", "KTO")
    train, validation = version.rows["train"], version.rows["validation"]
    split = (f"{train} train / {validation} validation {unit}s" if validation else
             f"{train} train {unit}{'s' if train != 1 else ''}, no validation split (Validation fraction 0)")
    early = unfinished_text(campaign.id, home)
    warning = f"⚠ Exported early: {early}. It holds the votes so far; export again when more are in." if early else ""
    return {ui.status: status_ok(f"Exported {version.ref}.") + (f" {warning}" if warning else ""),
            ui.exported: version.ref,
            ui.export_result: (f"**{warning}**\n\n" if warning else "") +
                              f"Dataset version `{version.ref}` ({version.kind}, for {method}): {split} "
                              f"({counts}). Labelers: {', '.join(version.card['labelers'])}. "
                              f"Rule: {version.card['rule']['text']}",
            ui.policy: gr.update(choices=models, **({"value": labeled[0]} if labeled else {}))}


def train_on_export(ui: AdminUI, home: Home, sign_in: bool, train_form: Form, tabs: gr.Tabs, objective: str,
                    request: gr.Request, dataset_ref: str, policy: str | None, campaign_id: str | None = None) -> dict:
    """Fill the Train tab with DPO (or KTO) settings that train on the exported version (this page's export, else
    the chosen campaign's newest) from the chosen policy (``propose_dpo`` / ``propose_kto``: enough optimizer
    steps, a learning rate above 0), and go there."""
    from lab.label.results import latest_export
    from lab.train.methods import objective as registered

    require_admin(who(home, sign_in, request))
    title = registered(objective).title
    dataset_ref = dataset_ref or (latest_export(campaign_id, home) if campaign_id else None) or ""
    if not dataset_ref:
        raise LabError(f"Export the votes first; the exported version is what {title} trains on.")
    if not policy:
        raise LabError("Choose the policy to train (usually the SFT run the campaign labeled).")
    proposal = registered(objective).propose(dataset_ref, policy, home)
    pickers = {"dataset": catalog.dataset_choices(home), "model": catalog.model_choices(home)}
    filled = {train_form[name]: gr.update(value=value, choices=pickers[name])
              if name in pickers and isinstance(train_form[name], gr.Dropdown) else value
              for name, value in proposal.values.items()}
    message = (f"The Train tab holds a {title} run on {dataset_ref} from {catalog.display_name(policy, home)}: "
               f"{proposal.text} Check it and start it.")
    gr.Info(message)  # the page switches to the Train tab: a toast is seen at once, and its status line keeps it
    said = {ui.train_status: status_ok(message)} if ui.train_status is not None else {}
    return {ui.status: status_ok(message), **said, **filled, tabs: gr.Tabs(selected="train")}


def log_wandb(ui: AdminUI, home: Home, sign_in: bool, request: gr.Request, campaign_id: str | None) -> dict:
    from lab.label.campaigns import get_campaign
    from lab.label.report import log_to_wandb

    require_admin(who(home, sign_in, request))
    campaign = get_campaign(require_campaign(campaign_id), home)
    result = log_to_wandb(campaign.id, project=campaign.config.get("wandb_project", "lab"), home=home)
    where = f"[{result['url']}]({result['url']})" if result["url"] else f"offline: `wandb sync {result['offline_dir']}`"
    return {ui.status: f"**✓ Logged {campaign.name} to W&B** ({where})."}


def create_account(ui: AdminUI, home: Home, sign_in: bool, request: gr.Request, name: str, role: str,
                   password: str) -> dict:
    from lab.label.accounts import add_account

    require_admin(who(home, sign_in, request))
    account = add_account((name or "").strip(), role, password or "", home=home)
    return {ui.account_status: f"**✓ Added {account.name} ({account.role}).** Sign-in applies from the next page "
                               "load.",
            ui.accounts: accounts_table(home),
            ui.password: ""}


def set_account_role(ui: AdminUI, home: Home, sign_in: bool, request: gr.Request, name: str, role: str) -> dict:
    from lab.label.accounts import set_role

    require_admin(who(home, sign_in, request))
    account = set_role(name, role, home=home)
    return {ui.account_status: status_ok(f"{account.name} is {'an admin' if account.is_admin else 'a labeler'}, "
                                         "from their next click."),
            ui.accounts: accounts_table(home)}


def set_account_password(ui: AdminUI, home: Home, sign_in: bool, request: gr.Request, name: str,
                         password: str) -> dict:
    from lab.label.accounts import set_password

    require_admin(who(home, sign_in, request))
    account = set_password(name, password or "", home=home)
    return {ui.account_status: status_ok(f"New password for {account.name}: their sessions have ended, and they "
                                         "sign in again with it."),
            ui.password: ""}


def delete_account(ui: AdminUI, home: Home, sign_in: bool, request: gr.Request, name: str) -> dict:
    from lab.label.accounts import list_accounts, remove_account

    require_admin(who(home, sign_in, request))
    account = remove_account(name, home=home)
    said = (f"Removed {account.name}: they can no longer sign in; their votes stay." if list_accounts(home=home)
            else f"Removed {account.name}, the last account: sign-in is off, and the lab is open to anyone who "
                 "reaches it.")
    return {ui.account_status: status_ok(said), ui.accounts: accounts_table(home)}


def on_show(ui: tuple[LabelingUI, AdminUI], home: Home) -> list[OnShow]:
    """What this tab refreshes when shown (lab.ui.common.wire_on_show): the campaigns to label, the campaign
    form's prompts, sources and judge, the campaign picker and table, and the DPO policy picker, each as it is
    now. While no campaign exists the voting panel is closed, New campaign open, and the tab says so at its top;
    once one exists the voting panel is open, and New campaign as the admin left it."""
    labeling, admin = ui

    def refresh(selected: str | None, to_label: str | None) -> dict:
        models = catalog.model_choices(home)
        campaigns, open_now = catalog.campaign_choices(home), open_campaigns(home)
        # None chosen yet (a page just loaded) or gone: the newest, so Export and the results need no picking first,
        # and Start labels the newest open campaign (set here, no pair is served until Start is pressed)
        chosen, labeling_chosen = kept_or_newest(selected, campaigns), kept_or_newest(to_label, open_now)
        first = ({admin.voting: gr.update(open=True)} if campaigns else
                 {admin.voting: gr.update(open=False), admin.new_campaign: gr.update(open=True)})
        return {labeling.campaign: gr.update(choices=open_now, value=labeling_chosen),
                admin.form["sources"]: gr.update(choices=models), admin.policy: gr.update(choices=models),
                admin.form["judge"]: gr.update(choices=judge_choices(home)),
                admin.form["prompts"]: gr.update(choices=catalog.dataset_choices(home, kind="sft")),
                admin.selected: gr.update(choices=campaigns, value=chosen),
                admin.campaigns: campaigns_table(home),
                admin.empty: "" if open_now else NONE_OPEN if campaigns else NO_CAMPAIGN_YET, **first}

    return [OnShow(refresh, [labeling.campaign, admin.form["sources"], admin.policy, admin.form["judge"],
                             admin.form["prompts"], admin.selected, admin.campaigns, admin.empty, admin.voting,
                             admin.new_campaign], inputs=[admin.selected, labeling.campaign]),
            *label_flywheel.on_show(admin.flywheel, home)]
