"""What a hostile or careless user's probes found, each held now: HTML in an answer or a prompt shown as text on
the labeling page, an absurd number of epochs estimated at once, a vote on a pair leased before its campaign was
closed, an account taking over the votes of everyone before sign-in, a seed no trainer takes, a 50 MB text
tokenised by the statistics. (A server file passed off as an upload: tests/test_label_security.py.)"""

from __future__ import annotations

import json
import time

import pytest

from lab.config import TrainConfig
from lab.data.limits import ReadLimits
from lab.data.pipeline import load_file
from lab.errors import LabError
from lab.label import accounts, campaigns, serving
from lab.ui.common import chat_html, safe_html
from tests.test_label import file_campaign

# Answers that an earlier, regex-based escape left as raw HTML (a round-2 probe): the page's Markdown disagreed with
# the lab's idea of a code span or fence. Each covered the labeling page in Chromium.
COVER = '<div style="position:fixed;inset:0;z-index:9999">THIS IS THE ONLY ANSWER. Press 1.</div>'
BYPASSES = {"escaped backtick": f"\\`{COVER}\\`", "indented fence": f"Sure.\n    ```\n{COVER}",
            "backtick in the info string": f"```x`\n{COVER}", "unequal backtick runs": f"``{COVER}`",
            "plain": COVER, "form": "<form action=/x><input name=password></form>"}


@pytest.mark.parametrize("answer", BYPASSES.values(), ids=BYPASSES.keys())
def test_html_in_answers_and_prompts_shows_as_text(answer):
    shown = safe_html(answer)
    assert "<div" not in shown and "<form" not in shown and "<input" not in shown
    assert "&lt;div" in shown or "&lt;form" in shown


def test_markdown_still_renders_code_keeps_its_angle_brackets_and_images_are_not_loaded():
    shown = safe_html("**Bold** and `a<b`\n\n```python\nif a < b:\n    print('<ok>')\n```\n\n"
                      "![t](http://tracker.example/p.png?who) [docs](https://example.com) [x](javascript:alert(1))")
    assert "<strong>Bold</strong>" in shown and "<code>a&lt;b</code>" in shown
    assert "if a &lt; b:\n    print(&#x27;&lt;ok&gt;&#x27;)" in shown or "if a &lt; b:\n    print('&lt;ok&gt;')" in shown
    assert "<img" not in shown and 'href="https://example.com" target="_blank"' in shown
    assert "javascript:" not in shown.split("[x]")[0] and 'href="javascript' not in shown
    prompt = chat_html([{"role": "system", "content": "<img src=x>"}, {"role": "user", "content": COVER}])
    assert "<img" not in prompt and "<div" not in prompt and "<em>System:" in prompt


def test_the_chat_views_of_compare_and_eval_show_a_models_html_as_text():
    from types import SimpleNamespace

    from lab.ui.compare_tab import as_shown
    from lab.ui.eval_tab import replies

    cover = '<div style="position:fixed;inset:0">Log in again</div>'
    history = [{"role": "user", "content": "<b>hi</b>"}, {"role": "assistant", "content": cover}]
    assert all("<div" not in m["content"] and "<b>" not in m["content"] for m in as_shown(history))
    assert history[1]["content"] == cover
    job = SimpleNamespace(kind="overlap", model="tiny", config={})
    item = {"rouge_l": 0.5, "bleu": 0.25, "generation": cover, "reference": "<form>"}
    assert all("<div" not in m["content"] and "<form" not in m["content"]
               for m in replies(item, job, {"tiny": "tiny"}))


def test_the_learning_rate_curve_of_a_trillion_steps_is_drawn_at_once_and_as_the_trainer_steps_it():
    import torch
    from transformers import get_scheduler

    from lab.train.estimate import scheduler_curve

    started = time.monotonic()
    curve = scheduler_curve(TrainConfig(learning_rate=1e-4), 10**12, 3 * 10**10, 100)
    assert len(curve) == 101 and curve[-1][0] == 10**12 and time.monotonic() - started < 5
    for schedule in ("cosine", "linear", "constant", "constant_with_warmup"):
        cfg = TrainConfig(learning_rate=2e-4, lr_scheduler=schedule)
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
        scheduler = get_scheduler(schedule, optimizer, num_warmup_steps=7, num_training_steps=61)
        stepped = []
        for _ in range(61):
            stepped.append(scheduler.get_last_lr()[0])
            optimizer.step()
            scheduler.step()
        assert [rate for _, rate in scheduler_curve(cfg, 61, 7, 20)] == pytest.approx(
            [stepped[step - 1] for step, _ in scheduler_curve(cfg, 61, 7, 20)], abs=1e-12)


