"""The fast path (lab.train.speed): which features a run gets on which machine, and that padding-free batches
train on exactly the same tokens as padded ones, with each example attending only to itself."""

from __future__ import annotations

import pytest

from lab.config import TrainConfig, from_dict, load_yaml
from lab.errors import LabError
from lab.train import speed
from lab.train.fused_lora import fuse_lora
from tests.test_models_masking import MULTI, SINGLE, expected_mask


def test_cpu_auto_plan_keeps_padded_sdpa_and_says_why():
    p = speed.plan(TrainConfig(), cuda=False, model_type="llama", varlen=False, flash_attn=False, liger=True)
    assert (p.padding_free, p.attention, p.liger_kernels, p.compile) == (False, "sdpa", False, False)
    assert "CUDA" in p.reasons["padding_free"] and "CUDA" in p.reasons["liger_kernels"]


def test_gpu_auto_plan_goes_padding_free_with_torch_varlen_and_liger():
    p = speed.plan(TrainConfig(), cuda=True, model_type="qwen2", varlen=True, flash_attn=False, liger=True)
    assert (p.padding_free, p.attention, p.liger_kernels) == (True, speed.VARLEN, True)
    with_fa = speed.plan(TrainConfig(), cuda=True, model_type="qwen2", varlen=True, flash_attn=True, liger=False)
    assert with_fa.attention == "flash_attention_2" and not with_fa.liger_kernels


def test_dpo_is_unpadded_inside_the_model_and_packing_is_always_padding_free():
    dpo = speed.plan(TrainConfig(objective="dpo", adapter="lora"), cuda=True, model_type="llama", varlen=True, flash_attn=False,
                     liger=False)
    assert dpo.padding_free and "unpads DPO" in dpo.reasons["padding_free"]
    packed = speed.plan(TrainConfig(packing=True), cuda=False, model_type="llama", varlen=False, flash_attn=False,
                        liger=False)
    assert packed.padding_free and packed.attention == speed.VARLEN


@pytest.mark.parametrize("settings, words", [
    ({"padding_free": "on", "attention": "sdpa"}, "does not keep padding-free examples apart"),
    ({"liger_kernels": "on"}, "liger_kernels: on needs a CUDA GPU"),
    ({"attention": "flash_attention_2"}, "flash-attn package"),
])
def test_impossible_speed_settings_say_what_to_change(settings, words):
    with pytest.raises(LabError, match=words):
        speed.plan(from_dict(TrainConfig, settings), cuda=False, model_type="llama", varlen=False, flash_attn=False,
                   liger=False)


def test_yaml_on_and_off_read_as_the_setting_not_a_boolean(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("padding_free: on\nliger_kernels: off\n")
    cfg = load_yaml(str(recipe), overrides=["compile=on"])
    assert (cfg.padding_free, cfg.liger_kernels, cfg.compile) == ("on", "off", "on")


@pytest.fixture(scope="module")
def trainer_and_model(tiny_home):
    """A real SFTTrainer over two conversations of different lengths, with the lab's padding-free collator."""
    import tempfile
    from pathlib import Path

    from datasets import Dataset
    from trl import SFTTrainer

    from lab.models import load_model, load_tokenizer
    from lab.train.convert import trainer_config

    tokenizer = load_tokenizer(home=tiny_home)
    model = load_model(home=tiny_home).eval()
    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(report_to="none", max_length=64, eval_split="none")
        trainer = SFTTrainer(model=model, args=trainer_config(cfg, Path(out)), processing_class=tokenizer,
                             train_dataset=Dataset.from_list([{"messages": SINGLE}, {"messages": MULTI}]),
                             data_collator=speed.padding_free_collator(tokenizer, cfg.max_length))
        examples = [trainer.train_dataset[i] for i in range(2)]
        yield trainer, model, tokenizer, examples


def test_padding_free_batch_masks_exactly_the_assistant_tokens_and_marks_boundaries(trainer_and_model):
    trainer, _, tokenizer, examples = trainer_and_model
    batch = trainer.data_collator(examples)
    lengths = [len(e["input_ids"]) for e in examples]
    assert batch["input_ids"].shape == (1, sum(lengths))  # one row, no padding
    assert batch["cu_seq_lens_q"].tolist() == [0, lengths[0], sum(lengths)]
    assert batch["position_ids"][0].tolist() == list(range(lengths[0])) + list(range(lengths[1]))
    carries_loss = (batch["labels"][0] != -100).int().tolist()
    assert carries_loss == expected_mask(SINGLE, tokenizer) + expected_mask(MULTI, tokenizer)
    assert batch["max_length_q"] == 64  # an upper bound that stays the same from batch to batch


@pytest.mark.parametrize("attention", [speed.VARLEN, speed.BUCKETED])
def test_padding_free_loss_equals_the_padded_loss_so_examples_do_not_see_each_other(trainer_and_model, attention):
    """If the second example could attend to the first, its logits (and the loss) would change."""
    import torch
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    trainer, model, tokenizer, examples = trainer_and_model
    flat = trainer.data_collator(examples)
    padded = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id)(examples)  # TRL's, padded

    def loss(batch, attention):
        speed.use_attention(model, attention)
        inputs = {k: v for k, v in batch.items() if k not in ("labels", "seq_idx")}
        with torch.no_grad():
            logits = model(**inputs).logits.float()
        labels = batch["labels"]
        return torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), labels[:, 1:], ignore_index=-100,
                                                 reduction="sum").item()

    try:
        assert loss(flat, attention) == pytest.approx(loss(padded, "sdpa"), rel=1e-5)
    finally:
        speed.use_attention(model, "sdpa")


