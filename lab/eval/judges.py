"""Who judges, and the verdict cache.

A **local judge** is any model the lab loads. It is not asked to write: its reply is forced to begin with
``LOCAL_PREFIX`` ("My final verdict: [[") and each possible verdict ("A]]", "B]]", "C]]", or "1]]" … "10]]") is
scored by its log-probability there; the most probable one is the verdict. So even a weak model that would
ramble gives a verdict, with the probabilities beside it.

An **endpoint judge** is an OpenAI-compatible chat-completions API. Its address and key come from the
environment only (``LAB_JUDGE_BASE_URL`` or ``OPENAI_BASE_URL``, ``LAB_JUDGE_API_KEY`` or ``OPENAI_API_KEY``) and
are never written anywhere: not to the store, the job config, the results, the cache or the log. Its reply is
parsed for ``[[A]]``/``[[B]]``/``[[C]]`` or ``[[7]]``; a reply without one counts as unparsed.

Verdicts are cached under ``LAB_HOME/cache/judge``, keyed by the judge (model files, or the endpoint and
model name, hashed), the scoring method and the filled prompt (template, question, answers in the order shown).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from lab.errors import LabError
from lab.eval.config import ENDPOINT, JudgeConfig
from lab.eval.judge_prompts import LOCAL_PREFIX, VERDICTS, parse_verdict
from lab.home import Home

OPENAI_URL = "https://api.openai.com/v1"
BASE_URL_VARS = ("LAB_JUDGE_BASE_URL", "OPENAI_BASE_URL")
KEY_VARS = ("LAB_JUDGE_API_KEY", "OPENAI_API_KEY")
ENDPOINT_THREADS = 4  # requests in flight at once: APIs answer one at a time slowly, and limit bursts
RETRIES = 3
Progress = Callable[[int, int], None]


def first_env(names: tuple[str, ...]) -> str | None:
    return next((os.environ[n] for n in names if os.environ.get(n)), None)


def endpoint_status() -> str:
    """Whether an endpoint judge is configured, for the UI and CLI: names of variables, never their values."""
    base = next((n for n in BASE_URL_VARS if os.environ.get(n)), None)
    key = next((n for n in KEY_VARS if os.environ.get(n)), None)
    if not base and not key:
        return "not configured (set LAB_JUDGE_BASE_URL and LAB_JUDGE_API_KEY before starting the lab)"
    where = f"address from {base}" if base else "OpenAI's API (no LAB_JUDGE_BASE_URL set)"
    return f"{where}, " + (f"key from {key}" if key else "no key")


class LocalJudge:
    def __init__(self, model_ref: str, home: Home):
        from lab.train.loading import resolve_model_path

        self.path, self.home = resolve_model_path(model_ref, home), home
        self.name = model_ref
        self.identity = f"local:{self.path}:{weights_fingerprint(Path(self.path))}"
        self.loaded: tuple[Any, Any] | None = None  # loaded on the first verdict not in the cache

    def load(self) -> tuple[Any, Any]:
        from lab.models import load_for_generation

        if self.loaded is None:
            self.loaded = load_for_generation(self.path, self.home)
        return self.loaded

    def method(self, mode: str) -> str:
        return f"next-token:{LOCAL_PREFIX[mode]}:{','.join(VERDICTS[mode])}"

    def verdicts(self, prompts: list[str], mode: str, progress: Progress | None = None) -> list[dict[str, Any]]:
        choices = VERDICTS[mode]
        out = []
        for i, prompt in enumerate(prompts):
            logps = self.choice_logprobs(self.context(prompt, mode), [c + "]]" for c in choices])
            top = max(logps)
            weights = [math.exp(lp - top) for lp in logps]
            probs = {c: round(w / sum(weights), 4) for c, w in zip(choices, weights)}
            best = max(choices, key=probs.__getitem__)
            verdict: str | int = int(best) if mode == "single" else best
            record: dict[str, Any] = {"verdict": verdict, "probs": probs}
            if mode == "single":  # the probability-weighted grade, finer than the most probable one
                record["expected"] = round(sum(int(c) * p for c, p in probs.items()), 3)
            out.append(record)
            if progress:
                progress(i + 1, len(prompts))
        return out

    def context(self, prompt: str, mode: str) -> str:
        tokenizer = self.load()[1]
        if tokenizer.chat_template:
            text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                      add_generation_prompt=True)
        else:
            text = prompt + "\n\n"
        return text + LOCAL_PREFIX[mode]

    def choice_logprobs(self, context: str, continuations: list[str]) -> list[float]:
        """Log-probability of each continuation after ``context``: one padded batch, one forward pass."""
        import torch

        model, tok = self.load()
        ctx = tok(context, add_special_tokens=not tok.chat_template)["input_ids"]
        tails = [tok(c, add_special_tokens=False)["input_ids"] for c in continuations]
        rows = [ctx + t for t in tails]
        width = max(map(len, rows))
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        device = next(model.parameters()).device
        ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=device)
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=device)
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
        return [sum(logp[i, len(ctx) - 1 + j, t].item() for j, t in enumerate(tail)) for i, tail in enumerate(tails)]


def weights_fingerprint(folder: Path) -> str:
    """Names, sizes and times of a model folder's weight files: a retrained model in the same folder is another
    judge. A hub id (no folder) is its own name."""
    if not folder.is_dir():
        return ""
    files = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".pt"))
    return hashlib.sha256(json.dumps([(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files])
                          .encode()).hexdigest()[:16]


class NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an error: urllib would re-send the request, Authorization header and all, to another host and
    take that host's answer for the judge's."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> None:
        return None


NO_REDIRECTS = urllib.request.build_opener(NoRedirect)


class EndpointJudge:
    def __init__(self, model_name: str, max_tokens: int):
        base = first_env(BASE_URL_VARS)
        self._key = first_env(KEY_VARS)
        if not base and not self._key:
            raise LabError("The endpoint judge needs LAB_JUDGE_BASE_URL (or OPENAI_BASE_URL) and, for most APIs, "
                           "LAB_JUDGE_API_KEY (or OPENAI_API_KEY) in the environment of the lab; set them and "
                           "start the lab again.")
        if base and not base.startswith(("http://", "https://")):  # urllib would quote it in its error
            raise LabError("LAB_JUDGE_BASE_URL (or OPENAI_BASE_URL) must start with http:// or https://, e.g. "
                           "https://api.openai.com/v1.")
        self._url = (base or OPENAI_URL).rstrip("/") + "/chat/completions"
        self.model_name, self.max_tokens = model_name, max_tokens
        self.name = f"{ENDPOINT}:{model_name}"
        # The address is part of the cache key only as a hash: a verdict of one API is not another's.
        self.identity = f"{ENDPOINT}:{hashlib.sha256(self._url.encode()).hexdigest()[:16]}:{model_name}"

    def method(self, mode: str) -> str:
        return f"chat:temperature=0:max_tokens={self.max_tokens}"

    def verdicts(self, prompts: list[str], mode: str, progress: Progress | None = None) -> list[dict[str, Any]]:
        out = []
        with ThreadPoolExecutor(ENDPOINT_THREADS) as pool:
            for reply in pool.map(self.ask, prompts):  # in order, so progress is reported from this thread
                out.append({"verdict": parse_verdict(reply, mode), "reply": reply})
                if progress:
                    progress(len(out), len(prompts))
        return out

    def ask(self, prompt: str) -> str:
        body = json.dumps({"model": self.model_name, "messages": [{"role": "user", "content": prompt}],
                           "temperature": 0, "max_tokens": self.max_tokens}).encode()
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        for attempt in range(RETRIES + 1):
            request = urllib.request.Request(self._url, data=body, headers=headers, method="POST")
            try:
                with NO_REDIRECTS.open(request, timeout=120) as response:
                    return json.load(response)["choices"][0]["message"]["content"] or ""
            except urllib.error.HTTPError as err:
                detail = self.scrub(err.read().decode(errors="replace")[:300])
                if err.code in (429, 500, 502, 503, 504) and attempt < RETRIES:
                    time.sleep(2 ** attempt)
                    continue
                if 300 <= err.code < 400:
                    raise LabError(f"The judge endpoint answered HTTP {err.code}, a redirect, which the lab does "
                                   "not follow (the key would go with it, to wherever it points): set "
                                   "LAB_JUDGE_BASE_URL to the address it redirects to.") from None
                raise LabError(f"The judge endpoint answered HTTP {err.code} for model '{self.model_name}': "
                               f"{detail or err.reason}. Check LAB_JUDGE_BASE_URL, the key and the model "
                               "name.") from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
                if attempt < RETRIES:
                    time.sleep(2 ** attempt)
                    continue
                reason = self.scrub(str(getattr(err, "reason", err)))
                raise LabError(f"The judge endpoint could not be reached ({reason}); check "
                               "LAB_JUDGE_BASE_URL.") from None
            except (KeyError, IndexError, TypeError, ValueError):
                raise LabError(f"The judge endpoint's reply is not an OpenAI chat completion (model "
                               f"'{self.model_name}'); check LAB_JUDGE_BASE_URL points at .../v1.") from None
            except OSError as err:  # anything else on the wire: its text could hold the address
                raise LabError(f"The judge endpoint request failed ({type(err).__name__}); check "
                               "LAB_JUDGE_BASE_URL.") from None
        raise AssertionError("unreachable")

    def scrub(self, text: str) -> str:
        """An API may quote the key or the address back in an error: neither goes into a message."""
        for secret in (self._key, self._url.removesuffix("/chat/completions")):
            if secret:
                text = text.replace(secret, "***")
        return text


def open_judge(cfg: JudgeConfig, home: Home) -> LocalJudge | EndpointJudge:
    if cfg.judge == ENDPOINT:
        return EndpointJudge(cfg.endpoint_model, cfg.judge_max_tokens)
    return LocalJudge(cfg.judge, home)


class VerdictCache:
    """One small JSON file per verdict under ``LAB_HOME/cache/judge``; a disabled cache stores and finds nothing."""

    def __init__(self, home: Home, enabled: bool = True):
        self.folder = home.root / "cache" / "judge"
        self.enabled = enabled

    @staticmethod
    def key(judge: Any, mode: str, prompt: str) -> str:
        material = json.dumps([judge.identity, judge.method(mode), mode, prompt], ensure_ascii=False)
        return hashlib.sha256(material.encode()).hexdigest()

    def path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        path = self.path(key)
        if not self.enabled or not path.exists():
            return None
        return json.loads(path.read_text())

    def put(self, key: str, verdict: dict[str, Any]) -> None:
        if not self.enabled:
            return
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_suffix(f".{os.getpid()}.tmp")  # whole or absent, even with two jobs writing
        staging.write_text(json.dumps(verdict, ensure_ascii=False))
        os.replace(staging, path)