def test_a_vote_on_a_pair_served_before_the_campaign_closed_is_refused(home, tmp_path):
    campaign = file_campaign(home, tmp_path)
    served = serving.next_pair(campaign.id, "ann", home=home)
    campaigns.set_status(campaign.id, "closed", home=home)
    with pytest.raises(LabError, match="closed: your vote was not counted"):
        serving.vote(served.token, "ann", "a", home=home)
    assert campaigns.campaign_counts(home, campaign.id)[campaign.id].votes == 0


def test_no_account_may_be_named_after_everyone_before_sign_in(home):
    for name in ("local", "Local"):
        with pytest.raises(LabError, match="everyone's votes"):
            accounts.add_account(name, "admin", "long enough password", home=home)


@pytest.mark.parametrize("seed", [-1, 2**32, 10**30])
def test_a_seed_no_trainer_takes_is_refused_before_launch(seed):
    with pytest.raises(LabError, match="seed must be a whole number"):
        TrainConfig(seed=seed).validate(cuda=False)


def test_a_text_over_the_limit_makes_its_row_invalid_and_names_the_setting(tmp_path):
    path = tmp_path / "long.jsonl"
    path.write_text(json.dumps({"prompt": "q", "completion": "a" * 5000}) + "\n"
                    + json.dumps({"prompt": "short", "completion": "fine"}) + "\n")
    parsed = load_file(path, limits=ReadLimits(max_text_chars=4000))
    assert len(parsed.rows) == 1 and parsed.errors[0].line == 1
    assert "5,000 characters, more than the limit of 4,000" in parsed.errors[0].reason
    assert "LAB_MAX_TEXT_CHARS" in parsed.errors[0].reason
    assert len(load_file(path).rows) == 2  # the default (a million characters) takes both


def dictionary_bomb(n: int, text: str):
    """A column of one dictionary entry repeated ``n`` times: a few bytes on disk, ``n × len(text)`` once decoded."""
    import pyarrow as pa

    return pa.DictionaryArray.from_arrays(pa.array([0] * n, pa.int32()), pa.array([text]))


def test_a_parquet_or_arrow_file_is_measured_as_decoded_text_before_its_rows_are_made(tmp_path):
    """A 2 KB Parquet file whose footer declares 11 KB decoded to 3.4 GB of text and was accepted."""
    import pyarrow as pa
    import pyarrow.feather as feather
    import pyarrow.parquet as pq

    limits = ReadLimits(max_import_bytes=1_000_000)
    rows, text = 2000, "x" * 1000  # 2 MB of text, over the limit; a few kB on disk
    reply = pa.array(["ok"] * rows)
    flat = pa.table({"instruction": dictionary_bomb(rows, text), "output": reply})
    nested = pa.table({"messages": pa.ListArray.from_arrays(
        pa.array(range(0, 2 * rows + 1, 2), pa.int32()), pa.StructArray.from_arrays(
            [pa.array(["user", "assistant"] * rows), dictionary_bomb(2 * rows, text)], names=["role", "content"]))})
    for name, table, store_schema in (("flat", flat, True), ("plain-footer", flat, False), ("nested", nested, False)):
        path = tmp_path / f"{name}.parquet"
        pq.write_table(table, path, store_schema=store_schema)
        assert path.stat().st_size < 50_000
        with pytest.raises(LabError, match="of text, more than the import limit"):
            load_file(path, limits=limits)
    feather.write_feather(flat, tmp_path / "bomb.arrow", compression="uncompressed")
    with pytest.raises(LabError, match="as text, more than the import limit"):
        load_file(tmp_path / "bomb.arrow", limits=limits)
    small = pa.table({"instruction": dictionary_bomb(10, "What is 2+2?"), "output": pa.array(["4"] * 10)})
    pq.write_table(small, tmp_path / "small.parquet")
    assert len(load_file(tmp_path / "small.parquet", limits=limits).rows) >= 1  # dictionaries read as text


def test_a_file_of_thousands_of_columns_and_a_long_python_literal_cell_are_refused(tmp_path):
    wide = tmp_path / "wide.csv"
    wide.write_text(",".join(f"c{i}" for i in range(5000)) + "\n" + ",".join("x" for _ in range(5000)) + "\n")
    with pytest.raises(LabError, match="has 5,000 columns, more than the 1,000"):
        load_file(wide)
    wide_json = tmp_path / "wide.jsonl"
    wide_json.write_text(json.dumps({f"c{i}": "x" for i in range(2000)}) + "\n")
    with pytest.raises(LabError, match="has 2,000 columns"):
        load_file(wide_json)
    # Python's parser takes ~480 bytes of memory a character: a long cell that is not JSON is not parsed as Python.
    literal = "[" + ", ".join("{'role': 'user', 'content': 'hi'}" for _ in range(4000)) + "]"
    cells = tmp_path / "literal.csv"
    cells.write_text('messages\n"' + literal.replace('"', '""') + '"\n')
    (error,) = load_file(cells).errors
    assert "as a Python literal it is too long to read safely" in error.reason
