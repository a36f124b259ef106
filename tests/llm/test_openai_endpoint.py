"""OpenAIEndpointBackend against a real HTTP stub server on 127.0.0.1 with scripted replies and faults."""

from __future__ import annotations

import asyncio
import pickle
import threading

import pytest


pytest.importorskip("httpx")

from refinex_datatrove.llm import GenerationParams, Request, make_backend
from refinex_datatrove.llm.openai_endpoint import OpenAIEndpointBackend
from tests.fake_openai_server import FakeOpenAIServer, Reply


FAST = {"backoff_base": 0.001, "backoff_max": 0.01}


def chat(text: str) -> Request:
    return Request(messages=[{"role": "user", "content": text}])


@pytest.fixture
def server():
    with FakeOpenAIServer() as s:
        yield s


def backend_for(server: FakeOpenAIServer, **kwargs) -> OpenAIEndpointBackend:
    options = {"api_key_env": None, **FAST, **kwargs}
    return OpenAIEndpointBackend(server.url, "fake-model", **options)


def test_chat_and_completions_round_trip(server) -> None:
    backend = backend_for(server)
    requests = [chat("one two three"), Request(prompt="four five")]
    params = GenerationParams(max_tokens=12, temperature=0.5, top_p=0.8, stop=("\n",), seed=3)
    gens = backend.generate(requests, params)
    assert [g.text for g in gens] == ["echo: one two three", "echo: four five"]
    assert [g.finish_reason for g in gens] == ["stop", "stop"]
    # usage comes from the server's reply (the stub counts whitespace words)
    assert [(g.prompt_tokens, g.completion_tokens) for g in gens] == [(3, 4), (2, 3)]
    by_path = {r.path: r.body for r in server.completion_requests}
    assert set(by_path) == {"/v1/chat/completions", "/v1/completions"}
    chat_body = by_path["/v1/chat/completions"]
    assert chat_body["messages"] == requests[0].messages
    assert chat_body["model"] == "fake-model"
    assert (chat_body["max_tokens"], chat_body["temperature"], chat_body["top_p"]) == (12, 0.5, 0.8)
    assert chat_body["stop"] == ["\n"] and chat_body["seed"] == 3
    assert "top_k" not in chat_body  # -1 (disabled) is not sent: hosted APIs reject unknown fields
    assert by_path["/v1/completions"]["prompt"] == "four five"
    assert backend.counters["requests"] == 2 and backend.counters["retries"] == 0


def test_auth_header_from_environment(server, monkeypatch) -> None:
    monkeypatch.setenv("REFINEX_TEST_KEY", "sk-test-123")
    backend = backend_for(server, api_key_env="REFINEX_TEST_KEY")
    backend.generate([chat("x")], GenerationParams())
    assert server.completion_requests[-1].headers["authorization"] == "Bearer sk-test-123"
    monkeypatch.delenv("REFINEX_TEST_KEY")
    backend.generate([chat("x")], GenerationParams())
    assert "authorization" not in server.completion_requests[-1].headers


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        (Reply(status=429, headers={"Retry-After": "0"}), "http_429"),
        (Reply(status=500), "http_5xx"),
        (Reply(status=503), "http_5xx"),
        (Reply(status=408), "http_408"),
        (
            Reply(
                body={
                    "choices": [{"message": {"content": "x"}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": [1]},
                }
            ),
            "malformed",
        ),
        (Reply(drop=True), "connection"),
        (Reply(malformed=True), "malformed"),
        (Reply(body={"object": "chat.completion", "choices": []}), "malformed"),
        (Reply(delay=5.0), "timeout"),
    ],
)
def test_transient_faults_are_retried(server, fault, kind) -> None:
    backend = backend_for(server, timeout=0.5, max_retries=3)
    server.inject(fault, fault)
    (gen,) = backend.generate([chat("hello")], GenerationParams())
    assert gen.ok and gen.text == "echo: hello"
    assert gen.extra["attempts"] == 3
    assert len(server.completion_requests) == 3
    assert backend.counters["retries"] == 2
    assert backend.counters["errors_by_kind"] == {kind: 2}
    assert backend.counters["errors"] == 0


