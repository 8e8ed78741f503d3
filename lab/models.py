"""Models and tokenizers: any hub id or local path, and the built-in offline tiny model.

The tiny model (``"tiny"``) is a Llama of a few million parameters with a byte-level BPE
tokenizer trained here on the bundled sample data, and a ChatML chat template whose assistant
replies are wrapped in ``{% generation %}`` so TRL's ``assistant_only_loss`` masks exactly them.
It is built on first use (seconds) under ``LAB_HOME/models/tiny-llama`` and used by the tests
and the demo; nothing is downloaded.
"""

from __future__ import annotations

import fcntl
import functools
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from lab import adapters
from lab.errors import LabError
from lab.home import Home, lab_home

log = logging.getLogger(__name__)
TINY_MODEL = "tiny"
TINY_DIR = "tiny-llama"
TINY_VERSION = 2  # bump when the recipe below changes, so cached copies are rebuilt (2: tool calls in the template)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# ChatML, with tool calls written the way Qwen2.5's template writes them: the functions (``tools=``) listed in the
# system turn, each call as <tool_call>{"name": …, "arguments": {…}}</tool_call> in the assistant's turn, and the
# results of consecutive tool turns in one user turn as <tool_response> blocks. The assistant's turns (its calls
# included) are wrapped in {% generation %}, so TRL's assistant-only loss trains on the calls and replies, never on
# the tool results.
TOOLS_PREAMBLE = ("# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided "
                  "with function signatures within <tools></tools> XML tags:\\n<tools>")
TOOLS_FORMAT = ("\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments "
                "within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\"name\": <function-name>, \"arguments\": "
                "<args-json-object>}\\n</tool_call>")
CHATML = (
    "{%- if tools %}"
    "{{- '<|im_start|>system\\n' }}"
    "{%- if messages[0]['role'] == 'system' %}{{- messages[0]['content'] + '\\n\\n' }}{%- endif %}"
    "{{- '" + TOOLS_PREAMBLE + "' }}"
    "{%- for tool in tools %}{{- '\\n' }}{{- tool | tojson }}{%- endfor %}"
    "{{- '" + TOOLS_FORMAT + "<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}{% generation %}{{- message['content'] }}"
    "{%- if message['tool_calls'] is defined and message['tool_calls'] %}"
    "{%- for call in message['tool_calls'] %}"
    "{%- if call['function'] is defined %}{%- set call = call['function'] %}{%- endif %}"
    "{%- if message['content'] or not loop.first %}{{- '\\n' }}{%- endif %}"
    "{{- '<tool_call>\\n{\"name\": \"' + call['name'] + '\", \"arguments\": ' }}"
    "{%- if call['arguments'] is string %}{{- call['arguments'] }}{%- else %}{{- call['arguments'] | tojson }}{%- endif %}"
    "{{- '}\\n</tool_call>' }}"
    "{%- endfor %}"
    "{%- endif %}"
    "{{- '<|im_end|>' }}{% endgeneration %}{{- '\\n' }}"
    "{%- elif message['role'] == 'tool' %}"
    "{%- if loop.first or messages[loop.index0 - 1]['role'] != 'tool' %}{{- '<|im_start|>user' }}{%- endif %}"
    "{{- '\\n<tool_response>\\n' + message['content'] + '\\n</tool_response>' }}"
    "{%- if loop.last or messages[loop.index0 + 1]['role'] != 'tool' %}{{- '<|im_end|>\\n' }}{%- endif %}"
    "{%- elif not (loop.first and tools and message['role'] == 'system') %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
# Alpaca-style prompts: the system text on top, then Instruction/Response blocks; eos after each reply.
ALPACA = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'system' %}{{- message['content'] + '\\n\\n' }}"
    "{%- elif message['role'] == 'user' %}{{- '### Instruction:\\n' + message['content'] + '\\n\\n### Response:\\n' }}"
    "{%- else %}{% generation %}{{- message['content'] + eos_token }}{% endgeneration %}{{- '\\n\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
)
CHAT_TEMPLATES = {"chatml": CHATML, "alpaca": ALPACA}


