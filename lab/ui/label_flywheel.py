"""The Label tab's flywheel panels for admins: rounds (the chain of round → export → run → round), pairs awaiting
an admin's decision, labelers' reliability and agreement over time, and the LLM judge's pre-labels.

Every panel follows the campaign picked in the admin's campaign list (``AdminUI.selected``): the pair awaiting a
decision and the judge's progress at the tab's 3 s pace, the fits (rounds, reliability, leaderboards) within
``FITS_EVERY_S`` of a new vote. Handlers only wire widgets to ``lab.label`` (``rounds``, ``adjudication``,
``reliability``, ``prelabel``, ``style``, ``results``) and refuse anyone but an admin on the server. Stable
``api_name``s: ``label_flywheel_view`` (every panel, outputs in ``FlywheelUI.view_outputs`` order),
``label_next_round``, ``label_report``, ``label_adjudicate_a``, ``label_adjudicate_b``, ``label_adjudicate_tie``,
``label_adjudicate_both_bad``, ``label_prelabel``.

No ``from __future__ import annotations`` here: Gradio finds the ``gr.Request`` parameter by its annotation.
"""

import json
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gradio as gr
import pandas as pd

from lab import catalog
from lab.errors import LabError
from lab.home import Home
from lab.label.accounts import identify, require_admin
from lab.ui import plots
from lab.ui.common import OnShow, chat_html, clip, guarded, number, percent, safe_html, status_ok

if TYPE_CHECKING:
    from lab.ui.label_tab import AdminUI

RELIABILITY_HEADERS = ["labeler", "votes", "gold right", "gold accuracy", "shared pairs", "agrees with majority",
                       "left chosen", "score", "why"]
RELIABILITY_WIDTHS = ["9%", "6%", "7%", "7%", "7%", "9%", "7%", "6%", "42%"]  # room for why, the rest stay legible
SOURCE_PAIR_HEADERS = ["sources", "pairs", "votes", "κ (1 = full agreement, 0 = chance)", "agreement",
                       "outcomes"]
NO_OVERLAP = "needs 2 labelers on the same pair"  # an agreement number that cannot be had yet
ASPECT_HEADERS = ["aspect", "source", "won", "lost", "tied", "votes", "rate (ties half)"]
STYLE_HEADERS = ["source", "rating", "95% interval", "length-controlled rating", "95% interval (length-controlled)"]
CHAIN_WIDTHS = ["6%", "10%", "8%", "7%", "5%", "9%", "16%", "15%", "12%", "12%"]  # rounds.HEADERS' columns
DECISIONS = (("a", "A is better"), ("b", "B is better"), ("tie", "Tie"), ("both_bad", "Both bad"))
FLAGGED_ROW = "background-color: #fee2e2"  # a flagged labeler's row stands out in the table
REPORT_FORMATS = (("Markdown", "md"), ("HTML", "html"))
FITS_EVERY_S = 10.0  # the fits follow new votes at most this often (they cost a noticeable share of a small CPU)
FITS_AT_LEAST_S = 30.0  # and are drawn again this often anyway
NO_CAMPAIGN = "Select a campaign above to see its rounds, disagreements, labelers and judge."
ADJUDICATION, RELIABILITY, JUDGE = "Adjudication", "Labelers' reliability", "LLM judge and style control"


