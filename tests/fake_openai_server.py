"""A scripted OpenAI-compatible HTTP server on 127.0.0.1 for tests (a test stub, not a product server).

It answers ``POST /v1/chat/completions``, ``POST /v1/completions`` and ``GET /v1/models`` with replies chosen
by a ``script`` callable, and can inject faults: HTTP errors, delays past the client timeout, dropped
connections and malformed JSON. It records every request and the peak number of requests in flight.

Usage::

    from tests.fake_openai_server import FakeOpenAIServer, Reply

    with FakeOpenAIServer(script=lambda body: Reply(text="keep_all()")) as server:
        backend = OpenAIEndpointBackend(server.url, "fake-model")
        server.inject(Reply(status=429), Reply(status=500))   # the next two requests fail, then the script answers
        ...
        assert server.requests[0].headers["authorization"] == "Bearer ..."
"""

from __future__ import annotations

import collections
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """What the server does with one request.

    Attributes:
        text: completion text (``message.content`` for chat, ``text`` for completions).
        finish_reason: reported finish reason (``None`` sends JSON null).
        status: HTTP status; for a status other than 200 the body is ``{"error": {"message": text}}``.
        prompt_tokens: usage figure; default: whitespace word count of the prompt (or of all message contents).
        completion_tokens: usage figure; default: whitespace word count of ``text``.
        delay: seconds to wait before answering (longer than the client timeout makes the client time out).
        drop: close the connection without any answer.
        malformed: answer 200 with a body that is not JSON.
        body: send this JSON value as the body instead of the built one (with ``status``).
        headers: extra response headers (e.g. ``{"Retry-After": "0"}``).
    """

    text: str = ""
    finish_reason: str | None = "stop"
    status: int = 200
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    delay: float = 0.0
    drop: bool = False
    malformed: bool = False
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class RecordedRequest:
    """One request as the server saw it (header names lower-cased)."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


Script = Callable[[dict[str, Any]], "Reply | str | dict[str, Any]"]


def echo_script(body: dict[str, Any]) -> Reply:
    """Default script: answer ``"echo: <last message content or prompt>"``."""
    if "messages" in body:
        content = body["messages"][-1].get("content", "") if body["messages"] else ""
    else:
        content = body.get("prompt", "")
    return Reply(text=f"echo: {content}")


def _prompt_words(body: dict[str, Any]) -> int:
    if "messages" in body:
        return sum(len(str(m.get("content", "")).split()) for m in body["messages"])
    return len(str(body.get("prompt", "")).split())


class FakeOpenAIServer:
    """Threaded HTTP server speaking enough of the OpenAI API for transport tests.

    Args:
        script: ``callable(request_json) -> Reply | str | dict``; a ``str`` is a normal completion text, a
            ``dict`` is sent as the JSON body as is. Defaults to :func:`echo_script`. An exception in the
            script becomes an HTTP 500.
        model: model name listed by ``GET /v1/models``.
        gate: if set, each completion request waits (up to ``gate_timeout`` s) until ``gate`` requests are
            in flight together; used to prove a client really runs that many requests concurrently.
            ``gate_broken`` turns True when the wait timed out.
        gate_timeout: seconds a gated request waits for its companions.
        port: port to bind on 127.0.0.1 (0: a free one). The port is kept: :meth:`start` after :meth:`stop`
            brings the same endpoint back up (an outage).

    Attributes:
        requests: every request received, in arrival order.
        max_in_flight: peak number of completion requests being handled at once.
        faults: replies consumed first-in first-out before the script is asked (see :meth:`inject`).
    """

    def __init__(
        self,
        script: Script | None = None,
        *,
        model: str = "fake-model",
        gate: int | None = None,
        gate_timeout: float = 10.0,
        port: int = 0,
    ) -> None:
        self.script: Script = script or echo_script
        self.model = model
        self.port = port
        self.requests: list[RecordedRequest] = []
        self.faults: collections.deque[Reply] = collections.deque()
        self.max_in_flight = 0
        self.in_flight = 0
        self.gate_broken = False
        self._gate = threading.Barrier(gate, timeout=gate_timeout) if gate else None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------------------
    def start(self) -> FakeOpenAIServer:
        """Bind ``port`` (default: a free one) on 127.0.0.1 and serve in a daemon thread."""
        handler = _make_handler(self)
        self._stopping.clear()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self.port = self._server.server_address[1]  # start() after stop() serves the same URL again
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; delayed handlers are woken up. Safe to call more than once."""
        self._stopping.set()
        if self._gate is not None:
            self._gate.abort()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Server root, e.g. ``http://127.0.0.1:PORT`` (the API lives under ``/v1``)."""
        if self._server is None:
            raise RuntimeError("server not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -- scripting ----------------------------------------------------------------------------------------
    def inject(self, *replies: Reply) -> None:
        """Queue replies (faults or fixed answers) used, in order, by the next requests before the script."""
        with self._lock:
            self.faults.extend(replies)

    @property
    def completion_requests(self) -> list[RecordedRequest]:
        """Recorded POSTs to the completion endpoints."""
        return [r for r in self.requests if r.method == "POST"]

    def _choose(self, body: dict[str, Any]) -> Reply | dict[str, Any]:
        with self._lock:
            if self.faults:
                return self.faults.popleft()
        try:
            reply = self.script(body)
        except Exception as exc:  # surfaces as HTTP 500, like a crashing server
            return Reply(status=500, text=f"script raised {type(exc).__name__}: {exc}")
        if isinstance(reply, str):
            return Reply(text=reply)
        return reply

    def _enter(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def wait_gate(self) -> None:
        if self._gate is None:
            return
        try:
            self._gate.wait()
        except threading.BrokenBarrierError:
            self.gate_broken = True


def _build_body(path: str, body: dict[str, Any], reply: Reply, model: str) -> dict[str, Any]:
    prompt_tokens = reply.prompt_tokens if reply.prompt_tokens is not None else _prompt_words(body)
    completion_tokens = reply.completion_tokens if reply.completion_tokens is not None else len(reply.text.split())
    if path.endswith("/chat/completions"):
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": reply.text},
            "finish_reason": reply.finish_reason,
        }
        obj = "chat.completion"
    else:
        choice = {"index": 0, "text": reply.text, "finish_reason": reply.finish_reason}
        obj = "text_completion"
    return {
        "id": "cmpl-fake",
        "object": obj,
        "model": body.get("model", model),
        "choices": [choice],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def _make_handler(server: FakeOpenAIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
            pass

        def _send(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                self.close_connection = True

        def do_GET(self) -> None:
            server.requests.append(RecordedRequest("GET", self.path, self._headers(), None))
            if self.path.rstrip("/") == "/v1/models":
                data = {"object": "list", "data": [{"id": server.model, "object": "model"}]}
                self._send(200, json.dumps(data).encode())
            else:
                self._send(404, b'{"error": {"message": "not found"}}')

        def _headers(self) -> dict[str, str]:
            return {k.lower(): v for k, v in self.headers.items()}

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            server.requests.append(RecordedRequest("POST", self.path, self._headers(), body))
            path = self.path.rstrip("/")
            if path not in ("/v1/chat/completions", "/v1/completions"):
                self._send(404, b'{"error": {"message": "not found"}}')
                return
            if not isinstance(body, dict):
                self._send(400, b'{"error": {"message": "body is not a JSON object"}}')
                return
            server._enter()
            try:
                server.wait_gate()
                reply = server._choose(body)
                if isinstance(reply, dict):
                    payload, status, headers = json.dumps(reply).encode(), 200, {}
                else:
                    if reply.delay:
                        server._stopping.wait(reply.delay)
                    if reply.drop:
                        self.close_connection = True
                        return
                    headers = reply.headers
                    status = reply.status
                    if reply.malformed:
                        payload = b'{"choices": [ this is not json'
                    elif reply.body is not None:
                        payload = json.dumps(reply.body).encode()
                    elif status != 200:
                        payload = json.dumps({"error": {"message": reply.text or f"status {status}"}}).encode()
                    else:
                        payload = json.dumps(_build_body(path, body, reply, server.model)).encode()
            finally:
                server._leave()
            self._send(status, payload, headers)

    return Handler
