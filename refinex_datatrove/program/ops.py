"""The three calls of the RefineX program language, as plain frozen dataclasses.

Line numbers are 1-based and local to the chunk the program was written for (the numbers shown by
:func:`refinex_datatrove.program.render.render_chunk`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union


@dataclass(frozen=True, slots=True)
class KeepAll:
    """``keep_all()``: leave the chunk as it is."""

    def to_source(self) -> str:
        return "keep_all()"


@dataclass(frozen=True, slots=True)
class RemoveLines:
    """``remove_lines(start, end)``: delete lines ``start`` to ``end`` inclusive, with their line breaks."""

    start: int
    end: int

    def to_source(self) -> str:
        return f"remove_lines({self.start}, {self.end})"


@dataclass(frozen=True, slots=True)
class RemoveStr:
    """``remove_str(line, "text")``: delete ``text`` from ``line`` if it occurs there exactly once."""

    line: int
    text: str

    def to_source(self) -> str:
        return f"remove_str({self.line}, {_quote(self.text)})"


Op = Union[KeepAll, RemoveLines, RemoveStr]

FUNCTIONS = ("remove_lines", "remove_str", "keep_all")


def _quote(text: str) -> str:
    """Canonical string literal: double quotes, ``repr``-style escapes (parses back with ``ast``)."""
    body = repr(text)
    if body[0] == "'":
        # repr chose single quotes; re-escape for double quotes
        inner = body[1:-1].replace("\\'", "'").replace('"', '\\"')
        return f'"{inner}"'
    return body


def format_program(ops: list[Op] | tuple[Op, ...]) -> str:
    """Canonical text of a program: one call per line, no trailing newline; an empty program is ``keep_all()``."""
    if not ops:
        return "keep_all()"
    return "\n".join(op.to_source() for op in ops)