def template_has_generation_markers(template: str | None) -> bool:
    return bool(template) and "{% generation %}" in template.replace("{%-", "{%").replace("-%}", "%}")


# --------------------------------------------------------------------------- the tiny model


def tiny_model_path(home: Home | None = None) -> Path:
    """The built-in tiny model's folder, built on first use. Concurrent callers (tests, the app and a
    training worker) wait on a file lock; the folder appears whole or not at all."""
    home = home or lab_home()
    target = home.models / TINY_DIR
    if is_current(target):
        return target
    home.models.mkdir(parents=True, exist_ok=True)
    with open(home.models / f".{TINY_DIR}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not is_current(target):
            staging = Path(tempfile.mkdtemp(prefix=f".{TINY_DIR}-", dir=home.models))
            try:
                build_tiny_model(staging)
                if target.exists():
                    shutil.rmtree(target)
                os.replace(staging, target)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
    return target


def is_current(path: Path) -> bool:
    info = path / "lab_model.json"
    return info.exists() and json.loads(info.read_text()).get("version") == TINY_VERSION


def tokenizer_corpus() -> list[str]:
    """Text the tiny tokenizer learns its merges from: the bundled samples (committed and deterministic)
    and a little general English, so unseen text still tokenises into sensible pieces."""
    from lab.data.samples import SAMPLE_PREFERENCE, SAMPLE_SFT

    texts = [GENERAL_ENGLISH]
    for path in (SAMPLE_SFT, SAMPLE_PREFERENCE):
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            for key in ("messages", "prompt", "chosen", "rejected"):
                texts += [m["content"] for m in row.get(key) or []]
    return texts


GENERAL_ENGLISH = (
    "The quick brown fox jumps over the lazy dog. A model learns from examples: questions and answers, "
    "instructions and responses, conversations between a user and an assistant. Numbers 0 1 2 3 4 5 6 7 8 9 10 "
    "100 1000. Please, thank you, sorry, hello, goodbye. What is the capital of France? Paris is the capital of "
    "France. How many meters are in a kilometer? There are 1000 meters in a kilometer. Write a short poem about "
    "the sea. Explain why the sky is blue. Translate this sentence. Summarise the text below in one line."
)


def build_tiny_model(out: Path) -> None:
    """Train the tokenizer and initialise the Llama with fixed seeds; a few seconds on a CPU."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=4096, min_frequency=2, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(tokenizer_corpus(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                        additional_special_tokens=["<|im_start|>"], model_max_length=2048)
    tokenizer.chat_template = CHATML
    tokenizer.save_pretrained(out)

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         tie_word_embeddings=True, bos_token_id=None,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id, max_new_tokens=64)
    model.save_pretrained(out)
    params = sum(p.numel() for p in model.parameters())
    (out / "lab_model.json").write_text(json.dumps({
        "name": TINY_MODEL, "version": TINY_VERSION, "architecture": "LlamaForCausalLM",
        "parameters": params, "vocab_size": len(tokenizer), "chat_template": "chatml (assistant marked for loss)",
        "note": "Built locally by the lab for offline tests and demos; randomly initialised.",
    }, indent=2))


# --------------------------------------------------------------------------- loading


def resolve(name_or_path: str, home: Home | None = None) -> str:
    """'tiny' → the built-in model's folder; anything else unchanged."""
    if name_or_path == TINY_MODEL:
        return str(tiny_model_path(home))
    return name_or_path


def hub_error(what: str, name: str, err: Exception) -> LabError:
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return LabError(f"Could not load the {what} '{name}': not a local folder, and the Hugging Face Hub could not "
                    f"provide it ({first}). Use a local path or the built-in 'tiny' model.")


@functools.lru_cache(maxsize=16)
def _load_tokenizer(path: str, template: str | None):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise hub_error("tokenizer", path, err) from None
    if template and template != "model":
        if template not in CHAT_TEMPLATES:
            raise LabError(f"Unknown chat template '{template}': choose model, {', '.join(CHAT_TEMPLATES)}.")
        tokenizer.chat_template = CHAT_TEMPLATES[template]
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_tokenizer(name_or_path: str = TINY_MODEL, *, template: str | None = None, home: Home | None = None):
    """A tokenizer by name ('tiny', local folder or hub id), optionally with one of ``CHAT_TEMPLATES``
    in place of its own. Cached per process: callers must not modify it."""
    return _load_tokenizer(resolve(name_or_path, home), template)


def load_model(name_or_path: str = TINY_MODEL, *, home: Home | None = None, dtype: Any = None, **kwargs: Any):
    """A causal LM by name ('tiny', local folder or hub id)."""
    from transformers import AutoModelForCausalLM

    path = resolve(name_or_path, home)
    try:
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **kwargs)
    except OSError as err:
        raise hub_error("model", path, err) from None