@dataclass
class FlywheelUI:
    admin: "AdminUI"
    chain: gr.Dataframe
    win_rates: gr.Plot
    challenger: gr.Dropdown
    incumbent: gr.Dropdown
    prompts: gr.Dropdown
    report_file: gr.File
    waiting: gr.Markdown  # how many pairs await a decision
    pair_area: gr.Column  # the pair, the note and the decision buttons
    pair: gr.Textbox  # hidden: the shown pair as JSON {"campaign", "pair_id", "sides": [source A, source B]}
    prompt: gr.Markdown
    left: gr.Markdown
    right: gr.Markdown
    left_votes: gr.Markdown
    right_votes: gr.Markdown
    other_votes: gr.Markdown  # ties and both-bad votes, which neither side got
    note: gr.Textbox
    decide: dict[str, gr.Button]
    labelers: gr.Dataframe
    kappa: gr.Plot
    source_pairs: gr.Dataframe
    judge: gr.Dropdown
    judge_agreement: gr.Markdown
    style: gr.Dataframe
    style_note: gr.Markdown
    aspects: gr.Dataframe  # per-aspect votes: each source's record per aspect
    fills_at: gr.Number  # the κ at which the judge labels the pairs people have not reached
    # The panels below Rounds open on a campaign's selection only when they have something to show (titles count
    # the pairs awaiting a decision and the flagged labelers): closed, they take a line each.
    adjudication: gr.Accordion
    reliability: gr.Accordion
    judge_panel: gr.Accordion
    drawn: gr.State  # when the fits were drawn, for which campaign, at which activity_mark (``fits_drawn``)

    @property
    def pair_outputs(self) -> list:
        return [self.waiting, self.pair, self.prompt, self.left, self.right, self.left_votes, self.right_votes,
                self.other_votes, self.note, *self.decide.values(), self.pair_area, self.adjudication]

    @property
    def view_outputs(self) -> list:
        # The api's positions (tests read them): status, the rounds, the pair, reliability, the judge. Layout
        # blocks (the pair's column, the panels) have no place in the client's outputs.
        return [self.admin.status, self.chain, self.win_rates, *self.pair_outputs, self.labelers, self.kappa,
                self.source_pairs, self.judge_agreement, self.style, self.style_note, self.aspects, self.reliability,
                self.judge_panel]


