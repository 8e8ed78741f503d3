"""Compare: checkpoints answer the same prompts side by side (streamed token by token, with the answers of the
batched generation), runs get their curves overlaid and config differences listed, comparisons are saved,
listed, reopened and exported as Markdown and HTML; through the engine, the CLI and the real app."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from gradio_client import Client

from lab.compare import (Sampling, cached_model, config_diff, list_comparisons, load_comparison, run_numbers,
                         save_comparison, side_by_side, stream_side_by_side, to_html, to_markdown)
from lab.errors import LabError

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = [[{"role": "user", "content": "What is 7 times 8?"}],
           [{"role": "user", "content": "Name the capital of Peru, and say why it is the capital."}],  # longer: padded
           [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]]


def train(home: Path, *sets: str) -> str:
    args = [sys.executable, "-m", "lab", "train", "recipes/tiny-sft.yaml", "--set", "report_to=none", "--set",
            "eval_steps=5", "--set", "save_steps=0", "--set", "sample_prompts=0", *sets, "--wait", "--json"]
    done = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "LAB_HOME": str(home)})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["id"]


def lab(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lab", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "LAB_HOME": str(home)})


@pytest.fixture(scope="module")
def two_runs(lab_app) -> list[str]:
    """Two finished tiny runs in the app's home that differ in the learning rate only."""
    return [train(lab_app.home, "--set", "max_steps=10"),
            train(lab_app.home, "--set", "max_steps=10", "--set", "learning_rate=3e-3")]


def test_streamed_answers_equal_the_batched_answers(tiny_home):
    for settings in (Sampling(max_new_tokens=24), Sampling(max_new_tokens=24, temperature=0.9, top_p=0.9, seed=3)):
        batched = [r.answers for r in side_by_side(["tiny"], PROMPTS, settings, tiny_home)]
        steps = list(stream_side_by_side(["tiny"], PROMPTS, settings, tiny_home))
        partial, final = steps[:-1], steps[-1]
        assert final.finished and [final.answers] == batched
        assert len(partial) > 1 and not any(s.finished for s in partial)  # token by token, not all at once
        assert sum(map(len, partial[0].answers)) < sum(map(len, final.answers))
        assert 0 < final.new_tokens <= 24 * len(PROMPTS) and final.tokens_per_second > 0


def test_a_closed_stream_stops_and_the_next_one_runs(tiny_home):
    stream = stream_side_by_side(["tiny"], PROMPTS, Sampling(max_new_tokens=400), tiny_home)
    next(stream)
    stream.close()  # a page closed mid-answer: generation stops at the next step, and releases the model
    again = list(stream_side_by_side(["tiny"], PROMPTS[:1], Sampling(max_new_tokens=4), tiny_home))
    assert again[-1].finished


def test_model_cache_keeps_loaded_models_up_to_its_size(tiny_home, tmp_path, monkeypatch):
    from lab import compare
    from lab.models import tiny_model_path

    copy = shutil.copytree(tiny_model_path(tiny_home), tmp_path / "tiny-copy")
    monkeypatch.setattr(compare, "_cache", compare.OrderedDict())
    assert cached_model("tiny", tiny_home) is cached_model("tiny", tiny_home)  # not loaded again
    monkeypatch.setenv("LAB_COMPARE_CACHE", "1")
    cached_model(str(copy), tiny_home)
    assert list(compare._cache) == [str(copy)]  # the least recently used went
    monkeypatch.setenv("LAB_COMPARE_CACHE", "lots")
    with pytest.raises(LabError, match="LAB_COMPARE_CACHE"):
        cached_model("tiny", tiny_home)


class Tags(HTMLParser):
    """Checks that every element closes in order; collects the tag names and the text."""

    VOID = {"meta", "br", "hr", "img", "link", "input"}

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.seen: set[str] = set()
        self.text = ""

    def handle_starttag(self, tag, attrs):
        self.seen.add(tag)
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_endtag(self, tag):
        assert self.open and self.open.pop() == tag, f"</{tag}> closes nothing open"

    def handle_data(self, data):
        self.text += data


