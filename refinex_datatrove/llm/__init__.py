"""LLM transports behind one small protocol (:class:`LLMBackend`).

* :class:`~refinex_datatrove.llm.transformers_backend.TransformersBackend`: ``transformers.generate`` (CPU default);
* :class:`~refinex_datatrove.llm.vllm_backend.VLLMBackend`: in-process ``vllm.LLM`` (GPU, optional extra);
* :class:`~refinex_datatrove.llm.openai_endpoint.OpenAIEndpointBackend`: an OpenAI-compatible server
  (``vllm serve``, SGLang, hosted APIs).

Importing this package imports none of torch, transformers, vllm or httpx; the backends are loaded on demand.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from refinex_datatrove.llm.base import Generation, GenerationParams, LLMBackend, Messages, Request

BACKEND_KINDS = ("transformers", "vllm", "endpoint")

_LAZY = {
    "TransformersBackend": "refinex_datatrove.llm.transformers_backend",
    "VLLMBackend": "refinex_datatrove.llm.vllm_backend",
    "OpenAIEndpointBackend": "refinex_datatrove.llm.openai_endpoint",
    "ScriptedBackend": "refinex_datatrove.llm.scripted",
}

__all__ = [
    "BACKEND_KINDS",
    "Generation",
    "GenerationParams",
    "LLMBackend",
    "Messages",
    "OpenAIEndpointBackend",
    "Request",
    "ScriptedBackend",
    "TransformersBackend",
    "VLLMBackend",
    "default_backend_kind",
    "make_backend",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'refinex_datatrove.llm' has no attribute {name!r}")


def default_backend_kind() -> str:
    """``"vllm"`` when CUDA is available and vllm is installed, else ``"transformers"``.

    Imports torch only when called (and only if vllm is installed at all).
    """
    if importlib.util.find_spec("vllm") is None or importlib.util.find_spec("torch") is None:
        return "transformers"
    import torch

    return "vllm" if torch.cuda.is_available() else "transformers"


def make_backend(kind: str, model: str, **kwargs: Any) -> LLMBackend:
    """Create a backend by name; nothing heavy is loaded until its first ``generate``.

    Args:
        kind: ``"transformers"``, ``"vllm"``, ``"endpoint"``, or ``"auto"`` (:func:`default_backend_kind`).
        model: model folder or id; for ``"endpoint"`` the model name the server serves.
        **kwargs: the chosen backend's keyword arguments; ``"endpoint"`` needs ``base_url``.

    Returns:
        The backend.

    Raises:
        ValueError: unknown ``kind``, or ``"endpoint"`` without ``base_url``.
        TypeError: a keyword argument the backend does not accept.
    """
    if kind == "auto":
        kind = default_backend_kind()
    if kind == "transformers":
        from refinex_datatrove.llm.transformers_backend import TransformersBackend

        return TransformersBackend(model, **kwargs)
    if kind == "vllm":
        from refinex_datatrove.llm.vllm_backend import VLLMBackend

        return VLLMBackend(model, **kwargs)
    if kind == "endpoint":
        from refinex_datatrove.llm.openai_endpoint import OpenAIEndpointBackend

        base_url = kwargs.pop("base_url", None)
        if not base_url:
            raise ValueError("make_backend('endpoint', ...) needs base_url=")
        return OpenAIEndpointBackend(base_url, model, **kwargs)
    raise ValueError(f"unknown backend kind {kind!r}; expected one of {(*BACKEND_KINDS, 'auto')}")
