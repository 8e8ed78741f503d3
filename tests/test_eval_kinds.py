"""The evaluation kinds beyond perplexity, on the tiny model: reference overlap (ROUGE-L/BLEU), the LLM judge
with a local model (verdicts in both orders, cache) and with an OpenAI-compatible endpoint served here by a real
HTTP server (the expected winner, the key written nowhere), prompt placeholders, the CLI's JSON contract with the
human results beside the automatic ones, and the Eval tab driving overlap and judge jobs."""

from __future__ import annotations

import csv
import io
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from gradio_client import Client

from lab.errors import LabError
from lab.eval import judge, overlap
from lab.eval.config import JudgeConfig, OverlapConfig
from lab.eval.jobs import create_eval, log_path, wait
from lab.eval.judge_prompts import DEFAULTS, check
from lab.eval.judges import EndpointJudge
from lab.home import Home, lab_home
from tests.test_label import lab_cli

SECRET = "sk-test-never-write-me-4242"


@pytest.fixture(scope="module")
def eval_home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    """One lab home for this module's jobs, with the tiny model built once."""
    from lab.models import tiny_model_path

    home = lab_home(tmp_path_factory.mktemp("eval_home"))
    tiny_model_path(home)
    return home


@pytest.fixture(scope="module")
def other_model(eval_home: Home, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A second model that answers differently: the tiny model with its weights perturbed (seeded)."""
    import torch

    from lab.models import load_model, load_tokenizer

    model = load_model("tiny", home=eval_home)
    torch.manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    folder = tmp_path_factory.mktemp("other-model")
    model.save_pretrained(folder)
    load_tokenizer("tiny", home=eval_home).save_pretrained(folder)
    return str(folder)


# --------------------------------------------------------------------------- overlap


def test_rouge_l_of_a_reference_against_itself_is_one():
    references = ["The capital of Peru is Lima.", "14 plus 20 is 34.", "In alphabetical order: engine, pepper."]
    same = overlap.score(references, references)
    assert same["rouge_l"] == 1.0 and same["bleu"] == 100.0
    assert all(e["rouge_l"] == 1.0 and e["bleu"] == 100.0 for e in same["per_example"])
    other = overlap.score(["Lima is the capital.", "It is 34.", "Pepper, engine."], references)
    assert 0 < other["rouge_l"] < 1 and 0 <= other["bleu"] < 100
    assert other["rouge_l"] == round(sum(e["rouge_l"] for e in other["per_example"]) / 3, 4)


def test_overlap_of_the_tiny_model_is_in_range_with_best_and_worst(eval_home):
    result = overlap.evaluate("tiny", "sample:sft", OverlapConfig(max_rows=4, max_new_tokens=8, batch_size=2),
                              home=eval_home)
    assert result["rows"] == len(result["per_example"]) == 4
    assert 0.0 <= result["rouge_l"] <= 1.0 and 0.0 <= result["bleu"] <= 100.0
    assert "tok:13a" in result["bleu_signature"]
    assert result["best"][0]["rouge_l"] >= result["worst"][0]["rouge_l"]
    example = result["best"][0]
    assert example["prompt"][-1]["role"] == "user" and example["reference"] and "generation" in example


# --------------------------------------------------------------------------- judge prompts


def test_a_missing_or_unknown_placeholder_is_a_clear_error(eval_home):
    check(DEFAULTS["pairwise"], "pairwise")
    check(DEFAULTS["single"], "single")
    check('Grade {answer} to {question} against {reference}; reply like {"grade": 7}.', "single")  # JSON braces
    with pytest.raises(LabError, match=r"no \{answer_b\} placeholder"):
        check("Which is better? {question} {answer_a}", "pairwise")
    with pytest.raises(LabError, match=r"unknown placeholder \{answr\}"):
        check("{question} {answer} {answr}", "single")
    with pytest.raises(LabError, match=r"no \{answer\} placeholder"):  # before any job is stored
        create_eval("judge", "tiny", "sample:sft", mode="single", prompt="Rate {question}", home=eval_home,
                    start=False)


# --------------------------------------------------------------------------- a local judge


def test_a_local_judge_gives_verdicts_in_both_orders_and_a_rerun_comes_from_the_cache(eval_home, other_model):
    cfg = JudgeConfig(model_b=other_model, judge="tiny", max_rows=3, max_new_tokens=6)
    first = judge.evaluate("tiny", "sample:sft", cfg, home=eval_home)
    assert first["rows"] == 3 and first["cached"] == 0 and first["judged"] == 6
    for item in first["items"]:
        for order in ("a_first", "b_first"):
            verdict = item[order]
            assert verdict["verdict"] in ("A", "B", "C") and abs(sum(verdict["probs"].values()) - 1) < 1e-3
        assert item["outcome"] in ("a", "b", "tie", "inconsistent")
    orders = first["orders"]
    assert all(sum(orders[o][k] for k in ("a_wins", "ties", "b_wins", "unparsed")) == 3 for o in orders)
    assert first["a_wins"] + first["b_wins"] + first["ties"] + first["inconsistent"] == 3
    again = judge.evaluate("tiny", "sample:sft", cfg, home=eval_home)
    assert again["cached"] == 6 and again["judged"] == 0
    assert [i["outcome"] for i in again["items"]] == [i["outcome"] for i in first["items"]]

    graded = judge.evaluate("tiny", "sample:sft", JudgeConfig(mode="single", max_rows=2, max_new_tokens=6),
                            home=eval_home)
    assert all(1 <= item["verdict"] <= 10 and 1 <= item["expected"] <= 10 for item in graded["items"])
    assert 1 <= graded["mean_grade"] <= 10 and graded["unparsed"] == 0


# --------------------------------------------------------------------------- an endpoint judge


class ShorterAnswerJudge(BaseHTTPRequestHandler):
    """POST /v1/chat/completions: prefers the shorter answer, in MT-Bench's [[A]]/[[B]] format; equal lengths
    get a reply with no verdict (an unparsed one). Refuses any request without the right key."""

    seen: list[dict] = []

    def do_POST(self):  # noqa: N802 - the http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path != "/v1/chat/completions" or self.headers.get("Authorization") != f"Bearer {SECRET}":
            return self.answer(401, {"error": {"message": f"Incorrect API key provided: "
                                               f"{self.headers.get('Authorization')}"}})
        type(self).seen.append(body)
        prompt = body["messages"][0]["content"]
        a = re.search(r"\[The Start of Assistant A's Answer\]\n(.*)\n\[The End of Assistant A's Answer\]", prompt,
                      re.S).group(1)
        b = re.search(r"\[The Start of Assistant B's Answer\]\n(.*)\n\[The End of Assistant B's Answer\]", prompt,
                      re.S).group(1)
        reply = "Both are as long; I cannot tell." if len(a) == len(b) else \
            f"The shorter one is better. [[{'A' if len(a) < len(b) else 'B'}]]"
        self.answer(200, {"choices": [{"message": {"role": "assistant", "content": reply}}]})

    def answer(self, code: int, document: dict) -> None:
        data = json.dumps(document).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), ShorterAnswerJudge)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/v1"
    monkeypatch.setenv("LAB_JUDGE_BASE_URL", base)
    monkeypatch.setenv("LAB_JUDGE_API_KEY", SECRET)
    ShorterAnswerJudge.seen.clear()
    try:
        yield base
    finally:
        server.shutdown()


def test_an_endpoint_judge_prefers_the_shorter_answer_in_both_orders_and_the_key_is_written_nowhere(
        eval_home, other_model, endpoint):
    job = create_eval("judge", "tiny", "sample:sft", model_b=other_model, judge="endpoint",
                      endpoint_model="shorter-judge", max_rows=4, max_new_tokens=12, home=eval_home)
    job = wait(job.id, eval_home, timeout=240)
    assert job.status == "succeeded", job.error
    r = job.results
    assert r["judge"] == "endpoint:shorter-judge" and len(ShorterAnswerJudge.seen) == 8
    assert all(body["model"] == "shorter-judge" and body["temperature"] == 0 for body in ShorterAnswerJudge.seen)
    for item in r["items"]:
        a, b = len(item["answer_a"]), len(item["answer_b"])
        expected = "unparsed" if a == b else "a" if a < b else "b"
        assert item["outcome"] == expected, (item["answer_a"], item["answer_b"], item["a_first"], item["b_first"])
    assert r["a_wins"] + r["b_wins"] + r["unparsed"] == 4 and r["a_wins"] + r["b_wins"] > 0
    assert r["consistency"] == 1.0 and r["inconsistent"] == 0  # the rule ignores positions
    assert r["win_rate"] == round(r["a_wins"] / (4 - r["unparsed"]), 4)
    host = endpoint.removeprefix("http://").removesuffix("/v1")
    for path in eval_home.root.rglob("*"):  # store (and its WAL), job log, results, verdict cache
        if path.is_file():
            data = path.read_bytes()
            assert SECRET.encode() not in data and host.encode() not in data, path
    rerun = wait(create_eval("judge", "tiny", "sample:sft", model_b=other_model, judge="endpoint",
                             endpoint_model="shorter-judge", max_rows=4, max_new_tokens=12, home=eval_home).id,
                 eval_home, timeout=240)
    assert rerun.status == "succeeded", (rerun.status, rerun.error, log_path(rerun.id, eval_home).read_text()[-3000:])
    assert rerun.results["cached"] == 8 and len(ShorterAnswerJudge.seen) == 8  # nothing asked twice


class Redirecting(BaseHTTPRequestHandler):
    """An endpoint that sends every request elsewhere (where a key would be read), and that elsewhere."""

    seen: list[dict] = []

    def do_POST(self) -> None:
        self.send_response(307)
        self.send_header("Location", f"http://127.0.0.1:{self.server.server_address[1]}/steal")
        self.end_headers()

    def do_GET(self) -> None:
        Redirecting.seen.append(dict(self.headers))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_a_redirecting_endpoint_is_an_error_and_the_key_does_not_follow(monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirecting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("LAB_JUDGE_BASE_URL", f"http://127.0.0.1:{server.server_address[1]}/v1")
    monkeypatch.setenv("LAB_JUDGE_API_KEY", SECRET)
    try:
        with pytest.raises(LabError, match="HTTP 307, a redirect, which the lab does not follow"):
            EndpointJudge("any", 16).ask("Which is better?")
    finally:
        server.shutdown()
    assert Redirecting.seen == []


def test_a_refused_key_is_a_clear_error_that_does_not_quote_it(eval_home, endpoint, monkeypatch):
    monkeypatch.setenv("LAB_JUDGE_API_KEY", "sk-wrong-key-777")
    with pytest.raises(LabError, match="HTTP 401") as caught:
        EndpointJudge("shorter-judge", 16).ask("Which is better?")
    assert "sk-wrong-key-777" not in str(caught.value) and "127.0.0.1" not in str(caught.value)
    monkeypatch.delenv("LAB_JUDGE_BASE_URL")
    monkeypatch.delenv("LAB_JUDGE_API_KEY")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(LabError, match="LAB_JUDGE_BASE_URL"):
        create_eval("judge", "tiny", "sample:sft", mode="single", judge="endpoint", home=eval_home, start=False)


# --------------------------------------------------------------------------- the CLI


def votes_for(home: Home, names: tuple[str, str], winners: list[int]) -> None:
    """A campaign between two models and one labeler's votes: prompt i goes to ``names[winners[i]]``. Made from a
    file of ready answers, whose columns are then given the models' names as a generated campaign's are (a file's
    column may not be named like a lab model: its answers would join that model's win rates)."""
    from lab.config import CampaignConfig
    from lab.label import campaigns, serving
    from lab.store import Store

    columns = {n: f"column-{k}" for k, n in enumerate(names)}
    rows = [{"prompt": f"Question {i}?", **{columns[n]: f"{'good' if k == w else 'poor'} answer {i}" for k, n in
                                           enumerate(names)}} for i, w in enumerate(winners)]
    path = home.root / "responses.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    campaign = campaigns.create_campaign(CampaignConfig(name="people", responses_file=str(path), sources="",
                                                        votes_per_pair=1), home=home)
    with Store(home).write() as conn:
        for name, column in columns.items():
            conn.execute("UPDATE responses SET source = ? WHERE source = ?", (name, column))
            for side in ("source_1", "source_2"):
                conn.execute(f"UPDATE pairs SET {side} = ? WHERE {side} = ?", (name, column))
        conn.execute("UPDATE campaigns SET sources = ? WHERE id = ?",
                     (json.dumps([{"name": n, "kind": "model"} for n in names]), campaign.id))
    while (pair := serving.next_pair(campaign.id, "ann", home=home)) is not None:
        serving.vote(pair.token, "ann", "a" if pair.left.startswith("good") else "b", home=home)


