"""Score refined documents against line-labelled gold (WCXB-style pairs), with baselines on the same documents.

Pure Python (rapidfuzz for the alignments); no datatrove import.

**Line alignment.** A refined text is mapped back onto the original's lines by a monotone alignment:

1. an exact longest common subsequence of whole lines (:func:`rapidfuzz.distance.Indel.opcodes` over line ids);
2. inside each run of unmatched lines, a weighted LCS (or, for runs above ``max_block_cells`` line pairs, a
   greedy forward scan) pairs a refined line with an original line when the refined line is a non-blank
   character subsequence of it (a line edited by ``remove_str``), or, for rewriting refiners, when it holds at
   least half of the original line's ``\\w+`` tokens (case-folded), the rule that made WCXB's ``keep`` labels.

An original line paired with a refined line is *kept* (also when partly edited); every other line is *deleted*.
A line emptied by ``remove_str`` (blank in the output) counts as deleted. Whitespace-only original lines are
left out of the line counts.

**Line metrics.** Positives are deleted lines: ``tp`` = deleted and gold ``keep=0``, ``fp`` = deleted but gold
content, ``fn`` = kept but gold noise. Precision is ``None`` when nothing was deleted, recall ``None`` when gold
deletes nothing, F1 ``= 2tp / (2tp + fp + fn)`` and ``None`` only when there is no positive on either side.
Micro figures pool the counts over documents; macro figures average the per-document values that are defined.
The same is reported for kept lines (``keep_*``).

**Characters.** ``char_keep``: characters of gold-content lines that survive (longest common subsequence of the
original line and the refined line it aligns to), over all characters of gold-content lines. ``noise_removal``:
characters of gold-noise lines that are gone, over all characters of gold-noise lines. Line breaks not counted.

**Reliability.** ``new_words_per_1k``: ``\\w+`` tokens of the output absent from the input's set of ``\\w+``
tokens, per 1,000 output ``\\w+`` tokens. Deleting whole lines or whole words never creates one; a
``remove_str`` that cuts inside a word can join two fragments into a new token (counted: it is a new word).

**Length and coverage.** ``out_in_ratio``: output tokens / input tokens (whitespace tokens, or the given
tokenizer's count). ``untouched``: output identical to the input; ``emptied``: output blank; ``dropped``: the id
is missing from the refined output (scored as an empty output everywhere else).

**Lost content.** ``lost_docs``: documents emptied or dropped while the gold keeps at least one (non-blank) line,
a count. ``chunks_wiped``: the input chunked as the refine model chunks it (``window`` / ``unit``, whole lines:
:func:`~refinex_datatrove.program.chunk_lines`), the share of chunks (with a non-blank line) whose non-blank lines
were all deleted while the gold keeps at least half of them; ``None`` without a window.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from rapidfuzz.distance import Indel

from refinex_datatrove.eval.baselines import apply_keep_mask, c4_lines, keep_all
from refinex_datatrove.program import chunk_lines

WORD_RE = re.compile(r"\w+")

DEFAULT_MAX_BLOCK_CELLS = 40_000
"""Runs of unmatched lines with more line pairs than this are aligned greedily instead of by weighted LCS."""

GREEDY_LOOKAHEAD = 200
"""How many original lines the greedy fallback scans ahead for a refined line's partner (the closest wins)."""

TOKEN_KEEP_SHARE = 0.5
"""A rewritten line keeps its original line when it holds at least this share of the original's tokens."""

BASELINE_NAMES = ("keep-all", "c4-lines", "gold")
"""Baselines :func:`evaluate` knows: keep everything, C4's line rules, the gold projection (upper bound)."""

Tokenizer = Callable[[str], int]
"""Counts the tokens of a text."""


class GoldFormatError(ValueError):
    """A gold record that cannot be scored (missing key, wrong type, labels not matching the lines)."""


@dataclass(frozen=True, slots=True)
class GoldDoc:
    """One gold pair.

    Attributes:
        id: document id (the refined output is matched on it).
        text: the noisy input text.
        keep: one flag per line of ``text.split("\\n")``: True = gold content, False = noise to delete.
        group: optional group label (e.g. WCXB ``page_type``) for per-group figures.
    """

    id: str
    text: str
    keep: tuple[bool, ...]
    group: str | None = None


