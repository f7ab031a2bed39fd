"""A small, real OpenAI-compatible HTTP server for the LLM client tests (no client mocks).

It answers ``POST /v1/chat/completions`` and ``POST /v1/completions`` deterministically: the
text is a function of the last user message (or prompt) and the sampling params, and usage
counts whitespace-separated words. Tests can make it misbehave on purpose, per request (keyed by
the last user message / prompt) or for every request:

- an HTTP status code (429, 500, 503, 400, ...) with a JSON error body,
- ``"hang"``: hold the request without answering (past the client's timeout),
- ``"drop"``: close the connection without answering,
- at random (``failure_rate``, seeded): a share of all attempts fails one of these ways,
- as an endpoint that refuses everything: a wrong key (``require_key``), a model it does not
  serve (``served_models``: vLLM's 404 for any other model) or a route it lacks (``routes``).

An injected error's message is ``error_messages[status]`` when set (e.g. vLLM's "maximum
context length" text for a 400), else "injected failure <status>".

It records every request it receives and the peak number of requests in flight. Runs on
127.0.0.1 on a free port in a daemon thread; ``stop()`` never waits for hanging handlers.
Run ``python tests/llm_server.py [delay_s]`` to serve it standalone (prints its base URL).
"""

from __future__ import annotations

import json
import random
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Action = int | str  # HTTP status, "hang" or "drop"


def reply_text(content: str, params: dict[str, Any], choice: int = 0) -> str:
    """The deterministic answer: reversed content plus the params that shape it."""
    text = f"echo {content[::-1]} t={params.get('temperature')} seed={params.get('seed')}"
    return text if choice == 0 else f"{text} #{choice}"


def words(text: str) -> int:
    return len(text.split())