def build(home: Home, sign_in: bool, admin: "AdminUI") -> FlywheelUI:
    from lab.label.rounds import HEADERS

    gr.Markdown("### The flywheel: rounds, disagreements, labelers and the judge\nFor the campaign selected above.")
    with gr.Accordion("Rounds", open=True):
        gr.Markdown("Each round's campaign, the export its votes gave, the run trained on that export, and how the "
                    "round's challenger did against its incumbent (ties count half, Wilson 95% interval).")
        chain = gr.Dataframe(headers=HEADERS, interactive=False, wrap=True, elem_id="lab-chain",
                             column_widths=CHAIN_WIDTHS)
        win_rates = gr.Plot(label="Challenger's win rate per round")
        with gr.Row():
            challenger = gr.Dropdown(label="Challenger", choices=[], value=None, allow_custom_value=True, scale=2,
                                     info="Empty: the newest checkpoint trained on the chain's exports.")
            incumbent = gr.Dropdown(label="Incumbent", choices=[], value=None, allow_custom_value=True, scale=2,
                                    info="Empty: the previous round's winner.")
        with gr.Row():
            prompts = gr.Dropdown(label="Fresh prompts", choices=[], value=None, allow_custom_value=True, scale=3,
                                  info="Empty: the previous round's prompts setting. Prompts an earlier round asked "
                                       "are held out either way.")
            max_prompts = gr.Number(label="Max fresh prompts", value=0, precision=0, minimum=0, scale=1,
                                    info="0: as the previous round.")
            next_round = gr.Button("Next round", variant="primary", scale=1)
        with gr.Row():
            report_format = gr.Radio(label="Report format", choices=list(REPORT_FORMATS), value="md", scale=2)
            report = gr.Button("Report", scale=1)
            report_file = gr.File(label="The chain's report", interactive=False, visible=False, scale=2,
                                  elem_id="lab-rounds-report")
    with gr.Accordion(ADJUDICATION, open=False) as adjudication:
        waiting = gr.Markdown()
        pair = gr.Textbox(visible=False)
        with gr.Column(visible=False) as pair_area:  # shown while a pair awaits a decision
            prompt = gr.Markdown(elem_classes="lab-prompt", elem_id="lab-adjudicate-prompt")
            with gr.Row(equal_height=True):
                with gr.Column():
                    gr.Markdown("### A")
                    left = gr.Markdown(elem_classes="lab-response", elem_id="lab-adjudicate-a", height=280)
                    left_votes = gr.Markdown()
                with gr.Column():
                    gr.Markdown("### B")
                    right = gr.Markdown(elem_classes="lab-response", elem_id="lab-adjudicate-b", height=280)
                    right_votes = gr.Markdown()
            other_votes = gr.Markdown()
            note = gr.Textbox(label="Note (optional)", placeholder="Why this decision?", lines=1)
            with gr.Row():
                decide = {choice: gr.Button(text, elem_id=f"lab-adjudicate-{choice}-button", interactive=False,
                                            variant="primary" if choice in ("a", "b") else "secondary")
                          for choice, text in DECISIONS}
    with gr.Accordion(RELIABILITY, open=False) as reliability:
        gr.Markdown("Each labeler against the gold answers and the majority of the others; flagged labelers are "
                    "highlighted, with why. Exports can drop or down-weight them.")
        labelers = gr.Dataframe(headers=RELIABILITY_HEADERS, interactive=False, wrap=True, elem_id="lab-reliability",
                                column_widths=RELIABILITY_WIDTHS)
        with gr.Row():
            kappa = gr.Plot(label="Agreement over time")
            source_pairs = gr.Dataframe(headers=SOURCE_PAIR_HEADERS, interactive=False,
                                        label="Agreement per source pair")
        aspects = gr.Dataframe(headers=ASPECT_HEADERS, interactive=False,
                               label="Per aspect (campaigns with aspects): each source's record")
    with gr.Accordion(JUDGE, open=False) as judge_panel:
        with gr.Row():
            judge = gr.Dropdown(label="Judge for pre-labels", choices=[], value=None, allow_custom_value=True, scale=3,
                                info="Empty: the campaign's judge. A model, or the OpenAI-compatible endpoint.")
            prelabel = gr.Button("Pre-label with the judge", scale=1)
            fills_at = gr.Number(label="Judge fills at κ", value=0.0, minimum=0, maximum=1, step=0.05, scale=1,
                                 info="Once its κ with people reaches this, the judge labels the pairs people have "
                                 "not reached (exports mark them). 0 = never.")
            set_fills = gr.Button("Set", scale=1)
        judge_agreement = gr.Markdown()
        style_note = gr.Markdown()
        style = gr.Dataframe(headers=STYLE_HEADERS, interactive=False, label="Leaderboard: plain and length-controlled")
    ui = FlywheelUI(admin, chain, win_rates, challenger, incumbent, prompts, report_file, waiting, pair_area, pair,
                    prompt, left, right, left_votes, right_votes, other_votes, note, decide, labelers, kappa,
                    source_pairs, judge, judge_agreement, style, style_note, aspects, fills_at, adjudication,
                    reliability, judge_panel, gr.State({}))

    bound = (ui, home, sign_in)
    status, selected = admin.status, admin.selected
    selected.change(guarded(selected_view, status, *bound), inputs=[selected, pair],
                    outputs=[*ui.view_outputs, fills_at, ui.drawn], api_name="label_flywheel_view")
    # One 3 s pace: what moves while an admin watches (pairs coming up for a decision, the judge's progress) each
    # tick; the fits (reliability, two bootstrapped leaderboards) only when votes came in since they were drawn, at
    # most every FITS_EVERY_S as each costs a noticeable share of a small CPU, and every FITS_AT_LEAST_S anyway.
    gr.Timer(3.0).tick(guarded(tick, status, *bound), inputs=[selected, pair, ui.drawn],
                       outputs=[*ui.view_outputs, ui.drawn], api_visibility="private", show_progress="hidden")
    next_round.click(guarded(start_next_round, status, *bound),
                     inputs=[selected, challenger, incumbent, prompts, max_prompts],
                     outputs=[status, selected], api_name="label_next_round")
    report.click(guarded(write_report, status, *bound), inputs=[selected, report_format],
                 outputs=[status, report_file], api_name="label_report")
    for choice, _ in DECISIONS:
        decide[choice].click(guarded(decide_pair, status, *bound, choice), inputs=[selected, pair, note],
                             outputs=[status, *ui.pair_outputs], api_name=f"label_adjudicate_{choice}")
    set_fills.click(guarded(set_judge_fills, status, *bound), inputs=[selected, fills_at],
                    outputs=[status, judge_agreement], api_name="label_judge_fills_at")
    prelabel.click(guarded(start_prelabel, status, *bound), inputs=[selected, judge],
                   outputs=[status, judge_agreement], api_name="label_prelabel")
    return ui