# --------------------------------------------------------------------------------------------- alignment


def _tokens(line: str) -> list[str]:
    return WORD_RE.findall(line.casefold())


def _lcs_chars(a: str, b: str) -> int:
    """Length of the longest common character subsequence of ``a`` and ``b``."""
    return (len(a) + len(b) - Indel.distance(a, b)) // 2


class _Block:
    """Pairing weights between a run of original lines and a run of refined lines (computed lazily)."""

    def __init__(self, orig: Sequence[str], ref: Sequence[str]) -> None:
        self.orig = orig
        self.ref = ref
        self._otok: dict[int, Counter[str]] = {}
        self._rtok: dict[int, Counter[str]] = {}

    def weight(self, i: int, j: int) -> float:
        """0 when refined line ``j`` cannot be original line ``i``; otherwise in ``(1, 2]``, higher = closer."""
        o, r = self.orig[i], self.ref[j]
        if not r.strip() or not o:
            return 0.0
        if len(r) <= len(o) and _lcs_chars(o, r) == len(r):
            return 1.0 + len(r) / len(o)  # a deletion-only edit of the line
        otok = self._otok.get(i)
        if otok is None:
            otok = self._otok[i] = Counter(_tokens(o))
        n_o = sum(otok.values())
        if not n_o:
            return 0.0
        rtok = self._rtok.get(j)
        if rtok is None:
            rtok = self._rtok[j] = Counter(_tokens(r))
        shared = sum((otok & rtok).values())
        if shared < TOKEN_KEEP_SHARE * n_o:
            return 0.0
        return 1.0 + shared / max(n_o, sum(rtok.values()))

    def align(self, max_cells: int) -> list[tuple[int, int]]:
        n, m = len(self.orig), len(self.ref)
        if n == 0 or m == 0:
            return []
        if n * m > max_cells:
            return self._greedy()
        # weighted LCS: score[i][j] over orig[:i], ref[:j]
        score = [[0.0] * (m + 1) for _ in range(n + 1)]
        for i in range(1, n + 1):
            row, prev = score[i], score[i - 1]
            for j in range(1, m + 1):
                best = max(prev[j], row[j - 1])
                w = self.weight(i - 1, j - 1)
                if w and prev[j - 1] + w > best:
                    best = prev[j - 1] + w
                row[j] = best
        pairs: list[tuple[int, int]] = []
        i, j = n, m
        while i > 0 and j > 0:
            if score[i][j] == score[i - 1][j]:
                i -= 1
            elif score[i][j] == score[i][j - 1]:
                j -= 1
            else:
                pairs.append((i - 1, j - 1))
                i -= 1
                j -= 1
        pairs.reverse()
        return pairs

    def _greedy(self) -> list[tuple[int, int]]:
        pairs: list[tuple[int, int]] = []
        p = 0
        for j in range(len(self.ref)):
            best, best_i = 0.0, -1
            for i in range(p, min(p + GREEDY_LOOKAHEAD, len(self.orig))):
                w = self.weight(i, j)
                if w > best:
                    best, best_i = w, i
            if best_i >= 0:
                pairs.append((best_i, j))
                p = best_i + 1
        return pairs