def test_varlen_attention_refuses_padded_batches(trainer_and_model):
    import torch

    _, model, _, _ = trainer_and_model
    speed.use_attention(model, speed.VARLEN)
    try:
        with pytest.raises(LabError, match="padding-free batches only"):
            model(input_ids=torch.tensor([[5, 6, 7], [8, 9, 0]]), attention_mask=torch.tensor([[1, 1, 1], [1, 1, 0]]))
    finally:
        speed.use_attention(model, "sdpa")


def test_unpadded_dpo_forward_gives_the_padded_log_probs(tiny_home, tmp_path):
    """DPO's padded batch of chosen and rejected replies, through the model with the padding removed inside it
    (lab_varlen attention), gives the same per-token log-probabilities as the padded forward with SDPA."""
    import torch
    from datasets import Dataset
    from trl import DPOTrainer

    from lab.models import load_model, load_tokenizer
    from lab.train.convert import trainer_config

    tokenizer = load_tokenizer(home=tiny_home)
    model = load_model(home=tiny_home)
    pairs = [{"prompt": [{"role": "user", "content": "Name a colour."}],
              "chosen": [{"role": "assistant", "content": "Blue."}],
              "rejected": [{"role": "assistant", "content": "I would rather talk about the weather today, if that "
                                                            "is all right with you."}]},
             {"prompt": [{"role": "user", "content": "What is two plus two? Answer in a full sentence please."}],
              "chosen": [{"role": "assistant", "content": "Two plus two is four."}],
              "rejected": [{"role": "assistant", "content": "Five."}]}]
    cfg = TrainConfig(objective="dpo", adapter="none", report_to="none", eval_split="none", max_length=128,
                      max_prompt_length=64)
    trainer = DPOTrainer(model=model, args=trainer_config(cfg, tmp_path), processing_class=tokenizer,
                         train_dataset=Dataset.from_list(pairs))
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    assert (batch["attention_mask"] == 0).any()  # really padded
    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "labels": labels,
              "fused_lm_head": True, "use_cache": False}
    model.eval()
    with torch.no_grad():
        padded = trainer.model(**inputs).log_probs
        speed.use_attention(model, speed.VARLEN)
        speed.unpad_inside(model)
        unpadded = trainer.model(**inputs).log_probs
    speed.use_attention(model, "sdpa")
    assert unpadded.shape == padded.shape
    torch.testing.assert_close(unpadded, padded, atol=1e-5, rtol=1e-5)
    assert padded.abs().sum() > 0


def test_a_run_with_impossible_speed_settings_is_refused_before_it_is_queued(home):
    from lab.train.runner import create_run, list_runs

    with pytest.raises(LabError, match="liger_kernels: on needs a CUDA GPU"):
        create_run(TrainConfig(liger_kernels="on", report_to="none"), home=home, start=False)
    assert list_runs(home) == []


