"""A campaign's human judgements in W&B, in the same project as the runs they compare: progress,
agreement, ratings per source, a table of every pair with its votes, and the chain of rounds it belongs to (a
table, and the challenger's win rate against the incumbent per round). Offline (kept under
LAB_HOME/campaigns/<id>/wandb, ``wandb sync`` later) unless WANDB_API_KEY is set."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from typing import Any

from lab.catalog import display_names
from lab.home import Home, lab_home
from lab.label.campaigns import Counts, campaign_counts, get_campaign
from lab.label.results import agreement, approval, campaign_votes, leaderboard
from lab.store import Store


def log_to_wandb(campaign_id: str, *, project: str = "lab", home: Home | None = None) -> dict[str, Any]:
    import wandb

    home = home or lab_home()
    campaign = get_campaign(campaign_id, home)
    folder = home.root / "campaigns" / campaign.id
    folder.mkdir(parents=True, exist_ok=True)
    # Online with a key, unless the operator asked for offline (WANDB_MODE), as a training run honours it.
    online = bool(os.environ.get("WANDB_API_KEY")) and os.environ.get("WANDB_MODE", "online") != "offline"
    run = wandb.init(project=project, name=f"labels-{campaign.name}", job_type="labeling", dir=str(folder),
                     mode="online" if online else "offline", config={"campaign": campaign.id, **campaign.config},
                     reinit="finish_previous")
    try:
        report = agreement(campaign.id, home=home)
        board = leaderboard(campaign.id, home=home)
        store = Store(home)
        counts = campaign_counts(home, campaign.id).get(campaign.id, Counts())
        scalars = {k: report[k] for k in ("votes", "labelers", "fleiss_kappa", "krippendorff_alpha",
                                          "pairwise_agreement", "cohen_kappa") if report[k] is not None}
        scalars["left_rate"] = report["position_bias"]["a_rate"]
        scalars["completion"] = counts.share
        names = display_names((r["source"] for r in board["ratings"]), home)  # runs by the names people gave
        for rating in board["ratings"]:
            scalars[f"rating/{names[rating['source']]}"] = rating["rating"]
        if campaign.thumbs:  # one answer at a time: each source's share of 👍 instead of ratings
            rates = approval(campaign.id, home=home)["sources"]
            shown = display_names((r["source"] for r in rates), home)
            scalars.update({f"approval/{shown[r['source']]}": r["rate"] for r in rates})
        run.log(scalars)
        run.log({"ratings": wandb.Table(columns=["name", "source", "rating", "low", "high", "comparisons"],
                                        data=[[names[r["source"]], r["source"], r["rating"], r["low"], r["high"],
                                               r["comparisons"]] for r in board["ratings"]]),
                 "pairs": pairs_table(campaign.id, store, wandb)})
        run.log(chain_logs(campaign.id, home, wandb))
        return {"campaign": campaign.id, "url": run.url if online else None,
                "offline_dir": None if online else str(run.dir).removesuffix("/files")}
    finally:
        run.finish()


def pairs_table(campaign_id: str, store: Store, wandb: Any):
    votes: dict[int, list[str]] = defaultdict(list)
    for vote in campaign_votes(campaign_id, store.home):
        votes[vote["pair_id"]].append(f"{vote['labeler']}: {vote['outcome']}")
    texts = {(r["prompt_idx"], r["source"]): r["text"] for r in
             store.query("SELECT prompt_idx, source, text FROM responses WHERE campaign_id = ?", (campaign_id,))}
    prompts = {r["idx"]: json.loads(r["prompt"])[-1]["content"] for r in
               store.query("SELECT idx, prompt FROM campaign_prompts WHERE campaign_id = ?", (campaign_id,))}
    rows = []
    for pair in store.query("SELECT * FROM pairs WHERE campaign_id = ? ORDER BY id", (campaign_id,)):
        i = pair["prompt_idx"]
        rows.append([pair["id"], prompts.get(i, ""), pair["source_1"], texts.get((i, pair["source_1"]), ""),
                     pair["source_2"], texts.get((i, pair["source_2"]), ""), "; ".join(votes.get(pair["id"], []))])
    return wandb.Table(columns=["pair", "prompt", "source_1", "response_1", "source_2", "response_2", "votes"],
                       data=rows)


def chain_logs(campaign_id: str, home: Home, wandb: Any) -> dict[str, Any]:
    """The chain of rounds as W&B logs: ``chain`` (one row per round, as the chain report's table), ``win_rates``
    (round, win rate with ties half, Wilson 95% bounds, votes) and a ``win_rate/round_<n>`` scalar per measured
    round."""
    from lab.label.rounds import HEADERS, chain, table_rows

    entries = chain(campaign_id, home=home)
    measured = [(e["round"], e["head_to_head"]) for e in entries if e["head_to_head"] and e["head_to_head"]["n"]]
    logs: dict[str, Any] = {
        "chain": wandb.Table(columns=HEADERS, data=table_rows(entries)),
        "win_rates": wandb.Table(columns=["round", "win_rate", "low", "high", "votes"],
                                 data=[[n, h["rate"], h["low"], h["high"], h["n"]] for n, h in measured])}
    logs.update({f"win_rate/round_{n}": h["rate"] for n, h in measured})
    return logs