def test_retries_are_bounded_and_reported(server) -> None:
    server.script = lambda body: Reply(status=502, text="bad gateway")
    backend = backend_for(server, max_retries=2)
    (gen,) = backend.generate([chat("x")], GenerationParams())
    assert gen.finish_reason == "error"
    assert "3 attempts" in gen.error and "HTTP 502" in gen.error
    assert len(server.completion_requests) == 3
    assert backend.counters["retries"] == 2 and backend.counters["errors"] == 1


def test_client_errors_are_not_retried(server) -> None:
    server.inject(Reply(status=400, text="prompt too long"))
    backend = backend_for(server, max_retries=4)
    (gen,) = backend.generate([chat("x")], GenerationParams())
    assert gen.finish_reason == "error"
    assert gen.error.startswith("HTTP 400: ") and "prompt too long" in gen.error
    assert len(server.completion_requests) == 1
    assert backend.counters["retries"] == 0 and backend.counters["errors_by_kind"] == {"http_4xx": 1}


def test_final_errors_are_per_request(server) -> None:
    server.script = lambda body: (
        Reply(status=500)
        if "poison" in body["messages"][-1]["content"]
        else (Reply(text=body["messages"][-1]["content"].upper()))
    )
    backend = backend_for(server, max_retries=1, max_concurrency=4)
    requests = [chat("a"), chat("poison"), chat("b"), chat("c poison"), chat("d")]
    gens = backend.generate(requests, GenerationParams())
    assert [g.finish_reason for g in gens] == ["stop", "error", "stop", "error", "stop"]
    assert [g.text for g in gens if g.ok] == ["A", "B", "D"]
    assert backend.counters["errors"] == 2


def test_finish_reasons(server) -> None:
    server.inject(Reply(text="remove_lines(1,", finish_reason="length"))
    backend = backend_for(server)
    (gen,) = backend.generate([chat("x")], GenerationParams(max_tokens=4))
    assert gen.finish_reason == "length" and gen.text == "remove_lines(1,"
    server.inject(Reply(text="part", finish_reason="abort"))
    (gen,) = backend.generate([chat("x")], GenerationParams())
    assert gen.finish_reason == "error" and "abort" in gen.error and gen.text == "part"


def test_concurrency_reaches_but_never_exceeds_the_limit() -> None:
    # each request waits at a 3-party gate: the batch only completes if 3 requests are truly in flight together
    # (each also lingers 0.1 s in flight, so a 4th concurrent request would be seen overlapping them)
    with FakeOpenAIServer(
        script=lambda body: Reply(text=body["messages"][-1]["content"], delay=0.1), gate=3, gate_timeout=20
    ) as server:
        backend = backend_for(server, max_concurrency=3, timeout=30)
        gens = backend.generate([chat(str(i)) for i in range(9)], GenerationParams())
        assert all(g.ok for g in gens)
        assert [g.text for g in gens] == [str(i) for i in range(9)]
        assert not server.gate_broken
        assert server.max_in_flight == 3


def test_concurrency_one_is_sequential(server) -> None:
    server.script = lambda body: Reply(text="ok", delay=0.02)
    backend = backend_for(server, max_concurrency=1)
    backend.generate([chat(str(i)) for i in range(5)], GenerationParams())
    assert server.max_in_flight == 1


@pytest.mark.parametrize(
    ("guided_field", "expected"),
    [
        ("structured_outputs", {"structured_outputs": {"regex": "keep_all\\(\\)"}}),
        ("guided_regex", {"guided_regex": "keep_all\\(\\)"}),
        (None, {}),
    ],
)
def test_guided_regex_field(server, guided_field, expected) -> None:
    backend = backend_for(server, guided_field=guided_field)
    backend.generate([chat("x")], GenerationParams(guided_regex=r"keep_all\(\)"))
    body = server.completion_requests[-1].body
    sent = {k: body[k] for k in ("structured_outputs", "guided_regex") if k in body}
    assert sent == expected


