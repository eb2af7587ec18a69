"""A stub of an OpenAI-compatible ``chat/completions`` server on 127.0.0.1, for the descriptor tests.

``StubLLM(complete)`` answers ``POST /v1/chat/completions`` with ``complete(concept, n, call)``'s texts
as the API's ``choices`` (``concept`` is read from the prompt's last line, ``The {concept} is``). The
``mode`` switches to failures: ``"500"`` (the body echoes the request's Authorization header, as a
careless server might), ``"garbage"`` (not JSON), ``"no_choices"`` (JSON without ``choices``),
``"slow"`` (answers after ``delay_s``). With ``key`` set, a request without ``Bearer <key>`` gets 401.
Every request's parsed JSON body and headers are kept in :attr:`StubLLM.requests`.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Complete = Callable[[str, int, int], list[str]]
_LAST_LINE = re.compile(r"The (.*) is$")


def concept_of(body: dict) -> str:
    """The concept a request asks about (from the user message's last line)."""
    user = [m["content"] for m in body.get("messages", []) if m.get("role") == "user"]
    match = _LAST_LINE.search(user[-1].splitlines()[-1]) if user else None
    return match.group(1) if match else ""


def cycling(completions: list[str]) -> Complete:
    """A ``complete`` that cycles through ``completions`` (``{c}`` becomes the concept) over all calls."""
    state = {"i": 0}
    lock = threading.Lock()

    def complete(concept: str, n: int, call: int) -> list[str]:
        with lock:
            out = []
            for _ in range(n):
                out.append(completions[state["i"] % len(completions)].replace("{c}", concept))
                state["i"] += 1
            return out

    return complete


class StubLLM:
    """See the module docstring; use as a context manager."""

    def __init__(
        self,
        complete: Complete | None = None,
        *,
        key: str | None = None,
        mode: str = "ok",
        delay_s: float = 0.0,
    ) -> None:
        self.complete = complete or cycling([" brown.", " very gentle, and kind"])
        self.key = key
        self.mode = mode
        self.delay_s = delay_s
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, data = stub.answer(self.path, raw, {k.lower(): v for k, v in self.headers.items()})
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        """The base URL (``http://127.0.0.1:PORT/v1``)."""
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def answer(self, path: str, raw: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        """(status, body) for one request."""
        try:
            body = json.loads(raw)
        except ValueError:
            return 400, b'{"error": "bad json"}'
        with self._lock:
            call = len(self.requests)
            self.requests.append({"path": path, "body": body, "headers": headers})
        if path != "/v1/chat/completions":
            return 404, b'{"error": "not found"}'
        if self.key is not None and headers.get("authorization") != f"Bearer {self.key}":
            return 401, b'{"error": "unauthorized"}'
        if self.mode == "slow":
            time.sleep(self.delay_s)
        if self.mode == "500":
            echo = headers.get("authorization", "")
            return 500, json.dumps({"error": f"internal error for {echo}"}).encode()
        if self.mode == "garbage":
            return 200, b"<html>not json</html>"
        if self.mode == "no_choices":
            return 200, b'{"object": "chat.completion", "data": []}'
        texts = self.complete(concept_of(body), int(body.get("n", 1)), call)
        choices = [
            {"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            for i, text in enumerate(texts)
        ]
        answer = {
            "id": f"chatcmpl-{call}",
            "object": "chat.completion",
            "model": body.get("model"),
            "choices": choices,
        }
        return 200, json.dumps(answer).encode()

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> StubLLM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
