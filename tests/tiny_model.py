"""Build a tiny random causal LM plus a byte-level BPE tokenizer, fully offline, for tests.

The recipe follows ``stack-notes.md`` §5: a BPE trained with ``tokenizers`` on synthetic text shaped like the
RefineX data (numbered-line documents ``[1] ...`` and programs ``remove_lines(1, 2)``), wrapped as a
``PreTrainedTokenizerFast`` with a prefix-preserving ChatML template, and a random ``LlamaConfig`` model
(hidden 64, 2 heads -> head_dim 32 so vLLM's CPU attention accepts it, 2 layers, tied embeddings). Llama,
not Qwen2: ``AutoTokenizer`` on a ``qwen2`` folder rebuilds the pre-tokenizer and changes the token ids.

Usage::

    from tests.tiny_model import build_tiny_model
    folder = build_tiny_model(tmp_path / "tiny")
    tok = AutoTokenizer.from_pretrained(folder); model = AutoModelForCausalLM.from_pretrained(folder)

Takes about one second; nothing is downloaded.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable
from pathlib import Path


SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]

# ChatML. Prefix-preserving: the render of the prompt with add_generation_prompt=True is a prefix of the render
# with the assistant turn, which TRL needs for prompt/completion data. The {% generation %} markers let TRL's
# assistant_only_loss build its mask; they render to nothing.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{ '\n' }}"
    "{% else %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_WORDS = (
    "the a of and to in is for on with that this are was from by at as be or an it not have more "
    "home about contact privacy policy cookie accept subscribe newsletter share login sign menu search "
    "copyright reserved rights terms read comments reply posted january march 2024 click here next previous "
    "article page news weather city council river water school students research data model energy market "
    "price report people year time day world study results said according new first last many most"
).split()


def synthetic_texts(n_docs: int = 120, seed: int = 0) -> list[str]:
    """Synthetic training text for the tokenizer: numbered-line documents, programs and chat turns.

    Args:
        n_docs: how many numbered documents (and programs) to generate.
        seed: random seed, so the vocabulary is reproducible.

    Returns:
        A list of text samples.
    """
    rng = random.Random(seed)
    texts: list[str] = []
    for _ in range(n_docs):
        n_lines = rng.randint(3, 9)
        lines = [
            " ".join(rng.choice(_WORDS) for _ in range(rng.randint(2, 12))).capitalize() + "." for _ in range(n_lines)
        ]
        doc = "\n".join(f"[{i}] {line}" for i, line in enumerate(lines, 1))
        calls = []
        for _ in range(rng.randint(1, 3)):
            kind = rng.random()
            if kind < 0.45:
                start = rng.randint(1, n_lines)
                calls.append(f"remove_lines({start}, {rng.randint(start, n_lines)})")
            elif kind < 0.85:
                line = rng.randint(1, n_lines)
                word = rng.choice(lines[line - 1].split())
                calls.append(f'remove_str({line}, "{word}")')
            else:
                calls.append("keep_all()")
        program = "\n".join(calls)
        texts.append(doc)
        texts.append(program)
        texts.append(
            f"<|im_start|>user\nRefine this text.\n{doc}<|im_end|>\n<|im_start|>assistant\n{program}<|im_end|>\n"
        )
    texts += ["keep_all()", 'remove_str(3, "x")', "remove_lines(1, 2)", "The capital of France is Paris."]
    return texts


def build_tiny_model(
    out_dir: str | os.PathLike[str],
    texts: Iterable[str] | None = None,
    vocab_size: int = 512,
    seed: int = 0,
) -> str:
    """Train a tiny tokenizer, build a random tiny Llama model, save both to ``out_dir``.

    Args:
        out_dir: folder to write (created if missing); afterwards it loads with ``AutoTokenizer`` and
            ``AutoModelForCausalLM.from_pretrained``.
        texts: tokenizer training text; defaults to :func:`synthetic_texts`.
        vocab_size: BPE vocabulary size target (the trained vocabulary may be smaller).
        seed: seed for the synthetic text and the model weights.

    Returns:
        The folder path as a string.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    corpus = list(texts) if texts is not None else synthetic_texts(seed=seed)

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus, trainer=trainer)

    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|pad|>",
        additional_special_tokens=["<|im_start|>", "<|endoftext|>"],
    )
    tok.chat_template = CHATML_TEMPLATE

    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        bos_token_id=None,
    )
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = AutoModelForCausalLM.from_config(config)
    finally:
        torch.random.set_rng_state(state)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.bos_token_id = None

    tok.save_pretrained(out)
    model.save_pretrained(out)
    return str(out)
