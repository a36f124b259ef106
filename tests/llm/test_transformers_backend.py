"""TransformersBackend on the tiny offline model: batching, greedy determinism, finish reasons, stop strings."""

from __future__ import annotations

import pickle
from collections.abc import Callable

import pytest


torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from refinex_datatrove.llm import GenerationParams, Request, make_backend  # noqa: E402
from refinex_datatrove.llm.transformers_backend import TransformersBackend, smollm2_gguf  # noqa: E402


def chat(text: str) -> Request:
    return Request(messages=[{"role": "user", "content": text}])


REQUESTS = [
    chat("[1] Home | About | Contact\n[2] The river rose by two metres overnight."),
    Request(prompt="remove_lines(1, 2)"),
    chat("[1] Subscribe"),
    Request(prompt='[1] The council met on Monday.\n[2] Share this article\nremove_str(2, "x")'),
    chat("[1] a"),
]


class ForcedDecoding:
    """Forward hook that makes the model emit scripted tokens, chosen per row from that row's prompt.

    ``choose(prompt_ids) -> target ids``; at decoding step k the row's logits allow only ``target[k]``
    (or, past the end of the target, the last target token again). It reads the prompts from ``generate``'s
    prefill, so the backend must decode each length batch alone (``decode_batch_size=None``): joined decode
    batches prefill without ``generate`` (``test_joined_decode_batches_*`` cover them).
    """

    def __init__(self, model, choose: Callable[[list[int]], list[int]]) -> None:
        self.choose = choose
        self.targets: list[list[int]] = []
        self.step = 0
        self.prompts: list[list[int]] = []
        self.handle = model.register_forward_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs, output):
        input_ids = kwargs.get("input_ids")
        if input_ids is None:
            input_ids = args[0]
        if input_ids.shape[1] > 1:  # prefill: a new generate call
            mask = kwargs.get("attention_mask")
            if mask is None or mask.shape != input_ids.shape:  # generate may drop an all-ones mask
                mask = torch.ones_like(input_ids)
            self.prompts = [row[m.bool()].tolist() for row, m in zip(input_ids, mask, strict=True)]
            self.targets = [self.choose(p) for p in self.prompts]
            self.step = 0
        if len(self.targets) != input_ids.shape[0]:
            raise AssertionError(f"ForcedDecoding saw no prefill of these {input_ids.shape[0]} rows "
                                 "(a backend with joined decode batches? pass decode_batch_size=None)")
        logits = output.logits
        logits[:, -1, :] = -1e9
        for row, target in enumerate(self.targets):
            logits[row, -1, target[min(self.step, len(target) - 1)]] = 0.0
        self.step += 1
        return output

    def remove(self) -> None:
        self.handle.remove()


@pytest.fixture
def backend(tiny_model_dir: str):
    b = TransformersBackend(tiny_model_dir, batch_size=2, num_threads=1, decode_batch_size=None)
    yield b
    b.close()


