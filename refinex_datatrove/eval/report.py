"""A static, self-contained HTML report of what the programs deleted, document by document.

One file, no server and no external assets (a Content-Security-Policy forbids loading any): inline CSS and a
few lines of inline JavaScript (toggles only; the page is complete without it). For each document it shows
the original text with every deleted span struck through (``<del class="rx-del">``) and attributed to the
call(s) that removed it, the chunk programs with each call's outcome, and the execution summary; for the
corpus, histograms of characters removed and calls per document, skip reasons, and a datatrove ``stats.json``.

Attribution re-runs the core offline: every call is executed alone on the original text with
:func:`~refinex_datatrove.program.execute_document`, and its spans are matched against the spans of the whole
program. Everything from documents is HTML-escaped; very long documents are cut at ``max_chars`` characters.

Pure Python: no datatrove import (it reads what datatrove wrote, as plain dicts).
"""

from __future__ import annotations

import html
import itertools
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from refinex_datatrove.metadata import META_KEY, MalformedProgramMetadata, read_chunk_programs
from refinex_datatrove.program import (
    ChunkProgram,
    ExecPolicy,
    ExecResult,
    execute_document,
    merge_spans,
    parse_program,
)
from refinex_datatrove.program.executor import max_call_chars

DEFAULT_MAX_CHARS = 20_000
"""Characters of a document shown in the report; the rest is summarised in one line."""

DEFAULT_MAX_DOCS = 1_000
"""Documents shown in the report (the corpus figures still cover every document passed)."""

LABEL_CHARS = 60
"""Call labels longer than this are cut with an ellipsis (the full call is in the program listing)."""


@dataclass(slots=True)
class CallInfo:
    """One call of a document's program and what it did.

    Attributes:
        index: position in the document's program (all chunks, in order).
        chunk: index of the chunk the call belongs to.
        source: the call as written (canonical form for valid calls, the raw line for invalid ones).
        status: ``"applied"`` or the reason it was not applied (a ``SkipReason`` / ``InvalidReason`` value).
        spans: ``[start, end)`` offsets in the original that this call deletes in the full program's result.
        doc_lines: 1-based document lines the call addresses (``None`` for invalid calls).
    """

    index: int
    chunk: int
    source: str
    status: str
    spans: list[tuple[int, int]] = field(default_factory=list)
    doc_lines: tuple[int, int] | None = None

    @property
    def label(self) -> str:
        return self.source if len(self.source) <= LABEL_CHARS else self.source[: LABEL_CHARS - 1] + "…"

    @property
    def chars(self) -> int:
        return sum(b - a for a, b in self.spans)