def on_show(ui: FlywheelUI, home: Home) -> list[OnShow]:
    """The pickers (challenger, incumbent, fresh prompts, judge) as they are now."""
    def refresh() -> dict:
        models = catalog.model_choices(home)
        return {ui.challenger: gr.update(choices=models), ui.incumbent: gr.update(choices=models),
                ui.prompts: gr.update(choices=catalog.dataset_choices(home, kind="sft")),
                ui.judge: gr.update(choices=catalog.judge_choices(home))}

    return [OnShow(refresh, [ui.challenger, ui.incumbent, ui.prompts, ui.judge])]


def require_admin_of(home: Home, sign_in: bool, request: gr.Request | None) -> None:
    require_admin(identify(getattr(request, "username", None), sign_in=sign_in, home=home))


def chosen(campaign_id: str | None) -> str:
    if not campaign_id:
        raise LabError("Choose a campaign first (the Campaign picker above).")
    return campaign_id


# --------------------------------------------------------------------------- the whole view


def flywheel_view(ui: FlywheelUI, home: Home, sign_in: bool, request: gr.Request, campaign_id: str | None,
                  shown: str) -> dict:
    """Every panel for the selected campaign. The pair being adjudicated stays on screen (the admin may be writing
    a note) until it is decided, here or by another admin; then the next one waiting is shown."""
    from lab.label.campaigns import get_campaign
    from lab.label.rounds import HEADERS

    require_admin_of(home, sign_in, request)
    if not campaign_id:
        return {**no_pair(ui, NO_CAMPAIGN), ui.chain: pd.DataFrame(columns=HEADERS),
                ui.win_rates: plots.empty_figure(NO_CAMPAIGN), ui.labelers: pd.DataFrame(columns=RELIABILITY_HEADERS),
                ui.kappa: plots.empty_figure(NO_CAMPAIGN), ui.source_pairs: pd.DataFrame(columns=SOURCE_PAIR_HEADERS),
                ui.judge_agreement: "", ui.style: pd.DataFrame(columns=STYLE_HEADERS), ui.style_note: "",
                ui.aspects: pd.DataFrame(columns=ASPECT_HEADERS), ui.reliability: gr.update(label=RELIABILITY),
                ui.judge_panel: gr.update(label=JUDGE)}
    campaign = get_campaign(campaign_id, home)  # an unknown id is an error, not empty panels
    return {**rounds_view(ui, home, campaign.id), **pending_view(ui, home, campaign.id, shown),
            **reliability_view(ui, home, campaign.id), **judge_view(ui, home, campaign)}


def selected_view(ui: FlywheelUI, home: Home, sign_in: bool, request: gr.Request, campaign_id: str | None,
                  shown: str) -> dict:
    """Every panel, and the judge's threshold as the campaign has it (set only here: a refresh would undo an edit)."""
    from lab.label.campaigns import activity_mark, get_campaign
    from lab.label.prelabel import agreement

    # Marked before drawing: a vote cast meanwhile makes the next tick draw again.
    drawn = fits_drawn(campaign_id, activity_mark(home))
    view = flywheel_view(ui, home, sign_in, request, campaign_id, shown)
    threshold = get_campaign(campaign_id, home).config.get("judge_fills_at", 0.0) if campaign_id else 0.0
    opened = {ui.adjudication: False, ui.reliability: False, ui.judge_panel: False}
    if campaign_id:
        judged = agreement(campaign_id, home=home)
        # A pair awaits a decision when the view shows one, or keeps the one on screen (then it has no pair key)
        opened = {ui.adjudication: bool(view.get(ui.pair, shown)),
                  ui.reliability: len(voters(view[ui.labelers])) >= 2,
                  ui.judge_panel: bool(judged["labelled"]) or judged["state"]["status"] in ("running", "failed")}
    return {**view, ui.fills_at: threshold, ui.drawn: drawn,
            **{panel: gr.update(**(view.get(panel) or {}), open=is_open) for panel, is_open in opened.items()}}


def voters(table: Any) -> list[str]:
    """The labelers in a reliability table (a pandas Styler or a frame) who have voted."""
    frame = getattr(table, "data", table)
    return [name for name, votes in zip(frame["labeler"], frame["votes"], strict=True) if votes]


