"""The worker's callbacks that change how the Trainer counts: tokens without a synchronisation per micro-batch."""

from __future__ import annotations

import inspect
import types

import torch

from lab.train.callbacks import TokenCount


def test_tokens_are_counted_without_reading_the_gpu_back_each_micro_batch():
    """A padding-free batch counts its length at once; a padded batch's mask sum waits, as a tensor, until the
    Trainer is about to log (or save, evaluate, stop), and is then added once."""
    state = types.SimpleNamespace(num_input_tokens_seen=0, global_step=1, max_steps=10)
    trainer = types.SimpleNamespace(state=state)
    count = TokenCount(trainer)
    assert trainer._track_num_input_tokens == count.track  # the Trainer calls it after every micro-batch
    trainer._track_num_input_tokens({"input_ids": torch.ones(1, 37, dtype=torch.long)})  # padding-free: 37 real
    assert state.num_input_tokens_seen == 37
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    trainer._track_num_input_tokens({"input_ids": torch.ones(2, 4, dtype=torch.long), "attention_mask": mask})
    assert state.num_input_tokens_seen == 37 and len(count.pending) == 1  # not read back yet
    quiet = types.SimpleNamespace(should_log=False, should_save=False, should_evaluate=False,
                                  should_training_stop=False)
    count.on_step_end(None, state, quiet)
    assert state.num_input_tokens_seen == 37
    count.on_step_end(None, state, types.SimpleNamespace(**{**vars(quiet), "should_log": True}))
    assert state.num_input_tokens_seen == 37 + 5 and not count.pending
    trainer._track_num_input_tokens({"input_ids": torch.ones(1, 4, dtype=torch.long), "attention_mask": mask[:1]})
    count.on_train_end(None, state, quiet)
    assert state.num_input_tokens_seen == 45


def test_the_trainer_still_counts_tokens_through_the_method_the_callback_replaces():
    """If transformers renames or reshapes the method, the callback would silently stop counting: fail here first."""
    from transformers import Trainer

    assert list(inspect.signature(Trainer._track_num_input_tokens).parameters) == ["self", "inputs"]
    assert "self._track_num_input_tokens(inputs)" in inspect.getsource(Trainer)


def test_a_resumed_run_s_first_rate_counts_only_the_tokens_since_the_loop_began(tmp_path, monkeypatch):
    """A resumed run's state holds the tokens trained before its checkpoint: its first tokens/s counted them all over
    the seconds since the worker started (a spike in the chart), not the tokens of this interval."""
    import json

    from lab.train import callbacks
    from lab.train.callbacks import MetricsCallback

    clock = iter([100.0, 160.0, 170.0])  # created; the loop begins after a minute of loading; logged 10 s later
    monkeypatch.setattr(callbacks.time, "time", lambda: next(clock))
    monkeypatch.setattr(callbacks, "gpu_memory", dict)
    path = tmp_path / "metrics.jsonl"
    metrics = MetricsCallback(path)
    state = types.SimpleNamespace(num_input_tokens_seen=10_000, global_step=10, max_steps=40,
                                  is_world_process_zero=True)
    metrics.on_train_begin(None, state, None)
    state.num_input_tokens_seen, state.global_step = 12_000, 15
    metrics.on_log(None, state, None, logs={"loss": 4.8})
    assert json.loads(path.read_text())["tokens_per_second"] == 200.0  # 2,000 tokens in 10 s
