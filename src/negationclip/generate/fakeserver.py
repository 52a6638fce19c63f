"""A small OpenAI-compatible chat-completions server on loopback, for tests, benchmarks and
dry runs of a generation setup without a GPU: it answers like a (perfect or scripted) model,
with optional latency, and can be told to fail (429, 500, timeouts, garbage)."""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable


def _text_of(content) -> tuple[str, bool]:
    if isinstance(content, str):
        return content, False
    text = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return text, any(isinstance(p, dict) and p.get("type") == "image_url" for p in content)


def default_answer(body: dict) -> str:
    """What a cooperative model would say: deterministic, by role (read from the prompt)."""
    msgs = body.get("messages", [])
    system = next((m["content"] for m in msgs if m.get("role") == "system"), "")
    last, has_image = _text_of(msgs[-1]["content"]) if msgs else ("", False)
    if has_image or last.startswith("Is there"):
        return "No."
    if last == "Name a random object.":  # Rand-P1, the paper's prompt
        objects = ["Umbrella.", "Giraffe", "kite", "Toaster.", "surfboard"]
        return objects[int(body.get("seed") or 0) % len(objects)]
    # the released prompts (src/data_generation.py): a one-word proposal, as Llama 3 answers it
    if last.startswith("Name an object that is not mentioned in the caption"):
        return "Umbrella."
    m = re.match(r"^Add the absence of the (.*) to the caption '(.*)'\.$", last, flags=re.S)
    if m:
        return f"{m.group(2).strip().rstrip('.')} with no {m.group(1).strip().lower()}"
    if "numbered captions" in system:
        n = len([ln for ln in last.splitlines() if re.match(r"^\d+\.", ln)])
        return "\n".join(f"{i + 1}. umbrella" for i in range(n))
    if "NOT mentioned" in system:
        return "umbrella"
    m = re.search(r"Caption: (.*)\n(?:Absent object|Object): (.*)$", last, flags=re.S)
    if m:
        cap, obj = m.group(1).strip().rstrip("."), m.group(2).strip()
        if "says the object is present" in system:
            return f"{cap} with an {obj}."
        return f"{cap} without an {obj}."
    m = re.search(r"Caption: (.*)\nQuestion: (.*?)(?:\nAnswer: no)?$", last, flags=re.S)
    if m:
        from .grammar import p2_rewrite
        r = p2_rewrite(m.group(1).strip(), m.group(2).strip())
        if r is None:
            return "Sorry, I cannot rewrite this caption."
        return r[0] if "Answer: no" in last else r[1]
    return "I do not know."


class FakeOpenAIServer:
    """``with FakeOpenAIServer(latency=0.05) as srv: srv.url`` -> "http://127.0.0.1:PORT/v1".

    ``script``: a callable ``(n, body) -> None | ("status", code) | ("sleep", seconds) |
    ("text", answer)`` consulted for the n-th request (0-based) before the default answer.
    """

    def __init__(self, *, latency: float = 0.0, script: Callable | None = None,
                 answer: Callable[[dict], str] = default_answer):
        self.latency = latency
        self.script = script
        self.answer = answer
        self.count = 0
        self.statuses: Counter = Counter()
        self.auth_headers: list[str] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else 40 ms delayed-ACK stalls per request
            wbufsize = 1 << 16  # headers and body leave in one write

            def log_message(self, *a):  # quiet
                pass

            def _send(self, code: int, obj: dict) -> None:
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):  # noqa: N802
                n = int(self.headers.get("Content-Length", "0"))
                try:
                    body = json.loads(self.rfile.read(n) or b"{}")
                except json.JSONDecodeError:
                    body = {}
                with server._lock:
                    k = server.count
                    server.count += 1
                    server.auth_headers.append(self.headers.get("Authorization", ""))
                action = server.script(k, body) if server.script else None
                if server.latency:
                    time.sleep(server.latency)
                if action and action[0] == "sleep":
                    time.sleep(action[1])
                if action and action[0] == "status":
                    with server._lock:
                        server.statuses[action[1]] += 1
                    self._send(action[1], {"error": {"message": "scripted failure"}})
                    return
                text = action[1] if action and action[0] == "text" else server.answer(body)
                with server._lock:
                    server.statuses[200] += 1
                self._send(200, {"id": f"cmpl-{k}", "object": "chat.completion",
                                 "model": body.get("model", ""),
                                 "choices": [{"index": 0, "finish_reason": "stop",
                                              "message": {"role": "assistant", "content": text}}]})

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._httpd.request_queue_size = 128
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> "FakeOpenAIServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def main() -> None:
    """``python -m negationclip.generate.fakeserver [latency]``: serve until interrupted."""
    import sys

    lat = float(sys.argv[1]) if len(sys.argv) > 1 else 0.0
    with FakeOpenAIServer(latency=lat) as srv:
        print(srv.url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