def tick(ui: FlywheelUI, home: Home, sign_in: bool, request: gr.Request, campaign_id: str | None, shown: str,
         drawn: dict | None) -> dict:
    """The timer's refresh: the live panels (the pair awaiting a decision, the judge's progress), or every panel when
    the fits are due (see ``fits_due``)."""
    from lab.label.campaigns import activity_mark

    require_admin_of(home, sign_in, request)
    mark = activity_mark(home)
    if fits_due(drawn or {}, campaign_id, mark, time.monotonic()):
        return {**flywheel_view(ui, home, sign_in, request, campaign_id, shown),
                ui.drawn: fits_drawn(campaign_id, mark)}
    if not campaign_id:
        return {**no_pair(ui, NO_CAMPAIGN), ui.judge_agreement: ""}
    return {**pending_view(ui, home, campaign_id, shown), ui.judge_agreement: judge_text(home, campaign_id)}


def fits_due(drawn: dict, campaign_id: str | None, mark: str, now: float) -> bool:
    """Whether the fits drawn (``fits_drawn``'s record) should be drawn again: another campaign is selected, or votes,
    undos, decisions or judge's labels came in and FITS_EVERY_S have passed, or FITS_AT_LEAST_S have (runs trained on
    a round's export and Eval's numbers for them change without a vote)."""
    if drawn.get("campaign") != campaign_id:
        return True
    age = now - drawn.get("at", float("-inf"))
    return age >= FITS_AT_LEAST_S or (mark != drawn.get("mark") and age >= FITS_EVERY_S)


def fits_drawn(campaign_id: str | None, mark: str) -> dict:
    return {"campaign": campaign_id, "mark": mark, "at": time.monotonic()}


# --------------------------------------------------------------------------- rounds


def rounds_view(ui: FlywheelUI, home: Home, campaign_id: str) -> dict:
    from lab.label.rounds import HEADERS, chain, table_rows

    rounds = chain(campaign_id, home=home)
    rows = [[clip(cell, 400) for cell in row] for row in table_rows(rounds)]  # a model's path wraps in its cell
    return {ui.chain: pd.DataFrame(rows, columns=HEADERS), ui.win_rates: plots.win_rate_plot(rounds)}


def start_next_round(ui: FlywheelUI, home: Home, sign_in: bool, request: gr.Request, campaign_id: str | None,
                     challenger: str | None, incumbent: str | None, prompts: str | None,
                     max_prompts: float | None) -> dict:
    """Create the next round of the selected campaign's chain and select it (the panels follow the selection)."""
    from lab.label.rounds import next_round

    require_admin_of(home, sign_in, request)
    campaign = next_round(chosen(campaign_id), challenger=challenger or "", incumbent=incumbent or "",
                          prompts=prompts or "", max_prompts=int(max_prompts) if max_prompts else None, home=home)
    return {ui.admin.status: status_ok(f"Created round {campaign.round}: campaign {campaign.name} ({campaign.id})."),
            ui.admin.selected: gr.update(choices=catalog.campaign_choices(home), value=campaign.id)}


def write_report(ui: FlywheelUI, home: Home, sign_in: bool, request: gr.Request, campaign_id: str | None,
                 fmt: str) -> dict:
    """The chain's report as a file to download (under LAB_HOME/exports, the folder the app serves)."""
    from lab.label.campaigns import get_campaign
    from lab.label.rounds import report

    require_admin_of(home, sign_in, request)
    campaign = get_campaign(chosen(campaign_id), home)
    fmt = fmt if fmt in dict(REPORT_FORMATS).values() else "md"
    folder = home.exports / "reports"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"rounds-{re.sub(r'[^A-Za-z0-9_.-]+', '-', campaign.name)}-{campaign.id}.{fmt}"
    path.write_text(report(campaign.id, fmt, home=home), encoding="utf-8")
    return {ui.admin.status: status_ok(f"Wrote the report of {campaign.name}'s rounds: {path.name}."),
            ui.report_file: gr.update(value=str(path), visible=True)}


# --------------------------------------------------------------------------- adjudication


