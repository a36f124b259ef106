"""Guided decoding on the transformers backend (xgrammar): a random tiny model writes garbage when free, and
programs inside each chunk's grammar when guided, in batches of chunks with different line counts."""

from __future__ import annotations

import pickle
import re
import sys

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
import xgrammar  # noqa: F401  (in the train extra: a missing install fails here, it is not skipped)

from refinex_datatrove.llm import GenerationParams, Request
from refinex_datatrove.llm.transformers_backend import TransformersBackend
from refinex_datatrove.program import RemoveLines, RemoveStr, parse_program, split_lines
from refinex_datatrove.refine_model.grammar import program_regex
from refinex_datatrove.refine_model.requests import chunk_prompt, needs_request, plan_chunks

WORDS = "home about contact the river rose by two metres overnight council met share this article subscribe".split()


def document(n_lines: int, seed: int) -> str:
    return "\n".join(
        " ".join(WORDS[(seed * 7 + i * 3 + k) % len(WORDS)] for k in range(1 + (i + seed) % 4)) for i in range(n_lines)
    )


# chunks of 1, 2, 5, 9, 12 and 17 lines (one chunk per document: the window holds the whole text)
DOCS = [document(n, seed) for seed, n in enumerate((1, 2, 5, 9, 12, 17))]
# a grammar whose every program fits the token bound: at most 3 calls, strings of at most 6 characters (an
# escape such as \U0001f600 is 10 characters of text, hence at most 3 * (16 + 60 + 2) + 2 characters)
MAX_CALLS, MAX_STR, MAX_TOKENS = 3, 6, 300


def chunk_requests(guided: bool) -> tuple[list[Request], list[int]]:
    requests, sizes = [], []
    for text in DOCS:
        lines = split_lines(text)
        for chunk in plan_chunks(text, window=10_000):
            if needs_request(lines, chunk):
                regex = program_regex(chunk.n_lines, max_calls=MAX_CALLS, max_str_chars=MAX_STR)
                requests.append(Request(prompt=chunk_prompt(lines, chunk), guided_regex=regex if guided else None))
                sizes.append(chunk.n_lines)
    return requests, sizes


def assert_program_fits(text: str, n_lines: int) -> None:
    assert re.fullmatch(program_regex(n_lines, max_calls=MAX_CALLS, max_str_chars=MAX_STR), text), text
    parsed = parse_program(text)
    assert not parsed.invalid, text
    for op in parsed.ops:
        if isinstance(op, RemoveLines):
            assert 1 <= op.start <= op.end <= n_lines, text
        elif isinstance(op, RemoveStr):
            assert 1 <= op.line <= n_lines, text


@pytest.fixture(scope="module")
def guided_backend(tiny_model_dir: str):
    # decode_round=2: many rounds, rows leaving the batch between them
    backend = TransformersBackend(tiny_model_dir, batch_size=4, num_threads=1, dtype="float32", decode_round=2)
    yield backend
    backend.close()


def test_free_decoding_of_a_random_model_is_garbage_and_guided_decoding_fits_each_chunk(guided_backend) -> None:
    params = GenerationParams(max_tokens=MAX_TOKENS)
    free_requests, sizes = chunk_requests(guided=False)
    assert len(set(sizes)) == len(sizes) == 6  # one batch holds rows with different grammars
    free = guided_backend.generate(free_requests, params)
    assert all(g.ok for g in free)
    assert not any(re.fullmatch(program_regex(n), g.text) for g, n in zip(free, sizes, strict=True))
    assert sum(bool(parse_program(g.text).invalid) or not parse_program(g.text).ops for g in free) >= 5

    guided_requests, _ = chunk_requests(guided=True)
    guided = guided_backend.generate(guided_requests, params)
    for gen, n in zip(guided, sizes, strict=True):
        assert gen.ok and gen.finish_reason == "stop", gen
        assert_program_fits(gen.text, n)
    # the grammar changes what the model writes, not which row gets which answer: one row at a time, in one
    # generate call (no rounds), the outputs are the same
    single = TransformersBackend(guided_backend.model_name, batch_size=1, num_threads=1, dtype="float32",
                                 decode_round=None)
    try:
        assert [g.text for g in single.generate(guided_requests, params)] == [g.text for g in guided]
    finally:
        single.close()


