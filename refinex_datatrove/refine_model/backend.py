"""Building the LLM backend for a refine model: its base model plus the adapter where the folder is one."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from refinex_datatrove.llm.base import LLMBackend
from refinex_datatrove.refine_model.card import RefineModelInfo

BACKEND_KINDS = ("vllm", "endpoint", "transformers")

BACKEND_DEPENDENCIES: dict[str, list[str | tuple[str, str]]] = {
    "transformers": ["torch", "transformers", "peft"],
    "vllm": ["vllm", "torch"],
    "endpoint": ["httpx"],
}
"""What each backend kind imports, in datatrove's ``_requires_dependencies`` form (module or (module, pip name))."""


def _adapter_rank(adapter_dir: str) -> int | None:
    try:
        cfg = json.loads((Path(adapter_dir) / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    r = cfg.get("r")
    return r if isinstance(r, int) else None


def make_refine_backend(
    kind: str, info: RefineModelInfo, backend_kwargs: Mapping[str, Any] | None = None
) -> LLMBackend:
    """Build the backend for a refine model: base model plus adapter where the folder is an adapter.

    Args:
        kind: ``"vllm"``, ``"endpoint"`` or ``"transformers"``.
        info: from :func:`resolve_model`.
        backend_kwargs: passed to :func:`refinex_datatrove.llm.make_backend`; a ``"model"`` entry replaces the
            model argument (for an endpoint: the name the server serves the model under).
    """
    from refinex_datatrove.llm import make_backend

    kw = dict(backend_kwargs or {})
    model = kw.pop("model", None)
    if kind == "endpoint":
        return make_backend(kind, model or info.path, **kw)
    if model is None and info.adapter:
        from refinex_datatrove.refine_model.weights import base_model_dir

        model = base_model_dir(info.path)
        if kind == "transformers":
            kw.setdefault("adapter", info.path)
        elif kind == "vllm":
            kw.setdefault("lora_path", info.path)
            rank = _adapter_rank(info.path)
            if rank is not None and rank > 16:
                extra = dict(kw.get("extra") or {})
                extra.setdefault("max_lora_rank", rank)
                kw["extra"] = extra
    return make_backend(kind, model or info.path, **kw)


__all__ = ["BACKEND_DEPENDENCIES", "BACKEND_KINDS", "make_refine_backend"]
