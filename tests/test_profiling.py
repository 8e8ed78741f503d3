"""LAB_PROFILE_STEPS: the profiler callback profiles exactly the asked steps and writes a readable summary."""

from __future__ import annotations

import types

import pytest

from lab.train.profiling import ProfileCallback, profile_window, union_seconds


def test_profile_window_reads_start_and_count_and_names_a_bad_value():
    assert profile_window("") is None
    assert profile_window("10:3") == (10, 3)
    assert profile_window("7") == (7, 1)
    with pytest.raises(ValueError, match="LAB_PROFILE_STEPS must be START:COUNT"):
        profile_window("ten")
    with pytest.raises(ValueError, match="COUNT >= 1"):
        profile_window("3:0")


def test_overlapping_kernel_spans_are_counted_once():
    assert union_seconds([(0, 2), (1, 3), (5, 6)]) == 4
    assert union_seconds([]) == 0


def test_callback_profiles_the_asked_steps_and_reads_them_back_after_training(tmp_path):
    import torch

    out = tmp_path / "profile.txt"
    callback = ProfileCallback(out, start=1, count=2)
    state = types.SimpleNamespace(global_step=0)
    for step in range(4):  # the Trainer's order: begin at step n, count the step, end at n + 1
        state.global_step = step
        callback.on_step_begin(None, state, None)
        torch.randn(64, 64) @ torch.randn(64, 64)
        state.global_step = step + 1
        callback.on_step_end(None, state, None)
        assert not out.exists()  # nothing is read back inside the timed loop
    callback.on_train_end(None, state, None)
    text = out.read_text()
    assert text.startswith("2 step(s) in") and "aten::mm" in text
    assert text.count("aten::mm ") == 1  # one row per operator
