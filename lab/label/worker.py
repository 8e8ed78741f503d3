"""The generation process of a campaign: ``python -m lab.label.worker CAMPAIGN_ID``.

For each model source in turn: load it once, answer the prompts that still lack its response in batches,
store each batch, and mark the pairs whose two responses now exist as ready to serve. Restartable: a
resumed campaign only generates what is missing. A campaign that names a judge is then pre-labeled by it
(``lab.label.prelabel``). Output goes to LAB_HOME/campaigns/<id>.log.
"""

from __future__ import annotations

import json
import sys
import traceback

from lab.home import Home, lab_home
from lab.store import Store

BATCH = 8


def main(campaign_id: str) -> int:
    from lab.label.campaigns import get_campaign, model_of, sample_seed
    from lab.models import generate_with, load_for_generation
    from lab.train.loading import resolve_model_path

    home = lab_home()
    store = Store(home)
    campaign = get_campaign(campaign_id, home)
    cfg = campaign.campaign_config
    try:
        for source in campaign.model_sources:
            todo = store.query("SELECT idx, prompt FROM campaign_prompts p WHERE campaign_id = ? AND NOT EXISTS "
                               "(SELECT 1 FROM responses r WHERE r.campaign_id = p.campaign_id AND r.prompt_idx = p.idx "
                               "AND r.source = ?) AND NOT EXISTS (SELECT 1 FROM pairs g WHERE g.campaign_id = "
                               "p.campaign_id AND g.prompt_idx = p.idx AND g.source_1 = 'gold-a') ORDER BY idx",
                               (campaign.id, source))
            if not todo:
                continue
            print(f"[lab] {source}: {len(todo)} prompts to answer", flush=True)
            model, tokenizer = load_for_generation(resolve_model_path(model_of(source), home), home)
            for start in range(0, len(todo), BATCH):
                batch = todo[start:start + BATCH]
                texts = generate_with(model, tokenizer, [json.loads(r["prompt"]) for r in batch],
                                      max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                                      top_p=cfg.top_p, seed=sample_seed(source, cfg.seed) + start)
                with store.write() as conn:
                    for row, text in zip(batch, texts):
                        conn.execute("INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?)",
                                     (campaign.id, row["idx"], source, text))
                    conn.execute("UPDATE campaigns SET generated = generated + ? WHERE id = ?", (len(batch), campaign.id))
                    mark_ready(conn, campaign.id)
                print(f"[lab] {source}: {start + len(batch)}/{len(todo)}", flush=True)
            del model
        with store.write() as conn:
            conn.execute("UPDATE campaigns SET status = 'open', pid = NULL WHERE id = ? AND status = 'generating'",
                         (campaign.id,))
        print("[lab] all responses generated; the campaign is open", flush=True)
        if campaign.config.get("judge") and not campaign.thumbs:
            start_judge(campaign.id, home)
        return 0
    except BaseException as err:  # the campaign must not stay 'generating' with no process behind it
        traceback.print_exc()
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        with store.write() as conn:
            conn.execute("UPDATE campaigns SET status = 'failed', pid = NULL, error = ? WHERE id = ?",
                         (f"Generation failed: {type(err).__name__}: {message} (the responses so far are kept; "
                          "resume to finish)", campaign.id))
        return 1


def start_judge(campaign_id: str, home: Home) -> None:
    """The campaign's judge pre-labels its pairs now that every response exists, in a process of its own. A judge
    that cannot start leaves the campaign open: its failure is in the judge's state, where the admin sees it."""
    from lab.errors import LabError
    from lab.label import prelabel

    try:
        prelabel.start(campaign_id, home=home)
        print(f"[lab] the judge pre-labels the pairs (log: {prelabel.log_path(campaign_id, home)})", flush=True)
    except LabError as err:
        print(f"[lab] the judge did not start: {err}", flush=True)


def mark_ready(conn, campaign_id: str) -> None:
    conn.execute("UPDATE pairs SET ready = 1 WHERE campaign_id = ? AND ready = 0 AND EXISTS (SELECT 1 FROM responses "
                 "r WHERE r.campaign_id = pairs.campaign_id AND r.prompt_idx = pairs.prompt_idx AND r.source = "
                 "pairs.source_1) AND EXISTS (SELECT 1 FROM responses r WHERE r.campaign_id = pairs.campaign_id AND "
                 "r.prompt_idx = pairs.prompt_idx AND r.source = pairs.source_2)", (campaign_id,))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