def document(answer: str = "<script>alert('x')</script> & more") -> dict:
    return {"id": "20250101-120000", "created_at": "2025-01-01T12:00:00+00:00", "settings": {"seed": 0},
            "sources": ["tiny", "run:a"], "prompts": [[{"role": "user", "content": "Say <b>hi</b>"}]],
            "answers": [{"source": "tiny", "answers": [answer], "tokens_per_second": 1.0},
                        {"source": "run:a", "answers": [""], "tokens_per_second": 2.0}],
            "runs": [{"run": "a", "final_train_loss": 1.5}],
            "config_diff": [{"field": "learning_rate", "a": 0.001, "b": 0.003}]}


def test_html_export_is_well_formed_and_escapes_text():
    page = to_html(document())
    parser = Tags()
    parser.feed(page)
    parser.close()
    assert parser.open == []  # everything closed
    assert "script" not in parser.seen and "b" not in parser.seen  # text from models and prompts stays text
    assert "<script>alert('x')</script> & more" in parser.text and "Say <b>hi</b>" in parser.text
    assert "&lt;script&gt;" in page and "(empty)" in page
    assert {"table", "style", "title"} <= parser.seen and "learning_rate" in parser.text and "1.5" in parser.text


def test_exports_write_numbers_and_settings_as_people_read_them():
    """The HTML export's runs table printed 5.8385162353515625 (running into the next columns), its config diff
    "lora" in JSON quotes, and the Markdown None: numbers to four significant digits, text as it is, lists as their
    items, and a dash for nothing, in both."""
    doc = {**document(), "runs": [{"run": "a", "final_train_loss": 5.8385162353515625, "final_eval_loss": None,
                                   "runtime_s": 27.37843}],
           "config_diff": [{"field": "adapter", "a": "lora", "b": "none"},
                           {"field": "lora_targets", "a": ["q_proj", "v_proj"], "b": None}]}
    markdown, page = to_markdown(doc), to_html(doc)
    assert "| a | 5.839 | – | 27.38 |" in markdown
    assert "| final train loss | final eval loss | runtime s |" in markdown
    assert "| adapter | lora | none |" in markdown and "| lora_targets | q_proj, v_proj | – |" in markdown
    assert "None" not in markdown and "5.8385162" not in markdown
    assert "<td>5.839</td>" in page and "<td>lora</td>" in page and "&quot;lora&quot;" not in page
    assert "<td>q_proj, v_proj</td>" in page and "None" not in page and "<th>final train loss</th>" in page


def test_the_save_s_result_is_written_under_its_button(home):
    """"Saved as …" appeared under the Compare button, far above the Save button, with a server path."""
    import gradio as gr

    from lab.ui import compare_tab

    with gr.Blocks() as page:
        ui = compare_tab.build(home)
    save = next(fn for fn in page.fns.values() if fn.api_name == "compare_export")
    assert save.outputs[0] is ui.side.save_status
    document = {"sources": ["tiny"], "prompts": [[{"role": "user", "content": "Hi"}]], "settings": {"seed": 0},
                "answers": [{"source": "tiny", "answers": ["Hello"], "tokens_per_second": 1.0}]}
    out = compare_tab.export(ui.side, home, document)
    saved = out[ui.side.last]["id"]
    assert out[ui.side.save_status].startswith(f"**✓ Saved as {saved}**") and str(home.root) not in \
        out[ui.side.save_status]
    assert ui.side.status not in out
    # The playground keeps one clear action, for both conversations: no chat's own trash button clears one alone.
    assert not [fn for fn in page.fns.values() if any(t[1] == "clear" for t in fn.targets)]
    assert [fn.api_name for fn in page.fns.values() if fn.api_name == "chat_clear"] == ["chat_clear"]