def test_auto_checkpointing_turns_on_only_when_the_batch_does_not_fit(tiny_home, monkeypatch):
    from lab.train.estimate import GIB, model_shape

    monkeypatch.setenv("LAB_HOME", str(tiny_home.root))
    shape = model_shape("tiny")
    cfg = TrainConfig(batch_size=64, max_length=2048)
    machine = dict(model_type="llama", varlen=True, flash_attn=False, liger=False, shape=shape)
    roomy = speed.plan(cfg, cuda=True, gpu_bytes=80 * GIB, **machine)
    tight = speed.plan(cfg, cuda=True, gpu_bytes=2 * GIB, **machine)
    assert not roomy.gradient_checkpointing and "fits" in roomy.reasons["gradient_checkpointing"]
    assert tight.gradient_checkpointing and "does not fit" in tight.reasons["gradient_checkpointing"]
    assert not speed.plan(cfg, cuda=False, **machine).gradient_checkpointing
    assert speed.plan(TrainConfig(gradient_checkpointing=True), cuda=False, **machine).gradient_checkpointing


def test_compiled_kernels_are_kept_under_lab_home_unless_the_environment_says_otherwise(home, monkeypatch):
    monkeypatch.delenv("TRITON_CACHE_DIR", raising=False)
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    env = home.kernel_cache_env()
    assert env["TRITON_CACHE_DIR"] == str(home.root / "cache" / "triton")
    assert env["TORCHINDUCTOR_CACHE_DIR"] == str(home.root / "cache" / "inductor")
    monkeypatch.setenv("TRITON_CACHE_DIR", "/elsewhere/triton")
    assert home.kernel_cache_env()["TRITON_CACHE_DIR"] == "/elsewhere/triton"


def test_fused_lora_plan_is_on_for_adapters_only():
    lora = speed.plan(TrainConfig(adapter="lora"), cuda=False, varlen=False, flash_attn=False, liger=False)
    full = speed.plan(TrainConfig(objective="sft"), cuda=False, varlen=False, flash_attn=False, liger=False)
    off = speed.plan(TrainConfig(adapter="lora", fused_lora="off"), cuda=False, varlen=False, flash_attn=False,
                     liger=False)
    assert (lora.fused_lora, full.fused_lora, off.fused_lora) == (True, False, False)
    assert "full fine-tune" in full.reasons["fused_lora"]


def test_fused_lora_forward_gives_peft_s_loss_and_gradients_with_dropout(tiny_home):
    """The same seed gives the same dropout masks, so the fused forward must give PEFT's loss and adapter
    gradients exactly (to float rounding); DoRA and disabled adapters go through PEFT's own forward."""
    import torch
    from peft import LoraConfig, get_peft_model

    from lab.models import load_model

    def loss_and_grads(fused: bool, **lora):
        torch.manual_seed(0)
        model = get_peft_model(load_model(home=tiny_home), LoraConfig(r=4, lora_alpha=8, lora_dropout=0.2,
                                                                       target_modules="all-linear", **lora))
        with torch.no_grad():  # B starts at zero; make the adapter path count
            for name, param in model.named_parameters():
                if "lora_B" in name:
                    param.normal_(std=0.05)
        replaced = fuse_lora(model) if fused else 0
        model.train()
        ids = torch.randint(5, 200, (2, 12), generator=torch.Generator().manual_seed(1))
        torch.manual_seed(2)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        with model.disable_adapter(), torch.no_grad():
            base = model(input_ids=ids, labels=ids).loss
        return loss, grads, base, replaced

    loss, grads, base, _ = loss_and_grads(False)
    fused_loss, fused_grads, fused_base, replaced = loss_and_grads(True)
    assert backward_nodes(fused_loss)["LoraLinearBackward"] == replaced  # the fused layers ran, not PEFT's
    assert "LoraLinearBackward" not in backward_nodes(loss)
    assert replaced > 0 and grads.keys() == fused_grads.keys() and len(grads) == 2 * replaced
    torch.testing.assert_close(fused_loss, loss)
    torch.testing.assert_close(fused_base, base)
    assert fused_base != fused_loss  # the adapters change the output, disabled they do not
    for name in grads:
        torch.testing.assert_close(fused_grads[name], grads[name], atol=1e-6, rtol=1e-4)
    dora_loss, *_ = loss_and_grads(False, use_dora=True)
    fused_dora_loss, *_ = loss_and_grads(True, use_dora=True)
    torch.testing.assert_close(fused_dora_loss, dora_loss)