def test_cli_json_for_every_kind_and_the_summary_beside_human_votes(tmp_path):
    from lab.models import tiny_model_path

    home = lab_home(tmp_path / "cli_home")
    tiny_model_path(home)
    done = lab_cli(home, "eval", "overlap", "--model", "tiny", "--max-rows", "3", "--max-new-tokens", "6",
                   "--wait", "--json")
    assert done.returncode == 0, done.stderr
    (job,) = json.loads(done.stdout)
    assert job["kind"] == "overlap" and job["status"] == "succeeded" and job["done"] == job["total"] == 3
    assert job["config"] == {"batch_size": 8, "max_new_tokens": 6, "max_rows": 3, "seed": 0, "split": "validation",
                             "temperature": 0.0}
    assert {"rouge_l", "bleu", "per_example", "best", "worst"} <= set(job["results"])
    graded = lab_cli(home, "eval", "judge", "--mode", "single", "--model", "tiny", "--max-rows", "2",
                     "--max-new-tokens", "6", "--wait", "--json")
    assert graded.returncode == 0, graded.stderr
    assert json.loads(graded.stdout)[0]["results"]["mean_grade"] is not None
    tasks = lab_cli(home, "eval", "harness", "--model", "tiny", "--tasks", "lab_mc", "--limit", "2", "--wait", "--json")
    assert tasks.returncode == 0, tasks.stderr
    (harness,) = json.loads(tasks.stdout)
    assert harness["dataset"] == "lm-eval:lab_mc" and harness["results"]["tasks"]["lab_mc"]["samples"] == 2

    pairwise = lab_cli(home, "eval", "judge", "--model", "tiny", "--json")
    assert pairwise.returncode == 1 and "two models" in json.loads(pairwise.stdout)["error"]
    shown = json.loads(lab_cli(home, "eval", "show", job["id"], "--json").stdout)
    assert shown["id"] == job["id"] and shown["results"]["rows"] == 3
    listed = json.loads(lab_cli(home, "eval", "list", "--json").stdout)
    assert sorted(j["kind"] for j in listed) == ["harness", "judge", "overlap"]
    rows = list(csv.DictReader(io.StringIO(lab_cli(home, "eval", "export").stdout)))
    assert {"rouge_l", "bleu", "mean_grade", "lab_mc:acc"} <= set(rows[0]) and len(rows) == 3

    votes_for(home, ("tiny", "run:other"), winners=[0, 0, 0, 1])
    summary = lab_cli(home, "eval", "summary", "--json")
    assert summary.returncode == 0, summary.stderr
    document = json.loads(summary.stdout)
    assert document["campaign"]["name"] == "people"
    by_model = {row["model"]: row for row in document["models"]}
    tiny = by_model["tiny"]
    assert tiny["rouge_l"] == job["results"]["rouge_l"] and tiny["judge_grade"] is not None
    assert tiny["harness"]["lab_mc"] == harness["results"]["tasks"]["lab_mc"]["value"]
    assert tiny["human_win_rate"] == 0.75 and by_model["run:other"]["human_win_rate"] == 0.25
    assert tiny["human_rating"] > 1000 > by_model["run:other"]["human_rating"]
    assert "tiny" in lab_cli(home, "eval", "summary").stdout


