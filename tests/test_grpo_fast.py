"""GRPO/RLOO sampling through the lab's decoder (lab.train.objectives.grpo.fast_sampling) in place of the
``generate`` TRL calls: which generation settings it takes (the rest fall back to ``generate``), the layout of what
it hands TRL (the prompt's ids, then the completion's, pad after the first end of sequence), that it decodes the
adapted model of a PEFT wrapper and leaves the model as it found it, and a real GRPO run of the tiny model with the
decoder forced on the CPU (``LAB_FAST_GENERATION=always``; eager there)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.train.objectives.grpo import Sampling, generating_with_lab, sample_static, sampling_of
from tests.test_grpo import FAST, home, train_logs  # noqa: F401 - home: the module's lab home with the tiny model
from tests.test_train_runs import train

PROMPTS = ["What is 8 + 3?", "Hi", "Write a short poem about the sea, with a rhyme in each line."]


@pytest.fixture(scope="module")
def tiny(home):  # noqa: F811 - the fixture imported above
    """The tiny model under a LoRA adapter whose B matrices are not zero (so the adapter changes the answers), in
    training mode as TRL holds it, with left-padded chat prompts of three lengths."""
    import torch
    from peft import LoraConfig, get_peft_model

    from lab.models import chat_texts, left_padded, load_model, load_tokenizer

    tokenizer = load_tokenizer("tiny", home=home)
    torch.manual_seed(0)
    model = get_peft_model(load_model("tiny", home=home),
                           LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM"))
    for name, weight in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(weight, std=0.5)
    model.train()
    batch = left_padded(tokenizer, chat_texts(tokenizer, [[{"role": "user", "content": p}] for p in PROMPTS]), "cpu")
    return model, tokenizer, batch


def trl_config(tokenizer, **changes):
    """The generation config GRPOTrainer builds from GRPOConfig's defaults (trl/trainer/grpo_trainer.py)."""
    from transformers import GenerationConfig

    settings = dict(max_new_tokens=16, do_sample=True, pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
                    eos_token_id=[tokenizer.eos_token_id], temperature=1.0, top_p=1.0, top_k=0, min_p=None,
                    repetition_penalty=1.0, cache_implementation=None)
    return GenerationConfig(**{**settings, **changes}, disable_compile=True)


def trl_cut(completions, eos_ids: list[int]) -> list[list[int]]:
    """What TRL keeps of each completion: up to and including its first end-of-sequence token."""
    out = []
    for row in completions.tolist():
        ends = [i for i, token in enumerate(row) if token in eos_ids]
        out.append(row[:ends[0] + 1] if ends else row)
    return out


def test_trls_settings_sample_with_the_lab_and_the_rest_fall_back_with_the_reason(tiny):
    model, tokenizer, _ = tiny
    sampling, why = sampling_of(model, trl_config(tokenizer, temperature=0.9, top_p=0.95))
    assert why == "" and sampling == Sampling(temperature=0.9, top_p=0.95, max_new_tokens=16,
                                              eos_token_ids=(tokenizer.eos_token_id,),
                                              pad_token_id=tokenizer.pad_token_id)
    for change, processor in ((dict(top_k=50), "TopKLogitsWarper"), (dict(min_p=0.1), "MinPLogitsWarper"),
                              (dict(repetition_penalty=1.1), "RepetitionPenaltyLogitsProcessor"),
                              # unset, generate takes its default of 50 (what TRL's explicit 0 prevents)
                              (dict(top_k=None), "TopKLogitsWarper"),
                              (dict(min_new_tokens=4), "MinNewTokensLengthLogitsProcessor")):
        sampling, why = sampling_of(model, trl_config(tokenizer, **change))
        assert sampling is None and processor in why, (change, why)
    assert sampling_of(model, trl_config(tokenizer, do_sample=False))[0].temperature == 0  # greedy


