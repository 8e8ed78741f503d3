"""The Label tab: the labeler's blind A/B page, and (for admins) campaigns, quality, leaderboard, export
and accounts.

The labeling page is built twice: inside the Label tab of the full app, and alone as the app mounted at
``/label`` that labelers sign in to (they never see the other tabs, and the full app's sign-in admits
admins only). Every handler asks ``lab.label.accounts.identify`` who is calling; admin handlers refuse
labelers on the server, whatever the page shows. Stable ``api_name``s: ``label_campaigns``,
``label_next``, ``label_vote_a``, ``label_vote_b``, ``label_vote_tie``, ``label_vote_both_bad``,
``label_skip``, and for admins ``label_create``, ``label_admin_view``, ``label_close``, ``label_reopen``, ``label_resume``,
``label_export``, ``label_train_dpo``, ``label_wandb``, ``label_add_account``.

No ``from __future__ import annotations`` here: Gradio finds the ``gr.Request`` parameter by its
annotation, which must be the class itself, not a string, once ``guarded`` wraps the handler.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from lab.config import CampaignConfig
from lab.errors import LabError
from lab.home import Home
from lab.label.accounts import Identity, identify, require_admin
from lab.paths import server_path
from lab.ui import plots
from lab.ui.common import OnShow, chat_markdown, guarded
from lab.ui.forms import Form, build_form
from lab.ui.train_tab import checkpoint_choices

VOTES = (("a", "A is better", "1"), ("b", "B is better", "2"), ("tie", "Tie", "3"), ("both_bad", "Both bad", "4"))
CAMPAIGN_HEADERS = ["id", "name", "status", "responses", "votes", "pairs ready", "created"]
LABELER_HEADERS = ["labeler", "votes", "median s/vote", "agreement with others", "gold accuracy", "left chosen",
                   "position bias"]
ACCOUNT_HEADERS = ["name", "role", "created"]
CAMPAIGN_ROWS = [("name", "prompts", "prompts_split", "max_prompts"), ("sources", "responses_file", "gold_file"),
                 ("temperature", "top_p", "max_new_tokens", "seed", "votes_per_pair")]
# Keys 1-4 vote, s skips, on whichever labeling page is showing (not while typing a comment).
SHORTCUTS = """
<script>
document.addEventListener('keydown', (event) => {
  const tag = (document.activeElement && document.activeElement.tagName) || '';
  if (tag === 'INPUT' || tag === 'TEXTAREA' || event.ctrlKey || event.metaKey || event.altKey) return;
  const ids = {'1': 'lab-vote-a', '2': 'lab-vote-b', '3': 'lab-vote-tie', '4': 'lab-vote-both_bad', 's': 'lab-skip'};
  const button = ids[event.key] && document.getElementById(ids[event.key]);
  if (button && button.offsetParent !== null) { event.preventDefault(); button.click(); }
});
</script>
"""


@dataclass
class LabelingUI:
    status: gr.Markdown
    campaign: gr.Dropdown
    progress: gr.Markdown
    prompt: gr.Markdown
    left: gr.Markdown
    right: gr.Markdown
    comment: gr.Textbox
    token: gr.Textbox  # the lease token: hidden, and all the page knows of the pair


@dataclass
class AdminUI:
    status: gr.Markdown
    form: Form
    campaigns: gr.Dataframe
    selected: gr.Dropdown
    quality: gr.Markdown
    labelers: gr.Dataframe
    ratings: gr.Plot
    matrix: gr.Plot
    export_result: gr.Markdown
    policy: gr.Dropdown
    accounts: gr.Dataframe
    password: gr.Textbox


def who(home: Home, sign_in: bool, request: gr.Request | None) -> Identity:
    return identify(getattr(request, "username", None), sign_in=sign_in, home=home)


def open_campaigns(home: Home) -> list[tuple[str, str]]:
    from lab.label.campaigns import list_campaigns, reconcile

    reconcile(home)
    return [(f"{c.name} ({c.status})", c.id) for c in list_campaigns(home, status=("generating", "open"))]


# --------------------------------------------------------------------------- the labeler's page


def build_labeling(home: Home, sign_in: bool) -> LabelingUI:
    status = gr.Markdown(elem_classes="lab-status")
    with gr.Row():
        campaign = gr.Dropdown(label="Campaign", choices=[], scale=4, allow_custom_value=True,
                               info="Open campaigns; pick one and press Start.")
        refresh = gr.Button("↻", scale=0, min_width=40)
        start = gr.Button("Start", variant="primary", scale=1)
    progress = gr.Markdown()
    prompt = gr.Markdown(elem_classes="lab-prompt")
    with gr.Row(equal_height=True):
        with gr.Column():
            gr.Markdown("### A")
            left = gr.Markdown(elem_classes="lab-response")
        with gr.Column():
            gr.Markdown("### B")
            right = gr.Markdown(elem_classes="lab-response")
    with gr.Row():
        buttons = {choice: gr.Button(f"{text}  [{key}]", elem_id=f"lab-vote-{choice}",
                                     variant="primary" if choice in ("a", "b") else "secondary")
                   for choice, text, key in VOTES}
        skip_btn = gr.Button("Skip  [s]", elem_id="lab-skip", variant="secondary")
    comment = gr.Textbox(label="Comment (optional)", placeholder="Why? Anything wrong with both?", lines=1)
    token = gr.Textbox(visible=False)
    ui = LabelingUI(status, campaign, progress, prompt, left, right, comment, token)
    pair_outputs = [status, token, progress, prompt, left, right, comment]
    # Voting bypasses Gradio's queue (queue=False: one plain HTTP POST per vote): the engine's transaction
    # takes ~10 ms, and the queue's join-then-stream round trips would cost more than that.

    refresh.click(guarded(campaign_choices, status, ui, home, sign_in), inputs=None, outputs=[status, campaign],
                  api_name="label_campaigns")
    start.click(guarded(show_next, status, ui, home, sign_in), inputs=campaign, outputs=pair_outputs,
                api_name="label_next", queue=False)
    campaign.change(guarded(show_next, status, ui, home, sign_in), inputs=campaign, outputs=pair_outputs,
                    api_visibility="private")
    for choice, button in buttons.items():
        button.click(guarded(cast_vote, status, ui, home, sign_in, choice), inputs=[campaign, token, comment],
                     outputs=pair_outputs, api_name=f"label_vote_{choice}", queue=False)
    skip_btn.click(guarded(skip_pair, status, ui, home, sign_in), inputs=[campaign, token], outputs=pair_outputs,
                   api_name="label_skip", queue=False)
    return ui


def campaign_choices(ui: LabelingUI, home: Home, sign_in: bool, request: gr.Request) -> dict:
    identity = who(home, sign_in, request)
    choices = open_campaigns(home)
    note = f"Signed in as **{identity.name}** ({identity.role})." if sign_in else ""
    if not choices:
        note += " No campaign is open yet."
    return {ui.status: note.strip(), ui.campaign: gr.update(choices=choices, value=choices[0][1] if choices else None)}


def pair_view(ui: LabelingUI, home: Home, campaign_id: str, labeler: str, note: str = "") -> dict:
    """The next pair for this labeler (or a word on why there is none), with their progress."""
    from lab.label.campaigns import get_campaign
    from lab.label.serving import next_pair, progress

    served = next_pair(campaign_id, labeler, home=home)
    mine = progress(campaign_id, labeler, home=home)
    share = f"{100 * mine.votes / mine.wanted:.0f}%" if mine.wanted else "0%"
    text = (f"You: **{mine.mine}** votes · {mine.available} pairs left for you · campaign {share} "
            f"({mine.votes}/{mine.wanted} votes)")
    if served is None:
        campaign = get_campaign(campaign_id, home)
        done = ("Responses are still being generated; pairs appear here as they are ready — press Start again "
                "in a moment." if campaign.status == "generating" and mine.available == 0 else
                "Nothing left for you in this campaign. Thank you!")
        return {ui.status: note, ui.token: "", ui.progress: text, ui.prompt: f"**{done}**", ui.left: "", ui.right: "",
                ui.comment: ""}
    return {ui.status: note, ui.token: served.token, ui.progress: text, ui.prompt: chat_markdown(served.prompt),
            ui.left: served.left or "*(empty response)*", ui.right: served.right or "*(empty response)*",
            ui.comment: ""}


def require_campaign(campaign_id: str | None) -> str:
    if not campaign_id:
        raise LabError("Choose a campaign first.")
    return campaign_id


def show_next(ui: LabelingUI, home: Home, sign_in: bool, request: gr.Request, campaign_id: str | None) -> dict:
    identity = who(home, sign_in, request)
    return pair_view(ui, home, require_campaign(campaign_id), identity.name)


def cast_vote(ui: LabelingUI, home: Home, sign_in: bool, choice: str, request: gr.Request, campaign_id: str | None,
              token: str, comment: str) -> dict:
    from lab.label.serving import vote

    identity = who(home, sign_in, request)
    campaign_id = require_campaign(campaign_id)
    if not token:
        return pair_view(ui, home, campaign_id, identity.name)
    counted = vote(token, identity.name, choice, comment=comment or "", home=home)
    return pair_view(ui, home, campaign_id, identity.name, "" if counted else "That vote was already counted.")


def skip_pair(ui: LabelingUI, home: Home, sign_in: bool, request: gr.Request, campaign_id: str | None,
              token: str) -> dict:
    from lab.label.serving import skip

    identity = who(home, sign_in, request)
    campaign_id = require_campaign(campaign_id)
    if token:
        skip(token, identity.name, home=home)
    return pair_view(ui, home, campaign_id, identity.name, "Skipped.")


def labeling_app(home: Home, sign_in: bool) -> gr.Blocks:
    """The page labelers sign in to (mounted at /label): only the labeling widgets."""
    with gr.Blocks(title="Labeling · Fine-tuning lab", analytics_enabled=False) as demo:
        gr.Markdown("# Which answer is better?\nRead the prompt, then both answers; vote with the buttons or the keys "
                    "1 (A), 2 (B), 3 (tie), 4 (both bad), s (skip). Which model wrote which answer is hidden and the "
                    "sides are shuffled.")
        ui = build_labeling(home, sign_in)
        demo.load(guarded(campaign_choices, ui.status, ui, home, sign_in), inputs=None, outputs=[ui.status, ui.campaign],
                  api_visibility="private")
    demo.queue(default_concurrency_limit=8)
    return demo


# --------------------------------------------------------------------------- the admin's panels


def build(home: Home, sign_in: bool, *, train_form: Form, tabs: gr.Tabs) -> tuple[LabelingUI, AdminUI]:
    gr.Markdown("Blind A/B preference labeling. Labelers vote here (or, with accounts, at **/label**); below, "
                "admins create campaigns and turn votes into a DPO dataset.")
    with gr.Accordion("Label", open=True):
        labeling = build_labeling(home, sign_in)
    status = gr.Markdown(elem_classes="lab-status")
    with gr.Accordion("New campaign", open=False):
        runs = checkpoint_choices(home)
        overrides = {
            "prompts": lambda f, kw: gr.Textbox(lines=3, **kw),
            "sources": lambda f, kw: gr.Dropdown(choices=runs, multiselect=True, allow_custom_value=True,
                                                 **{**kw, "value": []}),
        }
        form = build_form(CampaignConfig, rows=CAMPAIGN_ROWS, overrides=overrides)
        create = gr.Button("Create campaign", variant="primary")
    gr.Markdown("### Campaigns")
    campaigns = gr.Dataframe(headers=CAMPAIGN_HEADERS, interactive=False, wrap=True)
    with gr.Row():
        selected = gr.Dropdown(label="Campaign", choices=[], scale=3, allow_custom_value=True)
        close = gr.Button("Close", scale=1)
        reopen = gr.Button("Reopen", scale=1)
        resume = gr.Button("Resume generation", scale=1)
        wandb_btn = gr.Button("Log to W&B", scale=1)
    with gr.Row():
        with gr.Column():
            quality = gr.Markdown()
        with gr.Column():
            ratings = gr.Plot(label="Leaderboard")
    labelers = gr.Dataframe(headers=LABELER_HEADERS, interactive=False, label="Labelers")
    matrix = gr.Plot(label="Win rates")
    with gr.Accordion("Export votes as a DPO dataset", open=True):
        with gr.Row():
            export_name = gr.Textbox(label="Dataset name", placeholder="labels-<campaign>", scale=2)
            min_votes = gr.Number(label="Min votes for the winner", value=1, precision=0, scale=1)
            min_agreement = gr.Slider(label="Min agreement", minimum=0.5, maximum=1.0, step=0.05, value=0.5, scale=2,
                                      info="Share of a pair's votes the winner needs; ties, both-bad and unclear "
                                      "pairs are left out and counted.")
            val_fraction = gr.Number(label="Validation fraction", value=0.0, scale=1)
        export_btn = gr.Button("Export", variant="primary")
        export_result = gr.Markdown()
        with gr.Row():
            policy = gr.Dropdown(label="Policy to train with DPO", choices=runs, allow_custom_value=True, scale=3,
                                 info="The model DPO starts from (usually the SFT run you labeled).")
            train_dpo = gr.Button("Train DPO on this", scale=1)
    with gr.Accordion("Accounts", open=False):
        gr.Markdown("Accounts switch sign-in on at the next start of the app: admins sign in to the full lab, "
                    "labelers to **/label** and see nothing else." + ("" if sign_in else
                                                                     " *Sign-in is off now (no accounts).*"))
        with gr.Row():
            account_name = gr.Textbox(label="Name", scale=2)
            account_role = gr.Dropdown(label="Role", choices=["labeler", "admin"], value="labeler", scale=1)
            account_password = gr.Textbox(label="Password (8+ characters)", type="password", scale=2)
            add_account = gr.Button("Add account", scale=1)
        accounts = gr.Dataframe(headers=ACCOUNT_HEADERS, interactive=False)
    admin = AdminUI(status, form, campaigns, selected, quality, labelers, ratings, matrix, export_result, policy,
                    accounts, account_password)

    bound = (admin, home, sign_in)
    create.click(guarded(create_campaign, status, *bound), inputs_kwargs=form.components,
                 outputs=[status, campaigns, selected], api_name="label_create")
    view_outputs = [status, campaigns, selected, quality, labelers, ratings, matrix, accounts]
    selected.change(guarded(admin_view, status, *bound), inputs=selected, outputs=view_outputs,
                    api_name="label_admin_view")
    gr.Timer(3.0).tick(guarded(admin_view, status, *bound), inputs=selected, outputs=view_outputs,
                       api_visibility="private", show_progress="hidden")
    for button, target, api in ((close, "closed", "label_close"), (reopen, "open", "label_reopen"),
                                (resume, "generating", "label_resume")):
        button.click(guarded(set_campaign_status, status, *bound, target), inputs=selected, outputs=[status],
                     api_name=api)
    export_btn.click(guarded(export, status, *bound), inputs=[selected, export_name, min_votes, min_agreement,
                                                               val_fraction],
                     outputs=[status, export_result], api_name="label_export")
    train_fields = [train_form["method"], train_form["dpo_adapter"], train_form["model"], train_form["dataset"]]
    train_dpo.click(guarded(train_dpo_on_export, status, *bound, train_fields, tabs), inputs=[export_result, policy],
                    outputs=[status, *train_fields, tabs], api_name="label_train_dpo")
    wandb_btn.click(guarded(log_wandb, status, *bound), inputs=selected, outputs=[status], api_name="label_wandb")
    add_account.click(guarded(create_account, status, *bound), inputs=[account_name, account_role, account_password],
                      outputs=[status, accounts, account_password], api_name="label_add_account")
    return labeling, admin


def campaigns_table(home: Home) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    from lab.label.campaigns import list_campaigns, reconcile
    from lab.store import Store

    reconcile(home)
    campaigns = list_campaigns(home)
    counts = {r["campaign_id"]: r for r in Store(home).query(
        "SELECT campaign_id, SUM(votes_wanted) AS wanted, SUM(ready) AS ready, COUNT(*) AS pairs, "
        "(SELECT COUNT(*) FROM votes v WHERE v.campaign_id = p.campaign_id) AS votes FROM pairs p "
        "GROUP BY campaign_id")}
    rows = []
    for c in campaigns:
        n = counts.get(c.id, {"wanted": 0, "ready": 0, "pairs": 0, "votes": 0})
        generated = f"{c.generated}/{c.to_generate}" if c.to_generate else "from file"
        rows.append([c.id, c.name, c.status + (f": {c.error}" if c.error else ""), generated,
                     f"{n['votes']}/{n['wanted']}", f"{n['ready']}/{n['pairs']}", c.created_at])
    return pd.DataFrame(rows, columns=CAMPAIGN_HEADERS), [(f"{c.name} · {c.id}", c.id) for c in campaigns]


def confined(cfg: CampaignConfig, home: Home) -> CampaignConfig:
    """The campaign's files, read only inside the folders this server may read (``lab.paths.server_path``); pasted
    prompts and dataset names pass as they are."""
    for field in ("responses_file", "gold_file"):
        if getattr(cfg, field).strip():
            setattr(cfg, field, server_path(getattr(cfg, field), home))
    prompts = cfg.prompts.strip()
    if prompts and "\n" not in prompts and Path(prompts).expanduser().is_file():
        cfg.prompts = server_path(prompts, home)
    return cfg


def create_campaign(ui: AdminUI, home: Home, sign_in: bool, request: gr.Request, **values: Any) -> dict:
    from lab.label.campaigns import create_campaign as create

    require_admin(who(home, sign_in, request))
    if isinstance(values.get("sources"), list):
        values["sources"] = ",".join(values["sources"])
    campaign = create(confined(ui.form.to_config(values), home), home=home)
    table, choices = campaigns_table(home)
    what = "generating responses in the background" if campaign.status == "generating" else "open for labeling"
    return {ui.status: f"**✓ Campaign {campaign.name} ({campaign.id}) created: {what}.**", ui.campaigns: table,
            ui.selected: gr.update(choices=choices, value=campaign.id)}


def quality_text(report: dict[str, Any], board: dict[str, Any]) -> str:
    def number(value: float | None) -> str:
        return f"{value:.2f}" if value is not None else "–"

    bias = report["position_bias"]
    lines = [f"**{report['votes']}** votes from **{report['labelers']}** labelers · {report['pairs_with_overlap']} "
             "pairs with 2+ votes",
             f"Agreement: Fleiss' κ {number(report['fleiss_kappa'])} · Krippendorff's α "
             f"{number(report['krippendorff_alpha'])} · Cohen's κ {number(report['cohen_kappa'])} · raw "
             f"{number(report['pairwise_agreement'])}"]
    if bias["decided"]:
        flag = " ⚠ **position bias**: far from 50%" if bias["flagged"] else ""
        lines.append(f"Left answer chosen in {bias['a_rate']:.0%} of {bias['decided']} decided votes "
                     f"(p = {bias['p_value']:.3g}){flag}")
    if board["ratings"]:
        best = board["ratings"][0]
        lines.append(f"Leader: **{best['source']}** ({best['rating']:.0f}, 95% interval {best['low']}–{best['high']})"
                     + (" · few votes yet: intervals from a bootstrap of so few votes understate the uncertainty"
                        if board["comparisons"] < 20 else ""))
    return "\n\n".join(lines)


def admin_view(ui: AdminUI, home: Home, sign_in: bool, request: gr.Request, campaign_id: str | None) -> dict:
    from lab.label.accounts import list_accounts
    from lab.label.campaigns import get_campaign
    from lab.label.results import agreement, leaderboard

    require_admin(who(home, sign_in, request))
    table, choices = campaigns_table(home)
    accounts = pd.DataFrame([[a["name"], a["role"], a["created_at"]] for a in list_accounts(home=home)],
                            columns=ACCOUNT_HEADERS)
    out = {ui.campaigns: table, ui.selected: gr.update(choices=choices), ui.accounts: accounts}
    if not campaign_id:
        return {**out, ui.quality: "Select a campaign to see its agreement and leaderboard."}
    campaign_id = get_campaign(campaign_id, home).id  # an unknown id is an error, not empty statistics
    report = agreement(campaign_id, home=home)
    board = leaderboard(campaign_id, home=home)
    rows = [[r["labeler"], r["votes"], r["median_seconds"], r["agreement_with_others"], r["gold_accuracy"],
             r["left_rate"] if r["left_rate"] is None else round(r["left_rate"], 2),
             "⚠ flagged" if r["position_bias_flagged"] else ""] for r in report["per_labeler"]]
    return {**out, ui.quality: quality_text(report, board),
            ui.labelers: pd.DataFrame(rows, columns=LABELER_HEADERS),
            ui.ratings: plots.ratings_plot(board["ratings"]),
            ui.matrix: plots.win_matrix_plot(board["models"], board["win_rates"], board["counts"])}


def set_campaign_status(ui: AdminUI, home: Home, sign_in: bool, target: str, request: gr.Request,
                        campaign_id: str | None) -> dict:
    from lab.label.campaigns import set_status

    require_admin(who(home, sign_in, request))
    campaign = set_status(require_campaign(campaign_id), target, home=home)
    return {ui.status: f"**✓ {campaign.name} is {campaign.status}.**"}


def export(ui: AdminUI, home: Home, sign_in: bool, request: gr.Request, campaign_id: str | None, name: str,
           min_votes: float, min_agreement: float, val_fraction: float) -> dict:
    from lab.label.results import export_preferences

    require_admin(who(home, sign_in, request))
    version = export_preferences(require_campaign(campaign_id), name=(name or "").strip(), min_votes=int(min_votes or 1),
                                 min_agreement=float(min_agreement), val_fraction=float(val_fraction or 0), home=home)
    counts = ", ".join(f"{k}: {v}" for k, v in sorted(version.card["counts"].items()))
    return {ui.status: f"**✓ Exported {version.ref}.**",
            ui.export_result: f"Dataset version `{version.ref}`: {version.rows['train']} train / "
                              f"{version.rows['validation']} validation pairs ({counts}). Labelers: "
                              f"{', '.join(version.card['labelers'])}."}


def train_dpo_on_export(ui: AdminUI, home: Home, sign_in: bool, train_fields: list, tabs: gr.Tabs,
                        request: gr.Request, export_result: str, policy: str | None) -> dict:
    """Prefill the Train tab with a DPO run on the exported version, starting from the chosen policy."""
    require_admin(who(home, sign_in, request))
    ref = export_result.split("`")[1] if export_result.count("`") >= 2 else ""
    if not ref:
        raise LabError("Export the votes first; the exported version is what DPO trains on.")
    if not policy:
        raise LabError("Choose the policy to train (usually the SFT run the campaign labeled).")
    method, adapter, model, dataset = train_fields
    return {ui.status: f"**✓ The Train tab holds a DPO run on {ref} from {policy}: check it and start it.**",
            method: "dpo", adapter: "lora", model: policy, dataset: ref, tabs: gr.Tabs(selected="train")}


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
    from lab.label.accounts import add_account, list_accounts

    require_admin(who(home, sign_in, request))
    account = add_account((name or "").strip(), role, password or "", home=home)
    accounts = pd.DataFrame([[a["name"], a["role"], a["created_at"]] for a in list_accounts(home=home)],
                            columns=ACCOUNT_HEADERS)
    note = "" if sign_in else " Restart the app to switch sign-in on."
    return {ui.status: f"**✓ Added {account.name} ({account.role}).**{note}", ui.accounts: accounts,
            ui.password: ""}


def on_show(ui: object, home: Home) -> list[OnShow]:
    """What this tab refreshes when shown (lab.ui.common.wire_on_show)."""
    return []
