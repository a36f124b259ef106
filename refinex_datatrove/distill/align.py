r"""Character-level alignment of an original text and its rewrite, fast on long documents.

Two stages (``stack-notes.md`` §8.3), plus the repairs that deletion programs need:

1. **Lines.** Exact LCS over lines with :func:`rapidfuzz.distance.Indel.opcodes` (milliseconds even for long
   documents; lines are mapped to integer ids first, so two different lines can never match). Consecutive
   non-equal line operations form *change blocks*.
2. **Repeated lines.** With repeated lines the line LCS is not unique and Indel may match a copy that splits
   one edit over two change blocks (``a = [L, L]``, ``b = [L', L]``: "insert L'" + "delete the second L").
   Pure deletions/insertions that can slide over identical lines are slid to join such blocks, and a pure
   insertion is joined with the change blocks around it across at most ``join_equal_lines`` equal lines, so
   that the character stage sees the edit whole.
3. **Characters, inside change blocks only.** ``difflib.SequenceMatcher(None, x, y, autojunk=False)`` (the
   paper's aligner, which keeps a deleted line in one piece). difflib's greedy longest-match-first strategy can
   pay for it on repetitive text (ASCII tables, code): when its script has more insertions + deletions than
   the minimum (:func:`rapidfuzz.distance.Indel.distance`), the block uses the exact, minimal
   :func:`rapidfuzz.distance.Indel.opcodes` instead. Blocks over ``max_block_chars`` use the linear-memory
   :func:`rapidfuzz.distance.Levenshtein.opcodes`. If the whole script is still longer than the minimum (a
   short or empty line anchored at the wrong place, e.g. the final ``"\n"`` of a rewrite that ends with a
   newline), the change blocks with insertions or replacements are joined with their neighbours across wider
   and wider runs of equal lines and realigned; the last resort is an exact alignment of the whole texts.
   A deletion-only rewrite therefore always comes out as deletions only.
4. **Deletion boundaries.** A deletion between two equal runs can often move without changing the result
   (deleting ``".\nB."`` or ``"B.\n"`` after ``"A."``); it is moved to the position whose ends fall on the
   best boundaries (line break, then word boundary, then punctuation), so deleted lines come out as whole
   lines and partial deletions as whole words where the text allows.

Line separators: a line inside the document owns the ``"\n"`` that follows it, so an equal or change block of
whole lines is a contiguous slice of the text. The last line has no ``"\n"``; a change block that reaches the
end of the document takes the ``"\n"`` *before* it instead (borrowed from the preceding equal block), so
deleting the last lines deletes the line break before them. The result is a list of character opcodes
``(tag, i1, i2, j1, j2)`` over the whole documents, in difflib's vocabulary (``equal``, ``delete``, ``insert``,
``replace``), that turns ``a`` into ``b`` exactly (:func:`apply_opcodes`).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence

from rapidfuzz.distance import Indel, Levenshtein

from refinex_datatrove.program.executor import merge_spans

Opcode = tuple[str, int, int, int, int]
"""``(tag, i1, i2, j1, j2)``: ``a[i1:i2]`` becomes ``b[j1:j2]``; tag is equal, delete, insert or replace."""

Span = tuple[int, int]
"""A half-open character range ``[start, end)``."""

Block = tuple[bool, int, int, int, int]
"""A line block ``(is_equal, li1, li2, lj1, lj2)``: lines ``a[li1:li2]`` against ``b[lj1:lj2]``."""

DEFAULT_MAX_BLOCK_CHARS = 20_000
"""Change blocks with more characters than this (both sides together) use rapidfuzz Levenshtein, not difflib."""

DEFAULT_MAX_MATRIX_CELLS = 400_000_000
"""Indel's opcodes keep a bit matrix of ``len(a) * len(b)`` cells. Above this many cells the line stage (lines)
and the last-resort whole-text alignment (characters) use Levenshtein, which needs linear memory."""

DEFAULT_JOIN_EQUAL_LINES = 2
"""A pure insertion and a change block separated by at most this many equal lines are aligned together."""

MAX_JOIN_CHARS = 4_000
"""Blocks joined around pure insertions stay below this size (both sides together)."""

REPAIR_EQUAL_LINES = (2, 8, 32, 128)
"""Widths (equal lines) of the successive repair rounds for a script longer than the minimum."""


def align(
    a: str,
    b: str,
    *,
    max_block_chars: int = DEFAULT_MAX_BLOCK_CHARS,
    join_equal_lines: int = DEFAULT_JOIN_EQUAL_LINES,
    max_matrix_cells: int = DEFAULT_MAX_MATRIX_CELLS,
) -> list[Opcode]:
    """Align ``a`` (original) with ``b`` (rewrite) at character level.

    Args:
        a: the original text.
        b: the rewritten text.
        max_block_chars: change blocks whose two sides together exceed this many characters are aligned with
            :func:`rapidfuzz.distance.Levenshtein.opcodes` (exact, linear memory) instead of difflib; blocks
            are never joined beyond this size.
        join_equal_lines: join change blocks separated by at most this many equal lines (0 disables).
        max_matrix_cells: memory limit for Indel's bit matrix, see :data:`DEFAULT_MAX_MATRIX_CELLS`.

    Returns:
        Opcodes covering both texts from start to end; adjacent opcodes of the same tag are merged and no
        opcode is empty (so ``a == b == ""`` gives ``[]``).
    """
    if max_block_chars < 0 or join_equal_lines < 0:
        raise ValueError("max_block_chars and join_equal_lines must be >= 0")
    if a == b:
        return [("equal", 0, len(a), 0, len(b))] if a else []
    a_lines, b_lines = a.split("\n"), b.split("\n")
    ids: dict[str, int] = {}
    a_ids = [ids.setdefault(line, len(ids)) for line in a_lines]
    b_ids = [ids.setdefault(line, len(ids)) for line in b_lines]
    if len(a_ids) * len(b_ids) > max_matrix_cells:
        line_ops = Levenshtein.opcodes(a_ids, b_ids)
    else:
        line_ops = Indel.opcodes(a_ids, b_ids)

    # Line k covers [start[k], start[k + 1]): its text and the "\n" after it; start[n] = len + 1 stands for a
    # virtual "\n" after the last line, clipped away below.
    a_start = _line_starts(a_lines)
    b_start = _line_starts(b_lines)

    blocks: list[Block] = []  # (is_equal, li1, li2, lj1, lj2), alternating equal / change
    for op in line_ops:
        tag, i1, i2, j1, j2 = op.tag, op.src_start, op.src_end, op.dest_start, op.dest_end
        if i1 == i2 and j1 == j2:
            continue
        is_equal = tag == "equal"
        if blocks and blocks[-1][0] == is_equal:
            prev = blocks[-1]
            blocks[-1] = (is_equal, prev[1], i2, prev[3], j2)
        else:
            blocks.append((is_equal, i1, i2, j1, j2))
    blocks = _slide_blocks(blocks, a_ids, b_ids)
    if join_equal_lines:
        pure_inserts = [not blk[0] and blk[1] == blk[2] for blk in blocks]
        blocks = _join_blocks(
            blocks, pure_inserts, a_start, b_start, join_equal_lines, min(max_block_chars, MAX_JOIN_CHARS)
        )
    cache: dict[tuple[int, int, int, int], list[Opcode]] = {}
    ops, bad = _char_stage(a, b, blocks, a_start, b_start, max_block_chars, cache)

    # Repair: a wrong anchor (a short or empty line matched at the wrong place, e.g. the trailing "\n" of a
    # rewrite ending in a newline) can split an edit over blocks and make the script longer than the minimum.
    # Change blocks with insertions or replacements are then joined with their neighbours across wider and
    # wider runs of equal lines; the last resort is an exact character alignment of the whole texts.
    if any(bad):
        cost = _cost(ops)
        if cost > abs(len(a) - len(b)):
            minimum = Indel.distance(a, b)
            for width in REPAIR_EQUAL_LINES:
                if cost <= minimum:
                    break
                blocks = _join_blocks(blocks, bad, a_start, b_start, width, None)
                ops, bad = _char_stage(a, b, blocks, a_start, b_start, max_block_chars, cache)
                cost = _cost(ops)
            if cost > minimum:
                if len(a) * len(b) <= max_matrix_cells:
                    whole = _rapidfuzz_opcodes(Indel.opcodes(a, b))
                else:
                    whole = _rapidfuzz_opcodes(Levenshtein.opcodes(a, b))
                if _cost(whole) < cost:
                    ops = []
                    for op in whole:
                        _emit(ops, op)
    return _slide_deletions(a, ops)


def _char_stage(
    a: str,
    b: str,
    blocks: list[Block],
    a_start: Sequence[int],
    b_start: Sequence[int],
    max_block_chars: int,
    cache: dict[tuple[int, int, int, int], list[Opcode]],
) -> tuple[list[Opcode], list[bool]]:
    """Character opcodes for the blocks, and per block whether it holds an insertion or a replacement.

    ``cache`` keeps each change block's alignment by character range, so repair rounds only align new blocks.
    """
    # A final change block that follows an equal block takes the "\n" before it (the equal block's last one),
    # so deleting the last lines deletes the line break before them.
    borrow = len(blocks) > 1 and not blocks[-1][0]
    out: list[Opcode] = []
    bad = [False] * len(blocks)
    for k, (is_equal, li1, li2, lj1, lj2) in enumerate(blocks):
        ci1, ci2 = a_start[li1], min(a_start[li2], len(a))
        cj1, cj2 = b_start[lj1], min(b_start[lj2], len(b))
        if borrow and k == len(blocks) - 2:
            ci2, cj2 = a_start[li2] - 1, b_start[lj2] - 1
        elif borrow and k == len(blocks) - 1:
            ci1, cj1 = ci1 - 1, cj1 - 1
        if is_equal:
            _emit(out, ("equal", ci1, ci2, cj1, cj2))
            continue
        key = (ci1, ci2, cj1, cj2)
        block_ops = cache.get(key)
        if block_ops is None:
            block_ops = cache[key] = list(_align_block(a[ci1:ci2], b[cj1:cj2], max_block_chars))
        for tag, i1, i2, j1, j2 in block_ops:
            if tag in ("insert", "replace"):
                bad[k] = True
            _emit(out, (tag, ci1 + i1, ci1 + i2, cj1 + j1, cj1 + j2))
    return out, bad


def _cost(ops: Iterable[Opcode]) -> int:
    """Insertions + deletions of a script (a replacement counts both sides)."""
    return sum(i2 - i1 + j2 - j1 for tag, i1, i2, j1, j2 in ops if tag != "equal")


def _slide_blocks(blocks: list[Block], a_ids: Sequence[int], b_ids: Sequence[int]) -> list[Block]:
    """Join change blocks that are split only by an arbitrary choice among identical lines.

    With repeated lines the line LCS is not unique: for ``a = [L, L]`` and ``b = [L', L]`` (the first copy
    edited) Indel may match ``b``'s ``L`` with ``a``'s first one, giving "insert L'" and "delete the second L"
    in two change blocks that the character stage can no longer pair up. A pure deletion (or insertion) can
    slide across the equal lines next to it when they repeat its own lines; when it can slide all the way to
    the change block on the other side, and the joined block has lines on both sides, the blocks are joined
    (same line-level cost, one character-level alignment).
    """
    out: list[Block] = list(blocks)
    k = 1
    while k + 1 < len(out):
        c1, eq, c2 = out[k - 1], out[k], out[k + 1]
        if not eq[0] or c1[0] or c2[0]:
            k += 1
            continue
        n_eq = eq[2] - eq[1]
        c1_del, c1_ins = c1[3] == c1[4], c1[1] == c1[2]
        c2_del, c2_ins = c2[3] == c2[4], c2[1] == c2[2]
        joined: list[Block] | None = None
        if (c2_del and not c1_del) or (c2_ins and not c1_ins):
            # slide c2 up through eq: its first n_eq lines must repeat eq's lines
            seq, lo, hi = (a_ids, c2[1], c2[2]) if c2_del else (b_ids, c2[3], c2[4])
            if all(seq[lo - 1 - t] == seq[hi - 1 - t] for t in range(n_eq)):
                d = hi - lo
                if c2_del:
                    merged = (False, c1[1], eq[1] + d, c1[3], c1[4])
                    new_eq = (True, eq[1] + d, eq[2] + d, eq[3], eq[4])
                else:
                    merged = (False, c1[1], c1[2], c1[3], eq[3] + d)
                    new_eq = (True, eq[1], eq[2], eq[3] + d, eq[4] + d)
                joined = [merged, new_eq]
        if joined is None and ((c1_del and not c2_del) or (c1_ins and not c2_ins)):
            # slide c1 down through eq
            seq, lo, hi = (a_ids, c1[1], c1[2]) if c1_del else (b_ids, c1[3], c1[4])
            if all(seq[lo + t] == seq[hi + t] for t in range(n_eq)):
                if c1_del:
                    new_eq = (True, c1[1], c1[1] + n_eq, eq[3], eq[4])
                    merged = (False, c1[1] + n_eq, c2[2], eq[4], c2[4])
                else:
                    new_eq = (True, eq[1], eq[2], c1[3], c1[3] + n_eq)
                    merged = (False, eq[2], c2[2], c1[3] + n_eq, c2[4])
                joined = [new_eq, merged]
        if joined is None:
            k += 1
            continue
        out[k - 1 : k + 2] = joined
        # re-merge neighbours of the same kind
        merged_out: list[Block] = []
        for blk in out:
            if merged_out and merged_out[-1][0] == blk[0]:
                prev = merged_out[-1]
                merged_out[-1] = (blk[0], prev[1], blk[2], prev[3], blk[4])
            else:
                merged_out.append(blk)
        out = merged_out
        k = max(1, k - 2)
    return out


def _join_blocks(
    blocks: list[Block],
    triggers: Sequence[bool],
    a_start: Sequence[int],
    b_start: Sequence[int],
    max_equal_lines: int,
    max_chars: int | None,
) -> list[Block]:
    """Join each trigger change block with the change blocks on either side of it, across at most
    ``max_equal_lines`` equal lines, when the joined block stays within ``max_chars`` characters (``None``: no
    limit).

    Used first for pure insertions: in a deletion-only rewrite an inserted line is almost always an edited
    line that the line stage matched to the wrong one of several identical lines, and aligning the
    neighbourhood as one block lets the character stage (with its minimal-cost fallback) pair it up again.
    Then, for repairs, for blocks whose character alignment needed insertions or replacements.
    """
    absorb = [False] * len(blocks)  # equal blocks to fold into the change blocks around them
    for k, blk in enumerate(blocks):
        if blk[0] or not triggers[k]:
            continue
        for e in (k - 1, k + 1):
            if 0 < e < len(blocks) - 1 and blocks[e][2] - blocks[e][1] <= max_equal_lines:
                absorb[e] = True
    if not any(absorb):
        return blocks
    out: list[Block] = []
    k = 0
    while k < len(blocks):
        end = k
        if not blocks[k][0]:
            while end + 2 < len(blocks) and absorb[end + 1]:
                end += 2
        if end > k:
            li1, li2, lj1, lj2 = blocks[k][1], blocks[end][2], blocks[k][3], blocks[end][4]
            size = a_start[li2] - a_start[li1] + b_start[lj2] - b_start[lj1]
            if max_chars is None or size <= max_chars:
                out.append((False, li1, li2, lj1, lj2))
                k = end + 1
                continue
            end = k
        out.extend(blocks[k : end + 1])
        k = end + 1
    return out


def _line_starts(lines: Sequence[str]) -> list[int]:
    """Start offset of every line, plus ``len(text) + 1`` at index ``len(lines)``."""
    starts = [0] * (len(lines) + 1)
    pos = 0
    for k, line in enumerate(lines):
        starts[k] = pos
        pos += len(line) + 1
    starts[len(lines)] = pos
    return starts


def _align_block(x: str, y: str, max_block_chars: int) -> Iterable[Opcode]:
    if not x and not y:
        return []
    if not y:
        return [("delete", 0, len(x), 0, 0)]
    if not x:
        return [("insert", 0, 0, 0, len(y))]
    if len(x) + len(y) > max_block_chars:
        return _rapidfuzz_opcodes(Levenshtein.opcodes(x, y))
    ops = difflib.SequenceMatcher(None, x, y, autojunk=False).get_opcodes()
    # A script of deletions only is minimal; otherwise compare with the exact insert/delete distance.
    cost = sum(i2 - i1 + j2 - j1 for tag, i1, i2, j1, j2 in ops if tag != "equal")
    if cost > len(x) - len(y) and cost > Indel.distance(x, y):
        return _rapidfuzz_opcodes(Indel.opcodes(x, y))
    return ops


def _rapidfuzz_opcodes(ops: Iterable) -> list[Opcode]:
    return [(op.tag, op.src_start, op.src_end, op.dest_start, op.dest_end) for op in ops]


def _emit(out: list[Opcode], op: Opcode) -> None:
    tag, i1, i2, j1, j2 = op
    if i1 == i2 and j1 == j2:
        return
    if out:
        ptag, pi1, pi2, pj1, pj2 = out[-1]
        if ptag == tag and pi2 == i1 and pj2 == j1:
            out[-1] = (tag, pi1, i2, pj1, j2)
            return
    out.append(op)


def _boundary_score(text: str, pos: int) -> int:
    """How good a place ``pos`` (between two characters) is for a deletion to start or end."""
    if pos <= 0 or pos >= len(text):
        return 6
    left, right = text[pos - 1], text[pos]
    if left == "\n":
        return 5  # at a line start: whole lines with their trailing break
    if right == "\n":
        return 4
    if left.isspace() or right.isspace():
        return 2
    if not left.isalnum() or not right.isalnum():
        return 1
    return 0


def _slide_deletions(a: str, ops: list[Opcode]) -> list[Opcode]:
    """Move each pure deletion that touches equal runs to its best-scoring equivalent position."""
    if not any(op[0] == "delete" for op in ops):
        return ops
    out: list[Opcode] = []
    pending = 0  # characters the previous deletion took from the front of this (equal) opcode
    for k, op in enumerate(ops):
        tag, i1, i2, j1, j2 = op
        if pending:
            i1, j1, pending = i1 + pending, j1 + pending, 0
        if tag != "delete":
            _emit(out, (tag, i1, i2, j1, j2))
            continue
        prev_eq = out[-1][2] - out[-1][1] if out and out[-1][0] == "equal" else 0
        next_eq = ops[k + 1][2] - ops[k + 1][1] if k + 1 < len(ops) and ops[k + 1][0] == "equal" else 0
        left = 0
        while left < prev_eq and a[i1 - 1 - left] == a[i2 - 1 - left]:
            left += 1
        right = 0
        while right < next_eq and a[i1 + right] == a[i2 + right]:
            right += 1
        shift = 0
        if left or right:
            best = _boundary_score(a, i1) + _boundary_score(a, i2)
            for cand in range(-left, right + 1):
                score = _boundary_score(a, i1 + cand) + _boundary_score(a, i2 + cand)
                if score > best or (score == best and abs(cand) < abs(shift)):
                    best, shift = score, cand
        if shift < 0:
            p = out.pop()
            _emit(out, ("equal", p[1], p[2] + shift, p[3], p[4] + shift))
            _emit(out, ("delete", i1 + shift, i2 + shift, j1 + shift, j1 + shift))
            _emit(out, ("equal", i2 + shift, i2, j1 + shift, j1))
        elif shift > 0:
            _emit(out, ("equal", i1, i1 + shift, j1, j1 + shift))
            _emit(out, ("delete", i1 + shift, i2 + shift, j1 + shift, j1 + shift))
            pending = shift
        else:
            _emit(out, ("delete", i1, i2, j1, j2))
    return out


def apply_opcodes(a: str, b: str, opcodes: Iterable[Opcode]) -> str:
    """Rebuild the rewrite from ``a`` and ``opcodes``, checking that they are consistent with ``a`` and ``b``.

    Raises:
        ValueError: the opcodes do not tile both texts in order, an ``equal`` opcode covers different text,
            or a tag does not fit its ranges.
    """
    parts: list[str] = []
    pos_a = pos_b = 0
    for tag, i1, i2, j1, j2 in opcodes:
        if i1 != pos_a or j1 != pos_b or i2 < i1 or j2 < j1:
            raise ValueError(f"opcode {(tag, i1, i2, j1, j2)} does not continue at a[{pos_a}], b[{pos_b}]")
        if tag == "equal":
            if a[i1:i2] != b[j1:j2]:
                raise ValueError(f"equal opcode {(i1, i2, j1, j2)} covers different text")
            parts.append(a[i1:i2])
        elif tag == "delete":
            if j1 != j2:
                raise ValueError(f"delete opcode {(i1, i2, j1, j2)} inserts text")
        elif tag in ("insert", "replace"):
            if tag == "insert" and i1 != i2:
                raise ValueError(f"insert opcode {(i1, i2, j1, j2)} deletes text")
            parts.append(b[j1:j2])
        else:
            raise ValueError(f"unknown opcode tag {tag!r}")
        pos_a, pos_b = i2, j2
    if pos_a != len(a) or pos_b != len(b):
        raise ValueError(f"opcodes end at a[{pos_a}], b[{pos_b}], texts have {len(a)} and {len(b)} characters")
    return "".join(parts)


def deletion_spans(opcodes: Iterable[Opcode]) -> list[Span]:
    """Character spans of the original deleted by pure ``delete`` opcodes (``replace`` is not a deletion), merged."""
    return merge_spans((i1, i2) for tag, i1, i2, _j1, _j2 in opcodes if tag == "delete")


def rewrite_opcodes(opcodes: Iterable[Opcode]) -> list[Opcode]:
    """The ``insert`` and ``replace`` opcodes: everything that is not an equal or a pure deletion."""
    return [op for op in opcodes if op[0] in ("insert", "replace")]


def rewrite_span_length(op: Opcode) -> int:
    """Size of an insertion (``j2 - j1``) or replacement (``max(i2 - i1, j2 - j1)``); 0 for other tags."""
    tag, i1, i2, j1, j2 = op
    if tag == "insert":
        return j2 - j1
    if tag == "replace":
        return max(i2 - i1, j2 - j1)
    return 0


def span_overlap(x: Sequence[Span], y: Sequence[Span]) -> int:
    """Number of characters in both of two sorted, disjoint span lists."""
    i = j = total = 0
    while i < len(x) and j < len(y):
        lo = max(x[i][0], y[j][0])
        hi = min(x[i][1], y[j][1])
        if hi > lo:
            total += hi - lo
        if x[i][1] <= y[j][1]:
            i += 1
        else:
            j += 1
    return total


def spans_length(spans: Iterable[Span]) -> int:
    """Total length of (disjoint) spans."""
    return sum(end - start for start, end in spans)
