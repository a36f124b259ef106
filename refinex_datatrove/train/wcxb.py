"""SFT records and line-level scores from the WCXB dev pairs (``noisy`` text + per-line ``keep`` labels).

Data: WCXB, Murrough Foley, CC-BY-4.0 (https://creativecommons.org/licenses/by/4.0/), changed: HTML
converted to text and lines labelled (see the data folder's README). The program for a chunk deletes the
runs of lines labelled 0 (:func:`refinex_datatrove.labels.programs_from_keep_labels`); executing it gives
``gold_projected`` exactly.

Split rule (fixed, used by the default model): a document whose WCXB number (``wcxb/NNNN``) is divisible
by 10 is in the ``dev`` split and never trained on; every other document is in ``train``.

Pure: imports no datatrove, torch or transformers. The dev evaluation is
:mod:`refinex_datatrove.eval.dev`.
"""

from __future__ import annotations

import gzip
import json
import os
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from refinex_datatrove.files import iter_record_objects
from refinex_datatrove.labels import programs_from_keep_labels
from refinex_datatrove.program import Unit
from refinex_datatrove.train.records import sft_record_chunk_indices, sft_records

Split = Literal["train", "dev", "all"]
DEV_MODULUS = 10
"""``wcxb/NNNN`` is a dev document when ``NNNN % DEV_MODULUS == 0``."""


def wcxb_split(doc_id: str) -> str:
    """``"dev"`` or ``"train"`` for a WCXB id such as ``"wcxb/0420"`` (see the module docstring).

    Raises:
        ValueError: an id that is not ``<prefix>/<number>``.
    """
    try:
        number = int(str(doc_id).rsplit("/", 1)[-1])
    except ValueError:
        raise ValueError(f"not a WCXB id (expected 'wcxb/NNNN'): {doc_id!r}") from None
    return "dev" if number % DEV_MODULUS == 0 else "train"


def iter_pairs(pairs_path: str | os.PathLike[str], split: Split = "all") -> Iterator[dict[str, Any]]:
    """The records of a WCXB pairs file (``.jsonl`` or ``.jsonl.gz``) in the given split, in file order."""
    if split not in ("train", "dev", "all"):
        raise ValueError(f"split must be 'train', 'dev' or 'all', got {split!r}")
    for _, _, rec in iter_record_objects(str(pairs_path)):
        if split == "all" or wcxb_split(rec["id"]) == split:
            yield rec


def _completion_text(record: dict[str, Any]) -> str:
    completion = record["completion"]
    return completion[0]["content"] if isinstance(completion, list) else completion


