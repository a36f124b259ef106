"""ExpertRefiner: the expert's end-to-end, deletion-only rewrite of each document (paper §5)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.utils.batching import batched
from datatrove.utils.logging import logger
from datatrove.utils.typeshelper import StatHints

from refinex_datatrove.expert_protocol import (
    DEFAULT_WINDOW,
    ExpertResult,
    ExpertStatus,
    assemble_expert_result,
    build_expert_requests,
)
from refinex_datatrove.llm.base import (
    BatchGenerationError,
    Generation,
    GenerationParams,
    LLMBackend,
    Request,
    generate_batch,
)
from refinex_datatrove.metadata import (
    META_KEY,
    MalformedProgramMetadata,
    empty_refinex,
    get_refinex,
    rewrite_record,
)
from refinex_datatrove.program import Chunk, Unit
from refinex_datatrove.prompts import Prompt, load_prompt

EXPERT_PARAMS = GenerationParams(max_tokens=16_384, temperature=0.7, top_p=0.8, top_k=20)
"""The paper's expert decoding (top-p 0.8, top-k 20; temperature 0.7 is Qwen2.5's recommended default).
``max_tokens`` leaves room for a 12k-token window copied back plus the reason."""

BackendSpec = LLMBackend | Mapping[str, Any] | Callable[[], LLMBackend]


class ExpertStat(StrEnum):
    """Stats of :class:`ExpertRefiner` besides ``total``/``forwarded`` (one ``rewrite_<status>`` per status)."""

    WINDOWS = "windows"
    WINDOWS_SKIPPED = "windows_skipped"
    TOKENS_IN = "tokens_in"
    TOKENS_OUT = "tokens_out"
    BATCH_ERROR = "batch_error"
    MALFORMED_REFINEX = "malformed_refinex"


class ExpertRefiner(PipelineStep):
    """Ask an expert LLM for a deletion-only rewrite of every document.

    Reads ``doc.text``. Writes ``doc.metadata["refinex"]["rewrite"]`` = ``{"text", "reason", "status", "prompt",
    "prompt_sha256", "model", "finish_reason", "prompt_tokens", "completion_tokens", "n_windows", "error"}``;
    ``doc.text`` is left unchanged (the distiller compares the two). Every document is forwarded whatever its
    status; statuses are counted as ``rewrite_<status>``.

    Long documents are split into line-aligned windows (no overlap) that are refined separately and joined
    back with ``"\\n"``. Documents are batched ``batch_size`` at a time into one ``generate`` call.

    A failing request never stops the task, but if every document of the task failed at the transport level
    the step raises :class:`RuntimeError` at the end: that is a wrong model, endpoint or prompt, not bad data.
    """

    name = "🧑‍🏫 RefineX expert"
    type = "🤖 - LLM"
    _requires_dependencies = [("yaml", "pyyaml")]  # the prompt files; the backend's own are checked when it loads

    def __init__(
        self,
        *,
        backend: BackendSpec,
        prompt: str | Prompt = "expert_refine_v1",
        window: int = DEFAULT_WINDOW,
        unit: Unit = "chars",
        params: GenerationParams | None = None,
        batch_size: int = 16,
        model: str | None = None,
    ) -> None:
        """Configure the step; the backend is built lazily in :meth:`run`.

        Args:
            backend: an :class:`LLMBackend` instance, a spec mapping for
                :func:`refinex_datatrove.llm.make_backend` (``{"kind": "vllm", "model": "...", ...}``), or a
                zero-argument factory returning a backend.
            prompt: a prompt name under ``refinex_datatrove/prompts`` or a :class:`Prompt`; it must take the
                single variable ``DOCUMENT``.
            window: expert window size in ``unit`` (default 48,000 characters, about 12k tokens).
            unit: ``"chars"``, ``"words"`` or a picklable callable counting one line.
            params: decoding parameters; default :data:`EXPERT_PARAMS`.
            batch_size: documents per ``generate`` call.
            model: model name recorded in metadata; default the spec's ``model`` or the backend's ``model``.
        """
        super().__init__()
        self.prompt = load_prompt(prompt) if isinstance(prompt, str) else prompt
        if set(self.prompt.variables) != {"DOCUMENT"}:
            raise ValueError(f"prompt {self.prompt.name!r} must take exactly the variable DOCUMENT")
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if isinstance(backend, Mapping):
            if "kind" not in backend:
                raise ValueError("a backend spec needs a 'kind' (and usually a 'model')")
            backend = dict(backend)
        elif not callable(backend) and not isinstance(backend, LLMBackend):
            raise TypeError(f"backend must be an LLMBackend, a spec dict or a factory, got {type(backend)!r}")
        self.backend_spec = backend
        self.window = window
        self.unit = unit
        self.params = params or EXPERT_PARAMS
        self.batch_size = batch_size
        self.model = model or _model_name(backend)

    def _make_backend(self) -> tuple[LLMBackend, bool]:
        """The backend to use and whether this step created it (and so must close it)."""
        spec = self.backend_spec
        if isinstance(spec, LLMBackend) and not isinstance(spec, type):
            return spec, False
        if isinstance(spec, Mapping):
            from refinex_datatrove.llm import make_backend

            spec = dict(spec)
            return make_backend(spec.pop("kind"), spec.pop("model", None), **spec), True
        return spec(), True

    def _generate(self, backend: LLMBackend, requests: list[Request]) -> list[Generation]:
        """One ``generate`` call; a transport exception fails the batch's requests instead of the task."""
        try:
            return generate_batch(backend, requests, self.params)
        except BatchGenerationError as exc:
            logger.warning(f"expert batch of {len(requests)} requests failed: {exc}")
            self.stat_update(ExpertStat.BATCH_ERROR)
            return [Generation(text="", finish_reason="error", error=str(exc)) for _ in requests]

    def _record(self, doc: Document, result: ExpertResult) -> None:
        try:
            meta = get_refinex(doc)
        except MalformedProgramMetadata as exc:
            logger.warning(f"document {doc.id!r}: replacing unreadable metadata[{META_KEY!r}] ({exc})")
            self.stat_update(ExpertStat.MALFORMED_REFINEX)
            meta = doc.metadata[META_KEY] = empty_refinex()
        meta["rewrite"] = rewrite_record(
            text=result.text,
            reason=result.reason,
            status=str(result.status),
            prompt=self.prompt.name,
            prompt_sha256=self.prompt.sha256,
            model=self.model,
            finish_reason=result.finish_reason,
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            n_windows=result.n_windows,
            error=result.error,
        )
        self.stat_update(f"rewrite_{result.status}")
        self.stat_update(ExpertStat.WINDOWS, value=result.n_windows)
        if result.n_skipped_windows:
            self.stat_update(ExpertStat.WINDOWS_SKIPPED, value=result.n_skipped_windows)
        self.stat_update(ExpertStat.TOKENS_IN, value=result.prompt_tokens, unit="token")
        self.stat_update(ExpertStat.TOKENS_OUT, value=result.completion_tokens, unit="token")

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        """Refine every document of ``data``; see the class docstring."""
        if data is None:
            return
        backend: LLMBackend | None = None
        owned = False
        n_sent = n_failed = 0
        first_error: str | None = None
        try:
            for batch in batched(data, self.batch_size):
                if backend is None:
                    backend, owned = self._make_backend()
                with self.track_time("batch"):
                    per_doc: list[list[tuple[Chunk, Request]]] = [
                        build_expert_requests(doc.text, self.prompt, self.window, self.unit) for doc in batch
                    ]
                    generations = iter(self._generate(backend, [req for pairs in per_doc for _, req in pairs]))
                    results = [
                        assemble_expert_result(doc.text, [(chunk, next(generations)) for chunk, _ in pairs])
                        for doc, pairs in zip(batch, per_doc, strict=True)
                    ]
                for doc, result in zip(batch, results, strict=True):
                    self.stat_update(StatHints.total)
                    self._record(doc, result)
                    if result.status != ExpertStatus.EMPTY_INPUT:
                        n_sent += 1
                    if result.status == ExpertStatus.FAILED:
                        n_failed += 1
                        first_error = first_error or result.error
                    self.stat_update(StatHints.forwarded)
                    yield doc
        finally:
            if backend is not None and owned:
                backend.close()
        if n_sent and n_failed == n_sent:
            raise RuntimeError(
                f"ExpertRefiner: all {n_sent} documents of task {rank} failed at the transport level "
                f"(model={self.model!r}, prompt={self.prompt.name!r}); first error: {first_error}"
            )


def _model_name(backend: object) -> str | None:
    model = backend.get("model") if isinstance(backend, Mapping) else getattr(backend, "model", None)
    return model if isinstance(model, str) else None


__all__ = ["EXPERT_PARAMS", "ExpertRefiner", "ExpertStat"]