def no_pair(ui: FlywheelUI, message: str, title: str = ADJUDICATION) -> dict:
    off = {ui.decide[choice]: gr.update(interactive=False) for choice in ui.decide}
    return {**off, ui.pair_area: gr.update(visible=False), ui.adjudication: gr.update(label=title),
            ui.waiting: message, ui.pair: "", ui.prompt: "",
            ui.left: "", ui.right: "", ui.left_votes: "", ui.right_votes: "", ui.other_votes: "", ui.note: ""}


def pending_view(ui: FlywheelUI, home: Home, campaign_id: str, shown: str = "") -> dict:
    """The first pair awaiting a decision, or nothing new while the one on screen still awaits one."""
    from lab.label.adjudication import pending

    waiting = pending(campaign_id, home=home)
    count = (f"**{len(waiting)}** pair{'s' if len(waiting) != 1 else ''} awaiting your decision: people's votes "
             "on {it} are in and still split. Your decision is what exports use; it is not a vote.")
    count = count.format(it="it" if len(waiting) == 1 else "them")
    title = gr.update(label=f"{ADJUDICATION} · {len(waiting)} awaiting your decision")
    held = json.loads(shown) if shown else {}
    if held.get("campaign") == campaign_id and any(p["pair_id"] == held.get("pair_id") for p in waiting):
        return {ui.waiting: count, ui.adjudication: title}  # the pair on screen stays
    if not waiting:
        return no_pair(ui, "No pair awaits a decision: every pair whose votes are in has a majority, or your "
                           "decision.", f"{ADJUDICATION} · none awaiting a decision")
    return {**pair_panel(ui, home, campaign_id, waiting[0]), ui.waiting: count, ui.adjudication: title}


def pair_panel(ui: FlywheelUI, home: Home, campaign_id: str, pair: dict[str, Any]) -> dict:
    """A pair as the admin judges it: blind (A and B, not the sources' names), each side with the votes it got."""
    sides = list(pair["answers"])
    names = dict(zip(sides, ("A", "B")))
    got = {side: [vote_text(v) for v in pair["votes"] if v["outcome"] == side] for side in sides}
    others = [f"{v['labeler']}: {'tie' if v['outcome'] == 'tie' else 'both bad'}" for v in pair["votes"]
              if v["outcome"] not in names]
    on = {ui.decide[choice]: gr.update(interactive=True) for choice in ui.decide}
    return {**on, ui.pair_area: gr.update(visible=True),
            ui.pair: json.dumps({"campaign": campaign_id, "pair_id": pair["pair_id"], "sides": sides}),
            ui.prompt: chat_html(pair["prompt"]),
            ui.left: safe_html(pair["answers"][sides[0]] or "*(empty response)*"),
            ui.right: safe_html(pair["answers"][sides[1]] or "*(empty response)*"),
            ui.left_votes: votes_line("A", got[sides[0]]), ui.right_votes: votes_line("B", got[sides[1]]),
            ui.other_votes: f"Neither side: {', '.join(others)}" if others else "", ui.note: ""}


def vote_text(vote: dict[str, Any]) -> str:
    return vote["labeler"] + (" (much better)" if vote.get("strength") == 2 else "")


def votes_line(side: str, labelers: list[str]) -> str:
    return f"**{len(labelers)}** vote{'s' if len(labelers) != 1 else ''} for {side}" + (
        f": {', '.join(labelers)}" if labelers else "")


def decide_pair(ui: FlywheelUI, home: Home, sign_in: bool, choice: str, request: gr.Request,
                campaign_id: str | None, shown: str, note: str) -> dict:
    """Record the admin's decision on the pair on screen, then show the next one waiting."""
    from lab.label.adjudication import decide

    identity = identify(getattr(request, "username", None), sign_in=sign_in, home=home)
    require_admin(identity)
    campaign_id = chosen(campaign_id)
    if not shown:
        raise LabError("No pair is shown to decide on: every pair whose votes are in has a majority or a decision.")
    try:
        held = json.loads(shown)
        outcome = {"a": held["sides"][0], "b": held["sides"][1]}.get(choice, choice)
    except (ValueError, TypeError, KeyError, IndexError):  # the hidden box holds what the page put there, or not
        raise LabError("The pair on screen could not be read: select the campaign again to show it afresh.") from None
    decide(held["pair_id"], outcome, identity.name, note=(note or "").strip(), home=home)
    said = {"tie": "a tie", "both_bad": "both bad"}.get(choice, f"{choice.upper()} is better")
    return {**pending_view(ui, home, campaign_id), ui.admin.status: status_ok(f"Decided: {said}.")}