def align_lines(
    original: Sequence[str],
    refined: Sequence[str],
    *,
    prefer: Sequence[bool] | None = None,
    max_block_cells: int = DEFAULT_MAX_BLOCK_CELLS,
) -> list[int | None]:
    """Map each original line to the refined line it survives as (monotone), or ``None`` when it was deleted.

    See the module docstring for the rules. Refined lines paired with nothing are new text (a rewrite).

    Args:
        original: the original lines.
        refined: the refined lines.
        prefer: one flag per original line. When the original holds the same line several times, the refined
            text cannot tell which copy survived; a copy flagged True gets the match whenever the alignment stays
            monotone (see :func:`_prefer_flagged`). Scoring passes the gold ``keep`` labels, so a refined text
            identical to the gold projection scores as the gold projection.
        max_block_cells: runs of unmatched lines with more line pairs than this are aligned greedily.
    """
    matched: list[int | None] = [None] * len(original)
    if not original or not refined:
        return matched
    ids: dict[str, int] = {}
    a = [ids.setdefault(line, len(ids)) for line in original]
    b = [ids.setdefault(line, len(ids)) for line in refined]
    block: list[int] | None = None  # [i1, i2, j1, j2] of the pending run of unmatched lines

    def flush() -> None:
        if block is None:
            return
        i1, i2, j1, j2 = block
        for i, j in _Block(original[i1:i2], refined[j1:j2]).align(max_block_cells):
            matched[i1 + i] = j1 + j

    for op in Indel.opcodes(a, b):
        if op.tag == "equal":
            flush()
            block = None
            for k in range(op.src_end - op.src_start):
                matched[op.src_start + k] = op.dest_start + k
        elif block is None:
            block = [op.src_start, op.src_end, op.dest_start, op.dest_end]
        else:
            block[1], block[3] = op.src_end, op.dest_end
    flush()
    if prefer is not None:
        if len(prefer) != len(original):
            raise ValueError(f"prefer has {len(prefer)} flags for {len(original)} lines")
        _prefer_flagged(original, matched, prefer)
    return matched


def _prefer_flagged(original: Sequence[str], matched: list[int | None], prefer: Sequence[bool]) -> None:
    """Move matches from unflagged lines to identical, unmatched, flagged copies, keeping the map monotone.

    A match on line ``i`` may move to an identical line ``k`` when no other matched line lies between them.
    Sweeps right to left, then left to right, until nothing moves (so whole repeated blocks move line by line).
    """
    copies: dict[str, list[int]] = {}
    for i, line in enumerate(original):
        copies.setdefault(line, []).append(i)
    candidates = [
        i
        for i, j in enumerate(matched)
        if j is not None
        and not prefer[i]
        and len(copies[original[i]]) > 1
        and any(prefer[k] and matched[k] is None for k in copies[original[i]])
    ]
    if not candidates:
        return
    anchors = [i for i, j in enumerate(matched) if j is not None]  # sorted matched original lines
    for _ in range(4):
        moved = False
        for order in (reversed(candidates), candidates):
            for i in list(order):
                if matched[i] is None or prefer[i]:
                    continue
                pos = bisect_left(anchors, i)
                lo = anchors[pos - 1] if pos > 0 else -1
                hi = anchors[pos + 1] if pos + 1 < len(anchors) else len(original)
                free = [k for k in copies[original[i]] if lo < k < hi and prefer[k] and matched[k] is None]
                if not free:
                    continue
                k = min(free, key=lambda k: abs(k - i))
                matched[k], matched[i] = matched[i], None
                anchors[pos] = k  # still sorted: lo < k < hi
                moved = True
        if not moved:
            break


def keep_from_gold_text(text: str, gold_text: str) -> tuple[bool, ...]:
    """Per-line labels for ``text`` from a gold text: a line is content when it aligns to a gold line."""
    gold_lines = gold_text.split("\n") if gold_text else []
    return tuple(j is not None for j in align_lines(text.split("\n"), gold_lines))


# --------------------------------------------------------------------------------------------- gold


def _gold_keep(record: Mapping[str, Any], n_lines: int, keep_key: str, where: str) -> tuple[bool, ...]:
    if keep_key not in record:
        raise GoldFormatError(f"{where}: no {keep_key!r} labels (or pass a gold text key)")
    labels = record[keep_key]
    if not isinstance(labels, list):
        raise GoldFormatError(f"{where}: {keep_key!r} is {type(labels).__name__}, expected a list of 0/1")
    if len(labels) != n_lines:
        raise GoldFormatError(f"{where}: {len(labels)} {keep_key!r} labels for {n_lines} lines")
    if any(x not in (0, 1) or isinstance(x, float) for x in labels):
        raise GoldFormatError(f"{where}: {keep_key!r} labels must be 0 or 1")
    return tuple(bool(x) for x in labels)


