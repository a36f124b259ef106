"""RefineModelAnnotator: the refine model writes one program per chunk; the programs are stored, not executed.

Two transports share the pure functions of :mod:`refinex_datatrove.refine_model.requests`:

* :class:`RefineModelAnnotator`, an inline pipeline step over an :class:`~refinex_datatrove.llm.base.LLMBackend`
  (vLLM in-process, an OpenAI-compatible endpoint, or transformers on CPU), batching documents;
* :func:`make_annotate_rollout`, a rollout for datatrove's ``InferenceRunner`` (managed ``vllm serve``,
  checkpoints, resume). ``InferenceRunner`` is terminal, so execution and filtering then run as a second
  stage (``pipelines/refine_two_stage.py``).
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.utils._import_utils import check_required_dependencies
from datatrove.utils.batching import batched
from datatrove.utils.logging import logger
from datatrove.utils.typeshelper import StatHints

from refinex_datatrove.llm.base import (
    BatchGenerationError,
    Generation,
    GenerationParams,
    LLMBackend,
    Request,
    generate_batch,
)
from refinex_datatrove.metadata import META_KEY, empty_refinex, write_program
from refinex_datatrove.program import ChunkProgram, Unit, split_lines
from refinex_datatrove.refine_model.backend import BACKEND_DEPENDENCIES, BACKEND_KINDS, make_refine_backend
from refinex_datatrove.refine_model.card import (
    DEFAULT_MODEL,
    DEFAULT_UNIT,
    DEFAULT_WINDOW,
    model_chunking,
    resolve_model,
)
from refinex_datatrove.refine_model.decision import (
    DEFAULT_MARGIN,
    DEFAULT_MIN_SHARE,
    DEFAULT_SCORE,
    DecisionRule,
    Score,
    Verdict,
)
from refinex_datatrove.refine_model.grammar import DEFAULT_MAX_CALLS
from refinex_datatrove.refine_model.requests import (
    DEFAULT_MAX_NEW_TOKENS,
    ChunkAnnotation,
    ChunkStatus,
    assemble_annotations,
    build_requests,
    plan_chunks,
)

PROGRAM_SOURCE = "model"
"""``metadata["refinex"]["program"]["source"]`` of programs written by a refine model."""

LOGPROBS = 5
"""Top first tokens asked of the backend when the decision rule is on (``GenerationParams.logprobs``). 5 is the most
OpenAI's completions API accepts; on all 1,604 chunks of the WCXB dev run (generated with 20), keeping only the top
5 changed ``keep_all()``'s first-token log-probability for none."""


class AnnotateStat(StrEnum):
    """Stats of :class:`RefineModelAnnotator` besides ``total``/``forwarded``."""

    CHUNKS = "chunks"  # value = chunks per document
    CHUNKS_SKIPPED = "chunks_skipped"  # one line over the window: never sent, never edited
    CHUNKS_BLANK = "chunks_blank"  # whitespace only: never sent
    REQUESTS = "requests"
    TOKENS_IN = "tokens_in"
    TOKENS_OUT = "tokens_out"
    GEN_TRUNCATED = "gen_truncated"  # finish_reason "length"; complete calls kept
    GEN_FAILED = "gen_failed"  # request failed after the transport's retries; also gen_failed_<cause>
    GEN_RETRIES = "gen_retries"  # further attempts the transport made (value: attempts - 1 per request)
    GEN_EMPTY = "gen_empty"  # the model answered nothing
    DOCS_ANNOTATED = "docs_annotated"
    DOCS_FAILED = "docs_failed"  # a chunk's request failed for good (e.g. HTTP 4xx): the document is not refined
    BATCH_ERROR = "batch_error"  # generate() raised for a whole batch: the task fails
    METADATA_REPLACED = "refinex_metadata_replaced"  # metadata["refinex"] was not a dict; replaced
    # the conservative decision rule (refine_model/decision.py), per chunk
    OVERRULED = "overruled_drastic_chunk"  # a drastic program that did not beat keep_all(): stored as keep_all()
    DRASTIC_ACCEPTED = "drastic_accepted"  # a drastic program that beat keep_all() by the margin: kept
    DRASTIC_UNSCORED = "drastic_unscored"  # a drastic program without likelihoods (backend returned none): kept
    OVERRULED_DOCUMENT = "overruled_would_empty_document"  # kept, the programs would have emptied the document


