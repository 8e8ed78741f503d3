"""Fast batched decoding: a static KV cache, the one-token step replayed as a CUDA graph, and choosing and stopping
done on the device.

Decoding a small model one token at a time is bound by the host: transformers' ``generate`` spends about 10 ms
per step on Python and kernel launches for a 0.5B model whose weights the GPU reads in 0.3 ms (bench/
generation.py). Here the step is one graph replay plus a few kernels, and the host waits for the device only
every ``CHECK_EVERY`` tokens to see whether every row has finished. Attention reads the cache once per step
(:func:`decode_attention`), where transformers' SDPA path first copies every key/value head once per query head
it serves.

    ids = generate_static(model, input_ids, attention_mask, max_new_tokens=256, eos_token_id=2, pad_token_id=0)

The step (:meth:`Decoder.step`) reads and writes only buffers that live as long as its (batch, cache length)
shape: the token, the positions, the cache and a 4-D attention mask it builds on the device, so transformers'
mask-building code (which may ask the host about the mask) is skipped and nothing in it waits for the host. That
makes it capturable as it is, eagerly, into a CUDA graph (``mode="graph"``, the default): capturing costs a few
eager steps, where ``torch.compile(mode="reduce-overhead")`` (``mode="compile"``) spends about 30 s on the first
call of each shape for a somewhat faster step. ``mode="eager"`` runs the same step uncaptured; it is what a CPU
runs, and what decoding falls back to when a model cannot be captured or compiled.

Greedy decoding gives what ``model.generate(do_sample=False)`` gives (checked on the CPU against it, and on a GPU
for the captured step); sampling uses temperature and top-p like ``generate`` does.
"""

from __future__ import annotations

import inspect
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from lab.errors import LabError

log = logging.getLogger(__name__)
CHECK_EVERY = 32  # tokens between the host's checks for "every row has finished"
DECODE_ATTENTION = "lab_decode"  # the attention implementation registered below, used while decoding
MODES = ("graph", "compile", "eager")
MASKED_ATTENTION = ("sdpa", "eager")  # implementations that take the step's 4-D mask (boolean, or added to scores)
WARMUP_STEPS = 3  # eager steps on a side stream before capturing, as PyTorch's CUDA graph docs do
MAX_SHAPES = 8  # (batch, cache length) shapes whose cache and graph a model keeps; the oldest goes first


def generate_static(model: Any, input_ids: Any, attention_mask: Any, *, max_new_tokens: int, eos_token_id: int | None,
                    pad_token_id: int, temperature: float = 0.0, top_p: float = 1.0, mode: str = "graph") -> Any:
    """New token ids, shape (batch, at most ``max_new_tokens``), ``pad_token_id`` after a row's end of sequence.

    ``input_ids`` and ``attention_mask`` are a left-padded batch on the model's device; ``mode`` is one of
    ``MODES`` (off a CUDA device every mode runs eagerly)."""
    import torch

    if mode not in MODES:
        raise LabError(f"Unknown decoding mode '{mode}': choose one of {', '.join(MODES)}.")
    if reason := unsupported(model):
        raise LabError(f"The static decoder cannot answer for this model: {reason}. Use transformers' generate.")
    batch, prompt = input_ids.shape
    if input_ids.device.type != "cuda" or model.__dict__.get(f"_lab_{mode}_failed"):
        mode = "eager"
    # Positions past the prompt are "attended" from the start; the step's mask hides the ones not written yet.
    mask = torch.ones(batch, prompt + max_new_tokens, dtype=attention_mask.dtype, device=input_ids.device)
    mask[:, :prompt] = attention_mask
    positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad(), decoding_attention(model):
        decoder = decoder_for(model, batch, prompt + max_new_tokens, input_ids.device)
        decoder.cache.reset()
        logits = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, **decoder.cache_argument(),
                       cache_position=torch.arange(prompt, device=input_ids.device), use_cache=True,
                       logits_to_keep=1).logits[:, -1]
        decoder.start(mask, positions[:, -1:] + 1, prompt)
        step = decoder.stepper(model, mode)
        out = torch.full((batch, max_new_tokens), pad_token_id, dtype=torch.long, device=input_ids.device)
        finished = torch.zeros(batch, dtype=torch.bool, device=input_ids.device)
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
            decoder.token.copy_(token[:, None])
            try:
                logits = step()
            except Exception as err:  # a model that cannot be captured or compiled still decodes
                if mode == "eager":
                    raise
                log.warning("Decoding with the step %s failed (%s); decoding eagerly for this model from now on.",
                            "captured as a CUDA graph" if mode == "graph" else "compiled", first_line(err))
                model.__dict__[f"_lab_{mode}_failed"] = True
                mode, step = "eager", decoder.stepper(model, "eager")
                logits = step()
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