# --------------------------------------------------------------------------- the Eval tab


def wait_for(client: Client, ids: list[str], timeout: float = 180) -> dict[str, list]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        jobs, _, _ = client.predict(api_name="/eval_jobs")
        rows = {row[0]: row for row in jobs["data"] if row[0] in ids}
        if len(rows) == len(ids) and all(r[4].split(":")[0] in ("succeeded", "failed") for r in rows.values()):
            return rows
        time.sleep(1)
    raise AssertionError(f"jobs {ids} did not finish in {timeout} s")


def test_eval_tab_starts_overlap_and_judge_jobs_and_shows_their_results(lab_app):
    client = Client(lab_app.url, verbose=False)
    status, _, selected, _ = client.predict(models=["tiny"], dataset="sample:sft", split="validation", max_rows=3,
                                            max_new_tokens=6, api_name="/eval_overlap")
    assert "Started 1 evaluation" in status
    overlap_id = selected["value"]  # the tab follows the job it started
    other = str(Path(lab_app.home) / "models" / "tiny-llama")  # the same weights under another name
    status, _, selected, _ = client.predict(models=["tiny", other], dataset="sample:sft", split="validation",
                                            mode="pairwise", judge="tiny", max_rows=2, max_new_tokens=6,
                                            api_name="/eval_judge")
    assert "Started 1 evaluation" in status
    judge_id = selected["value"]
    bad = client.predict(models=["tiny"], dataset="sample:sft", split="validation", mode="single",
                         prompt="Rate {question} {answer} {score}", api_name="/eval_judge")[0]
    assert "unknown placeholder {score}" in bad
    rows = wait_for(client, [overlap_id, judge_id])
    assert rows[overlap_id][4] == "succeeded" and "ROUGE-L" in rows[overlap_id][7], rows[overlap_id]
    # the same weights in both orders: a win rate, or (tiny's verdicts differing by order) no decided verdict
    assert rows[judge_id][4] == "succeeded" and re.search(r"win rate|no decided verdicts", rows[judge_id][7]), \
        rows[judge_id]

    overlap_shown = client.predict(overlap_id, api_name="/eval_show")
    assert "ROUGE-L" in overlap_shown
    best, worst = (chat["value"] for chat in client.predict(overlap_id, api_name="/eval_examples"))
    assert best[0]["role"] == "user" and best[1]["role"] == "assistant" and len(best) == 9
    # tiny's noise often shares no word with any reference: then one panel of answers, unranked
    assert len(worst) == 9 or (worst == [] and "Every answer scored ROUGE-L 0" in overlap_shown)
    # three examples: prompt, answer, reference (rendered by the lab: lab.ui.common.safe_html)
    assert "<strong>Reference</strong>" in best[2]["content"][0]["text"]
    shown = client.predict(judge_id, api_name="/eval_show")
    assert "both orders agree" in shown and "position consistency" in shown
    table = client.predict("newest with votes", api_name="/eval_summary")[1]
    assert "tiny" in [row[0] for row in table["data"]]
    path = client.predict(api_name="/eval_csv")
    header = open(path).readline()
    assert "rouge_l" in header and "win_rate" in header