def load_gold(
    records: Iterable[Mapping[str, Any]],
    *,
    text_key: str = "noisy",
    keep_key: str = "keep",
    gold_text_key: str | None = None,
    id_key: str = "id",
    group_key: str | None = None,
    ids: Iterable[str] | None = None,
    limit: int | None = None,
) -> list[GoldDoc]:
    """Turn gold records (e.g. WCXB ``pairs.jsonl.gz`` lines) into :class:`GoldDoc` objects.

    Args:
        records: one dict per document.
        text_key: the noisy input text.
        keep_key: per-line 0/1 labels (one per ``text.split("\\n")`` line); used unless ``gold_text_key`` is set.
        gold_text_key: derive the labels from this gold text instead (:func:`keep_from_gold_text`).
        id_key: the document id.
        group_key: optional field to group figures by (e.g. ``page_type``).
        ids: keep only these ids (in the records' order).
        limit: keep at most this many documents (after ``ids``).

    Raises:
        GoldFormatError: a record without id or text, with malformed labels, or a duplicate id.
    """
    wanted = set(ids) if ids is not None else None
    out: list[GoldDoc] = []
    seen: set[str] = set()
    for n, rec in enumerate(records, start=1):
        if limit is not None and len(out) >= limit:
            break
        if not isinstance(rec, Mapping):
            raise GoldFormatError(f"gold record {n} is {type(rec).__name__}, expected an object")
        doc_id = rec.get(id_key)
        if not isinstance(doc_id, str) or not doc_id:
            if isinstance(doc_id, int) and not isinstance(doc_id, bool):
                doc_id = str(doc_id)
            else:
                raise GoldFormatError(f"gold record {n}: no usable {id_key!r}")
        where = f"gold record {n} ({doc_id})"
        if wanted is not None and doc_id not in wanted:
            continue
        if doc_id in seen:
            raise GoldFormatError(f"{where}: duplicate id")
        seen.add(doc_id)
        text = rec.get(text_key)
        if not isinstance(text, str):
            raise GoldFormatError(f"{where}: {text_key!r} is missing or not a string")
        if gold_text_key is not None:
            gold_text = rec.get(gold_text_key)
            if not isinstance(gold_text, str):
                raise GoldFormatError(f"{where}: {gold_text_key!r} is missing or not a string")
            keep = keep_from_gold_text(text, gold_text)
        else:
            keep = _gold_keep(rec, text.count("\n") + 1, keep_key, where)
        group = rec.get(group_key) if group_key else None
        out.append(GoldDoc(doc_id, text, keep, None if group is None else str(group)))
    return out


# --------------------------------------------------------------------------------------------- scoring


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def _f1(tp: int, fp: int, fn: int) -> float | None:
    den = 2 * tp + fp + fn
    return 2 * tp / den if den else None


@dataclass(slots=True)
class DocScore:
    """Raw counts for one document and one method; the figures are properties."""

    id: str
    group: str | None = None
    lines: int = 0
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    gold_keep_chars: int = 0
    gold_keep_chars_kept: int = 0
    noise_chars: int = 0
    noise_chars_removed: int = 0
    in_tokens: int = 0
    out_tokens: int = 0
    out_words: int = 0
    new_words: int = 0
    untouched: bool = False
    emptied: bool = False
    dropped: bool = False
    lost: bool = False
    chunks: int = 0
    chunks_wiped: int = 0

    @property
    def del_precision(self) -> float | None:
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def del_recall(self) -> float | None:
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def del_f1(self) -> float | None:
        return _f1(self.tp, self.fp, self.fn)

    @property
    def keep_precision(self) -> float | None:
        return _ratio(self.tn, self.tn + self.fn)

    @property
    def keep_recall(self) -> float | None:
        return _ratio(self.tn, self.tn + self.fp)

    @property
    def keep_f1(self) -> float | None:
        return _f1(self.tn, self.fn, self.fp)

    @property
    def char_keep(self) -> float | None:
        return _ratio(self.gold_keep_chars_kept, self.gold_keep_chars)

    @property
    def noise_removal(self) -> float | None:
        return _ratio(self.noise_chars_removed, self.noise_chars)

    @property
    def out_in_ratio(self) -> float | None:
        return _ratio(self.out_tokens, self.in_tokens)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for name in _DOC_FIGURES:
            d[name] = getattr(self, name)
        return d


_DOC_FIGURES = (
    "del_precision",
    "del_recall",
    "del_f1",
    "keep_precision",
    "keep_recall",
    "keep_f1",
    "char_keep",
    "noise_removal",
    "out_in_ratio",
)