def test_the_replacement_hands_trl_the_prompt_then_the_completion_cut_at_any_end(tiny):
    """Greedy, so it must equal ``generate`` on the adapted model; a second end-of-sequence id (a token the model
    emits early) makes rows end early, and everything after a row's first end is padding."""
    import torch

    model, tokenizer, batch = tiny
    with torch.no_grad():
        reference = model.generate(**batch, generation_config=trl_config(tokenizer, do_sample=False))
    width = batch["input_ids"].shape[1]
    early = reference[0, width + 2].item()  # the first row's third token ends a completion too
    eos_ids = [tokenizer.eos_token_id, early]
    config = trl_config(tokenizer, do_sample=False, eos_token_id=eos_ids)
    sampling, why = sampling_of(model, config)
    assert why == ""
    with generating_with_lab(model, sampling):
        ours = model.generate(**batch, generation_config=config)
    assert "generate" not in model.__dict__ and model.training  # put back as TRL holds it
    assert torch.equal(ours[:, :width], batch["input_ids"]) and ours.shape[1] - width <= config.max_new_tokens
    with torch.no_grad():
        reference = model.generate(**batch, generation_config=config)
    assert trl_cut(ours[:, width:], eos_ids) == trl_cut(reference[:, width:], eos_ids)
    for row in ours[:, width:].tolist():
        ends = [i for i, token in enumerate(row) if token in eos_ids] or [len(row)]
        assert set(row[ends[0] + 1:]) <= {tokenizer.pad_token_id}, row
    assert any(len(row) < config.max_new_tokens for row in trl_cut(ours[:, width:], eos_ids))
    with model.disable_adapter():  # the adapter changes the answer: the adapted model was decoded
        base = sample_static(model, batch["input_ids"], batch["attention_mask"], sampling)
    assert trl_cut(base[:, width:], eos_ids) != trl_cut(ours[:, width:], eos_ids)


def test_a_grpo_run_sampling_with_the_lab_decoder_trains(home):  # noqa: F811
    """A LoRA run, so the decoder meets PEFT's wrapper inside TRL; rewards and gradients flow every step."""
    done = train(home, "tiny-grpo.yaml", *FAST, "--set", "max_steps=4", "--set", "logging_steps=1",
                 "--set", "adapter=lora", "--set", "learning_rate=1e-2", env={"LAB_FAST_GENERATION": "always"})
    assert done["status"] == "succeeded", done["error"]
    log = Path(done["run_dir"], "log.txt").read_text()
    assert "[lab] sampling completions with the lab's decoder (temperature 1, top_p 1, up to 8 tokens)" in log, log
    logs = train_logs(done)
    assert [r["step"] for r in logs] == [1, 2, 3, 4]
    assert all(r["grad_norm"] > 0 for r in logs) and sum(r["rewards/format/mean"] for r in logs) > 0, logs
    assert all(0 < r["completions/mean_length"] <= 8 for r in logs), logs


@pytest.mark.gpu
def test_on_a_gpu_the_captured_decoder_answers_as_generate_before_and_after_an_optimizer_step(home):  # noqa: F811
    """The decoder's step is replayed as a CUDA graph that reads the weights at fixed addresses: the optimizer's
    in-place update must show in the next answers, which must still be ``generate``'s (greedy, fp32 as a full
    fine-tune holds its weights)."""
    import torch

    from lab.models import chat_texts, left_padded, load_model, load_tokenizer

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    tokenizer = load_tokenizer("tiny", home=home)
    model = load_model("tiny", home=home).cuda().train()
    batch = left_padded(tokenizer, chat_texts(tokenizer, [[{"role": "user", "content": p}] for p in PROMPTS]), "cuda")
    config = trl_config(tokenizer, do_sample=False, max_new_tokens=24)
    sampling, why = sampling_of(model, config)
    assert why == ""
    width, eos_ids = batch["input_ids"].shape[1], [tokenizer.eos_token_id]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    answers = []
    for _ in range(2):
        with generating_with_lab(model, sampling):
            ours = model.generate(**batch, generation_config=config)
        with torch.no_grad():
            reference = model.generate(**batch, generation_config=config)
        assert trl_cut(ours[:, width:], eos_ids) == trl_cut(reference[:, width:], eos_ids)
        answers.append(trl_cut(ours[:, width:], eos_ids))
        model(**batch, labels=batch["input_ids"]).loss.backward()  # one step: the weights change in place
        optimizer.step()
        optimizer.zero_grad()
    assert answers[0] != answers[1]
    assert any(decoder.graph is not None for decoder in model.__dict__["_lab_decoders"].shapes.values())