def build_wcxb_records(
    pairs_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    window: int,
    unit: Unit = "chars",
    split: Split = "train",
    max_records: int | None = None,
    seed: int = 0,
    *,
    fmt: Literal["conversational", "prompt_completion"] = "prompt_completion",
    keep_all_share: float | None = 0.3,
    max_chunks_per_doc: int | None = None,
    min_gold_coverage: float = 0.8,
) -> dict[str, Any]:
    """Write SFT records (one per chunk) built from WCXB keep labels to ``out_path`` (JSON Lines, gzip if ``.gz``).

    Sampling, all seeded by ``seed``: documents with no ``keep=1`` line or ``gold_coverage <
    min_gold_coverage`` are left out (their labels mark content the extractor lost, not noise); at most
    ``max_chunks_per_doc`` chunks per document; then chunks whose program is ``keep_all()`` are sampled down
    (never up) to ``keep_all_share`` of the records, so every kind of chunk stays but deletions are seen more
    often; then at most ``max_records`` records. The records are shuffled.

    Each record holds ``prompt`` / ``completion`` (see :func:`refinex_datatrove.train.records.sft_records`) and
    ``id``, ``chunk_start``, ``page_type``, ``window``, ``unit`` (the SFT script copies window/unit into
    ``refinex.json``).

    Args:
        pairs_path: WCXB ``pairs.jsonl.gz``.
        out_path: output file.
        window: chunk window (the same must be used at inference).
        unit: ``"chars"`` or ``"words"``.
        split: ``"train"`` (default), ``"dev"`` or ``"all"``.
        max_records: cap on the number of records.
        seed: sampling seed.
        fmt: record format.
        keep_all_share: target share of ``keep_all()`` records (``None``: natural share).
        max_chunks_per_doc: cap on chunks taken from one document (``None``: all).
        min_gold_coverage: documents below this ``gold_coverage`` are left out.

    Returns:
        Counts: documents read / used / left out, records written, records by kind (``keep_all``, ``edit``).
    """
    if not isinstance(unit, str):
        raise TypeError("build_wcxb_records records the unit in refinex.json: use 'chars' or 'words'")
    if keep_all_share is not None and not 0.0 <= keep_all_share <= 1.0:
        raise ValueError(f"keep_all_share must be in [0, 1], got {keep_all_share}")
    rng = random.Random(seed)
    counts: Counter[str] = Counter()
    keep_all: list[dict[str, Any]] = []
    edits: list[dict[str, Any]] = []
    for pair in iter_pairs(pairs_path, split):
        counts["documents"] += 1
        if not pair.get("n_keep_lines") or pair.get("gold_coverage", 1.0) < min_gold_coverage:
            counts["documents_left_out"] += 1
            continue
        counts["documents_used"] += 1
        text = pair["noisy"]
        programs = programs_from_keep_labels(text, pair["keep"], window, unit)
        records = sft_records(text, programs, fmt=fmt)
        starts = [programs[k].chunk.start for k in sft_record_chunk_indices(programs)]
        for rec, start in zip(records, starts, strict=True):
            rec.update(id=pair["id"], chunk_start=start, page_type=pair.get("page_type"), window=window, unit=unit)
        if max_chunks_per_doc is not None and len(records) > max_chunks_per_doc:
            records = rng.sample(records, max_chunks_per_doc)
        for rec in records:
            (keep_all if _completion_text(rec).strip() == "keep_all()" else edits).append(rec)
    counts["chunks_keep_all"] = len(keep_all)
    counts["chunks_edit"] = len(edits)

    if keep_all_share is not None and keep_all:
        if keep_all_share >= 1.0:
            edits = []
        else:
            cap = round(len(edits) * keep_all_share / (1.0 - keep_all_share))
            if len(keep_all) > cap:
                keep_all = rng.sample(keep_all, cap)
    selected = keep_all + edits
    rng.shuffle(selected)
    if max_records is not None:
        selected = selected[:max_records]

    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if out.name.endswith(".gz") else open
    with opener(out, "wt", encoding="utf-8") as f:
        for rec in selected:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    n_keep = sum(_completion_text(r).strip() == "keep_all()" for r in selected)
    result: dict[str, Any] = dict(counts)
    result.update(records=len(selected), records_keep_all=n_keep, records_edit=len(selected) - n_keep)
    return result


# ---------------------------------------------------------------------------------------------------------------
# dev evaluation: the real annotate + execute steps, scored by refinex_datatrove.eval.metrics


def sample_dev_pairs(
    pairs_path: str | os.PathLike[str], n_docs: int | None = 40, seed: int = 0, min_gold_coverage: float = 0.8
) -> list[dict[str, Any]]:
    """A seeded sample of dev-split pairs with at least one ``keep=1`` line and ``gold_coverage >=
    min_gold_coverage`` (the same filter as the training data), sorted by id."""
    pool = [
        p
        for p in iter_pairs(pairs_path, "dev")
        if p.get("n_keep_lines") and p.get("gold_coverage", 1.0) >= min_gold_coverage
    ]
    if n_docs is not None and n_docs < len(pool):
        pool = random.Random(seed).sample(pool, n_docs)
    return sorted(pool, key=lambda p: p["id"])


__all__ = [
    "DEV_MODULUS",
    "build_wcxb_records",
    "iter_pairs",
    "sample_dev_pairs",
    "wcxb_split",
]
