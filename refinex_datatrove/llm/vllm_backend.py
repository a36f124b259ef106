"""LLM transport on an in-process ``vllm.LLM`` engine (offline batched inference on GPUs).

``vllm`` is an optional extra; it is imported only inside :meth:`VLLMBackend.generate` and the engine is
created there, because pipeline steps holding the backend are pickled and shipped to workers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import importlib
import importlib.util
import os
from typing import Any

from refinex_datatrove.llm._util import error_generation
from refinex_datatrove.llm.base import FIRST_TOP_LOGPROBS, TOKEN_LOGPROBS, Generation, GenerationParams, Request

VLLM_INSTALL_HINT = "pip install 'refinex-datatrove[vllm]'"


def require_vllm() -> None:
    """Raise a clear ImportError when vllm is not installed."""
    if importlib.util.find_spec("vllm") is None:
        raise ImportError(f"VLLMBackend needs the vllm package, which is not installed: {VLLM_INSTALL_HINT}")


def structured_regex_kwargs(regex: str) -> dict[str, Any]:
    """The ``SamplingParams`` keyword that constrains output to ``regex`` in the installed vLLM.

    Recent vLLM (>= 0.10.2; the only option since 0.12) takes
    ``structured_outputs=StructuredOutputsParams(regex=...)``; older releases take
    ``guided_decoding=GuidedDecodingParams(regex=...)``.

    Raises:
        ImportError: vllm is missing or offers neither class.
    """
    require_vllm()
    sampling = importlib.import_module("vllm.sampling_params")
    if hasattr(sampling, "StructuredOutputsParams"):
        return {"structured_outputs": sampling.StructuredOutputsParams(regex=regex)}
    if hasattr(sampling, "GuidedDecodingParams"):
        return {"guided_decoding": sampling.GuidedDecodingParams(regex=regex)}
    raise ImportError("this vllm version offers neither StructuredOutputsParams nor GuidedDecodingParams")


def to_sampling_kwargs(params: GenerationParams) -> dict[str, Any]:
    """Map :class:`GenerationParams` 1:1 onto ``vllm.SamplingParams`` keyword arguments.

    vLLM reads ``temperature=0`` as greedy and ``top_k=-1`` / ``top_p=1.0`` as disabled, the same
    conventions as :class:`GenerationParams`. Only ``guided_regex`` needs vllm itself (to build the
    structured-outputs object); everything else is plain data.

    Args:
        params: decoding parameters.

    Returns:
        A dict for ``vllm.SamplingParams(**kwargs)``.
    """
    kwargs: dict[str, Any] = {
        "max_tokens": params.max_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "top_k": params.top_k,
        "stop": list(params.stop),
        "seed": params.seed,
    }
    if params.guided_regex is not None:
        kwargs.update(structured_regex_kwargs(params.guided_regex))
    if params.logprobs is not None:
        kwargs["logprobs"] = params.logprobs
    return kwargs


def completion_logprobs(completion: Any) -> dict[str, Any]:
    """The likelihoods of one ``vllm.CompletionOutput`` (``SamplingParams(logprobs=k)``) as ``Generation.extra``
    entries: ``token_logprobs`` (the generated tokens') and ``first_top_logprobs`` (``{decoded token: logprob}``
    of the first step); ``{}`` when it carries none. Each step's entry is vLLM's ``{token_id: Logprob}``."""
    steps = getattr(completion, "logprobs", None)
    ids = list(getattr(completion, "token_ids", None) or ())
    if not steps or len(steps) < len(ids) or not ids:
        return {}
    tokens = []
    for tid, step in zip(ids, steps, strict=False):
        entry = step.get(tid) if isinstance(step, dict) else None
        if entry is None:
            return {}
        tokens.append(float(entry.logprob))
    first: dict[str, float] = {}
    for tid, entry in steps[0].items():
        text = entry.decoded_token if getattr(entry, "decoded_token", None) is not None else str(tid)
        if text not in first or entry.logprob > first[text]:
            first[text] = float(entry.logprob)
    return {TOKEN_LOGPROBS: tokens, FIRST_TOP_LOGPROBS: first}


def output_to_generation(output: Any) -> Generation:
    """Map one ``vllm.RequestOutput`` (first completion) onto a :class:`Generation`.

    vLLM reports ``finish_reason`` ``"stop"`` (eos or a stop string), ``"length"``, or ``"abort"`` / ``None``
    for requests that did not finish; the last two become ``"error"``.
    """
    prompt_tokens = len(output.prompt_token_ids or ())
    if not output.outputs:
        return Generation(
            text="", finish_reason="error", prompt_tokens=prompt_tokens, error="vllm returned no completion"
        )
    completion = output.outputs[0]
    reason = completion.finish_reason
    n_completion = len(completion.token_ids or ())
    if reason in ("stop", "length"):
        extra: dict[str, Any] = completion_logprobs(completion)
        if getattr(completion, "stop_reason", None) is not None:
            extra["stop_reason"] = completion.stop_reason
        return Generation(
            text=completion.text,
            finish_reason=reason,
            prompt_tokens=prompt_tokens,
            completion_tokens=n_completion,
            extra=extra,
        )
    return Generation(
        text=completion.text or "",
        finish_reason="error",
        prompt_tokens=prompt_tokens,
        completion_tokens=n_completion,
        error=f"vllm finish_reason {reason!r}",
    )


class VLLMBackend:
    """Batched generation on an in-process ``vllm.LLM``.

    Chat requests go through ``LLM.chat`` (the model's chat template, generation prompt added), raw prompts
    through ``LLM.generate``; each kind is submitted as one batch so vLLM's continuous batching does the
    scheduling. If a batch call raises (for example one prompt longer than ``max_model_len``), its requests
    are retried one by one so that only the offending request reports ``finish_reason="error"``.
    A request's own ``guided_regex`` overrides the batch's (vLLM takes one ``SamplingParams`` per prompt).

    Args:
        model: model folder or id, as for ``vllm.LLM(model=...)``.
        tensor_parallel_size: GPUs per engine.
        max_model_len: context length (prompt + completion); ``None`` lets vLLM use the model's.
        gpu_memory_utilization: fraction of GPU memory vLLM may take.
        dtype: ``"auto"``, ``"bfloat16"``, ``"float16"``, ``"float32"``.
        enable_lora: start the engine with LoRA support (implied by ``lora_path``).
        lora_path: LoRA adapter folder applied to every request (``LoRARequest``); put ``max_lora_rank`` in
            ``extra`` when the adapter's rank exceeds vLLM's default.
        chat_template: Jinja chat template overriding the tokenizer's, passed to ``LLM.chat``.
        extra: further ``vllm.LLM`` keyword arguments, passed through unchanged (e.g. ``enforce_eager``,
            ``max_num_seqs``, ``seed``).
    """

    def __init__(
        self,
        model: str | os.PathLike[str],
        *,
        tensor_parallel_size: int = 1,
        max_model_len: int | None = None,
        gpu_memory_utilization: float = 0.9,
        dtype: str = "auto",
        enable_lora: bool = False,
        lora_path: str | os.PathLike[str] | None = None,
        chat_template: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        if tensor_parallel_size < 1:
            raise ValueError(f"tensor_parallel_size must be >= 1, got {tensor_parallel_size}")
        if not 0 < gpu_memory_utilization <= 1:
            raise ValueError(f"gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization}")
        self.model_name = str(model)
        self.tensor_parallel_size = tensor_parallel_size
        self.max_model_len = max_model_len
        self.gpu_memory_utilization = gpu_memory_utilization
        self.dtype = dtype
        self.lora_path = str(lora_path) if lora_path is not None else None
        self.enable_lora = enable_lora or self.lora_path is not None
        self.chat_template = chat_template
        self.extra = dict(extra or {})
        self._llm: Any = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_llm"] = None
        return state

    def engine_kwargs(self) -> dict[str, Any]:
        """The keyword arguments ``vllm.LLM`` is created with."""
        kwargs: dict[str, Any] = {
            "model": self.model_name,
            "tensor_parallel_size": self.tensor_parallel_size,
            "gpu_memory_utilization": self.gpu_memory_utilization,
            "dtype": self.dtype,
        }
        if self.max_model_len is not None:
            kwargs["max_model_len"] = self.max_model_len
        if self.enable_lora:
            kwargs["enable_lora"] = True
        kwargs.update(self.extra)
        return kwargs

    @property
    def llm(self) -> Any:
        """The ``vllm.LLM`` engine, created on first use."""
        if self._llm is None:
            require_vllm()
            from vllm import LLM

            self._llm = LLM(**self.engine_kwargs())
        return self._llm

    def _lora_request(self) -> Any:
        if self.lora_path is None:
            return None
        from vllm.lora.request import LoRARequest

        return LoRARequest("refinex-adapter", 1, self.lora_path)

    def _call(self, kind: str, items: list[Any], sampling_params: Any | list[Any]) -> list[Any]:
        llm = self.llm
        kwargs: dict[str, Any] = {"use_tqdm": False}
        lora = self._lora_request()
        if lora is not None:
            kwargs["lora_request"] = lora
        if kind == "chat":
            if self.chat_template is not None:
                kwargs["chat_template"] = self.chat_template
            return list(llm.chat(items, sampling_params, add_generation_prompt=True, **kwargs))
        return list(llm.generate(items, sampling_params, **kwargs))

    def _run_group(self, kind: str, items: list[Any], sampling_params: list[Any]) -> list[Generation]:
        shared = all(sp is sampling_params[0] for sp in sampling_params)
        try:
            outputs = self._call(kind, items, sampling_params[0] if shared else sampling_params)
            if len(outputs) != len(items):
                raise RuntimeError(f"vllm returned {len(outputs)} outputs for {len(items)} requests")
            return [output_to_generation(o) for o in outputs]
        except Exception as batch_exc:
            if len(items) == 1:
                return [error_generation(batch_exc)]
        results = []
        for item, sp in zip(items, sampling_params, strict=True):
            try:
                (output,) = self._call(kind, [item], sp)
                results.append(output_to_generation(output))
            except Exception as exc:
                results.append(error_generation(exc))
        return results

    def generate(self, requests: list[Request], params: GenerationParams) -> list[Generation]:
        """Generate one :class:`Generation` per request, in order; failures become ``finish_reason="error"``.

        Raises:
            ImportError: vllm is not installed.
            ValueError: ``params`` are invalid for vLLM (a configuration error for the whole batch).
        """
        if not requests:
            return []
        require_vllm()
        from vllm import SamplingParams

        # one SamplingParams per distinct effective params (a request's guided_regex overrides the batch's)
        built: dict[GenerationParams, Any] = {}
        per_request = []
        for request in requests:
            effective = params
            if request.guided_regex is not None:
                effective = dataclasses.replace(params, guided_regex=request.guided_regex)
            if effective not in built:
                built[effective] = SamplingParams(**to_sampling_kwargs(effective))
            per_request.append(built[effective])
        results: list[Generation | None] = [None] * len(requests)
        chat = [i for i, r in enumerate(requests) if r.messages is not None]
        raw = [i for i, r in enumerate(requests) if r.messages is None]
        for kind, indices in (("chat", chat), ("raw", raw)):
            if not indices:
                continue
            items = [requests[i].messages if kind == "chat" else requests[i].prompt for i in indices]
            generations = self._run_group(kind, items, [per_request[i] for i in indices])
            for i, g in zip(indices, generations, strict=True):
                results[i] = g
        return [r if r is not None else error_generation("internal: request was not processed") for r in results]

    def close(self) -> None:
        """Shut the engine down and free GPU memory. Safe to call more than once."""
        llm, self._llm = self._llm, None
        if llm is None:
            return
        engine = getattr(llm, "llm_engine", None)
        shutdown = getattr(engine, "shutdown", None)
        if callable(shutdown):
            with contextlib.suppress(Exception):  # best effort: the engine may already be gone
                shutdown()
        del llm, engine
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass
