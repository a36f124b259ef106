"""The offline tiny-model helper reloads through the real Auto* loading path and generates."""

from __future__ import annotations

import json
import os


os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest


torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from tests.tiny_model import build_tiny_model  # noqa: E402


def test_reload_and_generate(tiny_model_dir: str) -> None:
    tok = transformers.AutoTokenizer.from_pretrained(tiny_model_dir)
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert model.config.model_type == "llama"
    assert model.config.hidden_size // model.config.num_attention_heads == 32
    assert model.config.vocab_size == len(tok)
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|pad|>"
    assert model.config.eos_token_id == tok.eos_token_id

    enc = tok.apply_chat_template(
        [{"role": "user", "content": "[1] Home\n[2] The river rose."}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    out = model.generate(**enc, max_new_tokens=6, do_sample=False)
    assert out.shape[1] > enc["input_ids"].shape[1]
    assert out.shape[1] <= enc["input_ids"].shape[1] + 6


def test_program_text_round_trips(tiny_model_dir: str) -> None:
    tok = transformers.AutoTokenizer.from_pretrained(tiny_model_dir)
    for text in ['remove_lines(1, 2)\nremove_str(3, "x")\nkeep_all()', "[12] Ünïcode line — ok"]:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == text
    # the BPE learned merges from the synthetic program text: fewer tokens than bytes
    program = "remove_lines(1, 2)"
    assert len(tok(program, add_special_tokens=False)["input_ids"]) < len(program.encode())


def test_chat_template_is_prefix_preserving(tiny_model_dir: str) -> None:
    tok = transformers.AutoTokenizer.from_pretrained(tiny_model_dir)
    messages = [{"role": "system", "content": "sys"}, {"role": "user", "content": "[1] a"}]
    prompt = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    full = tok.apply_chat_template([*messages, {"role": "assistant", "content": "keep_all()"}], tokenize=False)
    assert full.startswith(prompt)
    assert full[len(prompt) :] == "keep_all()<|im_end|>\n"
    assert prompt == "<|im_start|>system\nsys<|im_end|>\n<|im_start|>user\n[1] a<|im_end|>\n<|im_start|>assistant\n"


def test_same_seed_same_weights(tmp_path) -> None:
    a = build_tiny_model(tmp_path / "a", seed=3)
    b = build_tiny_model(tmp_path / "b", seed=3)
    c = build_tiny_model(tmp_path / "c", seed=4)
    sa = (tmp_path / "a" / "model.safetensors").read_bytes()
    assert sa == (tmp_path / "b" / "model.safetensors").read_bytes()
    assert sa != (tmp_path / "c" / "model.safetensors").read_bytes()
    assert json.loads((tmp_path / "a" / "tokenizer.json").read_text()) == json.loads(
        (tmp_path / "b" / "tokenizer.json").read_text()
    )
    assert a != b != c
