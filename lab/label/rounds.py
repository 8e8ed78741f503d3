"""Rounds of the preference flywheel: a campaign → its export → a DPO/KTO run on it → the next campaign, which
puts that run (the challenger) against the previous round's winner (the incumbent) on prompts no earlier round
asked, with the previous round's settings.

A round made here lists its sources challenger first, then the incumbent (then their ``#2``… samples, as many
per model as the previous round drew): that order is how ``chain`` knows which two a round measures. A round's
head-to-head counts every vote between a challenger answer and an incumbent answer, whichever samples.
"""

from __future__ import annotations

import dataclasses
import html
import re
from collections import Counter
from typing import Any

from lab.catalog import display_names, eval_scores, scores
from lab.errors import LabError
from lab.home import Home, lab_home
from lab.label import results, stats
from lab.label.campaigns import Campaign, campaign_counts, create_campaign, get_campaign, list_campaigns, model_of
from lab.names import derived_name

ROUND_SUFFIX = re.compile(r"-r\d+$")


# --------------------------------------------------------------------------- what a round is made of


def exports(campaign_id: str, home: Home) -> list[Any]:
    """The dataset versions exported from a campaign (their card's source is ``campaign:<id>``), newest first."""
    from lab.data.versions import list_versions

    return [v for v in list_versions(home) if v.card.get("source") == f"campaign:{campaign_id}"]


def trained_on(versions: list[Any], home: Home) -> list[Any]:
    """Runs trained on any of these dataset versions (a run's ``dataset`` is the version it resolved), newest
    first."""
    from lab.train.runner import list_runs

    refs = {v.ref for v in versions}
    return [run for run in list_runs(home) if run.dataset in refs] if refs else []


def newest_policy(campaign: Campaign, home: Home) -> str:
    """``run:<id>`` of the newest succeeded run trained on the campaign's exports that writes answers (a reward
    model only scores them)."""
    for run in trained_on(exports(campaign.id, home), home):
        if run.status == "succeeded" and not scores(run):
            return f"run:{run.id}"
    raise LabError(f"Round {campaign.round} ({campaign.name}) has no trained model yet: export this round and train "
                   f"DPO/KTO on it first (python -m lab label export {campaign.id}, then python -m lab train "
                   "--propose-dpo DATASET --model run:<id>), or name the challenger (--challenger).")


def ratings(campaign_id: str, home: Home) -> list[tuple[str, float]]:
    """Bradley–Terry point ratings of the campaign's sources, best first (no bootstrap: only the order is used)."""
    fitted = stats.bradley_terry(results.comparisons(campaign_id, home))
    return sorted(fitted.items(), key=lambda item: -item[1])


def leader_model(campaign: Campaign, home: Home) -> str:
    """The model (``#tag`` dropped) of the best-rated model source: the round's winner, the next incumbent."""
    models = set(campaign.model_sources)
    for source, _ in ratings(campaign.id, home):
        if source in models:
            return model_of(source)
    if not models:
        raise LabError(f"Campaign {campaign.name} compared ready responses, not models: name the model the next round "
                       "measures against (--incumbent run:<id>, tiny, a path or a hub id).")
    raise LabError(f"Campaign {campaign.name} has no votes between its models yet, so no winner to measure against: "
                   "collect votes first, or name the incumbent (--incumbent).")


def samples_per_model(campaign: Campaign) -> int:
    """How many samples the campaign drew per model (``run:x`` and ``run:x#2`` are two)."""
    counts = Counter(model_of(s) for s in campaign.model_sources)
    return max(counts.values(), default=1)


def contenders(campaign: Campaign) -> tuple[str, str] | None:
    """(challenger, incumbent) of a round after the first: its first two distinct models, as ``next_round`` lists
    them; None for a first round or one with fewer than two models."""
    if not campaign.previous_id:
        return None
    models = list(dict.fromkeys(model_of(s) for s in campaign.model_sources))
    return (models[0], models[1]) if len(models) >= 2 else None


# --------------------------------------------------------------------------- the next round


