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
import sys
import threading
import time
from collections.abc import Sequence
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


def split_urls(urls: str | Sequence[str]) -> list[str]:
    """``"http://a/v1,http://b/v1"`` or a list of them -> distinct base URLs, in order."""
    items = [urls] if isinstance(urls, str) else list(urls)
    out: list[str] = []
    for item in items:
        for u in str(item).split(","):
            u = u.strip().rstrip("/")
            if u and u not in out:
                out.append(u)
    if not out:
        raise NegationClipError("no server URL given (--api-base / --ROLE-url)")
    return out


class _Replica:
    """One server: its connection pool, requests in flight and its failure streak."""

    def __init__(self, url: str, headers: dict, concurrency: int, timeout: float):
        self.url = url
        self.client = httpx.Client(
            timeout=httpx.Timeout(timeout), headers=headers,
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency))
        self.in_flight = 0
        self.consecutive = 0
        self.dead: str | None = None
        self.sent = 0
        self.ok = 0


class OpenAIChat(ChatBackend):
    """One model served by one or several servers (vLLM replicas behind several URLs).

    Each request goes to the live replica with the fewest requests in flight (at most
    ``concurrency`` per replica; ties go round-robin). A failed attempt is retried on another
    replica when there is one, so a dead replica's work moves to the others; a replica that
    fails ``max_consecutive_failures`` requests in a row is dropped for the rest of the run,
    and the run stops only when every replica is dropped. Every request still returns exactly
    one result, so no work item is lost or answered twice.
    """

    name = "openai"

    def __init__(self, base_url: str | Sequence[str], model: str, *,
                 api_key_env: str = "OPENAI_API_KEY",
                 concurrency: int = 8, timeout: float = 60.0, max_retries: int = 4,
                 backoff: float = 0.5, max_backoff: float = 30.0,
                 max_consecutive_failures: int = 20, send_seed: bool = True):
        if concurrency < 1:
            raise NegationClipError("--concurrency must be >= 1")
        self.base_urls = split_urls(base_url)
        self.base_url = ",".join(self.base_urls)
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
        self.replicas = [_Replica(u, headers, concurrency, timeout) for u in self.base_urls]
        workers = concurrency * len(self.replicas)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="openai")
        self._lock = threading.Lock()
        self._free = threading.Condition(self._lock)
        self._turn = 0
        self._fatal: str | None = None
        self.requests_sent = 0  # HTTP attempts, retries included
        self.retries = 0
        self.failovers = 0  # attempts moved to another replica after a failure

    # --- replicas ---------------------------------------------------------------------
    def _acquire(self, avoid: "_Replica | None") -> "_Replica | None":
        """The live replica with a free slot and the fewest requests in flight (preferring
        one other than ``avoid``, the replica that just failed); waits for a free slot."""
        with self._free:
            while True:
                if self._fatal:
                    return None
                live = [r for r in self.replicas if r.dead is None]
                if not live:
                    return None
                free = [r for r in live if r.in_flight < self.concurrency]
                others = [r for r in free if r is not avoid]
                pick_from = others or free
                if pick_from:
                    n = len(self.replicas)
                    order = {id(r): (i - self._turn) % n for i, r in enumerate(self.replicas)}
                    r = min(pick_from, key=lambda r: (r.in_flight, order[id(r)]))
                    self._turn = (self.replicas.index(r) + 1) % n
                    r.in_flight += 1
                    r.sent += 1
                    self.requests_sent += 1
                    return r
                self._free.wait(0.5)

    def _release(self, r: "_Replica", ok: bool, error: str = "", count: bool = True) -> None:
        with self._free:
            r.in_flight -= 1
            if ok:
                r.consecutive = 0
                r.ok += 1
            elif count:
                r.consecutive += 1
                if r.consecutive >= self.max_consecutive_failures and r.dead is None:
                    r.dead = error
                    live = [x for x in self.replicas if x.dead is None]
                    if live:
                        print(f"warning: {r.url}: {r.consecutive} consecutive requests failed "
                              f"(last: {error}); its work goes to the {len(live)} other "
                              f"server(s)", file=sys.stderr, flush=True)
                    elif self._fatal is None:
                        which = (r.url if len(self.replicas) == 1
                                 else f"all {len(self.replicas)} servers ({self.base_url})")
                        self._fatal = (f"{which}: {r.consecutive} consecutive requests failed "
                                       f"(last: {error}); is the server up and serving "
                                       f"model {self.model!r}?")
            self._free.notify_all()

    def replica_stats(self) -> list[dict]:
        """Per server: attempts sent, answers received, whether it was dropped and why."""
        return [{"url": r.url, "sent": r.sent, "ok": r.ok, "dead": r.dead} for r in self.replicas]

    # --- one request with retries ---------------------------------------------------------
    def _payload(self, req: ChatRequest) -> dict:
        msgs = [dict(m) for m in req.messages]
        if req.image is not None:
            last = msgs[-1]
            parts = [{"type": "text", "text": last["content"]},
                     {"type": "image_url", "image_url": {"url": image_data_url(req.image)}}]
            last["content"] = parts[::-1] if req.image_first else parts
        body = {"model": self.model, "messages": msgs, "max_tokens": req.max_tokens,
                "temperature": req.temperature, "top_p": req.top_p}
        if self.send_seed:
            body["seed"] = req.seed
        return body

    def _one(self, req: ChatRequest) -> ChatResult:
        body = self._payload(req)
        error = ""
        last: _Replica | None = None
        for attempt in range(self.max_retries + 1):
            r = self._acquire(avoid=last)
            if r is None:
                return ChatResult(None, "server dead")
            if attempt:
                with self._lock:
                    self.retries += 1
                    if r is not last:
                        self.failovers += 1
            retry_after = None
            try:
                resp = r.client.post(f"{r.url}/chat/completions", json=body)
            except httpx.TimeoutException:
                error = "timeout"
            except httpx.TransportError as e:
                error = f"connection error ({type(e).__name__})"
            else:
                if resp.status_code == 200:
                    self._release(r, True)  # alive, whatever the answer is worth
                    try:
                        text = resp.json()["choices"][0]["message"]["content"]
                    except (ValueError, KeyError, IndexError, TypeError):
                        return ChatResult(None, "malformed response")
                    return ChatResult(text if isinstance(text, str) else None,
                                      None if isinstance(text, str) else "no text in response")
                if resp.status_code in (401, 403):
                    with self._free:
                        r.in_flight -= 1
                        self._fatal = (f"{r.url}: HTTP {resp.status_code} (authentication "
                                       f"refused; set the API key in ${self.api_key_env})")
                        self._free.notify_all()
                    return ChatResult(None, f"HTTP {resp.status_code}")
                error = f"HTTP {resp.status_code}"
                if resp.status_code not in RETRY_STATUS:
                    self._release(r, False, error + " " + resp.text[:200])
                    return ChatResult(None, error)
                ra = resp.headers.get("retry-after")
                if ra:
                    try:
                        retry_after = float(ra)
                    except ValueError:
                        retry_after = None
            # 429 says "alive, busy": it does not count towards dropping the replica unless
            # the request ends rate-limited; other failures (down, hung, 5xx) count each time.
            self._release(r, False, error,
                          count=error != "HTTP 429" or attempt == self.max_retries)
            last = r
            if attempt < self.max_retries:
                with self._lock:
                    elsewhere = any(x.dead is None and x is not r for x in self.replicas)
                delay = min(self.max_backoff, self.backoff * (2 ** attempt))
                delay = delay * (0.5 + random.random() / 2)
                if retry_after is not None:
                    delay = min(self.max_backoff, max(delay, retry_after))
                if elsewhere and error.startswith(("connection", "timeout")):
                    delay = 0.0  # another replica can take it now
                time.sleep(delay)
        return ChatResult(None, error)

    def chat(self, requests: list[ChatRequest]) -> list[ChatResult]:
        if self._fatal:
            raise NegationClipError(self._fatal)
        if len(requests) <= 1 or self._pool._max_workers == 1:
            results = [self._one(r) for r in requests]
        else:
            results = list(self._pool.map(self._one, requests))
        if self._fatal:
            raise NegationClipError(self._fatal)
        return results

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        for r in self.replicas:
            r.client.close()