_VERDICT_STATS: dict[Verdict, AnnotateStat] = {
    Verdict.OVERRULED: AnnotateStat.OVERRULED,
    Verdict.EMPTIES_DOCUMENT: AnnotateStat.OVERRULED_DOCUMENT,
    Verdict.CONFIDENT: AnnotateStat.DRASTIC_ACCEPTED,
    Verdict.UNSCORED: AnnotateStat.DRASTIC_UNSCORED,
}
"""The stat each decision-rule verdict is counted under (``not_drastic`` and ``off`` are not counted)."""


RETRYABLE_KEY = "retryable"
"""``Generation.extra`` flag set by a transport whose retries for a transient fault (connection refused, timeout,
HTTP 5xx / 429, malformed reply) ran out: the server is down or overloaded, not the request wrong."""

ERROR_KIND_KEY = "error_kind"
"""``Generation.extra`` key naming the cause of a failed request (``connection``, ``timeout``, ``http_5xx``,
``http_4xx``, ...): counted as ``gen_failed_<cause>``."""


class GenerationUnavailable(RuntimeError):
    """The refine model could not answer (endpoint down after bounded retries, backend raised): the task fails
    before any document of the batch is written, and datatrove reruns it on the next launch."""


def _error_cause(gen: Generation) -> str:
    kind = gen.extra.get(ERROR_KIND_KEY)
    return kind if isinstance(kind, str) and kind.isidentifier() else "error"


def _duration(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


class Progress:
    """A progress line on stderr every ``every`` seconds from a daemon thread, while a task annotates:
    ``refine task 0: 120/360 docs, 310 chunks, 1,850 prompt tok/s, 0.9 docs/s, elapsed 2m13s, ETA 4m27s``.

    :meth:`add` counts finished documents; :meth:`line` formats the current state (tests call it directly).
    """

    def __init__(self, every: float, expected_docs: int | None = None, label: str = "", stream: Any = None) -> None:
        import sys
        import threading
        import time

        self._time = time.monotonic
        self.every = every
        self.expected_docs = expected_docs
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.docs = self.chunks = self.tokens = 0
        self.start = self._time()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="refinex-progress", daemon=True)
        self._thread.start()

    def add(self, docs: int, chunks: int, prompt_tokens: int) -> None:
        self.docs += docs
        self.chunks += chunks
        self.tokens += prompt_tokens

    def line(self, now: float | None = None) -> str:
        elapsed = max((now if now is not None else self._time()) - self.start, 1e-9)
        done = f"{self.docs}/{self.expected_docs}" if self.expected_docs else f"{self.docs}"
        parts = [
            f"{done} docs",
            f"{self.chunks} chunks",
            f"{self.tokens / elapsed:,.0f} prompt tok/s",
            f"{self.docs / elapsed:.2f} docs/s",
            f"elapsed {_duration(elapsed)}",
        ]
        if self.expected_docs and self.docs:
            left = max(self.expected_docs - self.docs, 0)
            parts.append(f"ETA {_duration(left * elapsed / self.docs)}")
        return f"refine {self.label}: " + ", ".join(parts) if self.label else "refine: " + ", ".join(parts)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            try:
                print(self.line(), file=self.stream, flush=True)
            except (OSError, ValueError):  # the stream was closed
                return

    def stop(self) -> None:
        self._stop.set()


def _count_annotations(step: PipelineStep, annotations: Sequence[ChunkAnnotation]) -> bool:
    """Update the chunk stats of one document; returns whether the document failed (a sent chunk failed)."""
    step.stat_update(AnnotateStat.CHUNKS, value=len(annotations), unit="doc")
    sent = failed = 0
    for a in annotations:
        if a.status == ChunkStatus.SKIPPED:
            step.stat_update(AnnotateStat.CHUNKS_SKIPPED)
            continue
        if a.status == ChunkStatus.BLANK:
            step.stat_update(AnnotateStat.CHUNKS_BLANK)
            continue
        sent += 1
        step.stat_update(AnnotateStat.REQUESTS)
        step.stat_update(AnnotateStat.TOKENS_IN, value=a.prompt_tokens)
        step.stat_update(AnnotateStat.TOKENS_OUT, value=a.completion_tokens)
        if a.status == ChunkStatus.FAILED:
            failed += 1
            step.stat_update(AnnotateStat.GEN_FAILED)
        elif a.status == ChunkStatus.TRUNCATED:
            step.stat_update(AnnotateStat.GEN_TRUNCATED)
        elif a.status == ChunkStatus.EMPTY:
            step.stat_update(AnnotateStat.GEN_EMPTY)
        if a.verdict in _VERDICT_STATS:
            step.stat_update(_VERDICT_STATS[a.verdict])
    return failed > 0