def load_for_generation(model_path: str, home: Home | None = None) -> tuple[Any, Any]:
    """Model and tokenizer ready to answer: a folder holding a LoRA adapter is loaded on top of its base;
    on a GPU the weights go there in bf16."""
    import torch

    path = resolve(model_path, home)
    tokenizer = load_tokenizer(path)
    cuda = torch.cuda.is_available()
    kwargs: dict[str, Any] = {"dtype": torch.bfloat16, "device_map": "cuda"} if cuda else {}
    # Merged: answers are the same and the fast decoder compiles one plain model (lab.decode).
    model = adapters.apply(load_model(adapters.base_of(path), **kwargs), path)
    return model.eval(), tokenizer


def generate(model_path: str, prompts: list[list[dict[str, str]]], *, max_new_tokens: int = 64,
             temperature: float = 0.0, seed: int = 0, home: Home | None = None) -> list[str]:
    """Replies to chat prompts, batched with left padding (greedy when temperature is 0)."""
    model, tokenizer = load_for_generation(model_path, home)
    return generate_with(model, tokenizer, prompts, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)


GPU_BATCH = 256  # prompts per generate call on a GPU; a static KV cache of 256 × (prompt + reply) fits easily
PROMPT_BUCKET = 64  # prompt lengths are padded to a multiple of this, so captured shapes repeat
FAST_GENERATION_ENV = "LAB_FAST_GENERATION"  # read here and by GRPO/RLOO's sampling (lab.train.objectives.grpo)
# Its values ("always" is GRPO's: its decoder on a CPU too; here it is the default)
FAST_GENERATION = {"1": "graph", "graph": "graph", "compile": "compile", "always": "graph", "0": None}


def generate_with(model, tokenizer, prompts: list[list[dict[str, str]]], *, max_new_tokens: int = 64,
                  temperature: float = 0.0, top_p: float = 1.0, seed: int = 0) -> list[str]:
    """``generate`` for a model already in memory (the worker's before/after samples use the model it trains).

    On a CPU: one left-padded batch through transformers' ``generate``. On a CUDA GPU: prompts sorted by length,
    in batches of up to ``GPU_BATCH``, through ``lab.decode.generate_static`` (a static KV cache and the one-token
    step replayed as a CUDA graph; about 20× ``generate`` on a 0.5B model, see docs/benchmarks.md). Batch sizes
    (powers of two) and prompt lengths (multiples of ``PROMPT_BUCKET``) are bucketed so a captured shape is reused.
    ``LAB_FAST_GENERATION`` (:func:`fast_generation`) chooses the GPU path; models the static decoder cannot run
    (``lab.decode.unsupported``: sliding-window attention, flash attention) take ``generate``."""
    import torch

    from lab.decode import unsupported

    was_training = model.training
    model.eval()
    torch.manual_seed(seed)
    texts = chat_texts(tokenizer, prompts)
    try:
        mode = fast_generation() if model.device.type == "cuda" else None
        if mode and (reason := unsupported(model)):
            log.info("Generating through transformers' generate: %s.", reason)
            mode = None
        if mode is None:
            batch = left_padded(tokenizer, texts, model.device)
            with torch.no_grad():
                out = model.generate(**batch, **generate_kwargs(tokenizer, max_new_tokens=max_new_tokens,
                                                                temperature=temperature, top_p=top_p))
            return [tokenizer.decode(row[batch["input_ids"].shape[1]:], skip_special_tokens=True).strip()
                    for row in out]
        return fast_replies(model, tokenizer, texts, max_new_tokens=max_new_tokens, temperature=temperature,
                            top_p=top_p, mode=mode)
    finally:
        model.train(was_training)


def fast_generation() -> str | None:
    """The GPU decoding path ``LAB_FAST_GENERATION`` asks for: "1" or "graph" (the default) replays the step as a
    CUDA graph, captured in a few eager steps per shape; "compile" compiles it with torch.compile (about 30 s per
    shape on the first call, then a faster step: worth it only for long jobs in one process, see
    docs/benchmarks.md); "0" uses transformers' ``generate``."""
    value = os.environ.get(FAST_GENERATION_ENV, "1").strip().lower()
    if value not in FAST_GENERATION:
        raise LabError(f"LAB_FAST_GENERATION is '{value}': set it to 1 or graph (the default), compile, or 0 "
                       "(the fast path off).")
    return FAST_GENERATION[value]


def chat_texts(tokenizer, prompts: list[list[dict[str, str]]]) -> list[str]:
    """Chat prompts as the model sees them: rendered by the tokenizer's template, the assistant's turn opened."""
    return [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]


def generate_kwargs(tokenizer, *, max_new_tokens: int, temperature: float, top_p: float) -> dict[str, Any]:
    """transformers ``generate`` arguments: greedy at temperature 0, else sampling with nucleus ``top_p``."""
    sample = temperature > 0
    return dict(max_new_tokens=max_new_tokens, do_sample=sample, temperature=temperature or None,
                top_p=top_p if sample else None, pad_token_id=tokenizer.pad_token_id)


def fast_replies(model, tokenizer, texts: list[str], *, max_new_tokens: int, temperature: float, top_p: float,
                 mode: str = "graph") -> list[str]:
    """Replies to rendered prompts through ``lab.decode.generate_static`` in ``mode``: sorted by length, in batches
    of ``bucket_size`` rows (the last prompt of a short batch repeated, its copies' replies thrown away) padded
    on the left to a multiple of ``PROMPT_BUCKET`` tokens, so a few shapes serve every call."""
    from lab.decode import generate_static

    lengths = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: lengths[i])
    answers: list[str] = [""] * len(texts)
    for start in range(0, len(order), GPU_BATCH):
        chunk = order[start:start + GPU_BATCH]
        padded = chunk + [chunk[-1]] * (bucket_size(len(chunk)) - len(chunk))
        batch = left_padded(tokenizer, [texts[i] for i in padded], model.device, pad_to=PROMPT_BUCKET)
        ids = generate_static(model, batch["input_ids"], batch["attention_mask"], max_new_tokens=max_new_tokens,
                              eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                              temperature=temperature, top_p=top_p, mode=mode)
        for i, row in zip(chunk, ids):
            answers[i] = tokenizer.decode(row, skip_special_tokens=True).strip()
    return answers


def bucket_size(n: int) -> int:
    """The next power of two (at most ``GPU_BATCH``): the batch sizes the decoder sees."""
    return min(GPU_BATCH, 1 << max(0, n - 1).bit_length())


def left_padded(tokenizer, texts: list[str], device: Any, pad_to: int | None = None):
    """A batch padded on the left, as generation needs (asked per call: the cached tokenizer is shared)."""
    return tokenizer(texts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False,
                     pad_to_multiple_of=pad_to).to(device)