def unsupported(model: Any) -> str | None:
    """Why the static decoder cannot answer for this model, or None when it can. Its step builds one full-attention
    mask itself and its graph replays a cache that tracks its length on the device, so sliding-window (and other
    non-static) cache layers and attention implementations that take no 4-D mask (flash attention) are left to
    ``generate``."""
    from transformers import StaticCache
    from transformers.cache_utils import StaticLayer

    implementation = attention_implementation(model)
    if implementation not in MASKED_ATTENTION:
        return f"its attention implementation is '{implementation}' (the decoder handles {', '.join(MASKED_ATTENTION)})"
    layers = StaticCache(config=model.config, max_cache_len=2).layers  # lazily allocated: nothing on the device yet
    kinds = sorted({type(layer).__name__ for layer in layers if type(layer) is not StaticLayer})
    return f"it has cache layers of kind {', '.join(kinds)} (sliding-window or other non-static)" if kinds else None


class Decoder:
    """One (batch, cache length) shape: its static cache, the static inputs of the one-token step, and the step
    captured as a CUDA graph once a call in graph mode has needed it."""

    def __init__(self, model: Any, batch: int, length: int, device: Any) -> None:
        import torch
        from transformers import StaticCache

        self.cache = StaticCache(config=model.config, max_cache_len=length)
        # transformers 5 renamed the forward's past_key_values to cache (5.24 warns on the old name; 5.0 lacks the new)
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        self.cache_name = "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"
        self.token = torch.zeros(batch, 1, dtype=torch.long, device=device)
        self.position = torch.zeros(batch, 1, dtype=torch.long, device=device)  # each row's next position id
        self.cache_position = torch.zeros(1, dtype=torch.long, device=device)  # the cache slot the step writes
        self.keep = torch.zeros(batch, length, dtype=torch.bool, device=device)  # False on the prompt's padding
        self.kv_index = torch.arange(length, device=device)
        # Eager attention adds the mask to its scores; SDPA (and decode_attention) take it as booleans.
        self.additive = model.dtype if attention_implementation(model) == "eager" else None
        self.graph: Any = None
        self.logits: Any = None  # the captured step's output, rewritten by every replay

    def cache_argument(self) -> dict[str, Any]:
        return {self.cache_name: self.cache}

    def start(self, mask: Any, position: Any, cache_position: int) -> None:
        """Point the step at a prefilled batch: its padding ``mask``, next positions, and next cache slot."""
        self.keep.copy_(mask.bool())
        self.position.copy_(position)
        self.cache_position.fill_(cache_position)

    def step(self, forward: Any) -> Any:
        """The one-token step on the static inputs (what a graph captures): every row's logits for the token after
        ``self.token``, the cache written at ``self.cache_position``; positions move on by one. Keys after that slot
        (not written yet) and the prompt's padding are masked."""
        import torch

        visible = (self.keep & (self.kv_index <= self.cache_position))[:, None, None, :]
        if self.additive is not None:
            mask = torch.zeros(visible.shape, dtype=self.additive, device=visible.device)
            mask = mask.masked_fill(~visible, torch.finfo(self.additive).min)
        else:
            mask = visible
        logits = forward(input_ids=self.token, attention_mask=mask, position_ids=self.position,
                         cache_position=self.cache_position, use_cache=True, **self.cache_argument()).logits[:, -1]
        self.position.add_(1)
        self.cache_position.add_(1)
        return logits

    def stepper(self, model: Any, mode: str) -> Callable[[], Any]:
        """The step as ``mode`` runs it: replaying the captured graph (captured on first use), through the compiled
        forward, or eagerly."""
        if mode == "eager":
            return lambda: self.step(model)
        if mode == "compile":
            forward = compiled_step(model)
            return lambda: self.step(forward)

        def replay() -> Any:
            if self.graph is None:
                self.capture(model)
            self.graph.replay()
            return self.logits
        return replay

    def capture(self, model: Any) -> None:
        """Capture the step into a CUDA graph, after a few eager steps on a side stream (lazy initialisation must
        not happen during capture). Those steps move the positions and the cache's length on, and write slots
        the mask hides until real steps overwrite them, so the positions and lengths are put back afterwards."""
        import torch

        shared = decoders(model)
        if shared.stream is None:
            shared.stream, shared.pool = torch.cuda.Stream(), torch.cuda.graph_pool_handle()
        saved = [t.clone() for t in self.state()]
        shared.stream.wait_stream(torch.cuda.current_stream())
        try:
            with torch.cuda.stream(shared.stream):
                for _ in range(WARMUP_STEPS):
                    self.step(model)
                restore(self.state(), saved)
                graph = torch.cuda.CUDAGraph()
                # thread_local: other threads of the app may use the GPU while this one captures
                with torch.cuda.graph(graph, pool=shared.pool, stream=shared.stream, capture_error_mode="thread_local"):
                    logits = self.step(model)
        finally:
            torch.cuda.current_stream().wait_stream(shared.stream)
            restore(self.state(), saved)  # capturing runs nothing, but a warm-up step may have failed half-way
        self.graph, self.logits = graph, logits

    def state(self) -> list[Any]:
        """The tensors a step moves on: positions, the cache slot and each cache layer's length."""
        lengths = [layer.cumulative_length for layer in self.cache.layers if hasattr(layer, "cumulative_length")]
        return [self.position, self.cache_position, *lengths]


