"""SFT's metrics kept on the GPU until logging (lab.train.lazy_metrics): the same loss, entropy, token accuracy and
token count as TRL's own compute_loss, for padding-free and padded batches, with nothing read back per batch."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch

from lab.config import TrainConfig
from lab.train import speed
from lab.train.lazy_metrics import PER_BATCH, lazy_metrics
from tests.test_models_masking import MULTI, SINGLE


@pytest.fixture(scope="module")
def pair(tiny_home):
    """TRL's SFTTrainer and the lab's subclass over the same model and rows."""
    from datasets import Dataset
    from trl import SFTTrainer

    from lab.models import load_model, load_tokenizer
    from lab.train.convert import trainer_config

    tokenizer = load_tokenizer(home=tiny_home)
    model = load_model(home=tiny_home)
    rows = Dataset.from_list([{"messages": SINGLE}, {"messages": MULTI}])
    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(report_to="none", max_length=64, eval_split="none")
        made = [cls(model=model, args=trainer_config(cfg, Path(out)), processing_class=tokenizer, train_dataset=rows)
                for cls in (SFTTrainer, lazy_metrics(SFTTrainer))]
        yield made, tokenizer


def batches(trainer, tokenizer):
    """Micro-batches padded (TRL's collator: attention_mask) and padding-free (position_ids), each also with no
    token scored (a batch of prompts cut before their replies)."""
    examples = [trainer.train_dataset[i] for i in range(2)]
    made = []
    for batch in (trainer.data_collator(examples), speed.padding_free_collator(tokenizer, 64)(examples)):
        unscored = dict(batch, labels=torch.full_like(batch["labels"], -100))
        made += [batch, unscored]
    return made


def test_loss_and_metrics_are_trl_s_and_are_read_back_only_when_logging(pair):
    (trl_trainer, lab_trainer), tokenizer = pair
    for trainer in (trl_trainer, lab_trainer):
        trainer.model.train()
        trainer._metrics["train"].clear()
        trainer._total_train_tokens = 0
    for batch in batches(trl_trainer, tokenizer):
        expected = trl_trainer.compute_loss(trl_trainer.model, dict(batch))
        got = lab_trainer.compute_loss(lab_trainer.model, dict(batch))
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
    kept = lab_trainer._metrics["train"]
    assert all(isinstance(v, torch.Tensor) for key in PER_BATCH for v in kept[key])  # nothing read back yet
    assert lab_trainer._metrics["train"]["entropy"][1].item() == 0.0  # the batch without a scored token
    lab_trainer._read_back()
    for key in PER_BATCH:
        assert kept[key] == pytest.approx(trl_trainer._metrics["train"][key], rel=1e-6)
    assert lab_trainer._total_train_tokens == trl_trainer._total_train_tokens > 0
    assert kept["num_tokens"] == trl_trainer._metrics["train"]["num_tokens"]


def test_logging_writes_plain_numbers_and_other_paths_are_trl_s(pair):
    (trl_trainer, lab_trainer), tokenizer = pair
    batch = batches(trl_trainer, tokenizer)[0]
    lab_trainer.model.train()
    lab_trainer.compute_loss(lab_trainer.model, dict(batch))
    lab_trainer.log({"loss": 1.0})
    logged = lab_trainer.state.log_history[-1]
    assert all(type(logged[key]) is float for key in (*PER_BATCH, "loss"))
    assert logged["num_tokens"] == lab_trainer._total_train_tokens  # TRL logs its mean: a float
    with pytest.warns(FutureWarning):  # return_outputs goes through TRL's own compute_loss, which warns
        loss, outputs = lab_trainer.compute_loss(lab_trainer.model, dict(batch), return_outputs=True)
    assert outputs.logits is not None and loss.ndim == 0
