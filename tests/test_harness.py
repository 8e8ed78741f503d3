"""lm-eval forgetting checks: the lab's offline task runs on the tiny model with no network (plain and as a LoRA
adapter on its base), its data is well formed, and unknown or unreachable tasks fail with a LabError."""

from __future__ import annotations

import socket

import pytest

from lab.errors import LabError
from lab.eval import harness
from lab.eval.tasks.lab_mc import data


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a connection fails the test: offline means not even trying."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[1:]}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_the_offline_task_scores_the_tiny_model_without_network(tiny_home, no_network):
    reports: list[tuple[int, int]] = []
    result = harness.evaluate("tiny", ["lab_mc"], limit=12, home=tiny_home,
                              progress=lambda done, total: reports.append((done, total)))
    score = result["tasks"]["lab_mc"]
    assert result["model"] == "tiny" and result["limit"] == 12 and result["lm_eval_version"]
    assert score["metric"] == "acc" and score["samples"] == 12 and 0.0 <= score["value"] <= 1.0
    assert score["stderr"] is not None and set(score["metrics"]) == {"acc", "acc_norm"}
    assert reports[0] == (0, 48) and reports[-1] == (48, 48)  # four choices, four requests, per question


def test_a_lora_adapter_is_scored_on_its_base(tiny_home, tmp_path, no_network):
    from peft import LoraConfig, get_peft_model

    from lab.models import load_model, load_tokenizer

    model = get_peft_model(load_model("tiny", home=tiny_home), LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                                          task_type="CAUSAL_LM"))
    model.save_pretrained(tmp_path / "adapter")  # what a LoRA run leaves in final/
    load_tokenizer("tiny", home=tiny_home).save_pretrained(tmp_path / "adapter")
    result = harness.evaluate(str(tmp_path / "adapter"), ["lab_mc"], limit=3, home=tiny_home)
    assert result["tasks"]["lab_mc"]["samples"] == 3


def test_offline_tasks_match_the_shipped_task_folder():
    assert set(harness.OFFLINE_TASKS) == set(harness.task_manager(standard=False).all_tasks)
    assert list(harness.list_tasks())[:len(harness.OFFLINE_TASKS)] == harness.OFFLINE_TASKS
    assert {"mmlu", "hellaswag", "arc_easy", "arc_challenge", "truthfulqa_mc2"} <= set(harness.STANDARD_TASKS)


def test_the_task_data_is_well_formed():
    rows = data.rows()
    assert 40 <= len(rows) <= 100
    assert len({r["id"] for r in rows}) == len({r["question"] for r in rows}) == len(rows)
    for row in rows:
        choices = row["choices"]
        assert len(choices) == 4 and len(set(choices)) == 4 and all(c.strip() for c in choices), row["id"]
        assert isinstance(row["answer"], int) and 0 <= row["answer"] < 4, row["id"]
    answers = [r["answer"] for r in rows]
    assert max(answers.count(i) for i in range(4)) - min(answers.count(i) for i in range(4)) <= 1  # no favourite slot


def test_an_unknown_task_names_itself_and_the_offline_ones(tiny_home):
    with pytest.raises(LabError) as err:
        harness.evaluate("tiny", ["lab_mc", "no_such_task"], home=tiny_home)
    message = str(err.value)
    assert "'no_such_task'" in message and "lab_mc" in message and "network" in message


def test_a_standard_task_without_network_says_it_needs_the_hub(tiny_home, tmp_path, monkeypatch):
    import datasets.config
    import huggingface_hub.constants

    # No local copy may stand in for the Hub; conftest has turned the Hub off for the whole session.
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(LabError, match="'hellaswag' needs its dataset from the Hugging Face Hub"):
        harness.evaluate("tiny", ["hellaswag"], limit=2, home=tiny_home)


@pytest.mark.parametrize("limit", [0, -3])
def test_a_limit_below_one_is_refused(tiny_home, limit):
    with pytest.raises(LabError, match="positive number of samples"):
        harness.evaluate("tiny", ["lab_mc"], limit=limit, home=tiny_home)


def test_a_group_is_reported_by_its_aggregate_and_a_tag_by_its_tasks():
    results = {  # the shape of lm-eval's results["results"] for a group (mmlu) and a tag's tasks (ai2_arc)
        "mmlu": {"alias": "mmlu", "sample_len": 14042, "acc,none": 0.61, "acc_stderr,none": 0.004},
        "mmlu_astronomy": {"alias": " - astronomy", "sample_len": 152, "acc,none": 0.7, "acc_stderr,none": 0.03},
        "arc_easy": {"alias": "arc_easy", "sample_len": 2376, "acc,none": 0.8, "acc_stderr,none": "N/A",
                     "acc_norm,none": 0.75, "acc_norm_stderr,none": 0.009},
        "arc_challenge": {"alias": "arc_challenge", "sample_len": 1172, "acc,none": 0.5, "acc_stderr,none": 0.01},
    }
    out = harness.summarise(results, ["mmlu", "ai2_arc"],
                            {"mmlu": ["mmlu_astronomy"], "ai2_arc": ["arc_easy", "arc_challenge"]})
    assert list(out) == ["mmlu", "arc_easy", "arc_challenge"]
    assert out["mmlu"] == {"metric": "acc", "value": 0.61, "stderr": 0.004, "samples": 14042,
                           "metrics": {"acc": 0.61}}
    assert out["arc_easy"]["stderr"] is None and out["arc_easy"]["metrics"] == {"acc": 0.8, "acc_norm": 0.75}
