"""LLM transport speaking the OpenAI chat-completions / completions schema over HTTP.

Works against ``vllm serve``, SGLang and hosted OpenAI-compatible APIs. Requests run concurrently on an
``httpx.AsyncClient`` (at most ``max_concurrency`` in flight) with bounded retries and exponential backoff
with jitter on 408, 409, 429, 5xx, timeouts, connection errors and malformed replies. Other 4xx answers are
not retried. No client is kept between calls, so the backend pickles and is safe to use from several threads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import random
import threading
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

from refinex_datatrove.llm._util import error_generation
from refinex_datatrove.llm.base import FIRST_TOP_LOGPROBS, TOKEN_LOGPROBS, Generation, GenerationParams, Request

GUIDED_FIELDS = ("structured_outputs", "guided_regex")

_STOP_REASONS = {"stop", "eos", "stop_sequence", "end_turn", "tool_calls", "function_call"}


class _Retryable(Exception):
    """A failure worth another attempt; ``kind`` names it in the counters."""

    def __init__(self, kind: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after


class _Fatal(Exception):
    """A failure that another attempt would not fix (e.g. HTTP 400)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def parse_logprobs(path: str, choice: dict[str, Any]) -> dict[str, Any]:
    """The likelihoods of one reply's ``choices[0]`` as ``Generation.extra`` entries (``token_logprobs``,
    ``first_top_logprobs``); ``{}`` when the reply has none or they are not in the OpenAI shape.

    ``/completions``: ``logprobs = {"tokens", "token_logprobs", "top_logprobs": [{token: logprob}, ...]}``.
    ``/chat/completions``: ``logprobs = {"content": [{"token", "logprob", "top_logprobs": [{"token",
    "logprob"}]}]}``.
    """
    lp = choice.get("logprobs")
    if not isinstance(lp, dict):
        return {}
    tokens: list[float] = []
    first: dict[str, float] = {}
    if path == "/chat/completions":
        content = lp.get("content")
        if not isinstance(content, list) or not content:
            return {}
        for i, entry in enumerate(content):
            value = _number(entry.get("logprob")) if isinstance(entry, dict) else None
            if value is None:
                return {}
            tokens.append(value)
            if i == 0:
                for alt in entry.get("top_logprobs") or []:
                    if isinstance(alt, dict) and isinstance(alt.get("token"), str):
                        v = _number(alt.get("logprob"))
                        if v is not None:
                            first[alt["token"]] = v
                if isinstance(entry.get("token"), str):
                    first.setdefault(entry["token"], value)
    else:
        values = lp.get("token_logprobs")
        if not isinstance(values, list) or not values:
            return {}
        for v in values:
            number = _number(v)
            if number is None:
                return {}
            tokens.append(number)
        tops = lp.get("top_logprobs")
        if isinstance(tops, list) and tops and isinstance(tops[0], dict):
            first = {t: v for t, x in tops[0].items() if isinstance(t, str) and (v := _number(x)) is not None}
        names = lp.get("tokens")
        if isinstance(names, list) and names and isinstance(names[0], str):
            first.setdefault(names[0], tokens[0])
    return {TOKEN_LOGPROBS: tokens, FIRST_TOP_LOGPROBS: first}


def _api_root(base_url: str) -> str:
    url = base_url.rstrip("/")
    if urlsplit(url).path in ("", "/"):
        url += "/v1"
    return url


def _retry_after_seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: fall back to the backoff schedule
    return max(0.0, seconds)