def store_annotations(doc: Document, annotations: Sequence[ChunkAnnotation], model_name: str) -> bool:
    """Write the chunk programs to ``doc.metadata["refinex"]["program"]`` (source ``"model"``).

    The record holds ``"model"`` (the refine model's name) and each chunk its ``"status"``
    (:class:`~refinex_datatrove.refine_model.requests.ChunkStatus`) and, when it failed, its ``"error"``; a failed chunk's
    program is ``keep_all()``. The decision rule's ``"margin"`` is kept per chunk, and an overruled chunk's
    model program as ``"overruled_program"`` (its stored program is ``keep_all()``).
    A ``metadata["refinex"]`` that is not a dict (malformed upstream metadata) is replaced by a fresh one.

    Returns:
        Whether malformed ``metadata["refinex"]`` had to be replaced.
    """
    replaced = META_KEY in doc.metadata and not isinstance(doc.metadata[META_KEY], dict)
    if replaced:
        doc.metadata[META_KEY] = empty_refinex()
    n_lines = len(split_lines(doc.text))
    write_program(
        doc,
        [ChunkProgram(a.chunk, a.program) for a in annotations],
        PROGRAM_SOURCE,
        n_lines,
        model=model_name,
        statuses=[a.status.value for a in annotations],
        errors=[(a.error or "unknown error")[:500] if a.status == ChunkStatus.FAILED else None for a in annotations],
        margins=[a.margin for a in annotations],
        overruled=[a.overruled_program for a in annotations],
    )
    return replaced


