"""Fast batched decoding: a static KV cache, the one-token step compiled into CUDA graphs, and choosing and
stopping done on the device.

Decoding a small model one token at a time is bound by the host: transformers' ``generate`` spends about 10 ms
per step on Python and kernel launches for a 0.5B model whose weights the GPU reads in 0.3 ms (bench/
generation.py). Here the step is one graph replay plus a few kernels, and the host waits for the device only
every ``CHECK_EVERY`` tokens to see whether every row has finished. Attention reads the cache once per step
(:func:`decode_attention`), where transformers' compiled SDPA path first copies every key/value head once per
query head it serves.

    ids = generate_static(model, input_ids, attention_mask, max_new_tokens=256, eos_token_id=2, pad_token_id=0)

Greedy decoding gives what ``model.generate(do_sample=False)`` gives (checked on the CPU against it, where
nothing is compiled); sampling uses temperature and top-p like ``generate`` does.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger(__name__)
CHECK_EVERY = 32  # tokens between the host's checks for "every row has finished"
DECODE_ATTENTION = "lab_decode"  # the attention implementation registered below, used while decoding


def generate_static(model: Any, input_ids: Any, attention_mask: Any, *, max_new_tokens: int, eos_token_id: int | None,
                    pad_token_id: int, temperature: float = 0.0, top_p: float = 1.0, compile: bool = True) -> Any:
    """New token ids, shape (batch, at most ``max_new_tokens``), ``pad_token_id`` after a row's end of sequence.

    ``input_ids`` and ``attention_mask`` are a left-padded batch on the model's device."""
    import torch

    batch, prompt = input_ids.shape
    cache = static_cache(model, batch, prompt + max_new_tokens)
    # Positions past the prompt are "attended" from the start: causality already hides the future ones, and a
    # mask that never changes keeps the compiled step's inputs the same.
    mask = torch.ones(batch, prompt + max_new_tokens, dtype=attention_mask.dtype, device=input_ids.device)
    mask[:, :prompt] = attention_mask
    positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    step = compiled_step(model) if compile and not model.__dict__.get("_lab_compile_failed") else model
    with torch.no_grad(), decoding_attention(model):
        logits = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
                       cache_position=torch.arange(prompt, device=input_ids.device), use_cache=True,
                       logits_to_keep=1).logits[:, -1]
        out = torch.full((batch, max_new_tokens), pad_token_id, dtype=torch.long, device=input_ids.device)
        finished = torch.zeros(batch, dtype=torch.bool, device=input_ids.device)
        position = positions[:, -1:] + 1
        cache_position = torch.tensor([prompt], device=input_ids.device)
        for t in range(max_new_tokens):
            token = choose(logits, temperature, top_p)
            token = torch.where(finished, pad_token_id, token)
            out[:, t] = token
            if eos_token_id is not None:
                finished |= token == eos_token_id
                if (t + 1) % CHECK_EVERY == 0 and bool(finished.all()):
                    return out[:, :t + 1]
            if t + 1 == max_new_tokens:
                break
            inputs = dict(input_ids=token[:, None], attention_mask=mask, position_ids=position, past_key_values=cache,
                          cache_position=cache_position, use_cache=True)
            try:
                logits = step(**inputs).logits[:, -1]
            except Exception as err:  # noqa: BLE001 - a model torch.compile cannot take still decodes, uncompiled
                if step is model:
                    raise
                log.warning("Compiling the decoding step failed (%s); decoding uncompiled from now on.",
                            str(err).splitlines()[0] if str(err) else type(err).__name__)
                model.__dict__["_lab_compile_failed"] = True
                step = model
                logits = step(**inputs).logits[:, -1]
            position = position + 1
            cache_position = cache_position + 1
    return out


def choose(logits: Any, temperature: float, top_p: float) -> Any:
    """The next token of every row: the most likely one, or a sample at ``temperature`` from the smallest set of
    tokens holding ``top_p`` of the probability (as ``generate``'s TopPLogitsWarper keeps it)."""
    import torch

    if temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        outside = sorted_probs.cumsum(-1) - sorted_probs > top_p  # the most likely token always stays
        sorted_probs = sorted_probs.masked_fill(outside, 0)
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
    return torch.multinomial(probs, 1).squeeze(-1)


def decode_attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, dropout: float = 0.0,
                     scaling: float | None = None, is_causal: bool | None = None, **kwargs: Any) -> tuple[Any, None]:
    """SDPA, except for the one-token step of a grouped-query model: the query heads that share a key/value head
    become the rows of one attention call over that head, so the KV cache is read once. transformers' SDPA path
    (compiled, with a mask) repeats every key/value head for each of its query heads instead: at Qwen2.5-0.5B's
    14 query heads over 2 key/value heads that is 7 copies of the whole static cache per layer and step, most of
    the step's memory traffic at batch 256."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    batch, heads, length, dim = query.shape
    groups = heads // key.shape[1]
    plain = (length != 1 or groups == 1 or attention_mask is None or dropout
             or any(kwargs.get(k) is not None for k in ("softcap", "position_bias", "s_aux")))
    if plain:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    # The mask is (batch, 1, 1, keys), the same for every head, so it broadcasts over (batch, kv heads, groups, keys).
    packed = query.reshape(batch, key.shape[1], groups, dim)
    out = torch.nn.functional.scaled_dot_product_attention(packed, key, value, attn_mask=attention_mask, scale=scaling)
    return out.reshape(batch, heads, 1, value.shape[-1]).transpose(1, 2).contiguous(), None


@contextmanager
def decoding_attention(model: Any) -> Iterator[None]:
    """The model attends through :func:`decode_attention` inside the block when it uses SDPA (other
    implementations are left as they are), and through SDPA again afterwards. The compiled step is traced, and
    guarded, with this implementation set, so switching back in between calls does not recompile it."""
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if base.config._attn_implementation != "sdpa" or not hasattr(base, "set_attn_implementation"):
        yield
        return
    AttentionInterface.register(DECODE_ATTENTION, decode_attention)
    AttentionMaskInterface.register(DECODE_ATTENTION, sdpa_mask)
    base.set_attn_implementation(DECODE_ATTENTION)
    try:
        yield
    finally:
        base.set_attn_implementation("sdpa")


def static_cache(model: Any, batch: int, length: int) -> Any:
    """A zeroed static cache for this batch shape, kept on the model so the compiled step sees the same buffers
    every call (a new cache would be new graph inputs, and a recompile)."""
    from transformers import StaticCache

    caches = model.__dict__.setdefault("_lab_static_caches", {})
    key = (batch, length)
    if key not in caches:
        caches[key] = StaticCache(config=model.config, max_cache_len=length)
    else:
        caches[key].reset()
    return caches[key]


def compiled_step(model: Any) -> Any:
    """The model's forward compiled once for decoding (CUDA graphs through "reduce-overhead")."""
    import torch

    if "_lab_compiled_step" not in model.__dict__:
        model.__dict__["_lab_compiled_step"] = torch.compile(model.__call__, mode="reduce-overhead")
    return model.__dict__["_lab_compiled_step"]