def next_round(campaign_id: str, *, challenger: str = "", incumbent: str = "", prompts: str = "",
               max_prompts: int | None = None, home: Home | None = None) -> Campaign:
    """Create the round after ``campaign_id``: the challenger (default: the newest run trained on its export)
    against the incumbent (default: its best-rated model) on fresh prompts (default: its prompts setting, every
    prompt an earlier round of the chain asked held out; ``max_prompts`` default: its own), with its other
    settings (generation, votes per pair, guidelines, rubric, grading, aspects, serving, judge, gold). The round
    is pairwise whatever the previous one was: it measures two models side by side."""
    home = home or lab_home()
    previous = get_campaign(campaign_id, home)
    challenger = challenger.strip() or newest_policy(previous, home)
    incumbent = incumbent.strip() or leader_model(previous, home)
    if model_of(challenger) == model_of(incumbent):
        raise LabError(f"The challenger and the incumbent are the same model ({challenger}); name another with "
                       "--challenger or --incumbent.")
    copies = samples_per_model(previous)
    sources = [challenger, incumbent] + [f"{model}#{k}" for k in range(2, copies + 1)
                                         for model in (challenger, incumbent)]
    cfg = previous.campaign_config
    number = previous.round + 1
    cfg = dataclasses.replace(
        cfg, name=derived_name(ROUND_SUFFIX.sub("", previous.name), suffix=f"-r{number}"), mode="pairwise",
        sources=",".join(sources), responses_file="", prompts=prompts.strip() or cfg.prompts,
        max_prompts=cfg.max_prompts if max_prompts is None else max_prompts, previous=previous.id)
    return create_campaign(cfg, home=home)


# --------------------------------------------------------------------------- measuring a round


def head_to_head(campaign_id: str, challenger: str, incumbent: str, *, home: Home | None = None) -> dict[str, Any]:
    """The challenger's record against the incumbent in a campaign, pair by pair: every pair of one's answer and
    the other's (any ``#tag`` samples; gold pairs left out) with a counted vote is a win, a loss or a tie by the
    majority of its votes (a tie or both-bad majority, or no majority, is a tie: neither answer was preferred).
    ``rate`` counts ties half; ``low``/``high`` are the Wilson 95% interval of that rate, taken with wins + ties/2
    successes out of ``n`` pairs (ties half a success, as in the rate). A pair, not a vote, is the unit: a pair's
    several votes are not independent draws. Pairs on one prompt are not either (several samples per prompt),
    so the interval is somewhat narrow when a round drew several samples per model. The votes of labelers the
    reliability table flags are left out (``dropped`` names them): one labeler voting against the others would
    otherwise split pairs into ties and pull every round's rate toward 50%."""
    from lab.label.reliability import labelers

    challenger, incumbent = model_of(challenger), model_of(incumbent)
    campaign = get_campaign(campaign_id, home)
    dropped = sorted(r["labeler"] for r in labelers(campaign.id, home=home) if r["flagged"])
    by_pair: dict[int, Counter] = {}
    for vote in results.campaign_votes(campaign.id, home):
        if vote["gold"] is not None or vote["labeler"] in dropped or \
                {model_of(vote["source_1"]), model_of(vote["source_2"])} != {challenger, incumbent}:
            continue  # also drops thumbs items: a source paired with itself is one model
        by_pair.setdefault(vote["pair_id"], Counter())[model_of(vote["winner"]) if vote["winner"] else None] += 1
    outcomes = Counter()
    for tally in by_pair.values():
        (top, top_n), *rest = tally.most_common()
        outcomes[None if rest and rest[0][1] == top_n else top] += 1
    wins, losses, ties = outcomes[challenger], outcomes[incumbent], outcomes[None]
    n = wins + losses + ties
    if not n:
        return {"wins": 0, "losses": 0, "ties": 0, "n": 0, "rate": None, "low": None, "high": None,
                "decided_rate": None, "decided_low": None, "decided_high": None, "dropped": dropped}
    low, high = stats.wilson_interval(wins + ties / 2, n)
    # Among the pairs people decided: where most pairs tie (both answers equally good or bad), ties half pull the
    # rate toward 50% however clearly the challenger wins the rest.
    decided = stats.wilson_interval(wins, wins + losses) or (None, None)
    return {"wins": wins, "losses": losses, "ties": ties, "n": n, "rate": round((wins + ties / 2) / n, 4),
            "low": round(low, 4), "high": round(high, 4),
            "decided_rate": round(wins / (wins + losses), 4) if wins + losses else None,
            "decided_low": None if decided[0] is None else round(decided[0], 4),
            "decided_high": None if decided[1] is None else round(decided[1], 4), "dropped": dropped}


# --------------------------------------------------------------------------- the chain


def chain_campaigns(campaign_id: str, home: Home) -> list[Campaign]:
    """Every round of the chain ``campaign_id`` belongs to, first to last: back along ``previous_id``, then forward
    through the rounds made after it (the newest, where one round was followed twice)."""
    by_id = {c.id: c for c in list_campaigns(home)}  # newest first
    current = get_campaign(campaign_id, home)
    rounds = [current]
    while rounds[0].previous_id in by_id and by_id[rounds[0].previous_id] not in rounds:
        rounds.insert(0, by_id[rounds[0].previous_id])
    while True:
        after = [c for c in by_id.values() if c.previous_id == rounds[-1].id and c not in rounds]
        if not after:
            return rounds
        rounds.append(after[0])


def chain(campaign_id: str, *, home: Home | None = None) -> list[dict[str, Any]]:
    """One entry per round, first to last: the campaign, its votes and agreement (Fleiss κ), its leader, the
    challenger's head-to-head with the incumbent, the exports of its votes and the runs trained on them (with the
    reward and judge numbers Eval has for them)."""
    home = home or lab_home()
    campaigns = chain_campaigns(campaign_id, home)
    counts = campaign_counts(home)
    entries = [round_entry(c, counts, home) for c in campaigns]
    models = {r["model"] for e in entries for r in e["runs"]} | {m for e in entries for m in e["contenders"]}
    found = eval_scores(models, home)
    names = display_names(models | {e["leader"] for e in entries if e["leader"]}, home)
    for entry in entries:
        entry["leader_name"] = names.get(entry["leader"], entry["leader"])
        entry["contender_names"] = [names[m] for m in entry["contenders"]]
        for run in entry["runs"]:
            run["scores"] = found.get(run["model"], {})
    return entries


def objective(run: Any) -> str:
    """A run's objective from its stored config (older configs through ``upgrade``), without rebuilding it."""
    from lab.config import TrainConfig

    return TrainConfig.upgrade(run.config).get("objective", "sft")


def round_entry(campaign: Campaign, counts: dict[str, Any], home: Home) -> dict[str, Any]:
    count = counts.get(campaign.id)
    board = ratings(campaign.id, home)
    pair = contenders(campaign)
    versions = exports(campaign.id, home)
    return {
        "round": campaign.round, "id": campaign.id, "name": campaign.name, "status": campaign.status,
        "previous_id": campaign.previous_id, "votes": count.votes if count else 0,
        "wanted": count.wanted if count else 0,
        "kappa": results.agreement(campaign.id, home=home)["fleiss_kappa"],
        "leader": board[0][0] if board else None,
        "contenders": list(pair or ()),
        "head_to_head": head_to_head(campaign.id, *pair, home=home) if pair else None,
        "exports": [{"ref": v.ref, "kind": v.kind, "rows": v.rows["train"] + v.rows["validation"]}
                    for v in versions],
        "runs": [{"id": r.id, "model": f"run:{r.id}", "name": r.name, "dataset": r.dataset, "status": r.status,
                  "objective": objective(r), "base": r.model} for r in trained_on(versions, home)]}


# --------------------------------------------------------------------------- the report


def rate_text(h2h: dict[str, Any] | None) -> str:
    if not h2h or not h2h["n"]:
        return "–"
    return (f"{h2h['rate']:.0%} [{h2h['low']:.0%}, {h2h['high']:.0%}] "
            f"({h2h['wins']} won, {h2h['losses']} lost, {h2h['ties']} tied of {h2h['n']} pairs"
            + (f"; {h2h['decided_rate']:.0%} [{h2h['decided_low']:.0%}, {h2h['decided_high']:.0%}] of the decided"
               if h2h.get("decided_rate") is not None else "")
            + (f"; without the votes of {', '.join(h2h['dropped'])}, flagged" if h2h.get("dropped") else "") + ")")


def score_text(numbers: dict[str, Any]) -> str:
    parts = []
    if "reward" in numbers:
        parts.append(f"mean reward {numbers['reward']:.3f} ({numbers.get('reward_model', '')})")
    if "judge_win_rate" in numbers:
        parts.append(f"judge win rate {numbers['judge_win_rate']:.0%} vs {numbers.get('judge_vs', '')}")
    if "judge_grade" in numbers:
        parts.append(f"judge grade {numbers['judge_grade']}")
    return "; ".join(parts)


def table_rows(entries: list[dict[str, Any]]) -> list[list[str]]:
    """The chain as rows of text: round, campaign, status, votes, κ, leader, challenger vs incumbent, win rate,
    exports, runs."""
    rows = []
    for e in entries:
        kappa = "–" if e["kappa"] is None else f"{e['kappa']:.2f}"
        versus = " vs ".join(e["contender_names"]) or "–"
        rows.append([str(e["round"]), e["name"], e["status"], f"{e['votes']}/{e['wanted']}", kappa,
                     e["leader_name"] or "–", versus, rate_text(e["head_to_head"]),
                     ", ".join(x["ref"] for x in e["exports"]) or "–",
                     ", ".join(f"{r['name']} ({r['objective']}, {r['status']})" for r in e["runs"]) or "–"])
    return rows


HEADERS = ["Round", "Campaign", "Status", "Votes", "κ", "Leader", "Challenger vs incumbent", "Win rate [95% CI]",
           "Exports", "Runs"]
RATE_NOTE = ("Win rate: the challenger's share of its pairs against the incumbent (each pair decided by the "
             "majority of its votes), ties counted half; the interval is Wilson's 95% with ties as half a success. "
             "Votes of labelers the reliability table flags are left out.")


def report(campaign_id: str, fmt: str = "md", *, home: Home | None = None) -> str:
    """The whole chain on one page: a table of the rounds, then each round's detail (Markdown, or self-contained
    HTML)."""
    if fmt not in ("md", "html"):
        raise LabError(f"A chain report is md or html, not '{fmt}'.")
    entries = chain(campaign_id, home=home)
    return markdown(entries) if fmt == "md" else page(entries)


def detail_lines(entry: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, text) lines of one round's detail."""
    lines = [("Campaign", f"{entry['name']} ({entry['id']}), {entry['status']}"),
             ("Votes", f"{entry['votes']} of {entry['wanted']} wanted")]
    if entry["contenders"]:
        lines.append((" vs ".join(entry["contender_names"]), rate_text(entry["head_to_head"])))
    for export in entry["exports"]:
        lines.append(("Export", f"{export['ref']} ({export['kind']}, {export['rows']} rows)"))
    for run in entry["runs"]:
        numbers = score_text(run["scores"])
        lines.append(("Run", f"{run['name']} (run:{run['id']}, {run['objective']} from {run['base']}, {run['status']})"
                      + (f": {numbers}" if numbers else "")))
    return lines


def markdown(entries: list[dict[str, Any]]) -> str:
    first = entries[0]
    out = [f"# Preference rounds: {first['name']}", "", RATE_NOTE, "",
           "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    out += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in table_rows(entries)]
    for entry in entries:
        out += ["", f"## Round {entry['round']}: {entry['name']}", ""]
        out += [f"- **{label}**: {text}" for label, text in detail_lines(entry)]
    return "\n".join(out) + "\n"


STYLE = ("body{font-family:system-ui,sans-serif;margin:2rem;color:#222}table{border-collapse:collapse}"
         "th,td{border:1px solid #ccc;padding:.3rem .6rem;text-align:left;vertical-align:top}th{background:#f3f3f3}"
         "p.note{color:#555}")


def page(entries: list[dict[str, Any]]) -> str:
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in HEADERS)
    body = "".join("<tr>" + "".join(f"<td>{e(cell)}</td>" for cell in row) + "</tr>" for row in table_rows(entries))
    details = "".join(
        f"<h2>Round {entry['round']}: {e(entry['name'])}</h2><ul>"
        + "".join(f"<li><b>{e(label)}</b>: {e(text)}</li>" for label, text in detail_lines(entry)) + "</ul>"
        for entry in entries)
    title = f"Preference rounds: {entries[0]['name']}"
    return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{e(title)}</title><style>{STYLE}</style>"
            f"</head><body><h1>{e(title)}</h1><p class=\"note\">{e(RATE_NOTE)}</p><table><thead><tr>{head}</tr>"
            f"</thead><tbody>{body}</tbody></table>{details}</body></html>\n")