class FakeLLMServer:
    def __init__(self, delay_s: float = 0.0, hang_s: float = 30.0):
        self.delay_s = delay_s
        self.hang_s = hang_s
        self.plan: dict[str, list[Action]] = {}  # content -> action per attempt, then success
        self.always: Action | None = None  # applies to every request
        # a flaky endpoint: this share of attempts fails at random (seeded per request and
        # attempt) with a 500, a 429 with Retry-After, or a dropped connection
        self.failure_rate = 0.0
        self.failure_seed = 0
        self.retry_after = "0"  # the Retry-After header of a 429
        self.require_key: str | None = None  # 401 unless "Authorization: Bearer <key>"
        self.echo_auth_in_errors = False  # a hostile server that reflects the key in errors
        # None: any model name is answered; a list: other names get vLLM's 404, and
        # GET /v1/models lists these (else it lists "fake")
        self.served_models: list[str] | None = None
        self.routes = {"/v1/chat/completions", "/v1/completions"}  # POST routes it answers
        self.error_messages: dict[int, str] = {}  # status -> message of an injected error
        self.received: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._attempts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> FakeLLMServer:
        server = self

        class Handler(_Handler):
            app = server

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
        httpd.daemon_threads = True
        httpd.block_on_close = False
        httpd.request_queue_size = 256
        httpd.allow_reuse_address = True
        httpd.server_bind()
        httpd.server_activate()
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    # ------------------------------------------------------------------ inspection
    def count(self, content: str) -> int:
        """How many times a request with this last user message / prompt arrived."""
        with self._lock:
            return sum(1 for r in self.received if r["content"] == content)

    def contents(self, since: int = 0) -> list[str]:
        with self._lock:
            return [r["content"] for r in self.received[since:]]

    def reset(self) -> None:
        with self._lock:
            self.received.clear()
            self._attempts.clear()
            self.max_in_flight = self.in_flight

    # ------------------------------------------------------------------ behaviour
    def action_for(self, content: str) -> Action | None:
        with self._lock:
            attempt = self._attempts.get(content, 0)
            self._attempts[content] = attempt + 1
        if self.always is not None:
            return self.always
        steps = self.plan.get(content, [])
        if attempt < len(steps):
            return steps[attempt]
        if self.failure_rate:
            rng = random.Random(f"{self.failure_seed}:{content}:{attempt}")
            if rng.random() < self.failure_rate:
                return rng.choice([500, 429, "drop"])
        return None

    def wait(self, seconds: float) -> None:
        self._stop.wait(seconds)

    def record(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self.received.append(entry)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def done(self) -> None:
        with self._lock:
            self.in_flight -= 1


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes
    app: FakeLLMServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        return

    def _send(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        if self.app.echo_auth_in_errors:
            message += f" (you sent Authorization: {self.headers.get('Authorization')})"
        body = {"error": {"message": message, "type": "injected", "code": status}}
        headers = {"Retry-After": self.app.retry_after} if status == 429 else None
        self._send(status, body, headers)

    def _unauthorized(self) -> bool:
        """Answer 401 (and say so) when a key is required and another was sent."""
        key = self.app.require_key
        if key and self.headers.get("Authorization") != f"Bearer {key}":
            self._error(401, "invalid API key")
            return True
        return False

    def do_GET(self) -> None:  # noqa: N802 (stdlib name)
        path = self.path.rstrip("/")
        if path == "/v1/models" and self._unauthorized():
            return
        if path in ("/health", "/v1/models"):
            names = self.app.served_models if self.app.served_models is not None else ["fake"]
            data = [{"id": name, "object": "model"} for name in names]
            self._send(200, {"object": "list", "data": data})
        else:
            self._send(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:  # noqa: N802 (stdlib name)
        app = self.app
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self._send(400, {"error": {"message": "body is not JSON"}})
            return
        chat = self.path == "/v1/chat/completions"
        if self.path not in app.routes:
            self._send(404, {"error": {"message": f"no route {self.path}"}})
            return
        if chat:
            users = [m for m in body.get("messages", []) if m.get("role") == "user"]
            content = users[-1]["content"] if users else ""
            prompt_words = sum(words(m.get("content", "")) for m in body.get("messages", []))
        else:
            content = body.get("prompt", "")
            prompt_words = words(content)
        app.record(
            {
                "path": self.path,
                "content": content,
                "body": body,
                "auth": self.headers.get("Authorization"),
                "time": time.monotonic(),
            }
        )
        try:
            self._answer(app, body, chat, content, prompt_words)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            app.done()

    def _answer(self, app, body, chat, content, prompt_words) -> None:  # type: ignore[no-untyped-def]
        if self._unauthorized():
            return
        model = body.get("model", "")
        if app.served_models is not None and model not in app.served_models:
            # vLLM's answer, word for word: a flat error object, not OpenAI's {"error": {...}}
            message = f"The model `{model}` does not exist."
            error = {"object": "error", "message": message, "type": "NotFoundError", "code": 404}
            self._send(404, error)
            return
        action = app.action_for(content)
        if action == "hang":
            app.wait(app.hang_s)
            self.close_connection = True
            return
        if action == "drop":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if isinstance(action, int):
            self._error(action, app.error_messages.get(action, f"injected failure {action}"))
            return
        if app.delay_s:
            app.wait(app.delay_s)
        n = int(body.get("n") or 1)
        texts = [reply_text(content, body, i) for i in range(n)]
        if chat:
            choices = [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": t},
                    "finish_reason": "stop",
                }
                for i, t in enumerate(texts)
            ]
        else:
            choices = [
                {"index": i, "text": t, "finish_reason": "length"} for i, t in enumerate(texts)
            ]
        completion = sum(words(t) for t in texts)
        self._send(
            200,
            {
                "id": "cmpl-fake",
                "object": "chat.completion" if chat else "text_completion",
                "created": int(time.time()),
                "model": body.get("model", ""),
                "choices": choices,
                "usage": {
                    "prompt_tokens": prompt_words,
                    "completion_tokens": completion,
                    "total_tokens": prompt_words + completion,
                },
            },
        )


if __name__ == "__main__":
    srv = FakeLLMServer(delay_s=float(sys.argv[1]) if len(sys.argv) > 1 else 0.0).start()
    print(srv.url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        srv.stop()
