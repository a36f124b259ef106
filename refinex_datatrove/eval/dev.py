"""The refine model's line-deletion scores on the WCXB dev split (``benchmarks/eval_wcxb_dev.py``, the model
card's table): annotate the dev pairs with ``RefineModelAnnotator``, execute with ``ProgramExecutor``, score with
:func:`refinex_datatrove.eval.metrics.evaluate` next to the baselines. The pipeline steps are imported inside the
functions.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from refinex_datatrove.train.wcxb import sample_dev_pairs


def annotate_pairs(
    pairs: Sequence[dict[str, Any]],
    model: str | os.PathLike[str] = "default",
    *,
    backend_kwargs: dict[str, Any] | None = None,
    batch_size: int = 8,
    max_new_tokens: int = 128,
    window: int | None = None,
    guided: bool = False,
) -> list[Any]:
    """Write chunk programs for the ``noisy`` text of ``pairs`` with a refine model (``RefineModelAnnotator`` on
    the transformers backend; ``window``: chunk size in the model's unit, default the model's own; ``guided``:
    decode inside each chunk's program grammar). Returns the annotated datatrove ``Document`` objects, text
    unchanged."""
    from datatrove.data import Document

    from refinex_datatrove.steps.annotate import RefineModelAnnotator

    docs = [Document(text=p["noisy"], id=p["id"], metadata={}) for p in pairs]
    annotate = RefineModelAnnotator(
        model=str(model),
        backend="transformers",
        backend_kwargs=backend_kwargs,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        window=window,
        guided=guided,
    )
    return list(annotate.run(iter(docs)))


def execute_annotated(docs: Sequence[Any], policy: Any = None) -> dict[str, str]:
    """Run ``ProgramExecutor`` (with ``policy``, an ``ExecPolicy``) on copies of annotated documents; returns
    id -> refined text. The documents themselves are left as they are, so several policies can be scored."""
    import copy

    from refinex_datatrove.steps.execute import ProgramExecutor

    execute = ProgramExecutor(policy=policy)
    return {doc.id: doc.text for doc in execute.run(copy.deepcopy(d) for d in docs)}


def evaluate_on_dev(
    pairs_path: str | os.PathLike[str],
    model: str | os.PathLike[str] = "default",
    *,
    n_docs: int | None = 40,
    seed: int = 0,
    backend_kwargs: dict[str, Any] | None = None,
    batch_size: int = 8,
    max_new_tokens: int = 128,
    programs_out: str | os.PathLike[str] | None = None,
    window: int | None = None,
    guided: bool = False,
) -> Any:
    """Line-deletion scores of a refine model on a dev-split sample, next to the keep-all, C4-lines and gold
    baselines on the same documents (:func:`refinex_datatrove.eval.metrics.evaluate`).

    Args:
        programs_out: also write the annotated documents there (JSON Lines: ``id``, ``text``, ``metadata``
            with the chunk programs), to inspect them or re-execute them without the model.
        window: chunk size in the model's unit (default: the model's own, ``refinex.json``); ``chunks_wiped`` is
            counted over the same chunks.
        guided: decode inside each chunk's program grammar (as ``refinex refine`` does by default on the CPU).

    Returns:
        The :class:`~refinex_datatrove.eval.metrics.EvalResult` (``format_table`` prints it).
    """
    from refinex_datatrove.eval.metrics import evaluate, load_gold

    pairs = sample_dev_pairs(pairs_path, n_docs, seed)
    docs = annotate_pairs(
        pairs,
        model,
        backend_kwargs=backend_kwargs,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        window=window,
        guided=guided,
    )
    if programs_out is not None:
        import orjson

        with open(programs_out, "wb") as f:
            for d in docs:
                f.write(orjson.dumps({"id": d.id, "text": d.text, "metadata": d.metadata}) + b"\n")
    from refinex_datatrove.refine_model.card import model_chunking, resolve_model

    model_window, unit = model_chunking(resolve_model(model))
    window = window or model_window
    gold = load_gold(pairs, group_key="page_type")
    return evaluate(execute_annotated(docs), gold, name=Path(str(model)).name or "model", window=window, unit=unit)


__all__ = ["annotate_pairs", "evaluate_on_dev", "execute_annotated"]
