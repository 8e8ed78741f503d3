"""KTO on the tiny model: an imported unpaired file trains to the end through the real run machinery (the CLI,
create_run, the worker process) and pulls desirable and undesirable rewards apart; the label counts set the
loss weights; a batch of one and a dataset of the wrong kind are refused before launch; "Train KTO on this"
proposes batches of two rows or more."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from lab.config import TrainConfig
from lab.errors import LabError
from lab.home import lab_home
from lab.train.methods import objective
from lab.train.objectives import kto
from tests.test_train_runs import lab, metrics, train

TOPICS = ["rivers", "stars", "bread", "music", "chess", "rain", "maps", "tea", "bees", "glass", "clocks", "boats"]


def unpaired_rows(n: int = 48) -> list[dict]:
    """One reply per prompt (truly unpaired): a third are helpful and desirable, the rest a refusal, undesirable."""
    rows = []
    for i in range(n):
        topic, good = TOPICS[i % len(TOPICS)], i % 3 == 0
        reply = f"Here is a fact about {topic}: people have studied {topic} for centuries." if good else \
            "No. I will not answer that."
        rows.append({"prompt": [{"role": "user", "content": f"Tell me one fact about {topic} (#{i})."}],
                     "completion": [{"role": "assistant", "content": reply}], "label": good})
    return rows


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    root = tmp_path_factory.mktemp("kto_home")
    from lab.models import tiny_model_path

    tiny_model_path(lab_home(root))
    return lab_home(root)


@pytest.fixture(scope="module")
def unpaired(home, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("kto_data") / "thumbs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in unpaired_rows()))
    # Templated rows: a topic's prompts differ by their number alone and share its reply, so near dedup would
    # rightly keep one of each (it did not before it compared what is asked and answered apart); kept all here.
    result = lab(home, "data", "import", str(path), "--name", "thumbs", "--kind", "unpaired", "--val-fraction", "0",
                 "--no-dedup-near", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["ref"]


def test_kto_trains_to_the_end_and_pulls_the_rewards_apart(home, unpaired):
    done = train(home, "tiny-kto.yaml", "--set", f"dataset={unpaired}", "--set", "max_steps=12", "--set",
                 "batch_size=4", "--set", "learning_rate=1e-3", "--set", "logging_steps=2", "--set", "eval_split=none",
                 "--set", "max_length=128", "--set", "max_prompt_length=64", "--set", "sample_prompts=0")
    assert done["status"] == "succeeded", done["error"]
    log = Path(done["run_dir"], "log.txt").read_text()
    # 16 desirable, 32 undesirable: auto weights the desirable side up to 7/6 × 32/16 (the paper's 1–4/3 range).
    assert "KTO: 16 desirable and 32 undesirable rows; loss weights 2.33 desirable, 1 undesirable" in log, log[-3000:]
    logged = [row for row in metrics(done) if row["split"] == "train" and "rewards/margins" in row]
    first, last = logged[0], logged[-1]
    assert first["rewards/margins"] == pytest.approx(0, abs=1e-6)  # the policy starts as its reference
    # The helpful replies gain probability over the reference and the refusals lose it, far beyond the noise.
    assert last["rewards/margins"] > first["rewards/margins"] + 1.0, logged
    assert last["rewards/chosen"] > 0 > last["rewards/rejected"], last
    assert last["loss"] < first["loss"]
    assert (Path(done["run_dir"]) / "final" / "adapter_config.json").exists()


def test_a_batch_of_one_and_preference_data_are_refused_before_launch(home, unpaired):
    one = lab(home, "train", "recipes/tiny-kto.yaml", "--set", f"dataset={unpaired}", "--set", "batch_size=1")
    assert one.returncode != 0 and "KTO needs batch_size 2 or more" in one.stderr, one.stderr
    pairs = lab(home, "train", "recipes/tiny-kto.yaml", "--set", "dataset=sample:preference")
    assert pairs.returncode != 0 and "unpaired" in pairs.stderr, pairs.stderr
    listed = lab(home, "runs", "list", "--json")
    assert all(run["dataset"].split("@")[0] != "thumbs" or run["status"] == "succeeded"
               for run in json.loads(listed.stdout))  # nothing refused was queued


def test_auto_weights_balance_the_label_counts_and_reach_trl():
    cfg = TrainConfig(objective="kto", adapter="lora")
    for desirable, undesirable in ((30, 70), (70, 30), (10, 90), (50, 52)):
        weights = kto.balanced_weights(cfg, desirable, undesirable)
        ratio = weights.desirable * desirable / (weights.undesirable * undesirable)
        assert 1 <= ratio <= 4 / 3 and min(weights.desirable, weights.undesirable) == 1, (desirable, weights)
    even = kto.balanced_weights(cfg, 40, 40)
    assert (even.desirable, even.undesirable) == (1.0, 1.0)
    fixed = kto.balanced_weights(dataclasses.replace(cfg, kto_undesirable_weight="2"), 30, 70)
    assert fixed.undesirable == 2 and fixed.desirable == pytest.approx(7 / 6 * 2 * 70 / 30)
    lopsided = kto.balanced_weights(dataclasses.replace(cfg, kto_desirable_weight="1", kto_undesirable_weight="1"),
                                    30, 70)
    assert "outside the 1–1.33 the KTO paper advises" in lopsided.text
    one_sided = kto.balanced_weights(cfg, 0, 2)  # a thumbs campaign whose every answer was voted down
    assert one_sided.text.startswith("all 2 rows are undesirable (👎): KTO learns only what to avoid")
    assert "weighted desirable/undesirable" not in one_sided.text
    with pytest.raises(LabError, match="kto_desirable_weight must be auto or a positive number"):
        objective("kto").precheck(dataclasses.replace(cfg, kto_desirable_weight="-1"), None)
    args = kto.config(cfg, {"output_dir": "/tmp/unused", "use_cpu": True}, kto.balanced_weights(cfg, 30, 70))
    assert (type(args).__name__, args.desirable_weight, args.undesirable_weight) == ("KTOConfig", 7 / 6 * 70 / 30,
                                                                                     1.0)
    assert args.train_sampling_strategy == "sequential"  # each row's KL partner is its batch neighbour
    assert objective("kto").sequences(cfg) == 2 and not objective("kto").reference(cfg)
    assert objective("kto").reference(dataclasses.replace(cfg, adapter="none", precompute_ref_log_probs="off"))


def test_the_proposal_trains_with_batches_of_two_rows_or_more(home, unpaired):
    proposal = kto.propose_kto(unpaired, "tiny", home)
    cfg = TrainConfig(**{k: v for k, v in proposal.values.items()})
    assert cfg.objective == "kto" and cfg.batch_size >= 2 and cfg.learning_rate > 0
    assert "48 rows" in proposal.text and "16 desirable, 32 undesirable" in proposal.text
    objective("kto").precheck(cfg, home)
    with pytest.raises(LabError, match="KTO needs unpaired replies"):
        kto.propose_kto("sample:preference", "tiny", home)