def ids(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def test_greedy_is_deterministic_and_independent_of_batching(tiny_model_dir: str) -> None:
    params = GenerationParams(max_tokens=8)
    batched = TransformersBackend(tiny_model_dir, batch_size=3)
    single = TransformersBackend(tiny_model_dir, batch_size=1)
    first = batched.generate(REQUESTS, params)
    again = batched.generate(REQUESTS, params)
    one_by_one = single.generate(REQUESTS, params)
    assert [g.text for g in first] == [g.text for g in again]
    # left padding + attention mask: a request's greedy output does not depend on its batch companions
    assert [g.text for g in first] == [g.text for g in one_by_one]
    assert [g.completion_tokens for g in first] == [g.completion_tokens for g in one_by_one]
    assert all(g.ok for g in first)


def test_prompt_token_counts_match_the_tokenizer(backend: TransformersBackend) -> None:
    tok = backend.tokenizer
    gens = backend.generate(REQUESTS, GenerationParams(max_tokens=2))
    for request, gen in zip(REQUESTS, gens, strict=True):
        if request.messages is not None:
            rendered = tok.apply_chat_template(request.messages, add_generation_prompt=True, tokenize=False)
            assert rendered.endswith("<|im_start|>assistant\n")
            expected = len(ids(tok, rendered))
        else:
            expected = len(tok(request.prompt)["input_ids"])
        assert gen.prompt_tokens == expected


def test_scripted_outputs_map_back_to_their_requests(backend: TransformersBackend) -> None:
    tok = backend.tokenizer
    eos = tok.eos_token_id
    answers = {i: f"remove_lines({i + 1}, {i + 2})" for i in range(len(REQUESTS))}

    # requests are sorted by length inside the backend; the answer depends on which prompt a row holds
    prompt_ids = []
    for r in REQUESTS:
        if r.messages is not None:
            text = tok.apply_chat_template(r.messages, add_generation_prompt=True, tokenize=False)
            prompt_ids.append(ids(tok, text))
        else:
            prompt_ids.append(tok(r.prompt)["input_ids"])

    def choose(prompt: list[int]) -> list[int]:
        return [*ids(tok, answers[prompt_ids.index(prompt)]), eos]

    forced = ForcedDecoding(backend.model, choose)
    try:
        gens = backend.generate(REQUESTS, GenerationParams(max_tokens=20))
    finally:
        forced.remove()
    assert [g.text for g in gens] == [answers[i] for i in range(len(REQUESTS))]
    assert all(g.finish_reason == "stop" for g in gens)
    # completion tokens include the eos token, as vLLM counts them
    assert [g.completion_tokens for g in gens] == [len(ids(tok, answers[i])) + 1 for i in range(len(REQUESTS))]


def test_length_finish_reason(backend: TransformersBackend) -> None:
    tok = backend.tokenizer
    token = ids(tok, "x")
    forced = ForcedDecoding(backend.model, lambda prompt: token)  # never eos
    try:
        gens = backend.generate(REQUESTS[:3], GenerationParams(max_tokens=3))
    finally:
        forced.remove()
    assert [g.finish_reason for g in gens] == ["length"] * 3
    assert [g.completion_tokens for g in gens] == [3, 3, 3]
    assert [g.text for g in gens] == ["xxx"] * 3


def test_stop_strings_cut_text_and_stop_early(backend: TransformersBackend) -> None:
    tok = backend.tokenizer
    target = ids(tok, "remove_lines(1, 2)\nkeep_all()\nkeep_all()")
    forced = ForcedDecoding(backend.model, lambda prompt: [*target, tok.eos_token_id])
    try:
        stopped = backend.generate(REQUESTS[:2], GenerationParams(max_tokens=40, stop=("\n",)))
        with_eos = backend.generate(REQUESTS[:2], GenerationParams(max_tokens=40))
    finally:
        forced.remove()
    assert [g.text for g in stopped] == ["remove_lines(1, 2)"] * 2
    assert [g.finish_reason for g in stopped] == ["stop", "stop"]
    assert [g.text for g in with_eos] == ["remove_lines(1, 2)\nkeep_all()\nkeep_all()"] * 2
    # generation ended at the stop string instead of running on to the eos token
    assert all(s.completion_tokens < e.completion_tokens for s, e in zip(stopped, with_eos, strict=True))
    assert all(s.completion_tokens <= len(ids(tok, "remove_lines(1, 2)\n")) for s in stopped)


def test_earliest_of_several_stop_strings_wins(backend: TransformersBackend) -> None:
    tok = backend.tokenizer
    target = ids(tok, 'remove_str(3, "x")\nkeep_all()')
    forced = ForcedDecoding(backend.model, lambda prompt: [*target, tok.eos_token_id])
    try:
        (gen,) = backend.generate([REQUESTS[0]], GenerationParams(max_tokens=40, stop=("keep", '"')))
    finally:
        forced.remove()
    assert gen.text == "remove_str(3, "
    assert gen.finish_reason == "stop"


def test_seeded_sampling_is_reproducible(backend: TransformersBackend) -> None:
    params = GenerationParams(max_tokens=8, temperature=1.0, top_p=0.95, top_k=50, seed=7)
    torch.manual_seed(123)
    a = backend.generate(REQUESTS, params)
    torch.manual_seed(456)
    b = backend.generate(REQUESTS, params)
    assert [g.text for g in a] == [g.text for g in b]
    # the global RNG is left alone
    torch.manual_seed(1)
    expected = torch.rand(1)
    torch.manual_seed(1)
    backend.generate(REQUESTS[:1], params)
    assert torch.equal(torch.rand(1), expected)


def test_bad_requests_fail_alone(backend: TransformersBackend) -> None:
    requests = [REQUESTS[0], Request(prompt=""), REQUESTS[1], Request(prompt="word " * 2000)]
    gens = backend.generate(requests, GenerationParams(max_tokens=3))
    assert [g.finish_reason for g in gens][1] == "error" and "empty" in gens[1].error
    assert gens[3].finish_reason == "error" and "at most" in gens[3].error
    assert gens[0].ok and gens[2].ok
    assert gens[0].completion_tokens > 0 and gens[2].completion_tokens > 0


def test_exception_in_one_batch_fails_only_that_batch(tiny_model_dir: str) -> None:
    backend = TransformersBackend(tiny_model_dir, batch_size=1)
    marker = "<|endoftext|>"
    model = backend.model
    marker_id = backend.tokenizer.convert_tokens_to_ids(marker)
    original = model.generate

    def flaky_generate(*args, **kwargs):
        if (kwargs["input_ids"] == marker_id).any():
            raise RuntimeError("boom")
        return original(*args, **kwargs)

    model.generate = flaky_generate
    requests = [REQUESTS[0], Request(prompt=f"bad {marker} request"), REQUESTS[1]]
    gens = backend.generate(requests, GenerationParams(max_tokens=3))
    assert gens[1].finish_reason == "error"
    assert gens[1].error == "RuntimeError: boom"
    assert gens[0].ok and gens[2].ok


def test_chat_without_template_is_a_per_request_error(tiny_model_dir: str) -> None:
    backend = TransformersBackend(tiny_model_dir)
    backend.tokenizer.chat_template = None
    gens = backend.generate([REQUESTS[0], REQUESTS[1]], GenerationParams(max_tokens=2))
    assert gens[0].finish_reason == "error"
    assert gens[1].ok


def test_chat_template_override(tiny_model_dir: str, tmp_path) -> None:
    template = "{% for m in messages %}{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}=>{% endif %}"
    path = tmp_path / "t.jinja"
    path.write_text(template)
    for source in (template, str(path)):
        backend = TransformersBackend(tiny_model_dir, chat_template=source)
        (gen,) = backend.generate([chat("[1] a")], GenerationParams(max_tokens=1))
        assert gen.prompt_tokens == len(backend.tokenizer("[1] a=>", add_special_tokens=False)["input_ids"])


def test_picklable_before_and_after_loading(tiny_model_dir: str) -> None:
    backend = TransformersBackend(tiny_model_dir, batch_size=4)
    clone = pickle.loads(pickle.dumps(backend))
    assert clone._model is None and clone.batch_size == 4
    first = backend.generate(REQUESTS[:2], GenerationParams(max_tokens=4))
    payload = pickle.dumps(backend)
    assert len(payload) < 10_000  # the weights did not travel
    restored = pickle.loads(payload)
    assert [g.text for g in restored.generate(REQUESTS[:2], GenerationParams(max_tokens=4))] == [g.text for g in first]


def test_close_then_reload(backend: TransformersBackend) -> None:
    first = backend.generate(REQUESTS[:1], GenerationParams(max_tokens=4))
    backend.close()
    backend.close()
    assert backend._model is None
    assert backend.generate(REQUESTS[:1], GenerationParams(max_tokens=4))[0].text == first[0].text


def test_invalid_arguments(tiny_model_dir: str) -> None:
    with pytest.raises(ValueError, match="dtype"):
        TransformersBackend(tiny_model_dir, dtype="float8")
    with pytest.raises(ValueError, match="batch_size"):
        TransformersBackend(tiny_model_dir, batch_size=0)
    backend = TransformersBackend(tiny_model_dir)
    gens = backend.generate(REQUESTS[:2], GenerationParams(max_tokens=0))
    assert [g.finish_reason for g in gens] == ["error", "error"]
    assert backend._model is None  # nothing loaded for a request that cannot run
    assert backend.generate([], GenerationParams()) == []


def test_missing_model_folder_raises_clearly(tmp_path) -> None:
    backend = TransformersBackend(str(tmp_path / "nope"))
    with pytest.raises(OSError):
        backend.generate(REQUESTS[:1], GenerationParams(max_tokens=2))


def test_make_backend_builds_transformers(tiny_model_dir: str) -> None:
    backend = make_backend("transformers", tiny_model_dir, batch_size=3)
    assert isinstance(backend, TransformersBackend) and backend.batch_size == 3
    with pytest.raises(TypeError):
        make_backend("transformers", tiny_model_dir, no_such_option=1)


def test_peft_adapter_is_merged(tiny_model_dir: str, tmp_path) -> None:
    peft = pytest.importorskip("peft")
    base = transformers.AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    torch.manual_seed(0)
    config = peft.LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    lora = peft.get_peft_model(base, config)
    lora.save_pretrained(tmp_path / "adapter")
    merged = lora.merge_and_unload().eval()

    tok = transformers.AutoTokenizer.from_pretrained(tiny_model_dir)
    prompt = "remove_lines(1, 2)"
    enc = tok(prompt, return_tensors="pt")
    with torch.inference_mode():
        expected = merged.generate(**enc, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
    expected_tokens = expected[0, enc["input_ids"].shape[1] :].tolist()
    if tok.eos_token_id in expected_tokens:
        expected_tokens = expected_tokens[: expected_tokens.index(tok.eos_token_id) + 1]
    expected_text = tok.decode(expected_tokens, skip_special_tokens=True)

    plain = TransformersBackend(tiny_model_dir).generate([Request(prompt=prompt)], GenerationParams(max_tokens=8))
    adapted = TransformersBackend(tiny_model_dir, adapter=tmp_path / "adapter")
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (gen,) = adapted.generate([Request(prompt=prompt)], GenerationParams(max_tokens=8))
    # loading prints nothing a user cannot act on (peft's deprecated is_gradient_checkpointing call)
    assert not [w for w in caught if "is_gradient_checkpointing" in str(w.message)]
    assert gen.text == expected_text
    assert gen.completion_tokens == len(expected_tokens)
    assert gen.text != plain[0].text  # the adapter changed the weights
    assert not hasattr(adapted.model, "peft_config")  # merged into a plain model


@pytest.mark.slow
def test_smollm2_gguf_answers() -> None:
    try:
        folder, gguf = smollm2_gguf()
    except ImportError as exc:
        pytest.skip(str(exc))
    backend = TransformersBackend(folder, gguf_file=gguf, num_threads=1)
    (gen,) = backend.generate([chat("What is the capital of France?")], GenerationParams(max_tokens=16))
    backend.close()
    assert gen.finish_reason == "stop"
    assert "Paris" in gen.text


# -- speed: decoding in rounds, per-request bounds, number type and threads -----------------------------------


def _sig(gens):
    return [(g.text, g.finish_reason, g.completion_tokens) for g in gens]


class ChainDecoding:
    """Forward hook that makes each row's next token a function of its last token only (so it survives rows
    leaving the batch): ``chain[i] -> chain[i + 1]``, the last chain token -> eos, any other token -> the chain
    token picked by ``token % len(chain)``. Rows whose prompts end differently run chains of different lengths."""

    def __init__(self, model, chain: list[int], eos: int) -> None:
        self.next = {a: b for a, b in zip(chain, [*chain[1:], eos], strict=True)}
        self.chain = chain
        self.rows: list[int] = []
        self.handle = model.register_forward_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs, output):
        last = kwargs["input_ids"][:, -1].tolist()
        self.rows.append(len(last))
        logits = output.logits
        logits[:, -1, :] = -1e9
        for row, token in enumerate(last):
            logits[row, -1, self.next.get(token, self.chain[token % len(self.chain)])] = 0.0
        return output

    def remove(self) -> None:
        self.handle.remove()


def test_decoding_in_rounds_drops_finished_rows_and_gives_the_same_tokens(tiny_model_dir: str) -> None:
    requests = [
        Request(prompt="word " * (i % 5) + f"[1] line {i}", max_tokens=(3 + i) if i % 3 == 1 else None)
        for i in range(12)
    ]
    one_call = TransformersBackend(tiny_model_dir, batch_size=12, decode_round=None, dtype="float32", max_padding=None)
    rounds = TransformersBackend(tiny_model_dir, batch_size=12, decode_round=1, dtype="float32", max_padding=None)
    tok = one_call.tokenizer
    chain = [t for w in ("remove", "_lines", "(", "1", ",", " 2", ")", "keep") for t in ids(tok, w)]
    stop = tok.decode(chain[4:6])
    for params in (GenerationParams(max_tokens=20), GenerationParams(max_tokens=20, stop=(stop,))):
        hooks = [ChainDecoding(one_call.model, chain, tok.eos_token_id), ChainDecoding(rounds.model, chain,
                                                                                      tok.eos_token_id)]
        try:
            expected = one_call.generate(requests, params)
            got = rounds.generate(requests, params)
        finally:
            for h in hooks:
                h.remove()
        assert _sig(got) == _sig(expected)
        assert len({g.completion_tokens for g in got}) > 2  # rows really finished at different steps
        assert hooks[1].rows[0] == 12 and min(hooks[1].rows) < 12  # finished rows left the batch
        assert sum(hooks[1].rows) < sum(hooks[0].rows)  # fewer row-steps than one generate call
    # each request's own bound is honoured: exactly its max_tokens unless eos came first
    for request, gen in zip(requests, got, strict=True):
        if request.max_tokens is not None and gen.finish_reason == "length":
            assert gen.completion_tokens == request.max_tokens


def test_request_max_tokens_only_lowers_the_bound(tiny_model_dir: str) -> None:
    backend = TransformersBackend(tiny_model_dir, batch_size=4, decode_batch_size=None)
    token = ids(backend.tokenizer, "x")
    forced = ForcedDecoding(backend.model, lambda prompt: token)  # never eos
    try:
        gens = backend.generate(
            [Request(prompt="[1] a", max_tokens=2), Request(prompt="[1] b"), Request(prompt="[1] c", max_tokens=99)],
            GenerationParams(max_tokens=5),
        )
    finally:
        forced.remove()
    assert [g.completion_tokens for g in gens] == [2, 5, 5]
    assert [g.finish_reason for g in gens] == ["length"] * 3
    with pytest.raises(ValueError, match="max_tokens"):
        Request(prompt="x", max_tokens=0)


def test_bfloat16_only_where_the_cpu_has_it(tiny_model_dir: str) -> None:
    from refinex_datatrove.llm.transformers_backend import cpu_bf16_support, default_dtype

    assert cpu_bf16_support("processor : 0\nflags : fpu avx2 avx512f avx512_bf16\n")
    assert cpu_bf16_support("flags : fpu amx_bf16 amx_tile\n")
    assert cpu_bf16_support("Features : fp asimd bf16 i8mm\n")  # Arm
    assert not cpu_bf16_support("flags : fpu avx2 avx512f\n")
    assert default_dtype("cpu", "flags : avx512_bf16\n") == "bfloat16"
    assert default_dtype("cpu", "flags : avx2\n") == "float32"
    assert default_dtype("cuda", "flags : avx512_bf16\n") == "float32"
    auto = TransformersBackend(tiny_model_dir)
    assert str(auto.model.dtype) == f"torch.{default_dtype()}" and auto.resolved_dtype == default_dtype()
    forced = TransformersBackend(tiny_model_dir, dtype="float32")
    assert forced.model.dtype == torch.float32


def test_threads_from_cores_workers_and_load() -> None:
    from refinex_datatrove.llm.transformers_backend import default_num_threads

    spin = {"passive": False}
    assert default_num_threads(1, cores=2, load=0.0, **spin) == 2
    assert default_num_threads(1, cores=2, load=1.6, **spin) == 1  # another program keeps one core busy
    assert default_num_threads(1, cores=2, load=8.0, **spin) == 1
    assert default_num_threads(2, cores=2, load=0.0, **spin) == 1
    assert default_num_threads(4, cores=16, load=0.0, **spin) == 4
    assert default_num_threads(4, cores=16, load=8.0, **spin) == 2
    assert default_num_threads(8, cores=4, load=0.0, **spin) == 1
    # waiting threads that sleep instead of spinning: the cores are split whatever the load
    assert default_num_threads(1, cores=2, load=8.0, passive=True) == 2
    assert default_num_threads(4, cores=16, load=8.0, passive=True) == 4
    with pytest.raises(ValueError):
        default_num_threads(0)


def test_length_batches_bound_padding() -> None:
    from refinex_datatrove.llm.transformers_backend import length_batches

    lengths = [100, 98, 97, 60, 59, 58, 57, 20]
    assert length_batches(lengths, 8, None) == [8]
    assert length_batches(lengths, 3, None) == [3, 3, 2]
    sizes = length_batches(lengths, 8, 0.1)
    assert sizes == [3, 4, 1] and sum(sizes) == len(lengths)
    start = 0
    for size in sizes:
        rows = lengths[start : start + size]
        assert len(rows) * rows[0] <= 1.1 * sum(rows)
        start += size
    assert length_batches([], 8) == []


# -- joined decode batches, the output head's input, likelihoods without generate's logits --------------------


def _joined_requests(tok) -> list[Request]:
    one_token = next(w for w in ("a", "x", "the", "1") if len(ids(tok, w)) == 1)
    texts = ["word " * (i % 7) + f"[1] line {i}\n[2] more {i}" for i in range(11)]
    return [Request(prompt=one_token), *(Request(prompt=t, max_tokens=4 + i % 5) for i, t in enumerate(texts))]


def test_joined_decode_batches_give_the_tokens_of_each_length_batch_alone(tiny_model_dir: str) -> None:
    kw = {"batch_size": 2, "dtype": "float32", "num_threads": 1, "max_padding": 0.0, "decode_round": 2}
    apart = TransformersBackend(tiny_model_dir, decode_batch_size=None, **kw)
    joined = TransformersBackend(tiny_model_dir, decode_batch_size=64, **kw)
    requests = _joined_requests(joined.tokenizer)[1:]  # every prompt has two tokens or more: they join
    calls = {"apart": [], "joined": []}
    for name, backend in (("apart", apart), ("joined", joined)):
        original = backend.model.generate

        def counting(*args, _original=original, _name=name, **kwargs):
            calls[_name].append((kwargs["input_ids"].shape[0], "output_logits" in kwargs))
            return _original(*args, **kwargs)

        backend.model.generate = counting
    params = GenerationParams(max_tokens=12, logprobs=3)
    expected = apart.generate(requests, params)
    got = joined.generate(requests, params)
    assert _sig(got) == _sig(expected)
    for g, e in zip(got, expected, strict=True):
        assert g.extra["token_logprobs"] == pytest.approx(e.extra["token_logprobs"], abs=1e-4)
        assert g.extra["first_top_logprobs"].keys() == e.extra["first_top_logprobs"].keys()
    # one decode batch of every row, where each length batch of 2 decoded alone before
    assert calls["joined"][0][0] == len(requests) and max(n for n, _ in calls["apart"]) <= 2
    assert len(calls["joined"]) < len(calls["apart"])
    assert not any(logits for _, logits in calls["joined"] + calls["apart"])  # no generate keeps raw logits


def test_a_one_token_prompt_decodes_its_length_batches_apart(tiny_model_dir: str) -> None:
    kw = {"batch_size": 2, "dtype": "float32", "num_threads": 1, "max_padding": 0.0}
    apart = TransformersBackend(tiny_model_dir, decode_batch_size=None, **kw)
    joined = TransformersBackend(tiny_model_dir, **kw)
    requests = _joined_requests(joined.tokenizer)
    assert joined.decode_batch_size is not None and len(joined._encode(requests[0])) == 1
    params = GenerationParams(max_tokens=6)
    assert _sig(joined.generate(requests, params)) == _sig(apart.generate(requests, params))


def test_a_failing_decode_batch_is_tried_again_one_length_batch_at_a_time(tiny_model_dir: str) -> None:
    backend = TransformersBackend(tiny_model_dir, batch_size=1, num_threads=1)
    marker_id = backend.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    original = backend.model.generate
    widths = []

    def flaky_generate(*args, **kwargs):
        widths.append(kwargs["input_ids"].shape[0])
        if (kwargs["input_ids"] == marker_id).any():
            raise RuntimeError("boom")
        return original(*args, **kwargs)

    backend.model.generate = flaky_generate
    requests = [REQUESTS[0], Request(prompt="bad <|endoftext|> request"), REQUESTS[1]]
    gens = backend.generate(requests, GenerationParams(max_tokens=3))
    assert widths[0] == 3  # the three length batches of one row first decoded together
    assert [g.ok for g in gens] == [True, False, True] and gens[1].error == "RuntimeError: boom"


def test_join_caches_left_pads_each_cache_to_one_width() -> None:
    from transformers.cache_utils import DynamicCache

    from refinex_datatrove.llm.transformers_backend import join_caches

    a = DynamicCache(ddp_cache_data=[(torch.ones(2, 3, 4, 8), 2 * torch.ones(2, 3, 4, 8))] * 2)
    b = DynamicCache(ddp_cache_data=[(3 * torch.ones(1, 3, 6, 8), 4 * torch.ones(1, 3, 6, 8))] * 2)
    joined = join_caches([a, b], 6)
    assert len(joined.layers) == 2 and joined.get_seq_length() == 6
    keys, values = joined.layers[1].keys, joined.layers[1].values
    assert keys.shape == values.shape == (3, 3, 6, 8)
    assert torch.all(keys[:2, :, :2] == 0) and torch.all(keys[:2, :, 2:] == 1) and torch.all(values[2] == 4)
    assert join_caches([a, object()], 6) is None
    with pytest.raises(ValueError, match="more than the joined width"):
        join_caches([a, b], 5)


def test_the_output_head_gets_a_contiguous_input(tiny_model_dir: str) -> None:
    backend = TransformersBackend(tiny_model_dir, batch_size=4, num_threads=1)
    seen = []
    handle = backend.model.get_output_embeddings().register_forward_hook(
        lambda module, args, output: seen.append(args[0].is_contiguous())
    )
    try:
        backend.generate(REQUESTS, GenerationParams(max_tokens=3))
    finally:
        handle.remove()
    assert seen and all(seen)


def test_decode_batches_are_bounded_by_rows_and_cache_positions(tiny_model_dir: str) -> None:
    backend = TransformersBackend(tiny_model_dir, decode_batch_size=6, decode_batch_tokens=500)
    lengths = [100] * 4 + [60] * 8 + [10] * 4  # longest first
    # rows: at most 6; positions: rows x the longest prompt of the decode batch <= 500 (a length batch alone may
    # exceed it)
    assert backend._decode_groups([2, 2, 2, 2, 2, 2, 2, 2], lengths) == [[2, 2], [2, 2, 2], [2, 2, 2]]
    assert backend._decode_groups([8], [100] * 8) == [[8]]
    assert TransformersBackend(tiny_model_dir, decode_batch_size=None)._decode_groups([2, 2], [5] * 4) == [[2], [2]]
    assert TransformersBackend(tiny_model_dir, decode_round=None)._decode_groups([2, 2], [5] * 4) == [[2], [2]]
    with pytest.raises(ValueError, match="decode_batch_tokens"):
        TransformersBackend(tiny_model_dir, decode_batch_tokens=0)
    with pytest.raises(ValueError, match="decode_batch_size"):
        TransformersBackend(tiny_model_dir, decode_batch_size=0)
