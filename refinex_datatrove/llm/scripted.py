"""``ScriptedBackend``: a TEST DOUBLE for the LLM protocol, for tests and documentation examples only.

It runs no model. Replies come from a list or a callable you provide, so pipeline steps can be exercised
offline and deterministically. Never use it as a product path: a pipeline run with it produces whatever
the script says, not model output.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence

from refinex_datatrove.llm._util import cut_at_stop, error_generation
from refinex_datatrove.llm.base import Generation, GenerationParams, Request

Reply = str | Generation
ReplyFn = Callable[[Request, GenerationParams], Reply]


def request_text(request: Request) -> str:
    """The request's prompt, or the content of its last message (handy inside reply callables)."""
    if request.prompt is not None:
        return request.prompt
    return request.messages[-1].get("content", "") if request.messages else ""


class ScriptedBackend:
    """A test double speaking :class:`~refinex_datatrove.llm.base.LLMBackend` with scripted replies.

    Args:
        replies: either a sequence consumed one reply per request across calls (running out yields
            ``finish_reason="error"`` generations), or ``callable(request, params) -> str | Generation``.
            A ``str`` becomes a ``"stop"`` generation; stop strings in ``params.stop`` cut it like a real
            backend would. A callable that raises produces an error generation for that request only.

    Attributes:
        requests: the last ``max_recorded`` ``(request, params)`` received, in order (bounded, so a long
            run with a scripted backend does not grow without limit).
        calls: number of :meth:`generate` calls.
        closed: whether :meth:`close` was called.

    Usage counts are whitespace word counts (not tokens).
    """

    def __init__(self, replies: Sequence[Reply] | ReplyFn, *, max_recorded: int = 10_000) -> None:
        if callable(replies):
            self._fn: ReplyFn | None = replies
            self._queue: list[Reply] = []
        else:
            self._fn = None
            self._queue = list(replies)
        self._next = 0
        self._lock = threading.Lock()
        self.requests: deque[tuple[Request, GenerationParams]] = deque(maxlen=max_recorded)
        self.calls = 0
        self.closed = False

    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _reply(self, request: Request, params: GenerationParams) -> Reply:
        if self._fn is not None:
            return self._fn(request, params)
        with self._lock:
            if self._next >= len(self._queue):
                raise IndexError(f"ScriptedBackend ran out of replies after {len(self._queue)}")
            reply = self._queue[self._next]
            self._next += 1
        return reply

    def generate(self, requests: list[Request], params: GenerationParams) -> list[Generation]:
        """Return the scripted reply for each request, in order."""
        self.calls += 1
        out: list[Generation] = []
        for request in requests:
            self.requests.append((request, params))
            try:
                reply = self._reply(request, params)
            except Exception as exc:
                out.append(error_generation(exc))
                continue
            if isinstance(reply, Generation):
                out.append(reply)
                continue
            text, _ = cut_at_stop(str(reply), params.stop)
            out.append(
                Generation(
                    text=text,
                    finish_reason="stop",
                    prompt_tokens=len(request_text(request).split()),
                    completion_tokens=len(text.split()),
                )
            )
        return out

    def close(self) -> None:
        """Mark the backend closed (nothing to release)."""
        self.closed = True