class RefineModelAnnotator(PipelineStep):
    """Ask the refine model for one program per chunk of every document and store the programs.

    Reads ``doc.text``. Writes ``doc.metadata["refinex"]["program"]`` =
    ``{"render", "source": "model", "model", "n_lines", "chunks": [{"start", "n_lines", "skipped", "program",
    "status"}]}`` (see :mod:`refinex_datatrove.metadata`); ``doc.text`` is unchanged: ``ProgramExecutor`` runs
    the programs, now or later under another policy, without the model.

    Every chunk is rendered with the core renderer (the one the training data used) and sent as one raw prompt
    (``render_prompt``, no chat template); decoding is greedy. Skipped chunks (one line over the window) and
    whitespace-only chunks get no request and the program ``keep_all()``. Documents are batched ``batch_size``
    at a time and all their chunks are generated in one backend call.

    Failures (README "Failure contract"): a generation is never mistaken for a program.

    * The transport retries transient faults with backoff (``gen_retries``). When a request still fails for a
      transient cause (the endpoint is down or overloaded: ``Generation.extra["retryable"]``), or ``generate()``
      raises, the step raises :class:`GenerationUnavailable` before forwarding any document of the batch: the
      task fails, writes no completion mark, and the next launch (without ``--force``) runs it again.
    * A request that fails for a reason retrying would not fix (e.g. HTTP 4xx) gives its chunk status
      ``failed`` with the error text and the program ``keep_all()``; the document counts as ``docs_failed``,
      and ``ProgramExecutor`` does not execute it (status ``generation_failed``), so it is never counted as
      refined; ``FailedGenerationFilter`` sends it to its own output. Causes count as ``gen_failed_<cause>``.
    * If every request of the first batch fails (a wrong model name), or every document of the task failed,
      the step raises :class:`RuntimeError`.

    Args:
        model: a trained refine model folder (with ``refinex.json``, full model or LoRA adapter), a plain model
            folder or id, or ``"default"`` for the model shipped with the package. For ``backend="endpoint"``
            it names the model on the server (override with ``backend_kwargs={"model": ...}``).
        backend: ``"vllm"``, ``"endpoint"``, ``"transformers"``, ``None`` (auto:
            :func:`refinex_datatrove.llm.default_backend_kind`) or an :class:`LLMBackend` instance.
        backend_kwargs: keyword arguments for the backend (e.g. ``{"base_url": ...}`` for an endpoint,
            ``{"max_model_len": 4096}`` for vLLM).
        window: chunk window; default the model's ``refinex.json`` value, else
            :data:`~refinex_datatrove.refine_model.card.DEFAULT_WINDOW` characters.
        unit: window unit (``"chars"`` or ``"words"``); default from ``refinex.json``, else ``"chars"``.
        batch_size: documents per backend call.
        max_new_tokens: bound on each program's length in tokens.
        bound_by_lines: also bound each chunk's program by its line count
            (:func:`~refinex_datatrove.refine_model.requests.chunk_max_tokens`; honoured by the transformers backend and the
            ``InferenceRunner`` rollout).
        guided: constrain decoding to the program grammar with line numbers within the chunk and no inverted
            range (:func:`~refinex_datatrove.refine_model.grammar.program_regex`): vLLM's structured outputs,
            vLLM-served endpoints, xgrammar on the transformers backend (needs the ``xgrammar`` package).
        max_calls: the grammar's bound on calls per program (``guided`` only); ``None`` for no bound.
        max_str_chars: the grammar's bound on the characters of a ``remove_str`` string (``guided`` only);
            ``None`` (default) for no bound.
        model_name: name recorded with the programs; default the model folder's name or the model id.
        progress_every: print a progress line to stderr every so many seconds (documents and chunks done,
            prompt tokens/s, ETA); ``None`` (default): none. ``refinex refine`` turns it on on a terminal.
        expected_docs: documents this task will see, for the ETA (``None``: no ETA).
        workers: model processes running at once on this machine: the transformers backend's default torch
            threads split the cores between them (:func:`~refinex_datatrove.llm.transformers_backend.default_num_threads`).
        overrule_margin: the conservative decision rule (:mod:`refinex_datatrove.refine_model.decision`): a
            *drastic* program (deleting at least ``overrule_share`` of its chunk's non-blank lines) is kept only
            when it beats ``keep_all()`` by this many nats of the model's own likelihood, else the chunk keeps its
            text (status ``overruled``, stat ``overruled_drastic_chunk``, the model's program kept in the chunk's
            ``overruled_program``). Default chosen on WCXB dev; ``None`` turns the rule off. The backend is asked
            for log-probabilities (transformers scores, vLLM / endpoint ``logprobs``); a backend that returns
            none leaves drastic programs as they are (``drastic_unscored``). With the rule on, a document is never
            emptied by the model: when its programs would delete every non-blank line, its whole-chunk deletions
            are overruled too (``overruled_would_empty_document``).
        overrule_share: the share of a chunk's non-blank lines from which a program is drastic.
        overrule_score: ``"first"`` (the program's first token against ``keep_all()``'s, at the first decoding
            step) or ``"program"`` (the whole program's log-probability against ``keep_all()``'s first token).
    """

    name = "🏷️ RefineX annotate"
    type = "🤖 - LLM"
    _requires_dependencies = ["orjson"]  # and those of the backend kind (BACKEND_DEPENDENCIES), when it is built

    def __init__(
        self,
        *,
        model: str | os.PathLike[str] = DEFAULT_MODEL,
        backend: str | LLMBackend | None = None,
        backend_kwargs: Mapping[str, Any] | None = None,
        window: int | None = None,
        unit: Unit | None = None,
        batch_size: int = 64,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        bound_by_lines: bool = True,
        guided: bool = False,
        max_calls: int | None = DEFAULT_MAX_CALLS,
        max_str_chars: int | None = None,
        model_name: str | None = None,
        progress_every: float | None = None,
        expected_docs: int | None = None,
        workers: int = 1,
        overrule_margin: float | None = DEFAULT_MARGIN,
        overrule_share: float = DEFAULT_MIN_SHARE,
        overrule_score: Score = DEFAULT_SCORE,
    ) -> None:
        super().__init__()
        self.rule = DecisionRule(margin=overrule_margin, min_share=overrule_share, score=overrule_score)
        if isinstance(backend, str) and backend not in BACKEND_KINDS:
            raise ValueError(f"backend must be one of {BACKEND_KINDS}, None or an LLMBackend, got {backend!r}")
        if backend is not None and not isinstance(backend, str) and not isinstance(backend, LLMBackend):
            raise TypeError(f"backend must be a kind name, None or an LLMBackend, got {type(backend).__name__}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 1 <= max_new_tokens <= 8192:
            raise ValueError(f"max_new_tokens must be in 1..8192, got {max_new_tokens}")
        info = resolve_model(model)
        self.model = info.path
        self.info = info
        self.model_name = model_name or info.name
        self.backend = backend
        self.backend_kwargs = dict(backend_kwargs or {})
        self.window, self.unit = model_chunking(info, window, unit)
        if self.window < 1:
            raise ValueError(f"window must be >= 1, got {self.window}")
        if info.window is not None and window is not None and window != info.window:
            logger.warning(f"window {window} differs from the window {info.window} that {self.model} was trained with")
        self.batch_size = batch_size
        self.bound_by_lines = bound_by_lines
        if progress_every is not None and progress_every <= 0:
            raise ValueError(f"progress_every must be > 0 seconds, got {progress_every}")
        self.progress_every = progress_every
        self.expected_docs = expected_docs
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        self.guided = guided
        self.max_calls = max_calls
        self.max_str_chars = max_str_chars
        self.params = GenerationParams(
            max_tokens=max_new_tokens, temperature=0.0, logprobs=LOGPROBS if self.rule.active else None
        )

    def _make_backend(self) -> LLMBackend:
        if self.backend is not None and not isinstance(self.backend, str):
            return self.backend
        kind = self.backend
        if kind is None:
            from refinex_datatrove.llm import default_backend_kind

            kind = default_backend_kind()
        # the backend's own packages, checked where it runs (a dry run or a Slurm launch needs none of them)
        needs = list(BACKEND_DEPENDENCIES[kind])
        if self.guided and kind == "transformers":
            needs.append("xgrammar")  # guided decoding on the transformers backend
        check_required_dependencies(f"{type(self).__name__}(backend={kind!r}, guided={self.guided})", needs)
        kwargs = dict(self.backend_kwargs)
        if kind == "transformers" and self.workers > 1 and "num_threads" not in kwargs:
            from refinex_datatrove.llm.transformers_backend import default_num_threads

            if "OMP_NUM_THREADS" not in os.environ:
                kwargs["num_threads"] = default_num_threads(self.workers)
        return make_refine_backend(kind, self.info, kwargs)

    def _where(self) -> str:
        url = self.backend_kwargs.get("base_url") or getattr(self.backend, "base_url", None)
        return f"refine model {self.model!r}" + (f" at {url}" if url else "")

    def _generate(self, backend: LLMBackend, requests: list[Request], first: bool, rank: int) -> list[Generation]:
        try:
            generations = generate_batch(backend, requests, self.params)
        except BatchGenerationError as exc:
            self.stat_update(AnnotateStat.BATCH_ERROR)
            where = "on the first batch" if first else f"mid-run (task {rank})"
            raise GenerationUnavailable(
                f"{self._where()}: {where}, {exc}; check the model path, backend and server. No document of this "
                "batch was written; the task is not complete, rerun to finish it"
            ) from exc
        retries = sum(max(0, int(g.extra.get("attempts", 1) or 1) - 1) for g in generations)
        if retries:
            self.stat_update(AnnotateStat.GEN_RETRIES, value=retries)
        failed = [g for g in generations if not g.ok]
        for g in failed:
            self.stat_update(f"{AnnotateStat.GEN_FAILED}_{_error_cause(g)}")
        down = [g for g in failed if g.extra.get(RETRYABLE_KEY)]
        if down:
            causes = Counter(_error_cause(g) for g in down)
            raise GenerationUnavailable(
                f"{self._where()}: {len(down)} of {len(requests)} requests of a batch of task {rank} failed after "
                f"bounded retries ({', '.join(f'{k}={v}' for k, v in sorted(causes.items()))}; last error: "
                f"{down[-1].error}). No document of this batch was written; the task is not complete: rerun the "
                "same command (without --force) to finish it"
            )
        if failed:
            logger.warning(
                f"{self._where()}: {len(failed)} of {len(requests)} requests failed for good ({failed[0].error}); "
                "their documents are not refined (docs_failed, excluded as generation_failed)"
            )
        if first and failed and len(failed) == len(requests):
            raise RuntimeError(
                f"{self._where()}: every request of the first batch failed ({failed[0].error}); check the model "
                "name, backend and server"
            )
        return generations

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        backend = self._make_backend()
        n_docs = n_failed = n_sent = n_bad = 0
        first = True
        progress = Progress(self.progress_every, self.expected_docs, f"task {rank}") if self.progress_every else None
        try:
            for batch in batched(data, self.batch_size):
                plans = []
                requests: list[Request] = []
                for doc in batch:
                    chunks = plan_chunks(doc.text, self.window, self.unit)
                    doc_requests = build_requests(
                        doc.text,
                        chunks,
                        guided=self.guided,
                        max_calls=self.max_calls,
                        max_tokens=self.params.max_tokens if self.bound_by_lines else None,
                        max_str_chars=self.max_str_chars,
                    )
                    plans.append((chunks, len(doc_requests)))
                    requests += doc_requests
                with self.track_time(unit="batch"):
                    generations = self._generate(backend, requests, first, rank)
                first = first and not requests
                n_sent += len(generations)
                n_bad += sum(not g.ok for g in generations)
                offset = 0
                for doc, (chunks, n_req) in zip(batch, plans, strict=True):
                    self.stat_update(StatHints.total)
                    annotations = assemble_annotations(
                        doc.text, chunks, generations[offset : offset + n_req], self.rule
                    )
                    offset += n_req
                    if store_annotations(doc, annotations, self.model_name):
                        self.stat_update(AnnotateStat.METADATA_REPLACED)
                    n_docs += 1
                    if _count_annotations(self, annotations):
                        n_failed += 1
                        self.stat_update(AnnotateStat.DOCS_FAILED)
                    else:
                        self.stat_update(AnnotateStat.DOCS_ANNOTATED)
                    if progress is not None:
                        progress.add(1, len(annotations), sum(a.prompt_tokens for a in annotations))
                    self.stat_update(StatHints.forwarded)
                    yield doc
        finally:
            if progress is not None:
                progress.stop()
            backend.close()
        if n_sent and n_bad == n_sent:
            raise RuntimeError(
                f"refine model {self.model!r}: generation failed for all {n_failed} documents of task {rank} "
                "(see gen_failed and the log); a wrong model, backend or server, not bad data"
            )


# ---------------------------------------------------------------------------------------------------------------
# InferenceRunner route


def _payload(request: Request, max_tokens: int) -> dict[str, Any]:
    if request.max_tokens is not None:
        max_tokens = min(max_tokens, request.max_tokens)
    payload: dict[str, Any] = {"prompt": request.prompt, "max_tokens": max_tokens, "temperature": 0.0}
    if request.guided_regex is not None:
        payload["structured_outputs"] = {"regex": request.guided_regex}
    return payload


def _to_generation(result: Any) -> Generation:
    usage = getattr(result, "usage", None) or {}
    return Generation(
        text=getattr(result, "text", "") or "",
        finish_reason=getattr(result, "finish_reason", None) or "stop",
        prompt_tokens=int(usage.get("prompt_tokens", 0) or 0),
        completion_tokens=int(usage.get("completion_tokens", 0) or 0),
    )


@dataclass(frozen=True)
class AnnotateRollout:
    """Async rollout for datatrove's ``InferenceRunner``; build it with :func:`make_annotate_rollout`.

    Plans and renders the chunks of ``document.text`` exactly as :class:`RefineModelAnnotator` does, sends one
    raw-prompt request per chunk (``{"prompt": ...}``: run the ``InferenceRunner`` with
    ``InferenceConfig(use_chat=False)`` so it goes to ``/v1/completions``; concurrently, the runner's semaphore
    bounds them), and stores the programs in
    ``document.metadata["refinex"]["program"]`` (the same record). Re-running it (resume) rewrites the same
    record. A request that fails with ``InferenceError`` (a 4xx, or connection retries exhausted) becomes a
    ``failed`` chunk with ``keep_all()``; a ``ServerError`` (the server died) propagates and fails the task,
    as the runner intends.

    Returns a summary dict for ``metadata["rollout_results"]``: ``{"chunks", "requests", "failed",
    "truncated", "overruled", "drastic_unscored", "prompt_tokens", "completion_tokens"}``; never ``None``, so
    every document is written.

    The conservative decision rule (``rule``) is applied as in :class:`RefineModelAnnotator`, but without
    likelihoods: datatrove's ``InferenceRunner`` hands the rollout an ``InferenceResult`` (text, finish reason,
    usage) and drops the server's ``logprobs``, so a drastic program cannot be judged by its margin; it is kept and
    counted as ``drastic_unscored`` in the summary. The document guard, which needs no likelihood, still holds
    (counted in ``overruled``). Run the inline annotator (``backend="vllm"`` or ``"endpoint"``, which return
    log-probabilities) where the margin must hold.
    """

    window: int = DEFAULT_WINDOW
    unit: str = DEFAULT_UNIT
    max_tokens: int = DEFAULT_MAX_NEW_TOKENS
    guided: bool = False
    max_calls: int | None = DEFAULT_MAX_CALLS
    model_name: str = "refine-model"
    bound_by_lines: bool = True
    rule: DecisionRule = field(default_factory=DecisionRule)

    async def _one(self, generate: Any, request: Request) -> Generation:
        from datatrove.pipeline.inference.types import InferenceError

        try:
            result = await generate(_payload(request, self.max_tokens))
        except InferenceError as exc:
            logger.warning(f"refine request failed: {exc.error}")
            return Generation(
                text="", finish_reason="error", error=str(exc.error), extra={ERROR_KIND_KEY: "inference_error"}
            )
        return _to_generation(result)

    async def __call__(self, document: Document, generate: Any, **_context: Any) -> dict[str, int]:
        chunks = plan_chunks(document.text, self.window, self.unit)
        requests = build_requests(
            document.text,
            chunks,
            guided=self.guided,
            max_calls=self.max_calls,
            max_tokens=self.max_tokens if self.bound_by_lines else None,
        )
        generations = await asyncio.gather(*(self._one(generate, r) for r in requests))
        annotations = assemble_annotations(document.text, chunks, list(generations), self.rule)
        store_annotations(document, annotations, self.model_name)
        return {
            "chunks": len(annotations),
            "requests": len(requests),
            "failed": sum(a.status == ChunkStatus.FAILED for a in annotations),
            "truncated": sum(a.status == ChunkStatus.TRUNCATED for a in annotations),
            "overruled": sum(a.status == ChunkStatus.OVERRULED for a in annotations),
            "drastic_unscored": sum(a.verdict == Verdict.UNSCORED for a in annotations),
            "prompt_tokens": sum(a.prompt_tokens for a in annotations),
            "completion_tokens": sum(a.completion_tokens for a in annotations),
        }


def make_annotate_rollout(
    window: int = DEFAULT_WINDOW,
    unit: str = DEFAULT_UNIT,
    max_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    guided: bool = False,
    *,
    max_calls: int | None = DEFAULT_MAX_CALLS,
    model_name: str = "refine-model",
    overrule_margin: float | None = DEFAULT_MARGIN,
    overrule_share: float = DEFAULT_MIN_SHARE,
    overrule_score: Score = DEFAULT_SCORE,
) -> AnnotateRollout:
    """The rollout for ``InferenceRunner(rollout_fn=make_annotate_rollout(...), config=InferenceConfig(...))``.

    Args:
        window: chunk window (use the model's ``refinex.json`` value; see :func:`resolve_model`).
        unit: window unit.
        max_tokens: bound on each program's length in tokens.
        guided: send the program grammar as vLLM's ``structured_outputs={"regex": ...}`` (vLLM >= 0.12).
        max_calls: the grammar's bound on calls per program.
        model_name: recorded with the programs.
        overrule_margin, overrule_share, overrule_score: the decision rule, as for :class:`RefineModelAnnotator`
            (without the server's log-probabilities, which ``InferenceRunner`` drops, drastic programs are
            counted as ``drastic_unscored``, not overruled; see :class:`AnnotateRollout`).

    Returns:
        A picklable async callable ``rollout(document, generate, **shared_context)``.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    rule = DecisionRule(margin=overrule_margin, min_share=overrule_share, score=overrule_score)
    return AnnotateRollout(window, unit, max_tokens, guided, max_calls, model_name, rule=rule)


__all__ = [
    "PROGRAM_SOURCE",
    "AnnotateRollout",
    "AnnotateStat",
    "GenerationUnavailable",
    "Progress",
    "RefineModelAnnotator",
    "make_annotate_rollout",
    "store_annotations",
]
