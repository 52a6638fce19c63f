"""Any OpenAI-compatible chat-completions server (vLLM, SGLang, Ollama, llama.cpp server,
LM Studio, TGI, OpenAI) over httpx: bounded concurrency with threads, retries with
exponential backoff on 429 / 5xx / timeouts, images sent as data URLs.

The API key is read from the environment variable the user names; it is only ever put in
the Authorization header, never in a message or a log line.
"""

from __future__ import annotations

import base64
import io
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from ...utils import NegationClipError
from .base import ChatBackend, ChatRequest, ChatResult

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


def image_data_url(image) -> str:
    """A PIL image as a data URL: PNG for small images (no artefacts on thin shapes), JPEG
    (quality 90) for photos, which keeps COCO-sized requests around a tenth of the PNG size."""
    buf = io.BytesIO()
    if image.width * image.height <= 256 * 256:
        image.save(buf, format="PNG")
        mime = "image/png"
    else:
        image.convert("RGB").save(buf, format="JPEG", quality=90)
        mime = "image/jpeg"
    return f"data:{mime};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


class OpenAIChat(ChatBackend):
    name = "openai"

    def __init__(self, base_url: str, model: str, *, api_key_env: str = "OPENAI_API_KEY",
                 concurrency: int = 8, timeout: float = 60.0, max_retries: int = 4,
                 backoff: float = 0.5, max_backoff: float = 30.0,
                 max_consecutive_failures: int = 20, send_seed: bool = True):
        if concurrency < 1:
            raise NegationClipError("--concurrency must be >= 1")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_consecutive_failures = max_consecutive_failures
        self.send_seed = send_seed
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(api_key_env, "") if api_key_env else ""
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout), headers=headers,
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency))
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="openai")
        self._lock = threading.Lock()
        self._consecutive = 0
        self._last_error = ""
        self._fatal: str | None = None
        self.requests_sent = 0  # HTTP attempts, retries included
        self.retries = 0

    # --- one request with retries ---------------------------------------------------------
    def _payload(self, req: ChatRequest) -> dict:
        msgs = [dict(m) for m in req.messages]
        if req.image is not None:
            last = msgs[-1]
            last["content"] = [{"type": "text", "text": last["content"]},
                               {"type": "image_url", "image_url": {"url": image_data_url(req.image)}}]
        body = {"model": self.model, "messages": msgs, "max_tokens": req.max_tokens,
                "temperature": req.temperature, "top_p": req.top_p}
        if self.send_seed:
            body["seed"] = req.seed
        return body

    def _note(self, ok: bool, error: str = "") -> None:
        with self._lock:
            if ok:
                self._consecutive = 0
            else:
                self._consecutive += 1
                self._last_error = error
                if self._consecutive >= self.max_consecutive_failures and self._fatal is None:
                    self._fatal = (f"{self.base_url}: {self._consecutive} consecutive requests "
                                   f"failed (last: {error}); is the server up and serving "
                                   f"model {self.model!r}?")

    def _one(self, req: ChatRequest) -> ChatResult:
        if self._fatal:
            return ChatResult(None, "server dead")
        url = f"{self.base_url}/chat/completions"
        body = self._payload(req)
        error = ""
        for attempt in range(self.max_retries + 1):
            if self._fatal:
                return ChatResult(None, "server dead")
            if attempt:
                with self._lock:
                    self.retries += 1
            retry_after = None
            try:
                with self._lock:
                    self.requests_sent += 1
                r = self._client.post(url, json=body)
            except httpx.TimeoutException:
                error = "timeout"
            except httpx.TransportError as e:
                error = f"connection error ({type(e).__name__})"
            else:
                if r.status_code == 200:
                    try:
                        text = r.json()["choices"][0]["message"]["content"]
                    except (ValueError, KeyError, IndexError, TypeError):
                        self._note(True)  # the server is alive, the answer is unusable
                        return ChatResult(None, "malformed response")
                    self._note(True)
                    return ChatResult(text if isinstance(text, str) else None,
                                      None if isinstance(text, str) else "no text in response")
                if r.status_code in (401, 403):
                    with self._lock:
                        self._fatal = (f"{self.base_url}: HTTP {r.status_code} (authentication "
                                       f"refused; set the API key in ${self.api_key_env})")
                    return ChatResult(None, f"HTTP {r.status_code}")
                error = f"HTTP {r.status_code}"
                if r.status_code not in RETRY_STATUS:
                    self._note(False, error + " " + r.text[:200])
                    return ChatResult(None, error)
                ra = r.headers.get("retry-after")
                if ra:
                    try:
                        retry_after = float(ra)
                    except ValueError:
                        retry_after = None
            if attempt < self.max_retries:
                delay = min(self.max_backoff, self.backoff * (2 ** attempt))
                delay = delay * (0.5 + random.random() / 2)
                if retry_after is not None:
                    delay = min(self.max_backoff, max(delay, retry_after))
                time.sleep(delay)
        self._note(False, error)
        return ChatResult(None, error)

    def chat(self, requests: list[ChatRequest]) -> list[ChatResult]:
        if self._fatal:
            raise NegationClipError(self._fatal)
        if self.concurrency == 1 or len(requests) <= 1:
            results = [self._one(r) for r in requests]
        else:
            results = list(self._pool.map(self._one, requests))
        if self._fatal:
            raise NegationClipError(self._fatal)
        return results

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._client.close()