# --------------------------------------------------------------------------- reliability


def reliability_view(ui: FlywheelUI, home: Home, campaign_id: str) -> dict:
    from lab.label.reliability import kappa_over_time, labelers, per_source_pair
    from lab.label.results import aspect_tally

    tally = aspect_tally(campaign_id, home=home)
    names = catalog.display_names([r["source"] for r in tally], home)
    people = labelers(campaign_id, home=home)
    flagged = sum(1 for r in people if r["flagged"])
    # The flagged count only: this fit follows the votes up to FITS_EVERY_S late, a count of labelers would lag the
    # votes table's.
    title = f"{RELIABILITY} · {flagged} flagged" if flagged else RELIABILITY
    return {ui.labelers: labelers_table(people), ui.reliability: gr.update(label=title),
            ui.kappa: plots.kappa_plot(kappa_over_time(campaign_id, home=home), catalog.when),
            ui.source_pairs: source_pair_table(per_source_pair(campaign_id, home=home), home),
            ui.aspects: pd.DataFrame([[r["aspect"], names[r["source"]], r["wins"], r["losses"], r["ties"], r["votes"],
                                       percent(r["rate"])] for r in tally], columns=ASPECT_HEADERS)}


def labelers_table(rows: list[dict[str, Any]]) -> Any:
    """Per labeler (flagged ones first, as the engine orders them), flagged rows highlighted, with why."""
    table = pd.DataFrame([[r["labeler"], r["votes"], f"{r['gold_correct']}/{r['gold_votes']}" if r["gold_votes"]
                           else "–", percent(r["gold_accuracy"]), r["shared_pairs"],
                           percent(r["majority_agreement"]) if r["majority_agreement"] is not None
                           else "no shared pair",
                           percent(r["left_rate"]), number(r["score"]), f"⚠ flagged: {r['why']}" if r["flagged"]
                           else r["why"]] for r in rows], columns=RELIABILITY_HEADERS)
    flagged = [r["flagged"] for r in rows]
    return table.style.apply(lambda row: [FLAGGED_ROW if flagged[row.name] else ""] * len(row), axis=1)


def source_pair_table(rows: list[dict[str, Any]], home: Home) -> pd.DataFrame:
    names = catalog.display_names([s for r in rows for s in r["sources"]], home)
    outcome = {**names, "tie": "tie", "both_bad": "both bad"}
    return pd.DataFrame([[" vs ".join(names[s] for s in r["sources"]), r["pairs"], r["votes"],
                          number(r["kappa"]) if r["kappa"] is not None else NO_OVERLAP,
                          percent(r["agreement"]) if r["agreement"] is not None else NO_OVERLAP,
                          ", ".join(f"{outcome.get(o, o)} {n}" for o, n in r["outcomes"].items())] for r in rows],
                        columns=SOURCE_PAIR_HEADERS)


# --------------------------------------------------------------------------- the judge and style control


def judge_view(ui: FlywheelUI, home: Home, campaign: Any) -> dict:
    return {ui.judge_agreement: judge_text(home, campaign.id), ui.judge_panel: gr.update(label=JUDGE),
            **style_view(ui, home, campaign)}