def test_use_chat_false_posts_completions(server) -> None:
    backend = backend_for(server, use_chat=False)
    (gen,) = backend.generate(
        [Request(messages=[{"role": "system", "content": "S"}, {"role": "user", "content": "U"}])],
        GenerationParams(top_k=5),
    )
    request = server.completion_requests[-1]
    assert request.path == "/v1/completions"
    assert request.body["prompt"] == "S\n\nU" and request.body["top_k"] == 5
    assert gen.text == "echo: S\n\nU"


def test_base_url_with_version_path_and_extra_body(server) -> None:
    backend = OpenAIEndpointBackend(
        server.url + "/v1/",
        "fake-model",
        api_key_env=None,
        extra_body={"chat_template_kwargs": {"enable_thinking": False}},
    )
    (gen,) = backend.generate([chat("x")], GenerationParams())
    assert gen.ok
    assert server.completion_requests[-1].body["chat_template_kwargs"] == {"enable_thinking": False}
    with pytest.raises(ValueError, match="http"):
        OpenAIEndpointBackend("ftp://host", "m")
    with pytest.raises(ValueError, match="guided_field"):
        OpenAIEndpointBackend("http://host", "m", guided_field="regex")


def test_generate_inside_running_loop_and_threads(server) -> None:
    backend = backend_for(server)

    async def caller():
        sync = backend.generate([chat("in loop")], GenerationParams())
        native = await backend.agenerate([chat("async")], GenerationParams())
        return sync + native

    gens = asyncio.run(caller())
    assert [g.text for g in gens] == ["echo: in loop", "echo: async"]

    results: dict[int, str] = {}

    def worker(i: int) -> None:
        results[i] = backend.generate([chat(f"t{i}")], GenerationParams())[0].text

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: f"echo: t{i}" for i in range(3)}
    assert backend.counters["requests"] == 5


def test_unreachable_server_is_a_connection_error() -> None:
    with FakeOpenAIServer() as s:
        url = s.url
    backend = OpenAIEndpointBackend(url, "m", api_key_env=None, max_retries=1, **FAST)
    (gen,) = backend.generate([chat("x")], GenerationParams())
    assert gen.finish_reason == "error" and "2 attempts" in gen.error
    assert backend.counters["errors_by_kind"] == {"connection": 2}


def test_backoff_schedule_is_capped() -> None:
    backend = OpenAIEndpointBackend("http://127.0.0.1:9", "m", backoff_base=0.5, backoff_max=8.0)
    for retry, full in [(0, 0.5), (1, 1.0), (3, 4.0), (6, 8.0)]:
        delays = [backend._backoff(retry, None) for _ in range(50)]
        assert all(full * 0.5 <= d <= full for d in delays)
    assert backend._backoff(0, 100.0) == 8.0  # Retry-After is honoured up to backoff_max
    assert backend._backoff(2, 0.25) == 0.25


def test_picklable_and_factory(server) -> None:
    backend = make_backend("endpoint", "fake-model", base_url=server.url, api_key_env=None, **FAST)
    assert isinstance(backend, OpenAIEndpointBackend)
    clone = pickle.loads(pickle.dumps(backend))
    assert clone.generate([chat("x")], GenerationParams())[0].text == "echo: x"
    with pytest.raises(ValueError, match="base_url"):
        make_backend("endpoint", "fake-model")
    backend.close()
    backend.close()


def test_request_guided_regex_overrides_params(server) -> None:
    backend = backend_for(server)
    backend.generate(
        [Request(prompt="a", guided_regex="R1"), Request(prompt="b")], GenerationParams(guided_regex="R0")
    )
    sent = {r.body["prompt"]: r.body["structured_outputs"]["regex"] for r in server.completion_requests}
    assert sent == {"a": "R1", "b": "R0"}