class OpenAIEndpointBackend:
    """Generation through an OpenAI-compatible HTTP endpoint.

    Args:
        base_url: server root (``http://127.0.0.1:8000``, ``/v1`` is then appended) or the API root including
            its version path (``https://host/v1``).
        model: the ``model`` field sent with every request (the name the server serves).
        api_key_env: environment variable holding the API key, sent as ``Authorization: Bearer ...``;
            read at each :meth:`generate`. ``None`` or an unset variable sends no header (local servers).
        max_concurrency: requests in flight at once.
        timeout: seconds per HTTP attempt (connect, read and write).
        max_retries: further attempts after the first one for retryable failures.
        backoff_base: first backoff delay in seconds; doubled per retry.
        backoff_max: cap on one backoff delay (also on a server's ``Retry-After``).
        use_chat: ``True`` posts chat requests to ``/chat/completions``; ``False`` turns chat messages into
            a prompt with no template and posts everything to ``/completions``. Raw-prompt requests always go
            to ``/completions``.
        guided_field: how ``GenerationParams.guided_regex`` is sent: ``"structured_outputs"`` (vLLM >= 0.10.2:
            ``{"structured_outputs": {"regex": ...}}``), ``"guided_regex"`` (older vLLM, SGLang:
            ``{"guided_regex": ...}``) or ``None`` (ignored; for APIs without regex decoding).
        extra_body: extra JSON fields merged into every request body (e.g. ``{"chat_template_kwargs": ...}``).

    A request that failed reports ``Generation.extra``: ``attempts``, ``error_kind`` (the last failure's kind) and
    ``retryable`` (``True`` when retries for a transient fault ran out, i.e. the endpoint is down or overloaded;
    ``False`` for a fault another attempt would not fix, such as HTTP 400 or 404).

    Attributes:
        counters: running totals since construction: ``requests``, ``attempts``, ``retries``, ``errors``
            (requests that finally failed) and ``errors_by_kind`` (every failed attempt by kind: ``http_429``,
            ``http_5xx``, ``http_408``, ``http_409``, ``http_4xx``, ``timeout``, ``connection``, ``malformed``).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str | None = "OPENAI_API_KEY",
        max_concurrency: int = 16,
        timeout: float = 60.0,
        max_retries: int = 4,
        backoff_base: float = 0.5,
        backoff_max: float = 8.0,
        use_chat: bool = True,
        guided_field: str | None = "structured_outputs",
        extra_body: dict[str, Any] | None = None,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {timeout}")
        if backoff_base < 0 or backoff_max < 0:
            raise ValueError("backoff_base and backoff_max must be >= 0")
        if guided_field not in (*GUIDED_FIELDS, None):
            raise ValueError(f"guided_field must be one of {GUIDED_FIELDS} or None, got {guided_field!r}")
        scheme = urlsplit(base_url).scheme
        if scheme not in ("http", "https"):
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
        self.base_url = _api_root(base_url)
        self.model = model
        self.api_key_env = api_key_env
        self.max_concurrency = max_concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.use_chat = use_chat
        self.guided_field = guided_field
        self.extra_body = dict(extra_body or {})
        self._lock = threading.Lock()
        self.counters: dict[str, Any] = {}
        self.reset_counters()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def reset_counters(self) -> None:
        """Zero :attr:`counters`."""
        with self._lock:
            self.counters = {"requests": 0, "attempts": 0, "retries": 0, "errors": 0, "errors_by_kind": Counter()}

    def _count(self, key: str) -> None:
        with self._lock:
            self.counters[key] += 1

    # -- request bodies -----------------------------------------------------------------------------------
    def build_body(self, request: Request, params: GenerationParams) -> tuple[str, dict[str, Any]]:
        """The endpoint path (relative to the API root) and JSON body for one request.

        Args:
            request: chat or raw-prompt request.
            params: decoding parameters; ``top_k``, ``seed`` and ``stop`` are only sent when set, since
                hosted APIs may reject fields they do not know. ``request.guided_regex`` overrides
                ``params.guided_regex``.

        Returns:
            ``("/chat/completions" | "/completions", body)``.
        """
        body: dict[str, Any] = {"model": self.model}
        if request.messages is not None and self.use_chat:
            path = "/chat/completions"
            body["messages"] = request.messages
        else:
            path = "/completions"
            if request.messages is not None:
                body["prompt"] = "\n\n".join(m.get("content", "") for m in request.messages)
            else:
                body["prompt"] = request.prompt
        body["max_tokens"] = params.max_tokens
        body["temperature"] = params.temperature
        body["top_p"] = params.top_p
        if params.top_k != -1:
            body["top_k"] = params.top_k
        if params.stop:
            body["stop"] = list(params.stop)
        if params.seed is not None:
            body["seed"] = params.seed
        if params.logprobs is not None:
            if path == "/chat/completions":
                body["logprobs"] = True
                body["top_logprobs"] = params.logprobs
            else:
                body["logprobs"] = params.logprobs
        regex = request.guided_regex if request.guided_regex is not None else params.guided_regex
        if regex is not None and self.guided_field == "structured_outputs":
            body["structured_outputs"] = {"regex": regex}
        elif regex is not None and self.guided_field == "guided_regex":
            body["guided_regex"] = regex
        body.update(self.extra_body)
        return path, body

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    # -- one request --------------------------------------------------------------------------------------
    @staticmethod
    def parse_response(path: str, payload: Any) -> Generation:
        """Map a chat-completions / completions JSON reply onto a :class:`Generation`.

        Raises:
            ValueError: the reply does not have the OpenAI shape (no ``choices[0]`` text).
        """
        if not isinstance(payload, dict) or not isinstance(payload.get("choices"), list) or not payload["choices"]:
            raise ValueError("reply has no choices")
        choice = payload["choices"][0]
        if not isinstance(choice, dict):
            raise ValueError("choices[0] is not an object")
        if path == "/chat/completions":
            message = choice.get("message")
            if not isinstance(message, dict):
                raise ValueError("choices[0] has no message")
            text = message.get("content")
        else:
            text = choice.get("text")
        if text is None:
            text = ""
        if not isinstance(text, str):
            raise ValueError("completion text is not a string")
        usage = payload.get("usage") if isinstance(payload.get("usage"), dict) else {}
        prompt_tokens = int(usage.get("prompt_tokens") or 0)
        completion_tokens = int(usage.get("completion_tokens") or 0)
        raw_reason = choice.get("finish_reason")
        extra: dict[str, Any] = parse_logprobs(path, choice)
        if choice.get("stop_reason") is not None:
            extra["stop_reason"] = choice["stop_reason"]
        if raw_reason == "length":
            reason = "length"
        elif raw_reason in _STOP_REASONS:
            reason = "stop"
        else:
            return Generation(
                text=text,
                finish_reason="error",
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                error=f"unexpected finish_reason {raw_reason!r}",
                extra=extra,
            )
        return Generation(
            text=text,
            finish_reason=reason,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            extra=extra,
        )

    async def _attempt(self, client: Any, path: str, body: dict[str, Any], headers: dict[str, str]) -> Generation:
        import httpx

        try:
            response = await client.post(self.base_url + path, json=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise _Retryable("timeout", f"timeout after {self.timeout}s ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise _Retryable("connection", f"{type(exc).__name__}: {exc}") from exc
        status = response.status_code
        if status == 429:
            raise _Retryable(
                "http_429",
                f"HTTP 429: {response.text[:300]}",
                _retry_after_seconds(response.headers.get("retry-after")),
            )
        if status in (408, 409):  # request timeout / conflict: transient, as the OpenAI SDK treats them
            raise _Retryable(f"http_{status}", f"HTTP {status}: {response.text[:300]}")
        if status >= 500:
            raise _Retryable("http_5xx", f"HTTP {status}: {response.text[:300]}")
        if status >= 400:
            raise _Fatal("http_4xx", f"HTTP {status}: {response.text[:500]}")
        if status != 200:
            raise _Retryable("malformed", f"unexpected HTTP {status}")
        try:
            return self.parse_response(path, response.json())
        except (ValueError, TypeError) as exc:  # json.JSONDecodeError is a ValueError
            raise _Retryable("malformed", f"malformed reply: {exc}") from exc

    def _backoff(self, retry: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.backoff_max)
        delay = min(self.backoff_max, self.backoff_base * (2**retry))
        return delay * random.uniform(0.5, 1.0)  # jitter: concurrent clients don't retry in lockstep

    async def _one(
        self,
        client: Any,
        semaphore: asyncio.Semaphore,
        request: Request,
        params: GenerationParams,
        headers: dict[str, str],
    ) -> Generation:
        self._count("requests")
        try:
            path, body = self.build_body(request, params)
        except Exception as exc:
            self._count("errors")
            return error_generation(exc)
        last: _Retryable | None = None
        for attempt in range(self.max_retries + 1):
            if attempt:
                self._count("retries")
                await asyncio.sleep(self._backoff(attempt - 1, last.retry_after if last else None))
            self._count("attempts")
            try:
                async with semaphore:
                    generation = await self._attempt(client, path, body, headers)
            except _Retryable as exc:
                self._count_kind(exc.kind)
                last = exc
                continue
            except _Fatal as exc:
                self._count_kind(exc.kind)
                self._count("errors")
                return error_generation(str(exc), attempts=attempt + 1, error_kind=exc.kind, retryable=False)
            except Exception as exc:  # a bug or an unexpected library error: report, don't kill the batch
                self._count_kind("unexpected")
                self._count("errors")
                return error_generation(exc, attempts=attempt + 1, error_kind="unexpected", retryable=False)
            if not generation.ok:
                self._count("errors")
            generation.extra["attempts"] = attempt + 1
            return generation
        self._count("errors")
        message = f"gave up after {self.max_retries + 1} attempts; last error: {last}"
        # retryable: the endpoint is down or overloaded, not this request wrong (the annotator fails the task)
        return error_generation(message, attempts=self.max_retries + 1, error_kind=last.kind if last else "error",
                                retryable=True)

    def _count_kind(self, kind: str) -> None:
        with self._lock:
            self.counters["errors_by_kind"][kind] += 1

    # -- batches ------------------------------------------------------------------------------------------
    async def agenerate(self, requests: list[Request], params: GenerationParams) -> list[Generation]:
        """Async :meth:`generate`, for callers already inside an event loop (e.g. a datatrove rollout)."""
        import httpx

        if not requests:
            return []
        headers = self._headers()
        semaphore = asyncio.Semaphore(self.max_concurrency)
        limits = httpx.Limits(max_connections=self.max_concurrency, max_keepalive_connections=self.max_concurrency)
        async with httpx.AsyncClient(timeout=httpx.Timeout(self.timeout), limits=limits) as client:
            return list(await asyncio.gather(*(self._one(client, semaphore, r, params, headers) for r in requests)))

    def generate(self, requests: list[Request], params: GenerationParams) -> list[Generation]:
        """Generate one :class:`Generation` per request, in order; failures become ``finish_reason="error"``.

        Runs :meth:`agenerate` in a fresh event loop; from a thread that already runs a loop, the batch runs in
        a helper thread (so this works inside notebooks and async frameworks too).
        """
        if not requests:
            return []
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.agenerate(requests, params))
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(asyncio.run, self.agenerate(requests, params)).result()

    def check_reachable(self, timeout: float | None = None) -> str | None:
        """``None`` when the server answers HTTP at all (``GET {api root}/models``, any status), else why not
        (``"ConnectError: [Errno 111] Connection refused"``, a timeout). One attempt; for a check before a run."""
        import httpx

        limit = timeout or min(self.timeout, 10.0)
        try:
            with httpx.Client(timeout=httpx.Timeout(limit)) as client:
                client.get(self.base_url + "/models", headers=self._headers())
        except httpx.TimeoutException as exc:
            return f"no answer within {limit} s ({type(exc).__name__})"
        except httpx.TransportError as exc:
            return f"{type(exc).__name__}: {exc}"
        return None

    def close(self) -> None:
        """Nothing to release: clients live only for one :meth:`generate` call. Safe to call more than once."""