def count_tokens(text: str, tokenizer: Tokenizer | None = None) -> int:
    """Whitespace tokens of ``text``, or ``tokenizer(text)``."""
    return tokenizer(text) if tokenizer is not None else len(text.split())


def new_words(original: str, refined: str) -> tuple[int, int]:
    """``(new, total)``: ``\\w+`` tokens of ``refined`` absent from ``original``'s tokens, and all of them."""
    seen = set(WORD_RE.findall(original))
    out = WORD_RE.findall(refined)
    return sum(1 for w in out if w not in seen), len(out)


def wiped_chunks(
    lines: Sequence[str], keep: Sequence[bool], deleted: Sequence[bool], window: int, unit: str = "chars"
) -> tuple[int, int]:
    """``(chunks, wiped)``: the chunks of ``lines`` (``window`` / ``unit``, as the refine model chunks) that hold a
    non-blank line, and those of them whose non-blank lines were all ``deleted`` while ``keep`` (gold) marks at
    least half of them as content."""
    n = wiped = 0
    for c in chunk_lines(list(lines), window, unit):  # type: ignore[arg-type]
        idx = [i for i in range(c.start, c.end) if lines[i].strip()]
        if not idx:
            continue
        n += 1
        if all(deleted[i] for i in idx) and 2 * sum(keep[i] for i in idx) >= len(idx):
            wiped += 1
    return n, wiped


def score_document(
    gold: GoldDoc,
    refined: str | None,
    *,
    tokenizer: Tokenizer | None = None,
    max_block_cells: int = DEFAULT_MAX_BLOCK_CELLS,
    window: int | None = None,
    unit: str = "chars",
) -> DocScore:
    """Score one refined text (``None`` = the document was dropped) against its gold pair; ``window`` / ``unit``:
    the refine model's chunking, for ``chunks_wiped`` (``None``: not counted)."""
    dropped = refined is None
    out = "" if refined is None else refined
    lines = gold.text.split("\n")
    if len(gold.keep) != len(lines):
        raise GoldFormatError(f"{gold.id}: {len(gold.keep)} labels for {len(lines)} lines")
    out_lines = out.split("\n") if out else []
    matched = align_lines(lines, out_lines, prefer=gold.keep, max_block_cells=max_block_cells)
    s = DocScore(id=gold.id, group=gold.group, dropped=dropped)
    for line, keep, j in zip(lines, gold.keep, matched, strict=True):
        if not line.strip():
            continue
        s.lines += 1
        deleted = j is None
        kept_chars = 0 if j is None else (len(line) if out_lines[j] == line else _lcs_chars(line, out_lines[j]))
        if keep:
            s.gold_keep_chars += len(line)
            s.gold_keep_chars_kept += kept_chars
            if deleted:
                s.fp += 1
            else:
                s.tn += 1
        else:
            s.noise_chars += len(line)
            s.noise_chars_removed += len(line) - kept_chars
            if deleted:
                s.tp += 1
            else:
                s.fn += 1
    s.in_tokens = count_tokens(gold.text, tokenizer)
    s.out_tokens = count_tokens(out, tokenizer) if out else 0
    s.new_words, s.out_words = new_words(gold.text, out)
    s.untouched = not dropped and out == gold.text
    s.emptied = not dropped and not out.strip()
    s.lost = (s.emptied or dropped) and any(k and line.strip() for line, k in zip(lines, gold.keep, strict=True))
    if window is not None:
        s.chunks, s.chunks_wiped = wiped_chunks(lines, gold.keep, [j is None for j in matched], window, unit)
    return s