def test_saved_comparisons_list_show_and_export_through_the_cli(tmp_path, tiny_home):
    from lab.models import tiny_model_path

    home = tmp_path / "home"
    done = lab(home, "compare", "run", "--source", str(tiny_model_path(tiny_home)), "--prompt", "Hi",
               "--prompt", "Name a colour.", "--max-new-tokens", "8", "--save", "--markdown", str(tmp_path / "c.md"),
               "--json")
    assert done.returncode == 0, done.stderr
    ran = json.loads(done.stdout)
    assert len(ran["answers"][0]["answers"]) == 2 and "## Prompt 2" in (tmp_path / "c.md").read_text()
    listed = json.loads(lab(home, "compare", "list", "--json").stdout)
    assert [c["id"] for c in listed] == [ran["id"]] and listed[0]["first_prompt"] == "Hi"
    shown = lab(home, "compare", "show", ran["id"], "--html", str(tmp_path / "c.html"), "--json")
    assert json.loads(shown.stdout)["answers"] == ran["answers"]
    assert "<h2>Prompt 2</h2>" in (tmp_path / "c.html").read_text()
    missing = lab(home, "compare", "show", "20000101-000000")
    assert missing.returncode == 1 and "compare list" in missing.stderr


def test_saved_comparisons_are_listed_newest_first(home):
    first = save_comparison(document(), home)
    second = save_comparison(document("again"), home)  # the same second: a suffix keeps both
    assert [c["id"] for c in list_comparisons(home)] == [second.stem, first.stem]
    assert load_comparison(second.stem, home)["answers"][0]["answers"] == ["again"]
    with pytest.raises(LabError, match="no comparison id"):
        load_comparison("../store", home)


def test_three_sources_stream_side_by_side_with_curves_diff_saved_and_reopened(lab_app, two_runs):
    from lab.catalog import display_names
    from lab.home import lab_home

    first, second = two_runs
    client = Client(lab_app.url, verbose=False)
    sources = ["tiny", f"run:{first}", f"run:{second}"]
    job = client.submit(sources, "What is 2 + 2?\nName a colour.", 16, 0, 1, 0, api_name="/compare_run")
    status, answers, curves, numbers, diff, _ = job.result()  # the last: the hint shown when no runs are picked
    headers = [out[1]["value"]["headers"] for out in job.outputs()]
    assert any("(waiting)" in " ".join(h) for h in headers)  # columns filled one checkpoint after another
    assert "3 checkpoints answered 2 prompts" in status
    assert status.count("tiny is a randomly initialised test model") == 1  # tiny answered: said once
    answers = answers["value"]  # sent as an update that also sets the column widths
    assert answers["headers"][0] == "prompt" and len(answers["headers"]) == 4
    assert all("tok/s" in h for h in answers["headers"][1:]) and len(answers["data"]) == 2
    assert [row[0] for row in diff["data"]] == ["learning_rate"]  # the only field set differently
    assert len(numbers["data"]) == 2

    status, files, saved = client.predict(api_name="/compare_export")
    markdown, page = (Path(f).read_text() for f in files["value"])  # an update: the files box appears with them
    names = display_names(sources, lab_home(lab_app.home))  # runs by name, not by id
    assert "Saved" in status and "## Prompt 2" in markdown and f"**{names[sources[1]]}**" in markdown
    assert "learning_rate" in markdown and f"run:{first}" not in markdown
    assert page.startswith("<!DOCTYPE html>") and names[sources[2]] in page
    assert client.predict(api_name="/compare_saved")["choices"][0][1] == saved["value"]

    reopened = client.predict(saved["value"], api_name="/compare_open")
    status, table, _, numbers_again, diff_again, _, shown_sources, prompts, *settings = reopened
    assert "Saved comparison" in status and table["value"] == answers
    assert numbers_again["data"] == numbers["data"] and diff_again == diff
    assert shown_sources == sources and prompts == "What is 2 + 2?\nName a colour." and settings == [16, 0, 1, 0]


def test_config_diff_and_numbers_read_the_runs(lab_app, two_runs):
    from lab.home import lab_home

    home = lab_home(lab_app.home)
    assert [d["field"] for d in config_diff(two_runs, home)] == ["learning_rate"]
    numbers = run_numbers(two_runs, home)
    assert all(n["steps"] == 10 and n["final_train_loss"] is not None for n in numbers)
    markdown = to_markdown({"settings": {"seed": 0}, "prompts": [[{"role": "user", "content": "hi"}]],
                            "answers": [{"source": "tiny", "answers": [""], "tokens_per_second": 0}], "runs": numbers,
                            "config_diff": config_diff(two_runs, home)})
    assert "*(empty)*" in markdown and "| learning_rate |" in markdown