def backward_nodes(loss) -> dict[str, int]:
    """How many of each autograd node the loss's graph holds."""
    from collections import Counter

    seen, stack, names = set(), [loss.grad_fn], Counter()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names[type(node).__name__] += 1
        stack.extend(next_node for next_node, _ in node.next_functions)
    return names


def test_the_fused_lora_layer_s_backward_is_its_forward_s_gradient():
    """float64 gradcheck of x, A and B's gradients, with a frozen base weight and bias (no dropout: gradcheck runs
    the forward many times, and each would draw another mask)."""
    import torch

    from lab.train.fused_lora import LoraLinear

    torch.manual_seed(0)
    x = torch.randn(2, 3, 6, dtype=torch.float64, requires_grad=True)
    weight, bias = torch.randn(5, 6, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    a = torch.randn(2, 6, dtype=torch.float64, requires_grad=True)
    b = torch.randn(5, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, a, b: LoraLinear.apply(x, weight, bias, a, b, 1.5, 0.0), (x, a, b))
    expected = x @ weight.t() + bias + 1.5 * (x @ a.t()) @ b.t()
    torch.testing.assert_close(LoraLinear.apply(x, weight, bias, a, b, 1.5, 0.0), expected)


def test_the_fused_lora_layer_under_16_bit_autocast_matches_peft_to_16_bit_rounding(tiny_home):
    """As training runs it: a 16-bit base, fp32 adapters, bf16 autocast. PEFT casts the input to fp32 for dropout
    and autocast casts it back; the fused layer drops out in 16 bits. The masks are the same draws, so the loss and
    gradients agree to bf16's rounding."""
    import torch
    from peft import LoraConfig, get_peft_model

    from lab.models import load_model

    def loss_and_grads(fused: bool):
        torch.manual_seed(0)
        model = get_peft_model(load_model(home=tiny_home).to(torch.bfloat16),
                               LoraConfig(r=4, lora_alpha=8, lora_dropout=0.1, target_modules="all-linear"))
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "lora_" in name:
                    param.data = param.data.float()
                if "lora_B" in name:
                    param.normal_(std=0.05)
        fuse_lora(model) if fused else None
        model.train()
        ids = torch.randint(5, 200, (2, 12), generator=torch.Generator().manual_seed(1))
        torch.manual_seed(2)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        return loss, {n: p.grad for n, p in model.named_parameters() if p.grad is not None}

    loss, grads = loss_and_grads(False)
    fused_loss, fused_grads = loss_and_grads(True)
    assert "LoraLinearBackward" in backward_nodes(fused_loss)
    assert all(g.dtype == torch.float32 for g in fused_grads.values()) and grads.keys() == fused_grads.keys()
    torch.testing.assert_close(fused_loss, loss, atol=0.02, rtol=0.01)
    for name in grads:
        cosine = torch.nn.functional.cosine_similarity(grads[name].flatten(), fused_grads[name].flatten(), dim=0)
        assert cosine > 0.99, (name, cosine)


def test_rows_of_equal_full_length_attend_as_one_batch_with_the_same_result():
    """Examples all at the bound's length (truncated rows) take one batched causal SDPA call; the answer is the
    per-example one, grouped-query heads included, and uneven rows still go example by example."""
    import types

    import torch

    torch.manual_seed(0)
    module = types.SimpleNamespace(num_key_value_groups=2, is_causal=True)
    query, key, value = torch.randn(1, 4, 3 * 16, 8), torch.randn(1, 2, 48, 8), torch.randn(1, 2, 48, 8)
    even = torch.tensor([0, 16, 32, 48])
    batched, _ = speed.varlen_attention(module, query, key, value, None, scaling=0.2, cu_seq_lens_q=even,
                                        max_length_q=16)
    reference = speed._per_example_sdpa(query, key, value, even, 0.2)
    assert batched.shape == reference.shape == (1, 48, 4, 8)
    torch.testing.assert_close(batched, reference)
    uneven = torch.tensor([0, 10, 32, 48])  # 48 tokens, but not 3 × 16 each
    calls = []
    original = speed._equal_rows_sdpa
    speed._equal_rows_sdpa = lambda *a: calls.append(a) or original(*a)
    try:
        out, _ = speed.varlen_attention(module, query, key, value, None, scaling=0.2, cu_seq_lens_q=uneven,
                                        max_length_q=22)
    finally:
        speed._equal_rows_sdpa = original
    assert not calls
    torch.testing.assert_close(out, speed._per_example_sdpa(query, key, value, uneven, 0.2))


def test_half_activations_plan_applies_to_full_fine_tunes_under_autocast_only():
    machine = dict(varlen=False, flash_attn=False, liger=False)
    asked = speed.plan(TrainConfig(half_activations="on"), cuda=True, **machine)
    assert asked.half_activations and asked.reasons["half_activations"] == "set in the config"
    auto = speed.plan(TrainConfig(), cuda=True, **machine)
    assert auto.half_activations and "within noise" in auto.reasons["half_activations"]
    assert not speed.plan(TrainConfig(half_activations="off"), cuda=True, **machine).half_activations
    assert not speed.plan(TrainConfig(precision="fp32"), cuda=True, **machine).half_activations
    dpo = speed.plan(TrainConfig(objective="dpo", adapter="none"), cuda=True, **machine)
    assert not dpo.half_activations and "not shown to match" in dpo.reasons["half_activations"]
    assert speed.plan(TrainConfig(objective="dpo", adapter="none", half_activations="on"), cuda=True,
                      **machine).half_activations
    lora = speed.plan(TrainConfig(adapter="lora", half_activations="on"), cuda=True, **machine)
    assert not lora.half_activations and "16-bit base" in lora.reasons["half_activations"]
    cpu = speed.plan(TrainConfig(half_activations="on"), cuda=False, **machine)
    assert not cpu.half_activations and "fp32" in cpu.reasons["half_activations"]
    assert ("half_activations", "on", "set in the config") in asked.choices()


def test_half_activations_give_16_bit_hidden_states_and_fp32_weight_gradients(tiny_home):
    """Under autocast the decoder layers get 16-bit hidden states (in training and evaluation alike, so DPO's
    reference pass sees what training sees); the loss stays close to fp32 hidden states', every weight (the
    embeddings' too) still gets an fp32 gradient; without autocast nothing changes."""
    import torch

    from lab.models import load_model

    model = load_model(home=tiny_home)
    seen: list[torch.dtype] = []
    model.model.layers[0].register_forward_pre_hook(lambda m, args, kwargs: seen.append(args[0].dtype) if args
                                                    else seen.append(kwargs["hidden_states"].dtype), with_kwargs=True)
    ids = torch.randint(5, 200, (2, 31), generator=torch.Generator().manual_seed(1))

    def loss_and_grads():
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        return loss.detach().float(), {n: p.grad for n, p in model.named_parameters()}

    model.train()
    fp32_loss, _ = loss_and_grads()
    handle = speed.half_activations(model)
    half_loss, grads = loss_and_grads()
    assert seen == [torch.float32, torch.bfloat16]
    torch.testing.assert_close(half_loss, fp32_loss, rtol=2e-2, atol=0)
    assert all(g is not None and g.dtype == torch.float32 for g in grads.values())
    assert grads["model.embed_tokens.weight"].abs().sum() > 0
    model.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        model(input_ids=ids)
    assert seen[-1] == torch.bfloat16
    with torch.no_grad():
        model(input_ids=ids)
    assert seen[-1] == torch.float32
    assert getattr(model, speed.HALF_ACTIVATIONS)  # DPO's reference cache is keyed by it
    handle.remove()


def test_head_tile_is_larger_where_the_run_keeps_its_activations_and_the_estimate_counts_it(tiny_home, monkeypatch):
    from lab.train.estimate import memory, model_shape

    monkeypatch.setenv("LAB_HOME", str(tiny_home.root))
    machine = dict(varlen=False, flash_attn=False, liger=False)
    roomy = speed.plan(TrainConfig(), cuda=True, **machine)
    tight = speed.plan(TrainConfig(gradient_checkpointing="on"), cuda=True, **machine)
    assert (roomy.head_tile_tokens, tight.head_tile_tokens) == (speed.HEAD_TILE_TOKENS, speed.TRL_HEAD_TILE_TOKENS)
    assert "checkpointing is on" in tight.reasons["head_tile_tokens"]
    assert speed.plan(TrainConfig(), cuda=False, **machine).head_tile_tokens == speed.TRL_HEAD_TILE_TOKENS
    assert ("head_tile_tokens", "16,384", roomy.reasons["head_tile_tokens"]) in roomy.choices()
    # 8 x 2,048 tokens: the estimate counts the plan's tile, whose extra 12,288 tokens of the tiny model's
    # vocabulary are 16-bit
    # (two processes: SFT in one takes the early head, whose tile is its own, below)
    shape, cfg = model_shape("tiny"), TrainConfig(batch_size=8, max_length=2048)
    with monkeypatch.context() as patched:
        patched.setattr(speed, "head_tile_choice", lambda *_, **__: (speed.TRL_HEAD_TILE_TOKENS, "TRL's"))
        with_trl_tile = memory(cfg, shape, processes=2).activations
    assert memory(cfg, shape, processes=2).activations - with_trl_tile == (16384 - 4096) * min(shape.vocab, 32768) * 2
    # the early head in one process: a 4,096-token tile over the whole vocabulary and a 16-bit copy of the head
    # in place of the larger tile's 16-bit entries
    early = memory(cfg, shape).activations - memory(cfg, shape, processes=2).activations
    assert early == (4096 * shape.vocab + shape.vocab * shape.hidden - 16384 * min(shape.vocab, 32768)) * 2


def test_the_early_head_is_the_plan_s_choice_for_single_process_sft_on_a_gpu_only():
    machine = dict(varlen=False, flash_attn=False, liger=False)
    sft, dpo = TrainConfig(), TrainConfig(objective="dpo")
    assert speed.early_head_choice(sft, True, 1, False, trl_internals=True)[0]
    for cfg, cuda, processes, checkpointing, internals, why in (
            (dpo, True, 1, False, True, "weighs tokens unequally"), (sft, False, 1, False, True, "on a CPU"),
            (sft, True, 2, False, True, "more than one process"), (sft, True, 1, True, True, "memory is what counts"),
            (sft, True, 1, False, False, "other internals")):
        on, reason = speed.early_head_choice(cfg, cuda, processes, checkpointing, trl_internals=internals)
        assert not on and why in reason
    chosen = speed.plan(sft, cuda=True, **machine)
    assert chosen.early_head == speed.early_head_choice(sft, True, 1, False)[0]  # this TRL's internals
    assert ("early_head", "on" if chosen.early_head else "off", chosen.reasons["early_head"]) in chosen.choices()
    assert not speed.plan(sft, cuda=True, processes=2, **machine).early_head
    assert not speed.plan(TrainConfig(gradient_checkpointing="on"), cuda=True, **machine).early_head
    off = speed.plan(TrainConfig(early_head="off"), cuda=True, **machine)
    assert not off.early_head and off.reasons["early_head"].startswith("set in the config")


def test_head_tile_changes_trl_s_tiles_not_its_log_probabilities(monkeypatch):
    """TRL reads its tile size at every call, so setting it reaches the fused head; the log-probabilities and
    gradients are the same with 8-token tiles as with one tile."""
    import torch
    from trl.kernels import ChunkedLogProbFunction, chunked_logprob

    monkeypatch.setattr(chunked_logprob, "TOKEN_CHUNK_SIZE", chunked_logprob.TOKEN_CHUNK_SIZE)  # restored after
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(40, 16, generator=generator)
    weight = torch.randn(50, 16, generator=generator)
    targets = torch.randint(0, 50, (40,), generator=generator)

    def run(tile: int) -> tuple[torch.Tensor, ...]:
        speed.use_head_tile(tile)
        assert chunked_logprob.TOKEN_CHUNK_SIZE == tile
        h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
        log_probs = ChunkedLogProbFunction.apply(h, w, None, targets, 1.0, 32)[0]
        log_probs.sum().backward()
        return log_probs.detach(), h.grad, w.grad

    for one, many in zip(run(4096), run(8)):
        torch.testing.assert_close(one, many)


def test_accumulated_micro_batches_merge_as_far_as_the_gpu_holds_them_and_only_where_the_gradient_is_the_same(
        tiny_home, monkeypatch):
    from lab.train.estimate import GIB, memory, merged_note, model_shape

    monkeypatch.setenv("LAB_HOME", str(tiny_home.root))
    shape = model_shape("tiny")
    machine = dict(model_type="llama", varlen=True, flash_attn=False, liger=False, shape=shape)
    cfg = TrainConfig(batch_size=8, grad_accum=4, max_length=2048)
    roomy = speed.plan(cfg, cuda=True, gpu_bytes=80 * GIB, **machine)
    assert roomy.merged == 4 and "runs as 32 × 1" in roomy.reasons["merge_micro_batches"]
    assert roomy.batch_settings(8, 4) == {"batch_size": 32, "grad_accum": 1}
    assert "run as 32 × 1" in merged_note(roomy, cfg)  # the estimate's effective batch says how it runs
    # A GPU that holds 20 sequences but not 32: 8 × 4 runs as 16 × 2 (a merge divides grad_accum evenly).
    twenty = memory(TrainConfig(batch_size=20, max_length=2048), shape).total / 0.9
    middle = speed.plan(cfg, cuda=True, gpu_bytes=twenty, **machine)
    assert middle.merged == 2 and "runs as 16 × 2" in middle.reasons["merge_micro_batches"]
    assert not middle.gradient_checkpointing  # a merge never needs a memory saver the batch as set did not
    tight = speed.plan(TrainConfig(batch_size=16, grad_accum=2, max_length=2048), cuda=True, gpu_bytes=twenty,
                       **machine)
    assert tight.merged == 1 and "would not fit" in tight.reasons["merge_micro_batches"]
    for settings, words in [({"objective": "dpo", "adapter": "lora"}, "mean per micro-batch"),
                            ({"grad_accum": 1}, "one micro-batch a step already"),
                            ({"merge_micro_batches": "off"}, "set in the config"),
                            ({"padding_free": "off"}, "padded batches")]:
        other = speed.plan(from_dict(TrainConfig, {"grad_accum": 4, **settings}), cuda=True, gpu_bytes=80 * GIB,
                           **machine)
        assert other.merged == 1 and words in other.reasons["merge_micro_batches"], settings
    assert speed.plan(cfg, cuda=False, **machine).merged == 1
    unfit = speed.plan(cfg, cuda=True, gpu_bytes=80 * GIB, loss_counts_tokens=False, **machine)
    assert unfit.merged == 1 and "takes no token count" in unfit.reasons["merge_micro_batches"]


def test_merged_micro_batches_give_trl_s_accumulated_gradient(tiny_home):
    """What merging rests on: TRL's SFT loss over micro-batches of 1 accumulated 3 times, and over one micro-batch
    of 3, moves every weight the same (plain SGD, so the step is the gradient: Adam's first step would hide a
    scale). The examples differ in length and in scored tokens, so a mean per micro-batch would not match."""
    import tempfile
    from pathlib import Path

    import torch
    from datasets import Dataset
    from trl import SFTTrainer

    from lab.models import load_model, load_tokenizer
    from lab.train.convert import trainer_config

    tokenizer = load_tokenizer(home=tiny_home)
    third = [MULTI[0], {"role": "user", "content": "Name three primary colours, please."},
             {"role": "assistant", "content": "Red, yellow and blue are the traditional three."}]
    assert speed.loss_counts_tokens(load_model(home=tiny_home))

    def step(batch_size: int, grad_accum: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        model = load_model(home=tiny_home)
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        with tempfile.TemporaryDirectory() as out:
            cfg = TrainConfig(report_to="none", max_length=64, eval_split="none", batch_size=batch_size,
                              grad_accum=grad_accum, max_steps=1, learning_rate=1.0, warmup_ratio=0.0, max_grad_norm=0.0,
                              weight_decay=0.0, lr_scheduler="constant")
            args = trainer_config(cfg, Path(out))
            args.optim = "sgd"
            SFTTrainer(model=model, args=args, processing_class=tokenizer,
                       train_dataset=Dataset.from_list([{"messages": m} for m in (SINGLE, MULTI, third)]),
                       data_collator=speed.padding_free_collator(tokenizer, cfg.max_length)).train()
        return {n: p.detach() - before[n] for n, p in model.named_parameters()}

    accumulated, merged = step(1, 3), step(3, 1)
    assert any(d.abs().max() > 0 for d in merged.values())
    for name, delta in merged.items():
        torch.testing.assert_close(delta, accumulated[name], rtol=1e-4, atol=1e-6, msg=name)