def _mean(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return math.fsum(vals) / len(vals) if vals else None


def aggregate(scores: Sequence[DocScore]) -> dict[str, Any]:
    """Corpus-level figures: pooled (micro) and per-document mean (``*_macro``), plus raw totals."""
    tot = {k: sum(getattr(s, k) for s in scores) for k in _COUNT_FIELDS}
    n = len(scores)
    tp, fp, fn, tn = tot["tp"], tot["fp"], tot["fn"], tot["tn"]
    out: dict[str, Any] = {
        "docs": n,
        "del_precision": _ratio(tp, tp + fp),
        "del_recall": _ratio(tp, tp + fn),
        "del_f1": _f1(tp, fp, fn),
        "keep_precision": _ratio(tn, tn + fn),
        "keep_recall": _ratio(tn, tn + fp),
        "keep_f1": _f1(tn, fn, fp),
        "char_keep": _ratio(tot["gold_keep_chars_kept"], tot["gold_keep_chars"]),
        "noise_removal": _ratio(tot["noise_chars_removed"], tot["noise_chars"]),
        "new_words_per_1k": None if not tot["out_words"] else 1000 * tot["new_words"] / tot["out_words"],
        "out_in_ratio": _ratio(tot["out_tokens"], tot["in_tokens"]),
        "untouched": _ratio(sum(s.untouched for s in scores), n),
        "emptied": _ratio(sum(s.emptied for s in scores), n),
        "dropped": _ratio(sum(s.dropped for s in scores), n),
        "lost_docs": sum(s.lost for s in scores),
        "chunks_wiped": _ratio(tot["chunks_wiped"], tot["chunks"]),
    }
    for name in _DOC_FIGURES:
        out[f"{name}_macro"] = _mean(getattr(s, name) for s in scores)
    out["totals"] = tot
    return out


_COUNT_FIELDS = (
    "lines",
    "tp",
    "fp",
    "fn",
    "tn",
    "gold_keep_chars",
    "gold_keep_chars_kept",
    "noise_chars",
    "noise_chars_removed",
    "in_tokens",
    "out_tokens",
    "out_words",
    "new_words",
    "chunks",
    "chunks_wiped",
)


# --------------------------------------------------------------------------------------------- evaluation


@dataclass(slots=True)
class MethodResult:
    """Scores of one method: corpus figures, per-group figures and the per-document counts."""

    name: str
    corpus: dict[str, Any]
    groups: dict[str, dict[str, Any]]
    docs: list[DocScore]

    def to_dict(self, include_docs: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "corpus": self.corpus, "groups": self.groups}
        if include_docs:
            d["docs"] = [s.to_dict() for s in self.docs]
        return d


@dataclass(slots=True)
class EvalResult:
    """Everything :func:`evaluate` computed.

    Attributes:
        methods: by name, in table order (ours first, then the baselines).
        unknown_ids: refined ids that are not in the gold set (not scored).
    """

    methods: dict[str, MethodResult] = field(default_factory=dict)
    unknown_ids: list[str] = field(default_factory=list)

    def to_dict(self, include_docs: bool = True) -> dict[str, Any]:
        return {
            "methods": {k: m.to_dict(include_docs) for k, m in self.methods.items()},
            "unknown_ids": self.unknown_ids,
        }


def _baseline_output(name: str, gold: GoldDoc) -> str:
    if name == "keep-all":
        return keep_all(gold.text)
    if name == "c4-lines":
        return c4_lines(gold.text)
    if name == "gold":
        return apply_keep_mask(gold.text, gold.keep)
    raise ValueError(f"unknown baseline {name!r}; known: {', '.join(BASELINE_NAMES)}")


def score_method(
    name: str,
    outputs: Mapping[str, str] | Callable[[GoldDoc], str | None],
    gold: Sequence[GoldDoc],
    *,
    tokenizer: Tokenizer | None = None,
    max_block_cells: int = DEFAULT_MAX_BLOCK_CELLS,
    window: int | None = None,
    unit: str = "chars",
) -> MethodResult:
    """Score one method: ``outputs`` maps id -> refined text (a missing id is a dropped document), or is a
    function of the gold doc."""
    docs = []
    for g in gold:
        refined = outputs(g) if callable(outputs) else outputs.get(g.id)
        docs.append(
            score_document(
                g, refined, tokenizer=tokenizer, max_block_cells=max_block_cells, window=window, unit=unit
            )
        )
    groups: dict[str, list[DocScore]] = {}
    for s in docs:
        if s.group is not None:
            groups.setdefault(s.group, []).append(s)
    return MethodResult(
        name=name,
        corpus=aggregate(docs),
        groups={k: aggregate(v) for k, v in sorted(groups.items())},
        docs=docs,
    )


def evaluate(
    refined: Mapping[str, str],
    gold: Sequence[GoldDoc],
    *,
    name: str = "ours",
    baselines: Sequence[str] = BASELINE_NAMES,
    tokenizer: Tokenizer | None = None,
    max_block_cells: int = DEFAULT_MAX_BLOCK_CELLS,
    window: int | None = None,
    unit: str = "chars",
) -> EvalResult:
    """Score ``refined`` (id -> refined text) and the named baselines on the same gold documents.

    Args:
        refined: the refiner's output; ids absent here count as dropped documents.
        gold: the gold pairs (:func:`load_gold`); only these documents are scored.
        name: the row name of ``refined``.
        baselines: any of :data:`BASELINE_NAMES`, scored on the same documents.
        tokenizer: token counter for ``out_in_ratio`` (default: whitespace tokens).
        max_block_cells: see :func:`align_lines`.
        window, unit: the refine model's chunking (``refinex.json``), for ``chunks_wiped``; ``None``: that figure
            is ``None``.

    Raises:
        ValueError: an unknown baseline name, or a baseline named like ``name``.
    """
    for b in baselines:
        if b not in BASELINE_NAMES:
            raise ValueError(f"unknown baseline {b!r}; known: {', '.join(BASELINE_NAMES)}")
        if b == name:
            raise ValueError(f"method name {name!r} collides with a baseline")
    gold_ids = {g.id for g in gold}
    result = EvalResult(unknown_ids=sorted(k for k in refined if k not in gold_ids))
    kw: dict[str, Any] = {"tokenizer": tokenizer, "max_block_cells": max_block_cells, "window": window, "unit": unit}
    result.methods[name] = score_method(name, refined, gold, **kw)
    for b in baselines:
        result.methods[b] = score_method(b, lambda g, b=b: _baseline_output(b, g), gold, **kw)
    return result


# --------------------------------------------------------------------------------------------- table


TABLE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("del_precision", "del P", "pct"),
    ("del_recall", "del R", "pct"),
    ("del_f1", "del F1", "pct"),
    ("del_f1_macro", "F1 macro", "pct"),
    ("char_keep", "chars kept", "pct"),
    ("noise_removal", "noise rm", "pct"),
    ("new_words_per_1k", "new/1k", "num"),
    ("out_in_ratio", "out/in", "pct"),
    ("untouched", "untouched", "pct"),
    ("emptied", "emptied", "pct"),
    ("dropped", "dropped", "pct"),
    ("lost_docs", "lost docs", "int"),
    ("chunks_wiped", "wiped chunks", "pct2"),
)
"""``(key, header, format)`` of the columns of :func:`format_table`; ``pct`` values print as percentages (``pct2``
with two decimals). ``lost docs``: documents emptied or dropped while the gold keeps >= 1 line (a count);
``wiped chunks``: share of the model's chunks deleted whole while the gold keeps >= half of their lines."""