def _intersect(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Intersection of two merged span lists."""
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo < hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def attribute_calls(
    original: str, programs: Sequence[ChunkProgram], policy: ExecPolicy | None = None
) -> tuple[ExecResult, list[CallInfo]]:
    """Execute ``programs`` on ``original`` and find which call deleted which characters.

    Returns:
        The whole program's :class:`ExecResult` and one :class:`CallInfo` per call (invalid calls included).
        A call's ``spans`` are its own deletions (executed alone) intersected with the whole result's
        ``deleted_spans``; where several calls delete the same characters, each of them lists them.
    """
    policy = policy or ExecPolicy()
    full = execute_document(original, programs, policy, spans=True)
    calls: list[CallInfo] = []
    doc_lines = original.split("\n")
    for ci, cp in enumerate(programs):
        bound = max_call_chars(doc_lines, cp.chunk)  # the executor's verdicts (line_too_long before ast)
        kept_chunk = (
            policy.on_invalid == "keep_chunk"
            and len(parse_program(cp.program, bound).invalid) >= policy.keep_chunk_threshold
        )
        for line in cp.program.split("\n"):  # line by line, so invalid calls keep their place
            parsed = parse_program(line, bound)
            for inv in parsed.invalid:
                calls.append(CallInfo(len(calls), ci, inv.source, f"invalid: {inv.reason.value}"))
            for op in parsed.ops:
                source = op.to_source()
                info = CallInfo(len(calls), ci, source, "applied", doc_lines=_doc_lines(op, cp.chunk.start))
                if kept_chunk:
                    info.status = "chunk_kept_invalid"
                else:
                    alone = execute_document(original, [ChunkProgram(cp.chunk, source)], ExecPolicy(), spans=True)
                    if alone.skipped:
                        info.status = next(iter(alone.skipped))
                    if alone.deleted_spans:
                        info.spans = _intersect(alone.deleted_spans, full.deleted_spans)
                calls.append(info)
    for ci, cp in enumerate(programs):  # keep_all() next to edits in its chunk is skipped (executor rule)
        mine = [c for c in calls if c.chunk == ci]
        if not cp.chunk.skipped and any(c.doc_lines is not None for c in mine):
            for c in mine:
                if c.source == "keep_all()" and c.status == "applied":
                    c.status = "keep_all_mixed"
    return full, calls


def _doc_lines(op: Any, chunk_start: int) -> tuple[int, int] | None:
    start = getattr(op, "start", None)
    if start is not None:
        return chunk_start + start, chunk_start + op.end
    line = getattr(op, "line", None)
    if line is not None:
        return chunk_start + line, chunk_start + line
    return None


# --------------------------------------------------------------------------------------------- escaping


def _esc(value: Any) -> str:
    """HTML-escape anything (quotes too); lone surrogates become ``?`` and NULs U+FFFD, so the file is UTF-8."""
    s = str(value)
    s = s.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")
    return html.escape(s, quote=True)


# --------------------------------------------------------------------------------------------- one document


@dataclass(slots=True)
class _DocView:
    id: str
    original: str | None
    chars_before: int
    chars_removed: int
    n_calls: int
    applied: dict[str, int]
    skipped: dict[str, int]
    emptied: bool
    html: str
    overruled: int = 0  # chunks whose model program the decision rule replaced by keep_all()


def _segments(text_len: int, deleted: list[tuple[int, int]], calls: list[CallInfo]) -> list[tuple[int, int, tuple]]:
    """Cut ``[0, text_len)`` into ``(start, end, call_indices)`` pieces; ``None`` indices = kept text."""
    points = {0, text_len}
    for a, b in deleted:
        points.update((a, b))
    for c in calls:
        for a, b in c.spans:
            points.update((a, b))
    cuts = sorted(p for p in points if 0 <= p <= text_len)
    events: dict[int, list[tuple[int, int]]] = {}
    for c in calls:
        for a, b in c.spans:
            events.setdefault(a, []).append((c.index, 1))
            events.setdefault(b, []).append((c.index, -1))
    del_starts = {a: b for a, b in deleted}
    active: Counter[int] = Counter()
    in_del_until = -1
    pieces: list[list[Any]] = []
    for a, b in itertools.pairwise(cuts):
        for idx, d in events.get(a, ()):
            active[idx] += d
            if active[idx] == 0:
                del active[idx]
        if a in del_starts:
            in_del_until = del_starts[a]
        if a < in_del_until:
            pieces.append([a, b, tuple(sorted(active))])
        else:
            pieces.append([a, b, None])
    # a deleted piece no single call explains (the line break of a removed block at the end) takes its
    # neighbour's calls
    for k, p in enumerate(pieces):
        if p[2] == ():
            for q in (pieces[k + 1] if k + 1 < len(pieces) else None, pieces[k - 1] if k else None):
                if q is not None and q[2]:
                    p[2] = q[2]
                    break
    merged: list[tuple[int, int, tuple]] = []
    for a, b, c in pieces:
        if merged and merged[-1][2] == c and merged[-1][1] == a:
            merged[-1] = (merged[-1][0], b, c)
        else:
            merged.append((a, b, c))
    return merged


def _render_text(original: str, deleted: list[tuple[int, int]], calls: list[CallInfo], max_chars: int) -> str:
    shown = min(len(original), max_chars)
    deleted_shown = [(a, min(b, shown)) for a, b in deleted if a < shown]
    calls_shown = [
        CallInfo(c.index, c.chunk, c.source, c.status, [(a, min(b, shown)) for a, b in c.spans if a < shown])
        for c in calls
    ]
    labelled: set[int] = set()
    out: list[str] = []
    for a, b, idx in _segments(shown, merge_spans(deleted_shown), calls_shown):
        if idx is None:
            out.append(_esc(original[a:b]))
            continue
        names = [calls[i] for i in idx]
        title = "; ".join(_call_title(c) for c in names) or "deleted"
        open_tag = f'<del class="rx-del" data-calls="{" ".join(str(c.index) for c in names)}" title="{_esc(title)}">'
        new = [c for c in names if c.index not in labelled]
        if new:
            if original[a] == "\n" and b - a > 1:  # label the removed line, not the end of the line before
                out.append(f"{open_tag}\n</del>")
                a += 1
            labelled.update(c.index for c in new)
            tag = ", ".join(c.label for c in new)
            out.append(f'<span class="rx-call" data-call="{new[0].index}">{_esc(tag)}</span>')
        out.append(f"{open_tag}{_esc(original[a:b])}</del>")
    return "".join(out)


def _call_title(c: CallInfo) -> str:
    where = ""
    if c.doc_lines:
        a, b = c.doc_lines
        where = f" (document line {a})" if a == b else f" (document lines {a}-{b})"
    return f"{c.label} — chunk {c.chunk + 1}{where}"


def _counts(counts: Mapping[str, int] | None) -> str:
    if not counts:
        return "none"
    return ", ".join(f"{_esc(k)}={int(v)}" for k, v in sorted(counts.items()) if v) or "none"


def _coerce_counts(value: Any) -> dict[str, int]:
    """Counter dicts as stored (Parquet can give ``None`` for absent keys)."""
    if not isinstance(value, Mapping):
        return {}
    out = {}
    for k, v in value.items():
        if isinstance(v, int) and not isinstance(v, bool) and v:
            out[str(k)] = v
    return out


def _program_record(doc: Mapping[str, Any]) -> Any:
    prog = doc.get("program")
    if isinstance(prog, list):  # bare chunk list
        n = len(doc["text"].split("\n")) if isinstance(doc.get("text"), str) else 0
        from refinex_datatrove.program import RENDER_FORMAT

        prog = {"render": RENDER_FORMAT, "source": None, "n_lines": n, "chunks": prog}
    return prog


def _render_doc(n: int, doc: Mapping[str, Any], policy: ExecPolicy, max_chars: int) -> _DocView:
    doc_id = str(doc.get("id", f"#{n}"))
    original = doc.get("text")
    refined = doc.get("refined")
    stored_exec = doc.get("exec") if isinstance(doc.get("exec"), Mapping) else None
    prog = _program_record(doc)
    notes: list[str] = [str(x) for x in doc.get("notes", ()) or ()]
    calls: list[CallInfo] = []
    result: ExecResult | None = None
    chunks: list[ChunkProgram] = []
    if not isinstance(original, str):
        notes.append("original text not available: the deletions cannot be shown")
        original = refined if isinstance(refined, str) else ""
    elif prog is None:
        notes.append("no program")
    else:
        try:
            chunks = read_chunk_programs({"program": prog}, n_doc_lines=original.count("\n") + 1)
        except MalformedProgramMetadata as e:
            notes.append(f"program not shown: {e}")
        else:
            result, calls = attribute_calls(original, chunks, policy)
            if isinstance(refined, str) and refined != result.text:
                notes.append(
                    "re-executing the program does not give the stored text (edited after execution, or another "
                    "execution policy)"
                )
    deleted = result.deleted_spans if result else []
    chars_removed = result.chars_removed if result else 0
    applied = result.applied if result else _coerce_counts((stored_exec or {}).get("applied"))
    skipped = result.skipped if result else _coerce_counts((stored_exec or {}).get("skipped"))
    invalid = result.invalid if result else _coerce_counts((stored_exec or {}).get("invalid"))
    n_calls = len(calls) if result else sum(applied.values()) + sum(skipped.values())
    emptied = bool(original.strip()) and result is not None and not result.text.strip()
    overruled = _overruled_chunks(prog)

    parts: list[str] = []
    changed = " rx-changed" if chars_removed else ""
    parts.append(f'<section class="rx-doc{changed}" id="doc-{n}" data-doc-id="{_esc(doc_id)}">')
    share = f" ({100 * chars_removed / len(original):.1f}%)" if original else ""
    parts.append(f"<h2>{_esc(doc_id)}</h2>")
    parts.append('<p class="rx-meta">')
    parts.append(
        f"{len(original):,} characters, {chars_removed:,} removed{share}"
        f"{', emptied' if emptied else ''}; {result.lines_removed if result else 0} lines removed; "
        f"{n_calls} calls — applied: {_counts(applied)}; skipped: {_counts(skipped)}"
    )
    if overruled:
        parts.append(f"; {overruled} chunk(s) overruled by the decision rule (kept as they were)")
    if invalid:
        parts.append(f"; invalid: {_counts(invalid)}")
    if stored_exec:
        status = stored_exec.get("status")
        reason = stored_exec.get("reason")
        parts.append(f"<br>stored exec status: <b>{_esc(status)}</b>")
        if reason:
            parts.append(f" ({_esc(reason)})")
    parts.append("</p>")
    for note in notes:
        parts.append(f'<p class="rx-note">{_esc(note)}</p>')
    if chunks:
        parts.append(_render_program(chunks, calls, prog))
    parts.append(f'<pre class="rx-text">{_render_text(original, deleted, calls, max_chars)}</pre>')
    if len(original) > max_chars:
        parts.append(
            f'<p class="rx-trunc">… {len(original) - max_chars:,} more characters not shown '
            f"(the report shows {max_chars:,} characters per document).</p>"
        )
    parts.append("</section>")
    return _DocView(
        id=doc_id,
        original=original,
        chars_before=len(original),
        chars_removed=chars_removed,
        n_calls=n_calls,
        applied=dict(applied),
        skipped=dict(skipped),
        emptied=emptied,
        html="".join(parts),
        overruled=overruled,
    )


def _overruled_chunks(prog: Any) -> int:
    """Chunks of a program record with status ``overruled`` (the decision rule kept their text)."""
    chunks = prog.get("chunks") if isinstance(prog, Mapping) else None
    if not isinstance(chunks, list):
        return 0
    return sum(1 for c in chunks if isinstance(c, Mapping) and c.get("status") == "overruled")


def _render_program(chunks: list[ChunkProgram], calls: list[CallInfo], prog: Mapping[str, Any]) -> str:
    by_chunk: dict[int, list[CallInfo]] = {}
    for c in calls:
        by_chunk.setdefault(c.chunk, []).append(c)
    source = prog.get("source") if isinstance(prog, Mapping) else None
    summary = f"program: {len(chunks)} chunk(s), {len(calls)} call(s)" + (f", source {_esc(source)}" if source else "")
    out = [
        f'<details class="rx-program"><summary>{summary}</summary>',
        '<table class="rx-calls"><thead><tr><th>chunk</th><th>document lines</th><th>call</th><th>status</th>'
        + "<th>chars</th></tr></thead><tbody>",
    ]
    for ci, cp in enumerate(chunks):
        ch = cp.chunk
        lines = f"{ch.start + 1}-{ch.end}" + (" (skipped: over-long line)" if ch.skipped else "")
        entries = by_chunk.get(ci) or []
        if not entries:
            out.append(f"<tr><td>{ci + 1}</td><td>{lines}</td><td><i>empty program</i></td><td></td><td></td></tr>")
        for c in entries:
            cls = "rx-ok" if c.status == "applied" else "rx-skip"
            out.append(
                f"<tr><td>{ci + 1}</td><td>{lines}</td><td><code>{_esc(c.source)}</code></td>"
                f'<td class="{cls}">{_esc(c.status)}</td><td>{c.chars:,}</td></tr>'
            )
    out.append("</tbody></table></details>")
    return "".join(out)


# --------------------------------------------------------------------------------------------- corpus


HIST_CHARS = ((0, 0, "0"), (1, 99, "1–99"), (100, 999, "100–999"), (1000, 9999, "1k–10k"), (10000, None, "≥ 10k"))
HIST_CALLS = (
    (0, 0, "0"),
    (1, 1, "1"),
    (2, 2, "2"),
    (3, 4, "3–4"),
    (5, 9, "5–9"),
    (10, 19, "10–19"),
    (20, None, "≥ 20"),
)


def _bin(value: float, bins: Sequence[tuple[float, float | None, str]]) -> int:
    for k, (lo, hi, _) in enumerate(bins):
        if value >= lo and (hi is None or value <= hi):
            return k
    return len(bins) - 1


def _histogram(title: str, values: Sequence[float], bins: Sequence[tuple[float, float | None, str]]) -> str:
    counts = [0] * len(bins)
    for v in values:
        counts[_bin(v, bins)] += 1
    top = max(counts) or 1
    rows = []
    for (_, _, label), c in zip(bins, counts, strict=True):
        width = 100 * c / top
        rows.append(
            f'<tr><th scope="row">{_esc(label)}</th><td class="rx-bar-cell">'
            f'<div class="rx-bar" style="width:{width:.1f}%"></div></td><td class="rx-n">{c:,}</td></tr>'
        )
    return f'<figure class="rx-hist"><figcaption>{_esc(title)}</figcaption><table>{"".join(rows)}</table></figure>'


def _share_bins() -> list[tuple[float, float | None, str]]:
    bins: list[tuple[float, float | None, str]] = [(0, 0, "0%")]
    for k in range(10):
        bins.append((k / 10 + 1e-12, (k + 1) / 10, f"{10 * k}–{10 * (k + 1)}%"))
    return bins


def load_stats(stats: str | os.PathLike | Sequence[Any] | Mapping[str, Any]) -> list[dict[str, Any]]:
    """A datatrove ``stats.json`` (path, parsed list of per-step dicts, or one step's dict) as a list of steps.

    Raises:
        ValueError: the content is not datatrove stats.
    """
    data: Any = stats
    if isinstance(stats, (str, os.PathLike)):
        from refinex_datatrove.run_stats import read_stats_file

        data = read_stats_file(stats)
    if isinstance(data, Mapping):
        data = [data]
    if not isinstance(data, Sequence) or not all(isinstance(s, Mapping) and "name" in s for s in data):
        raise ValueError("not a datatrove stats.json: expected a list of {'name', 'stats', ...} objects")
    return [dict(s) for s in data]


def _render_stats(steps: list[dict[str, Any]]) -> str:
    out = [
        '<table class="rx-stats"><thead><tr><th>step</th><th>stat</th><th>total</th><th>mean</th><th>n</th></tr>'
        + "</thead><tbody>"
    ]
    for step in steps:
        stats = step.get("stats") or {}
        if not isinstance(stats, Mapping) or not stats:
            out.append(f'<tr><td>{_esc(step.get("name"))}</td><td colspan="4"><i>no stats</i></td></tr>')
            continue
        first = True
        for key, value in stats.items():
            if isinstance(value, Mapping):
                total, mean, n = value.get("total"), value.get("mean"), value.get("n")
                unit = value.get("unit")
            else:
                total, mean, n, unit = value, None, None, None
            name = _esc(step.get("name")) if first else ""
            first = False
            unit_s = f" <small>/{_esc(unit)}</small>" if unit else ""
            mean_s = f"{mean:,.2f}" if isinstance(mean, (int, float)) else ""
            total_s = f"{total:,}" if isinstance(total, (int, float)) else _esc(total)
            n_s = f"{n:,}" if isinstance(n, int) else ""
            out.append(
                f"<tr><td>{name}</td><td>{_esc(key)}</td><td>{total_s}</td><td>{mean_s}{unit_s}</td><td>{n_s}</td></tr>"
            )
    out.append("</tbody></table>")
    return "".join(out)


_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1100px;padding:1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.1em;margin:.2em 0;word-break:break-all}
.rx-doc{border:1px solid #ccc;border-radius:6px;padding:.6em .8em;margin:1em 0}
.rx-meta{color:#555;margin:.2em 0}.rx-note{color:#8a4b00;margin:.2em 0}
pre.rx-text{white-space:pre-wrap;word-wrap:break-word;background:#fafafa;padding:.5em;border-radius:4px;margin:.4em 0}
del.rx-del{background:#fde2e2;color:#a33;text-decoration:line-through}
.rx-call{font:11px monospace;background:#a33;color:#fff;border-radius:3px;padding:0 3px;margin-right:2px;
 user-select:none;vertical-align:1px}
body.rx-hide-del del.rx-del,body.rx-hide-del .rx-call{display:none}
body.rx-only-changed .rx-doc:not(.rx-changed){display:none}
table{border-collapse:collapse}td,th{padding:1px 6px;text-align:left;vertical-align:top}
table.rx-calls td,table.rx-stats td{border-top:1px solid #eee}.rx-ok{color:#276b2d}.rx-skip{color:#8a4b00}
.rx-hists{display:flex;flex-wrap:wrap;gap:2em}.rx-hist table{width:320px}.rx-bar-cell{width:200px}
.rx-bar{background:#4a78b5;height:12px;min-width:1px}.rx-n{text-align:right}
.rx-trunc{color:#555;font-style:italic}.rx-controls label{margin-right:1.5em}
"""

_JS = """
(function(){
  var body=document.body, dels=document.querySelectorAll('del.rx-del');
  var out=document.getElementById('rx-del-count');
  if(out){out.textContent=String(dels.length);}
  function wire(id,cls){var box=document.getElementById(id);if(!box){return;}
    box.addEventListener('change',function(){body.classList.toggle(cls,box.checked);});}
  wire('rx-hide-del','rx-hide-del');
  wire('rx-only-changed','rx-only-changed');
  document.documentElement.setAttribute('data-rx-ready','1');
})();
"""

_CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'"


def render_report(
    docs: Iterable[Mapping[str, Any]],
    *,
    stats: str | os.PathLike | Sequence[Any] | Mapping[str, Any] | None = None,
    title: str = "RefineX report",
    policy: ExecPolicy | None = None,
    max_chars: int = DEFAULT_MAX_CHARS,
    max_docs: int = DEFAULT_MAX_DOCS,
) -> str:
    """The report as an HTML string; see :func:`write_report`."""
    if max_chars < 1 or max_docs < 0:
        raise ValueError("max_chars must be >= 1 and max_docs >= 0")
    policy = policy or ExecPolicy()
    steps = load_stats(stats) if stats is not None else None
    views: list[_DocView] = []
    shown_html: list[str] = []
    n_docs = 0
    skipped_total: Counter[str] = Counter()
    applied_total: Counter[str] = Counter()
    for n, doc in enumerate(docs):
        n_docs += 1
        view = _render_doc(n, doc, policy, max_chars)
        skipped_total.update(view.skipped)
        applied_total.update(view.applied)
        if n < max_docs:
            shown_html.append(view.html)
        view.html = ""  # keep only the figures in memory
        view.original = None
        views.append(view)

    chars_before = sum(v.chars_before for v in views)
    chars_removed = sum(v.chars_removed for v in views)
    changed = sum(1 for v in views if v.chars_removed)
    emptied = sum(1 for v in views if v.emptied)
    overruled = sum(v.overruled for v in views)
    share = f" ({100 * chars_removed / chars_before:.1f}%)" if chars_before else ""
    summary = (
        f"<p>{n_docs:,} documents; {changed:,} changed, {n_docs - changed:,} untouched, {emptied:,} emptied; "
        f"{chars_removed:,} of {chars_before:,} characters removed{share}. "
        f"Calls applied: {_counts(applied_total)}; skipped: {_counts(skipped_total)}. "
        f"Chunks overruled by the decision rule (drastic programs kept as keep_all()): {overruled:,}.</p>"
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_esc(title)}</h1>",
        '<section class="rx-corpus"><h2>Corpus</h2>',
        summary,
        '<div class="rx-hists">',
        _histogram("characters removed per document", [v.chars_removed for v in views], HIST_CHARS),
        _histogram(
            "share of characters removed per document",
            [v.chars_removed / v.chars_before if v.chars_before else 0.0 for v in views],
            _share_bins(),
        ),
        _histogram("calls per document", [v.n_calls for v in views], HIST_CALLS),
        "</div>",
    ]
    if steps is not None:
        parts.append("<h3>Pipeline stats</h3>")
        parts.append(_render_stats(steps))
    parts.append("</section>")
    parts.append(
        '<p class="rx-controls"><label><input type="checkbox" id="rx-hide-del"> hide deleted text</label>'
        '<label><input type="checkbox" id="rx-only-changed"> only changed documents</label>'
        'deleted spans on this page: <span id="rx-del-count">?</span></p>'
    )
    if n_docs > max_docs:
        parts.append(f'<p class="rx-trunc">Showing the first {max_docs:,} of {n_docs:,} documents.</p>')
    parts.extend(shown_html)
    parts.append(f"<script>{_JS}</script></body></html>")
    return "\n".join(parts)


def write_report(
    docs: Iterable[Mapping[str, Any]],
    out_path: str | os.PathLike,
    stats: str | os.PathLike | Sequence[Any] | Mapping[str, Any] | None = None,
    title: str = "RefineX report",
    *,
    policy: ExecPolicy | None = None,
    max_chars: int = DEFAULT_MAX_CHARS,
    max_docs: int = DEFAULT_MAX_DOCS,
) -> Path:
    """Write the report to ``out_path`` (one self-contained HTML file) and return its path.

    Args:
        docs: plain dicts, one per document: ``id``; ``text`` = the **original** text; ``program`` = the
            ``metadata["refinex"]["program"]`` record (or a bare list of chunk dicts); optional ``exec`` (the
            stored exec record), ``refined`` (the stored refined text, checked against re-execution) and
            ``notes`` (strings shown with the document). :func:`report_doc` builds them from datatrove records.
        out_path: the HTML file to write (parent folders are created).
        stats: a datatrove ``stats.json`` (path or parsed) to show as a table.
        title: page title.
        policy: the execution policy the programs ran with (default: skip invalid calls only).
        max_chars: characters shown per document.
        max_docs: documents shown; the corpus figures cover all of them.
    """
    text = render_report(docs, stats=stats, title=title, policy=policy, max_chars=max_chars, max_docs=max_docs)
    path = Path(out_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def report_doc(record: Mapping[str, Any], original_text: str | None = None) -> dict[str, Any]:
    """A :func:`write_report` document from a datatrove record (``{"id", "text", "metadata": {...}}``).

    The original text is ``original_text`` if given, else ``metadata["refinex"]["original_text"]``, else the
    record's own text when the stored exec record says nothing was removed (or no program ran). Otherwise the
    original is unknown and the document is shown without its deletions.
    """
    metadata = record.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    meta = metadata.get(META_KEY, record.get(META_KEY))  # nested, or top level (expand_metadata=True)
    notes = [] if isinstance(meta, Mapping) else ['no metadata["refinex"] on this document']
    meta = meta if isinstance(meta, Mapping) else {}
    text = record.get("text")
    text = text if isinstance(text, str) else ""
    exec_rec = meta.get("exec") if isinstance(meta.get("exec"), Mapping) else None
    original = original_text
    if original is None and isinstance(meta.get("original_text"), str):
        original = meta["original_text"]
    if original is None and (exec_rec is None or not exec_rec.get("chars_removed")):
        original = text
    return {
        "id": record.get("id"),
        "text": original,
        "refined": text,
        "program": meta.get("program"),
        "exec": exec_rec,
        "notes": notes,
    }


__all__ = [
    "DEFAULT_MAX_CHARS",
    "DEFAULT_MAX_DOCS",
    "CallInfo",
    "attribute_calls",
    "load_stats",
    "render_report",
    "report_doc",
    "write_report",
]