def test_rows_without_a_regex_share_the_batch_unconstrained(guided_backend) -> None:
    params = GenerationParams(max_tokens=40)
    guided_requests, sizes = chunk_requests(guided=True)
    free_requests, _ = chunk_requests(guided=False)
    mixed = [g if i % 2 else f for i, (g, f) in enumerate(zip(guided_requests, free_requests, strict=True))]
    out = guided_backend.generate(mixed, params)
    free = guided_backend.generate(free_requests, params)
    for i, (gen, n) in enumerate(zip(out, sizes, strict=True)):
        if i % 2:
            assert re.fullmatch(program_regex(n, max_calls=MAX_CALLS, max_str_chars=MAX_STR), gen.text)
        else:
            assert gen.text == free[i].text  # untouched by its neighbours' grammars


def test_params_regex_applies_to_every_request_and_a_request_regex_overrides_it(guided_backend) -> None:
    reqs = [Request(prompt="[1] a b"), Request(prompt="[1] c d", guided_regex=r"remove_lines\(1, 1\)")]
    out = guided_backend.generate(reqs, GenerationParams(max_tokens=20, guided_regex=r"keep_all\(\)"))
    assert [g.text for g in out] == ["keep_all()", "remove_lines(1, 1)"]
    assert all(g.finish_reason == "stop" for g in out)


def test_grammars_are_compiled_once_per_regex(tiny_model_dir: str) -> None:
    backend = TransformersBackend(tiny_model_dir, batch_size=8, num_threads=1)
    requests, sizes = chunk_requests(guided=True)
    backend.generate(requests + requests[:2], GenerationParams(max_tokens=4))
    cache = backend.grammar_cache()
    assert cache.compiled == len(set(sizes))
    backend.generate(requests, GenerationParams(max_tokens=4))
    assert cache.compiled == len(set(sizes))
    # the compiled grammars never travel: a pickled backend compiles again where it runs
    clone = pickle.loads(pickle.dumps(backend))
    assert clone._grammars is None and clone._model is None
    backend.close()


def test_sampling_stays_inside_the_grammar(guided_backend) -> None:
    requests, sizes = chunk_requests(guided=True)
    params = GenerationParams(max_tokens=MAX_TOKENS, temperature=1.0, top_k=5, top_p=0.9, seed=3)
    out = guided_backend.generate(requests, params)
    for gen, n in zip(out, sizes, strict=True):
        assert gen.finish_reason == "stop", gen
        assert_program_fits(gen.text, n)
    assert [g.text for g in guided_backend.generate(requests, params)] == [g.text for g in out]  # seeded


def test_a_regex_that_does_not_compile_fails_its_own_request(guided_backend) -> None:
    out = guided_backend.generate(
        [Request(prompt="[1] a", guided_regex="(unclosed"), Request(prompt="[1] b", guided_regex=r"keep_all\(\)")],
        GenerationParams(max_tokens=20),
    )
    assert out[0].finish_reason == "error" and "guided_regex" in out[0].error
    assert out[1].text == "keep_all()"


def test_guided_decoding_without_xgrammar_is_a_clear_error(tiny_model_dir: str, monkeypatch) -> None:
    backend = TransformersBackend(tiny_model_dir, num_threads=1)
    monkeypatch.setitem(sys.modules, "xgrammar", None)  # import xgrammar raises ImportError
    (free,) = backend.generate([Request(prompt="[1] a")], GenerationParams(max_tokens=2))
    assert free.ok
    with pytest.raises(ImportError, match="pip install xgrammar"):
        backend.generate([Request(prompt="[1] a", guided_regex="keep_all\\(\\)")], GenerationParams(max_tokens=2))
    backend.close()