def _cell(value: Any, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "pct":
        return f"{100 * value:.1f}"
    if kind == "pct2":
        return f"{100 * value:.2f}"
    if kind == "int":
        return f"{value:d}"
    return f"{value:.2f}"


def format_table(result: EvalResult, *, group: str | None = None) -> str:
    """A plain-text table, methods as rows, percentages except ``new/1k``; ``-`` = undefined.

    Args:
        result: from :func:`evaluate`.
        group: print this group's figures instead of the corpus figures.
    """
    header = ["method", "docs", *(h for _, h, _ in TABLE_COLUMNS)]
    rows = [header]
    for m in result.methods.values():
        figures = m.corpus if group is None else m.groups.get(group)
        if figures is None:
            continue
        rows.append([m.name, str(figures["docs"]), *(_cell(figures[k], kind) for k, _, kind in TABLE_COLUMNS)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = []
    for n, r in enumerate(rows):
        cells = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


__all__ = [
    "BASELINE_NAMES",
    "TABLE_COLUMNS",
    "WORD_RE",
    "DocScore",
    "EvalResult",
    "GoldDoc",
    "GoldFormatError",
    "MethodResult",
    "aggregate",
    "align_lines",
    "count_tokens",
    "evaluate",
    "format_table",
    "keep_from_gold_text",
    "wiped_chunks",
    "load_gold",
    "new_words",
    "score_document",
    "score_method",
]
