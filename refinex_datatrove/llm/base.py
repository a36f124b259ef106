"""The one small protocol that every LLM transport speaks.

A batch of requests (chat messages or a raw prompt) plus generation parameters go in; per request the
generated text, the finish reason and token usage come out. Transports never raise for a single failed
request: the failure is reported in :class:`Generation` (``finish_reason="error"``, ``error=...``) so a
pipeline step can count it and carry on with the document.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class GenerationParams:
    """Decoding parameters, mapped 1:1 onto each backend's own names.

    ``temperature=0`` means greedy decoding. ``top_k=-1`` and ``top_p=1.0`` disable those samplers.
    ``guided_regex`` asks a backend that supports structured outputs to constrain the text to a regex.
    ``logprobs`` (``k >= 1``) asks for the model's own likelihoods: the log-probability of every generated token
    (``Generation.extra[TOKEN_LOGPROBS]``) and the ``k`` most likely first tokens
    (``Generation.extra[FIRST_TOP_LOGPROBS]``, token text -> log-probability); ``None``: none.
    """

    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = -1
    stop: tuple[str, ...] = ()
    seed: int | None = None
    guided_regex: str | None = None
    logprobs: int | None = None

    def __post_init__(self) -> None:
        if self.logprobs is not None and self.logprobs < 1:
            raise ValueError(f"logprobs must be >= 1 or None, got {self.logprobs}")


TOKEN_LOGPROBS = "token_logprobs"
"""``Generation.extra`` key: the natural-log probability of each generated token, in order (``logprobs`` set)."""

FIRST_TOP_LOGPROBS = "first_top_logprobs"
"""``Generation.extra`` key: ``{token text: log-probability}`` of the most likely first tokens (``logprobs`` set),
so a caller can compare what was generated with an alternative start (e.g. ``keep_all()``)."""


@dataclass(frozen=True)
class Request:
    """One generation request: chat ``messages`` or a raw ``prompt`` (exactly one of them).

    ``guided_regex``, when set, overrides ``GenerationParams.guided_regex`` for this request only (the
    annotator constrains each chunk's program to line numbers within that chunk).

    ``max_tokens``, when set, lowers ``GenerationParams.max_tokens`` for this request only (the annotator bounds
    each chunk's program by the chunk's line count). The transformers backend and the annotator's
    ``InferenceRunner`` rollout honour it; other backends use ``GenerationParams.max_tokens``.
    """

    messages: Messages | None = None
    prompt: str | None = None
    guided_regex: str | None = None
    max_tokens: int | None = None

    def __post_init__(self) -> None:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("a Request needs exactly one of `messages` or `prompt`")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")


@dataclass
class Generation:
    """The outcome of one request.

    ``finish_reason`` is ``"stop"``, ``"length"`` (truncated at ``max_tokens``) or ``"error"`` (the
    request failed after the transport's retries; ``error`` says why).
    """

    text: str
    finish_reason: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.finish_reason != "error"


@runtime_checkable
class LLMBackend(Protocol):
    """What ExpertRefiner and RefineModelAnnotator call. Implementations create heavy objects lazily."""

    def generate(self, requests: list[Request], params: GenerationParams) -> list[Generation]:
        """Return one Generation per request, in order. Never raises for one failed request."""
        ...

    def close(self) -> None:
        """Release engines, clients and threads. Safe to call more than once."""
        ...


class BatchGenerationError(RuntimeError):
    """A whole batch failed: ``generate()`` raised, or returned another number of generations than requests."""


def generate_batch(backend: LLMBackend, requests: list[Request], params: GenerationParams) -> list[Generation]:
    """``backend.generate(requests, params)``, one generation per request, checked.

    Raises:
        BatchGenerationError: the transport raised for the whole batch (the cause chained), or the count of
            generations is wrong. Each step decides what a failed batch means (the annotator fails its task, the
            expert records the batch's documents as failed).
    """
    if not requests:
        return []
    try:
        generations = backend.generate(requests, params)
    except Exception as exc:  # a transport that raised for the whole batch
        raise BatchGenerationError(f"the backend raised ({type(exc).__name__}: {exc})") from exc
    if len(generations) != len(requests):
        raise BatchGenerationError(f"the backend returned {len(generations)} generations for {len(requests)} requests")
    return generations