def judge_text(home: Home, campaign_id: str) -> str:
    """Where the judge's pre-labels stand (running, failed and why) and how it agrees with people."""
    from lab.label.prelabel import agreement

    found = agreement(campaign_id, home=home)
    run = found["state"]
    judge = catalog.display_name(found["judge"] or run.get("judge") or "", home) or "the judge"
    lines = {"running": f"Pre-labelling with **{judge}**: {run['done']}/{run['total']} pairs.",
             "failed": f"**⚠ Pre-labelling with {judge} failed:** {run['error']}"}
    said = [lines[run["status"]]] if run["status"] in lines else []
    if not found["labelled"]:
        idle = "No pre-labels yet: pick a judge (or set the campaign's) and press **Pre-label with the judge**."
        return "\n\n".join(said or [idle])
    if found["fills"]:
        fills = f"its κ reaches the campaign's {found['fills_at']:.2f}: it **fills** the pairs people have not reached"
    elif found["fills_at"]:
        fills = (f"it does not fill pairs: it needs κ ≥ {found['fills_at']:.2f} on {found['min_shared']}+ pairs "
                 "shared with people")
    else:
        fills = "filling is off (the campaign's judge_fills_at is 0)"
    said.append(f"Judge **{judge}** pre-labelled **{found['labelled']}** pairs · {found['shared']} shared with people "
                f"· Cohen's κ with people **{number(found['kappa'])}** · accuracy {percent(found['accuracy'])} · "
                f"position consistency {percent(found['position_consistency'])} · {fills}.")
    return "\n\n".join(said)


def style_view(ui: FlywheelUI, home: Home, campaign: Any) -> dict:
    """The plain Bradley–Terry leaderboard beside the length-controlled one (a model that only writes longer
    answers climbs the first, not the second)."""
    from lab.label.results import leaderboard
    from lab.label.style import leaderboard as controlled

    if campaign.thumbs:
        return {ui.style: pd.DataFrame(columns=STYLE_HEADERS),
                ui.style_note: "A thumbs campaign compares no pairs: no leaderboard to control for length."}
    plain = leaderboard(campaign.id, home=home)
    if not plain["ratings"]:
        return {ui.style: pd.DataFrame(columns=STYLE_HEADERS),
                ui.style_note: "No decided votes yet: both leaderboards appear with the first votes."}
    fitted = controlled(campaign.id, home=home)
    styled = {r["source"]: r for r in fitted["ratings"]}
    names = catalog.display_names([r["source"] for r in plain["ratings"]], home)
    rows = [[names[r["source"]], round(r["rating"]), interval(r), *(
        [round(styled[r["source"]]["rating"]), interval(styled[r["source"]])] if r["source"] in styled else
        ["–", "–"])] for r in plain["ratings"]]
    coefficient = fitted.get("length_coefficient")
    note = ("**Length coefficient** {:+.2f}: {}".format(
        coefficient, "longer answers win more often, whatever the model" if coefficient > 0 else
        "shorter answers win more often, whatever the model") if coefficient else "")
    return {ui.style: pd.DataFrame(rows, columns=STYLE_HEADERS), ui.style_note: note}


def interval(rating: dict[str, Any]) -> str:
    return f"{rating['low']:.0f}–{rating['high']:.0f}" if rating.get("low") is not None else "–"


# --------------------------------------------------------------------------- judge pre-labels


def set_judge_fills(ui: FlywheelUI, home: Home, sign_in: bool, request: gr.Request, campaign_id: str | None,
                    threshold: float | None) -> dict:
    """The admin's κ threshold for the judge to label the pairs people have not reached."""
    from lab.label.prelabel import set_fills_at

    require_admin_of(home, sign_in, request)
    found = set_fills_at(chosen(campaign_id), float(threshold or 0), home=home)
    said = (f"The judge labels the pairs people have not reached once its κ reaches {found['fills_at']:.2f}"
            + (" (it does now)." if found["fills"] else " (not yet).")) if found["fills_at"] else \
        "The judge labels no pair: exports use people's votes and admins' decisions only."
    return {ui.admin.status: status_ok(said), ui.judge_agreement: judge_text(home, chosen(campaign_id))}


def start_prelabel(ui: FlywheelUI, home: Home, sign_in: bool, request: gr.Request, campaign_id: str | None,
                   judge: str | None) -> dict:
    """Start the judge's pre-labels in the background; its agreement line fills in as they land."""
    from lab.label.campaigns import get_campaign
    from lab.label.prelabel import start

    require_admin_of(home, sign_in, request)
    campaign = get_campaign(chosen(campaign_id), home)
    start(campaign.id, judge=judge or "", home=home)
    which = catalog.display_name(judge, home) if judge else "the campaign's judge"
    return {ui.admin.status: status_ok(f"Pre-labelling {campaign.name} with {which}: its agreement with people "
                                       "appears below as it labels."),
            ui.judge_agreement: judge_text(home, campaign.id)}
