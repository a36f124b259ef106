"""Fixtures shared by the whole suite: tests run offline, with one torch thread, on a tiny model built here."""

from __future__ import annotations

import os


os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny random Llama + BPE tokenizer folder (built once per session, ~1 s); read it, never write into it."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tests.tiny_model import build_tiny_model

    torch.set_num_threads(1)
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llm"))
