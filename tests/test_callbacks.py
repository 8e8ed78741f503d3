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