def restore(tensors: list[Any], saved: list[Any]) -> None:
    for tensor, value in zip(tensors, saved):
        tensor.copy_(value)


class Decoders:
    """A model's decoders by shape (at most ``MAX_SHAPES``), the weights they were captured against, and the CUDA
    graph memory pool and side stream their captures share. Sharing is safe because a call replays one graph and
    reads its output before the next replay: another graph's replay may overwrite memory a graph used, never
    while it is being read. Not for two threads decoding with one model at once (they would share buffers too)."""

    def __init__(self, weights: int) -> None:
        self.weights = weights
        self.shapes: OrderedDict[tuple[Any, ...], Decoder] = OrderedDict()
        self.pool: Any = None
        self.stream: Any = None


def decoders(model: Any) -> Decoders:
    """The model's decoders, emptied when its weights are no longer the tensors they were captured against (a
    graph reads weights at fixed addresses: in-place updates, as an optimizer makes, are seen; new tensors not)."""
    weights = hash(tuple(t.data_ptr() for t in (*model.parameters(), *model.buffers())))
    shared = model.__dict__.get("_lab_decoders")
    if shared is None or shared.weights != weights:
        shared = model.__dict__["_lab_decoders"] = Decoders(weights)
    return shared


def release(model: Any) -> None:
    """Free the model's decoders (their KV caches and graphs), e.g. before training, which needs that memory and
    changes the weights they would be re-captured for anyway."""
    model.__dict__.pop("_lab_decoders", None)


def decoder_for(model: Any, batch: int, length: int, device: Any) -> Decoder:
    """The decoder of this shape and attention implementation, kept on the model so its cache, buffers and graph
    are reused by the next call of the same shape."""
    shared = decoders(model)
    key = (batch, length, attention_implementation(model))
    if key in shared.shapes:
        shared.shapes.move_to_end(key)
    else:
        while len(shared.shapes) >= MAX_SHAPES:
            shared.shapes.popitem(last=False)
        shared.shapes[key] = Decoder(model, batch, length, device)
    return shared.shapes[key]


def attention_implementation(model: Any) -> str:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.config._attn_implementation


def first_line(err: Exception) -> str:
    return str(err).splitlines()[0] if str(err) else type(err).__name__


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
    guarded, with this implementation set, so switching back in between calls does not recompile it; a captured
    graph keeps the kernels it was captured with."""
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


def compiled_step(model: Any) -> Any:
    """The model's forward compiled once for decoding (CUDA graphs through "reduce-overhead")."""
    import torch

    if "_lab_compiled_step" not in model.__dict__:
        model.__dict__["_lab_compiled_step"] = torch.compile(model.__call__, mode="reduce-overhead")
    return model.__dict__["_lab_compiled_step"]
