"""The memory estimate's line for GRPO/RLOO's sampling cache (lab.train.estimate.sampling_cache_bytes): the KV cache
the lab's decoder keeps on the model, against its formula, against TRL's generation batch, and against the bytes
of the StaticCache the decoder really allocates for the tiny model (on the CPU here; on a GPU in the gpu test,
under accelerate's autocast as the Trainer runs it)."""

from __future__ import annotations

import pytest

from lab.config import TrainConfig
from lab.train.estimate import layer_widths, memory, model_shape, sampling_cache_bytes

# Prompts kept within 168 − 8 = 160 tokens, padded to 192 (a multiple of 64), then 8 completion tokens.
SETTINGS = {"objective": "grpo", "batch_size": 4, "grad_accum": 2, "num_generations": 4, "max_length": 168,
            "max_completion_length": 8}
CACHE_LENGTH = 192 + 8


@pytest.fixture
def shape(tiny_home, monkeypatch):
    monkeypatch.setenv("LAB_HOME", str(tiny_home.root))
    return model_shape("tiny")


def test_the_line_is_the_formula_and_only_where_the_decoder_samples(shape, monkeypatch):
    _, _, kv_width = layer_widths(shape)
    lora = TrainConfig(**SETTINGS, adapter="lora")
    per_byte = 4 * 2 * CACHE_LENGTH * shape.layers * kv_width  # batch 4 × 2 accumulated; keys' or values' bytes
    assert memory(lora, shape).sampling_kv_cache == per_byte * (2 + 2)  # bf16 keys and values over a bf16 base
    assert memory(lora, shape, bf16=False).sampling_kv_cache == per_byte * (4 + 4)
    full = TrainConfig(**SETTINGS, adapter="none")
    assert memory(full, shape).sampling_kv_cache == per_byte * (4 + 2)  # fp32 keys, autocast's bf16 values
    assert memory(TrainConfig(**{**SETTINGS, "objective": "rloo"}, adapter="lora"), shape).sampling_kv_cache > 0
    assert memory(TrainConfig(**SETTINGS, adapter="lora", vllm="on"), shape).sampling_kv_cache == 0
    assert memory(TrainConfig(objective="sft"), shape).sampling_kv_cache == 0
    monkeypatch.setenv("LAB_FAST_GENERATION", "0")
    assert memory(lora, shape).sampling_kv_cache == 0
    assert "sampling_kv_cache" in memory(lora, shape).gib()  # a bar of its own in the Train tab's memory chart


def test_trl_samples_the_batch_the_line_counts(tmp_path):
    """TRL's generation batch per process is what the line multiplies by: batch_size × grad_accum."""
    from lab.train.convert import trainer_config

    for objective in ("grpo", "rloo"):
        args = trainer_config(TrainConfig(**{**SETTINGS, "objective": objective}, adapter="lora"), tmp_path)
        assert args.generation_batch_size == 4 * 2, objective


def decoder_cache(model, cfg: TrainConfig, device: str = "cpu"):
    """Sample a generation batch of prompts at the longest the lab lets them be through GRPO's own sampling, and
    return the bytes of the KV cache the decoder keeps on the model, and the keys' and values' dtypes."""
    import torch

    from lab.train.objectives.grpo import Sampling, sample_static

    batch, prompt = cfg.batch_size * cfg.grad_accum, cfg.max_length - cfg.max_completion_length
    ids = torch.randint(5, 200, (batch, prompt), generator=torch.Generator().manual_seed(0)).to(device)
    mask = torch.ones_like(ids)
    mask[0, :prompt // 2] = 0  # a left-padded shorter prompt, as TRL hands them
    sample_static(model, ids, mask, Sampling(temperature=1.0, top_p=1.0, max_new_tokens=cfg.max_completion_length,
                                             eos_token_ids=(), pad_token_id=0))
    (decoder,) = model.__dict__["_lab_decoders"].shapes.values()
    tensors = [t for layer in decoder.cache.layers for t in (layer.keys, layer.values)]
    assert all(t.shape[2] == CACHE_LENGTH for t in tensors)
    return sum(t.numel() * t.element_size() for t in tensors), (tensors[0].dtype, tensors[1].dtype)


def test_the_line_equals_the_static_cache_the_decoder_allocates(tiny_home, shape):
    """A LoRA run's base in bf16 (bf16 keys and values); a full fine-tune's fp32 masters under bf16 autocast (bf16
    values, fp32 keys: the rotary embedding is applied in the fp32 embeddings' dtype)."""
    import torch

    from lab.models import load_model

    lora = TrainConfig(**SETTINGS, adapter="lora")
    cached, dtypes = decoder_cache(load_model("tiny", home=tiny_home, dtype=torch.bfloat16), lora)
    assert dtypes == (torch.bfloat16, torch.bfloat16) and cached == memory(lora, shape).sampling_kv_cache
    full = TrainConfig(**SETTINGS, adapter="none")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cached, dtypes = decoder_cache(load_model("tiny", home=tiny_home), full)
    assert dtypes == (torch.float32, torch.bfloat16) and cached == memory(full, shape).sampling_kv_cache


@pytest.mark.gpu
def test_on_a_gpu_the_line_equals_the_memory_the_cache_takes(tiny_home, shape):
    """As the Trainer holds the model (accelerate's bf16 autocast around its forward): the cache's bytes and the
    allocator's growth while sampling a batch both match the line."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    from accelerate import Accelerator

    from lab.models import load_model

    for adapter, dtype, cached_as in (("lora", torch.bfloat16, (torch.bfloat16,) * 2),
                                      ("none", torch.float32, (torch.float32, torch.bfloat16))):
        cfg = TrainConfig(**SETTINGS, adapter=adapter)
        model = Accelerator(mixed_precision="bf16").prepare(load_model("tiny", home=tiny_home, dtype=dtype).cuda())
        expected = sampling_cache_bytes(cfg, shape)
        before = torch.cuda.memory_allocated()
        cached, dtypes = decoder_cache(model, cfg, "cuda")
        torch.cuda.synchronize()
        assert cached == expected and dtypes == cached_as, (adapter, dtypes)
        grown = torch.cuda.memory_allocated() - before  # the cache, the decoder's small buffers and its graph's pool
        assert expected <= grown <= 2 * expected + 2**24, (adapter, grown, expected)
