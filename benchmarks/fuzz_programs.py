"""Fuzz the program parser and executor with hostile programs on random documents.

Every chunk program goes through ``parse_program`` and, with the rest of its document's programs, through
``execute_document``. Checked for every document:

* nothing raises;
* no code runs: an audit hook (``sys.addaudithook``) records every audit event raised while the fuzzer is
  armed; only ``compile`` (raised by ``ast.parse``) and CPython's read-only attempt to open ``<unknown>``
  for a syntax error's source line are allowed, so ``exec``, ``import``, ``open``,
  ``os.system``, ``subprocess.Popen``... all count as failures. Payloads also call a sentinel placed in
  ``builtins`` and try to create a marker file; neither may happen;
* the output is a subsequence of the input, ``deleted_spans`` reproduce it, and it equals a naive reference
  execution of the parsed calls;
* every program line that is not blank or a ``#`` comment is counted exactly once, as applied or as
  skipped with a reason (``applied + skipped == lines``), and ``skipped["invalid_call"]`` equals the sum of
  the invalid reasons;
* a line that parses to a call spells the call's ASCII name (no NFKC look-alike is a call);
* bounded cost: documents with a length bomb (a call line of 10 kB to 5 MB such as ``remove_lines(1, 1+1+...)``)
  run under ``tracemalloc``; the report gives their peak traced memory as a multiple of the program size and
  their time per MB, and the process's peak RSS.

Usage (from the repository root)::

    python -m benchmarks.fuzz_programs              # 100,000 programs
    python -m benchmarks.fuzz_programs --n 3000 --seed 1

The fast version runs in the default test suite (``tests/resilience/test_hostile_programs.py``).
"""

# ruff: noqa: RUF001 - look-alike characters are the point of a fuzzer
from __future__ import annotations

import argparse
import builtins
import os
import random
import resource
import sys
import tempfile
import time
import tracemalloc
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from refinex_datatrove.program import (
    MAX_LINE_NUMBER,
    Chunk,
    ChunkProgram,
    ExecPolicy,
    KeepAll,
    RemoveLines,
    RemoveStr,
    call_length_bound,
    chunk_lines,
    delete_spans,
    execute_document,
    is_deletion_of,
    parse_program,
)
from refinex_datatrove.program.executor import max_call_chars


SENTINEL_NAME = "_refinex_fuzz_sentinel"
ALLOWED_EVENTS = frozenset({"compile", "open:<unknown>"})
"""``ast.parse`` raises ``compile``; on some syntax errors CPython tries to read the offending source line from a
file named after the (pseudo) filename, ``<unknown>``, read-only: recorded as ``open:<unknown>``."""


# ----------------------------------------------------------------------------------------------------------
# The tripwire: an audit hook that only records while armed (audit hooks cannot be removed once added).
# ----------------------------------------------------------------------------------------------------------


class Tripwire:
    """Counts audit events and sentinel calls while armed."""

    _installed = False
    armed = False
    events: ClassVar[Counter[str]] = Counter()
    examples: ClassVar[dict[str, str]] = {}
    sentinel_calls = 0

    @classmethod
    def install(cls) -> None:
        if not cls._installed:
            sys.addaudithook(cls._hook)
            cls._installed = True
        setattr(builtins, SENTINEL_NAME, cls._sentinel)

    @classmethod
    def _hook(cls, event: str, args: tuple) -> None:
        if cls.armed:
            if event == "open" and args and args[0] == "<unknown>" and args[1] == "rb":
                event = "open:<unknown>"
            cls.events[event] += 1
            if event not in ALLOWED_EVENTS and event not in cls.examples:
                cls.examples[event] = repr(args)[:200]

    @classmethod
    def _sentinel(cls, *args: object, **kwargs: object) -> int:
        cls.sentinel_calls += 1
        return 1

    @classmethod
    def reset(cls) -> None:
        cls.events = Counter()
        cls.examples = {}
        cls.sentinel_calls = 0

    @classmethod
    def forbidden(cls) -> dict[str, int]:
        return {k: v for k, v in cls.events.items() if k not in ALLOWED_EVENTS}


# ----------------------------------------------------------------------------------------------------------
# Random documents
# ----------------------------------------------------------------------------------------------------------

WORDS = "the solar panel works home about us contact share privacy cookie menu login news read more".split()
UNICODE = [
    "日本語のテキスト", "Ελληνικά", "עברית\u200f", "مرحبا", "emoji 😀👍🏽", "e\u0301\u0301", "\u202eRTL override",
    "zero\u200bwidth", "\ufeffBOM", "ｆｕｌｌｗｉｄｔｈ", "\u2028sep", "\u0085nel", "lone \ud800 surrogate",
    "\udfff\ud83d", "tab\tsep",
]
CONTROL = ["\x00", "\r", "\x0b", "\x0c", "\x1c", "\x1f", "\x7f", "\x1b[31m", "\\", '"', "'", '"""', "#"]
IMITATIONS = [
    "remove_lines(1, 99)", "keep_all()", 'remove_str(1, "the")', "[3] fake numbered line", "[/doc]", "[1]",
    "__import__('os').system('echo pwned')", "# comment-like line", "```python", "Answer with remove_lines(a, b)",
]


def random_line(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.12:
        return ""
    if r < 0.55:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 14)))
    if r < 0.7:
        return rng.choice(UNICODE) + " " + rng.choice(WORDS)
    if r < 0.82:
        parts = [rng.choice(WORDS) for _ in range(rng.randint(1, 6))]
        for _ in range(rng.randint(1, 3)):
            parts.insert(rng.randint(0, len(parts)), rng.choice(CONTROL))
        return "".join(parts) if rng.random() < 0.5 else " ".join(parts)
    if r < 0.93:
        return rng.choice(IMITATIONS)
    if r < 0.995:
        return "".join(chr(rng.randint(1, 0x2FF)) for _ in range(rng.randint(1, 40)))
    return rng.choice(WORDS) * rng.randint(1_000, 40_000)  # a long line (skipped chunks)


def random_document(rng: random.Random) -> str:
    n = rng.choice([1, 1, 2, 3, 5, 8, 13, 30, 60]) if rng.random() < 0.98 else rng.randint(500, 3_000)
    text = "\n".join(random_line(rng) for _ in range(n))
    if rng.random() < 0.1:
        text += "\n"
    if rng.random() < 0.05:
        text = text.replace("\n", "\r\n")
    return text


def random_chunks(rng: random.Random, lines: list[str]) -> list[Chunk]:
    window = rng.choice([16, 40, 120, 400, 2_000, 20_000])
    chunks = chunk_lines(lines, window, rng.choice(["chars", "words"]))
    if rng.random() < 0.03:  # a chunk that does not fit the document (stale or corrupted metadata)
        n = len(lines)
        chunks.append(rng.choice([Chunk(-1, 2), Chunk(n, 1), Chunk(max(n - 1, 0), 3), Chunk(0, 0)]))
    return chunks


# ----------------------------------------------------------------------------------------------------------
# Program families: each returns program lines for a chunk of ``n`` lines
# ----------------------------------------------------------------------------------------------------------

Ctx = list[str]  # the chunk's lines
Family = Callable[[random.Random, Ctx], list[str]]

S = SENTINEL_NAME


def _marker() -> str:
    return str(Path(tempfile.gettempdir()) / f"refinex_fuzz_pwned_{os.getpid()}")


def _num(rng: random.Random, n: int) -> int:
    return rng.choice([rng.randint(1, max(n, 1)), rng.randint(0, n + 3), 1, n, n + 1, 0])


def _quote(rng: random.Random, s: str) -> str:
    style = rng.random()
    if style < 0.5:
        return RemoveStr(1, s).to_source()[len("remove_str(1, ") : -1]
    if style < 0.65:
        return repr(s)
    if style < 0.72 and "'" not in s and "\\" not in s and s.isprintable() and not s.endswith("\\"):
        return "r'" + s + "'"
    if style < 0.8:
        return "u" + repr(s)
    if style < 0.88:
        return "".join(f"\\U{ord(c):08x}" for c in s).join('""')
    if style < 0.94 and len(s) > 1:
        k = rng.randint(1, len(s) - 1)
        return repr(s[:k]) + " " + repr(s[k:])  # implicit concatenation
    body = repr(s)[1:-1]
    return '"""' + body.replace('"', '\\"') + '"""'


def fam_valid(rng: random.Random, ctx: Ctx) -> list[str]:
    n, out = len(ctx), []
    for _ in range(rng.randint(1, 6)):
        r = rng.random()
        if r < 0.45:
            a, b = _num(rng, n), _num(rng, n)
            if rng.random() < 0.8:
                a, b = min(a, b), max(a, b)
            sep = rng.choice([", ", ",", " , ", ",\t"])
            out.append(f"remove_lines({a}{sep}{b})")
        elif r < 0.9:
            k = _num(rng, n)
            line = ctx[k - 1] if 1 <= k <= n else rng.choice(WORDS)
            if not line:
                line = rng.choice(WORDS)
            i = rng.randrange(len(line))
            j = rng.randint(i + 1, min(len(line), i + 1 + rng.choice([1, 3, 10, 80])))
            out.append(f"remove_str({k}, {_quote(rng, line[i:j])})")
        else:
            out.append("keep_all()")
    if rng.random() < 0.2:
        out.append(rng.choice(["# a comment", "", "   ", "\t# indented comment", "remove_lines(1, 1)  # trailing"]))
    return out


INJECTIONS = [
    "__import__('os').system('touch {M}')",
    "__import__('subprocess').Popen(['touch', '{M}'])",
    "open('{M}', 'w').write('x')",
    "exec(\"open('{M}', 'w')\")",
    "eval(\"{S}()\")",
    "{S}()",
    "remove_lines({S}(), 2)",
    "remove_lines(1, {S}())",
    "remove_str(1, {S}())",
    "remove_str({S}(), 'a')",
    "remove_str(1, str({S}()))",
    "remove_lines(*[{S}(), 2])",
    "remove_lines(**{{'start': {S}()}})",
    "remove_lines(start={S}(), end=2)",
    "keep_all({S}())",
    "keep_all(); {S}()",
    "keep_all();{S}()",
    "remove_lines(1, 2); __import__('os').system('touch {M}')",
    "remove_str(1, f\"{{{S}()}}\")",
    "remove_str(1, f'{{__import__(\"os\").system(\"touch {M}\")}}')",
    "remove_lines(({S}()), 2)",
    "remove_lines((x := {S}()), 2)",
    "remove_lines([{S}() for _ in 'a'][0], 2)",
    "remove_lines(1 if {S}() else 2, 3)",
    "remove_lines(1 + {S}(), 2)",
    "remove_lines(-{S}(), 2)",
    "remove_lines(not {S}(), 2)",
    "remove_str(1, 'a' + {S}())",
    "remove_str(1, 'a' % {S}())",
    "remove_str(1, 'a'[{S}():])",
    "remove_str(1, ('a', {S}())[0])",
    "remove_str(1, {{'a': {S}()}}['a'])",
    "remove_str(1, __builtins__.{S}())",
    "remove_lines.__globals__['__builtins__']['{S}']()",
    "keep_all.__class__.__base__.__subclasses__()",
    "().__class__.__bases__[0].__subclasses__()[0]('{M}')",
    "(lambda: {S}())()",
    "(lambda f=__import__: f('os').system('touch {M}'))()",
    "remove_lines(*(lambda: ({S}(), 2))())",
    "import os; os.system('touch {M}')",
    "from os import system",
    "import os",
    "__import__ = {S}",
    "remove_lines = {S}",
    "del remove_lines",
    "global remove_lines",
    "def remove_lines(a, b): {S}()",
    "class X: {S}()",
    "@{S}",
    "for _ in [1]: {S}()",
    "while {S}(): pass",
    "with open('{M}', 'w'): pass",
    "try: {S}()\nexcept: pass",
    "assert {S}()",
    "raise SystemExit({S}())",
    "yield {S}()",
    "await {S}()",
    "async def f(): await {S}()",
    "breakpoint()",
    "input()",
    "print({S}())",
    "exit()",
    "quit()",
    "getattr(__import__('os'), 'system')('touch {M}')",
    "vars()['{S}']()",
    "globals()['{S}']()",
    "locals()",
    "compile('{S}()', '', 'exec')",
    "remove_lines.__call__(1, 2)",
    "remove_lines.__code__",
    "remove_str.__dict__",
    "remove_lines(1, 2).__class__",
    "remove_lines(1, 2)[0]",
    "remove_lines(1, 2)()",
    "remove_lines(1, 2) or {S}()",
    "remove_lines(1, 2) and {S}()",
    "remove_lines(1, 2) if {S}() else keep_all()",
    "[remove_lines(1, 2), {S}()]",
    "(remove_lines(1, 2), {S}())",
    "keep_all() + {S}()",
    "-keep_all()",
    "__builtins__['{S}']()",
    "__import__('builtins').{S}()",
    "__loader__.load_module('os')",
    "__spec__",
    "__debug__",
    "...",
    "None",
    "True",
    "remove_lines",
    "remove_lines()",
    "remove_lines(1)",
    "remove_lines(1, 2, 3)",
    "remove_str(1)",
    "remove_str(1, 'a', 'b')",
    "keep_all(1)",
    "Remove_lines(1, 2)",
    "REMOVE_LINES(1, 2)",
    "remove_line(1, 2)",
    "removelines(1, 2)",
    "remove_lines (1, 2)",
    "remove_lines\t(1,2)",
    "os.remove_lines(1, 2)",
    "self.remove_lines(1, 2)",
    "remove_lines[1](2)",
    "remove_lines(1, 2)(3)",
    "remove_str(1, b'bytes')",
    "remove_str(1, 1)",
    "remove_str('1', 'a')",
    "remove_str(1.0, 'a')",
    "remove_lines(1.0, 2)",
    "remove_lines(1j, 2)",
    "remove_lines(True, 2)",
    "remove_lines(None, 2)",
    "remove_lines('1', '2')",
    "remove_lines([1], 2)",
    "remove_lines((1,), 2)",
    "remove_lines({{1}}, 2)",
    "remove_lines(..., 2)",
    "remove_str(1, '')",
    "remove_str(1, \"\")",
    "remove_str(1, '''''')",
]

INTS = [
    "-1", "-0", "--1", "+1", "~1", "0", "00", "0_1", "1_0", "0x1", "0o7", "0b1", "0x" + "f" * 40, "1" + "0" * 7,
    "1" + "0" * 8, "10000001", "9" * 18, "9" * 400, "9" * 5000, "1" * 4301, "0x" + "f" * 20000, "10**9",
    "1e3", "1.", ".5", "inf", "nan", "float('inf')", "int('5')", "len('aa')", "1_000_000_000", "-10000000000",
    "2147483648", "-2147483649", "18446744073709551616", "１", "٣", "𝟏", "1L", "01", "1__0", "_1", "1_",
]


def fam_injection(rng: random.Random, ctx: Ctx) -> list[str]:
    return [rng.choice(INJECTIONS).format(S=S, M=_marker()) for _ in range(rng.randint(1, 3))]


def fam_ints(rng: random.Random, ctx: Ctx) -> list[str]:
    out = []
    for _ in range(rng.randint(1, 4)):
        a, b = rng.choice(INTS), rng.choice([*INTS, str(len(ctx))])
        out.append(rng.choice([f"remove_lines({a}, {b})", f"remove_lines({b}, {a})", f"remove_str({a}, 'x')"]))
    return out


def fam_unicode_ctrl(rng: random.Random, ctx: Ctx) -> list[str]:
    base = fam_valid(rng, ctx)
    out = []
    junk = [
        "\x00", "\r", "\x0b", "\x0c", "\x1c", "\x1b", "\x7f", "\u200b", "\u200d", "\u202e", "\ufeff", "\u2028",
        "\u0085", "\u00a0", "\u3000", "\ud800", "\udfff", "é", "ı", "ｒ", "е",  # Cyrillic e
    ]
    for line in base:
        chars = list(line)
        for _ in range(rng.randint(1, 3)):
            chars.insert(rng.randint(0, len(chars)), rng.choice(junk))
        out.append("".join(chars))
    if rng.random() < 0.3:
        lookalikes = [
            "ｒｅｍｏｖｅ_ｌｉｎｅｓ(1, 1)", "remove_lіnes(1, 1)", "ｋｅｅｐ_ａｌｌ()", "remove_lines(１, ２)"
        ]
        out.append(rng.choice(lookalikes))
    return out


def fam_quotes(rng: random.Random, ctx: Ctx) -> list[str]:
    pool = [
        "remove_str(1, \"unbalanced)", "remove_str(1, 'unbalanced)", "remove_str(1, \"a\"\")", "remove_str(1, ''')",
        'remove_str(1, """a""")', "remove_str(1, '''a''')", 'remove_str(1, """a)', 'remove_str(1, """', '"""',
        "'''", '"', "'", "remove_str(1, \"a\\\")", "remove_str(1, 'a\\')", "remove_str(1, r\"\\\")",
        'remove_str(1, "\\x")', 'remove_str(1, "\\x4")', 'remove_str(1, "\\u12")', 'remove_str(1, "\\N{NO SUCH}")',
        'remove_str(1, "\\N{DIGIT ONE}")', 'remove_str(1, "\\d")', 'remove_str(1, "\\0")', 'remove_str(1, "\\777")',
        'remove_str(1, rb"a")', 'remove_str(1, br"a")', 'remove_str(1, Rb"a")', 'remove_str(1, U"a")',
        'remove_str(1, fr"a")', 'remove_str(1, "a" f"b")', 'remove_str(1, "a" b"b")', "remove_str(1, `a`)",
        "remove_str(1, «a»)", "remove_str(1, “a”)", "remove_str(1, ‘a’)",
    ]
    return [rng.choice(pool) for _ in range(rng.randint(1, 3))]


def fam_nesting(rng: random.Random, ctx: Ctx) -> list[str]:
    depth = rng.choice([10, 99, 100, 199, 200, 201, 1_000, 10_000, 100_000])
    kind = rng.randrange(9)
    if kind == 0:
        return [f"remove_lines({'(' * depth}1{')' * depth}, 2)"]
    if kind == 1:
        return ["(" * depth + "keep_all()" + ")" * depth]
    if kind == 2:
        return ["remove_lines(" * depth + "1, 2" + ")" * depth]
    if kind == 3:
        return [f"remove_lines({'-' * depth}1, 2)"]
    if kind == 4:
        return [f"remove_lines({'not ' * min(depth, 20_000)}1, 2)"]
    if kind == 5:
        return ["[" * depth + "]" * depth]
    if kind == 6:
        return ["remove_lines" + ".x" * depth + "(1, 2)"]
    if kind == 7:
        return ["+".join(["1"] * depth)]
    return ["(" * depth]  # unbalanced


def fam_long_string(rng: random.Random, ctx: Ctx) -> list[str]:
    size = rng.choice([10_000, 100_000]) if rng.random() < 0.9 else 1_000_000
    k = rng.randint(1, max(len(ctx), 1))
    if ctx and ctx[k - 1] and rng.random() < 0.3:
        s = ctx[k - 1]  # the whole line (it might itself be long)
    else:
        s = rng.choice(["a", "ab", "é", "\x00", "🙂", "'"]) * (size // 2)
    q = rng.choice(['"', "'", '"""'])
    if q == '"':
        body = RemoveStr(1, s).to_source()[len("remove_str(1, ") : -1]
    else:
        body = q + s.replace("\\", "\\\\").replace("'", "\\'").replace('"', '\\"') + q
    if rng.random() < 0.2:
        body = body[:-1]  # unterminated megabyte string
    return [f"remove_str({k}, {body})"]


def fam_many_calls(rng: random.Random, ctx: Ctx) -> list[str]:
    n = max(len(ctx), 1)
    count = rng.choice([1_000, 2_000, 5_000])
    out = []
    for i in range(count):
        if i % 3 == 0:
            a = rng.randint(1, n + 1)
            out.append(f"remove_lines({a}, {rng.randint(a - 1, n + 1)})")
        elif i % 3 == 1:
            out.append(f"remove_str({rng.randint(1, n)}, {rng.choice(WORDS)!r})")
        else:
            out.append(rng.choice(INJECTIONS).format(S=S, M=_marker()) if rng.random() < 0.1 else "keep_all()")
    if rng.random() < 0.5:
        return [";".join(out[i : i + 50]) for i in range(0, len(out), 50)]  # also many calls on one line
    return out


def fam_continuation(rng: random.Random, ctx: Ctx) -> list[str]:
    pool = [
        "remove_lines(1,\\\n2)", "remove_lines(1, \\", "\\", "remove_lines(1, 1) \\", "\\\nremove_lines(1, 1)",
        "remove_lines(1, 1)\rremove_lines(2, 2)", "remove_lines(1, 1)\r", "\rkeep_all()", "keep_all()\r\n",
        "remove_lines(1,\r2)", "remove_str(1, 'a\rb')", "remove_str(1, \"\"\"a\nb\"\"\")", "remove_lines(\n1, 1)",
        "remove_lines(1, 1)\x0c", "\x0cremove_lines(1, 1)", "remove_lines(1, 1)\x0b", "remove_lines(1, 1)\x1c",
        "remove_lines(1, 1)\u2028remove_lines(2, 2)", "remove_lines(1, 1)\u0085",
    ]
    return [rng.choice(pool) for _ in range(rng.randint(1, 3))]


def fam_mutation(rng: random.Random, ctx: Ctx) -> list[str]:
    text = list("\n".join(fam_valid(rng, ctx)))
    alphabet = "()[]{},.;:'\"\\#\n\r\t 0123456789-+_=xabremovlinstrkp\x00é🙂"
    for _ in range(rng.randint(1, 5)):
        op = rng.randrange(3)
        pos = rng.randint(0, len(text))
        if op == 0:
            text.insert(pos, rng.choice(alphabet))
        elif op == 1 and text:
            del text[min(pos, len(text) - 1)]
        elif text:
            text[min(pos, len(text) - 1)] = rng.choice(alphabet)
    return "".join(text).split("\n")


def fam_garbage(rng: random.Random, ctx: Ctx) -> list[str]:
    out = []
    for _ in range(rng.randint(1, 4)):
        r = rng.random()
        if r < 0.4:
            out.append("".join(chr(rng.randint(0, 0x7F)) for _ in range(rng.randint(1, 60))))
        elif r < 0.7:
            out.append("".join(chr(rng.randint(0, 0x10FFFF)) for _ in range(rng.randint(1, 30))))
        else:
            out.append(rng.choice(ctx) if ctx else "")  # the model echoing the document
    return out


def fam_prose(rng: random.Random, ctx: Ctx) -> list[str]:
    pool = [
        "Sure! Here is the program:", "```python", "```", "remove_lines(1, 2) # because it is navigation",
        "1. remove_lines(1, 2)", "- keep_all()", "remove_lines(1, 2),", "remove_lines(1, 2).", "`keep_all()`",
        "print('keep_all()')", "The answer is keep_all()", ">>> remove_lines(1, 2)", "remove_lines 1 2",
        "remove_lines[1, 2]", "remove_lines{1, 2}", "<remove_lines(1, 2)>", "remove_lines(1, 2)>", "[1] keep_all()",
        "keep_all()keep_all()", "remove_lines(1, 2)remove_lines(3, 4)", "keep_all();keep_all()", "keep_all();",
    ]
    return [rng.choice(pool) for _ in range(rng.randint(1, 3))]


def fam_length_bomb(rng: random.Random, ctx: Ctx) -> list[str]:
    """One call line far longer than any valid call for the chunk (the parser rejects it before ``ast``)."""
    size = rng.choice([10_000, 100_000, 1_000_000]) if rng.random() < 0.95 else 5_000_000
    k = size // 2
    return [rng.choice([
        "remove_lines(1, " + "1+" * k + "1)",  # ~250 bytes of ast per character
        "remove_lines(1, " + "(" * k + "1" + ")" * k + ")",
        "keep_all(" + "[" * k + "]" * k + ")",
        'remove_str(1, "' + "ab" * k + '")',  # well-formed, but longer than any line it could match
        "remove_lines(" + "1, " * k + "2)",
        "remove_lines(1, 2)" + " " * size + "# trailing",
    ])]


_FULLWIDTH = {c: chr(ord(c) + 0xFEE0) for c in "abcdefghijklmnopqrstuvwxyz_"}
_MATH_BOLD = {c: chr(0x1D41A + ord(c) - ord("a")) for c in "abcdefghijklmnopqrstuvwxyz"}
_ROMAN = {"l": "\u217c", "i": "\u2170", "v": "\u2174", "c": "\u217d", "m": "\u217f", "d": "\u217e"}


def fam_look_alike(rng: random.Random, ctx: Ctx) -> list[str]:
    """Valid calls whose name has 1..all characters replaced by NFKC look-alikes (Python folds identifiers with
    NFKC, so ``remove_\u217cines`` would name ``remove_lines``): every one must be ``unknown_function``."""
    out = []
    for line in fam_valid(rng, ctx):
        name, paren, rest = line.partition("(")
        if not paren:
            continue
        table = rng.choice([_FULLWIDTH, _MATH_BOLD, _ROMAN])
        positions = [i for i, c in enumerate(name) if c in table]
        if not positions:
            continue
        chosen = positions if rng.random() < 0.3 else rng.sample(positions, rng.randint(1, len(positions)))
        chars = list(name)
        for i in chosen:
            chars[i] = table[chars[i]]
        out.append("".join(chars) + paren + rest)
    return out or ["remove_\u217cines(1, 1)"]


def fam_line_continuation(rng: random.Random, ctx: Ctx) -> list[str]:
    """Backslash, carriage return and comment combinations that Python reads as line joins or as nothing."""
    calls = [*fam_valid(rng, ctx), "keep_all()", "remove_lines(1, 1)"]
    pieces = ["\\", "\r", "\\\r", "\\\r\n", "# x", " ", "\x0c", "\\ ", "\r# x"]
    out = []
    for _ in range(rng.randint(1, 3)):
        parts = [rng.choice(pieces) for _ in range(rng.randint(1, 3))]
        where = rng.randrange(3)
        call = rng.choice(calls)
        if where == 0:
            out.append("".join(parts) + call)
        elif where == 1:
            out.append(call + "".join(parts))
        else:
            cut = rng.randint(0, len(call))
            out.append(call[:cut] + "".join(parts) + call[cut:])
    return out


FAMILIES: dict[str, tuple[float, Family]] = {
    "valid": (0.22, fam_valid),
    "injection": (0.16, fam_injection),
    "ints": (0.08, fam_ints),
    "unicode_ctrl": (0.1, fam_unicode_ctrl),
    "quotes": (0.07, fam_quotes),
    "nesting": (0.03, fam_nesting),
    "long_string": (0.005, fam_long_string),
    "many_calls": (0.003, fam_many_calls),
    "continuation": (0.07, fam_continuation),
    "mutation": (0.13, fam_mutation),
    "garbage": (0.062, fam_garbage),
    "prose": (0.07, fam_prose),
    "length_bomb": (0.002, fam_length_bomb),
    "look_alike": (0.04, fam_look_alike),
    "line_continuation": (0.05, fam_line_continuation),
}

SEPARATORS = ["\n", "\n", "\n", "\r\n", "\n\n", "\n# note\n", "\n   \n", "\r"]


def random_program(rng: random.Random, ctx: Ctx) -> tuple[str, list[str]]:
    names = rng.choices(list(FAMILIES), weights=[w for w, _ in FAMILIES.values()], k=rng.choice([1, 1, 1, 2, 3]))
    lines: list[str] = []
    for name in names:
        lines.extend(FAMILIES[name][1](rng, ctx))
    rng.shuffle(lines)
    sep = rng.choice(SEPARATORS)
    text = sep.join(lines)
    if rng.random() < 0.1:
        text = rng.choice(["\n", "", "   ", "\ufeff", "# header\n"]) + text + rng.choice(["\n", "", "\n\n"])
    return text, names


# ----------------------------------------------------------------------------------------------------------
# Oracles
# ----------------------------------------------------------------------------------------------------------


def counted_lines(program: str) -> int:
    """Program lines that must be counted as applied or skipped: not blank, not a ``#`` comment."""
    return sum(1 for line in program.split("\n") if line.strip() and not line.strip().startswith("#"))


def reference_execute(text: str, programs: list[ChunkProgram], policy: ExecPolicy) -> str:
    """A naive execution of the parsed calls, written from the documented semantics."""
    lines = text.split("\n")
    dropped: set[int] = set()
    cut: dict[int, list[bool]] = {}
    for cp in programs:
        c = cp.chunk
        if c.start < 0 or c.n_lines < 1 or c.start + c.n_lines > len(lines) or c.skipped:
            continue
        # README: a call line longer than any valid call for the chunk is line_too_long
        parsed = parse_program(cp.program, call_length_bound(max(map(len, lines[c.start : c.start + c.n_lines]))))
        if policy.on_invalid == "keep_chunk" and len(parsed.invalid) >= policy.keep_chunk_threshold:
            continue
        for op in parsed.ops:
            if isinstance(op, RemoveLines) and 1 <= op.start <= op.end <= c.n_lines:
                dropped.update(range(c.start + op.start - 1, c.start + op.end))
            elif isinstance(op, RemoveStr) and 1 <= op.line <= c.n_lines:
                idx = c.start + op.line - 1
                line = lines[idx]
                hits = [i for i in range(len(line) - len(op.text) + 1) if line.startswith(op.text, i)][:2] if (
                    len(line) * len(op.text) < 5_000_000
                ) else _hits_fast(line, op.text)
                if len(hits) == 1:
                    mask = cut.setdefault(idx, [False] * len(line))
                    for i in range(hits[0], hits[0] + len(op.text)):
                        mask[i] = True
    out = []
    for idx, line in enumerate(lines):
        if idx in dropped:
            continue
        if idx in cut:
            line = "".join(ch for ch, gone in zip(line, cut[idx], strict=True) if not gone)
        out.append(line)
    return "\n".join(out)


def _hits_fast(line: str, s: str) -> list[int]:
    first = line.find(s)
    if first < 0:
        return []
    second = line.find(s, first + 1)
    return [first] if second < 0 else [first, second]


def check_parse(program: str, max_line_chars: int | None = None) -> list[str]:
    """Type and range checks on everything ``parse_program`` returns (with the executor's bound for the chunk)."""
    problems = []
    res = parse_program(program, max_line_chars)
    for op in res.ops:
        if isinstance(op, RemoveLines):
            if not (type(op.start) is int and type(op.end) is int and 0 <= op.start <= MAX_LINE_NUMBER
                    and 0 <= op.end <= MAX_LINE_NUMBER):
                problems.append(f"bad RemoveLines {op!r}"[:200])
        elif isinstance(op, RemoveStr):
            if not (type(op.line) is int and 0 <= op.line <= MAX_LINE_NUMBER and type(op.text) is str and op.text):
                problems.append(f"bad RemoveStr {op!r}"[:200])
        elif not isinstance(op, KeepAll):
            problems.append(f"unknown op {op!r}"[:200])
    for inv in res.invalid:
        if len(inv.source) > 200:
            problems.append("invalid call source not truncated")
    for line in program.split("\n"):  # only the ASCII names are calls
        if len(line) > 10_000:
            continue
        for op in parse_program(line).ops:
            name = type(op).__name__
            ascii_name = {"RemoveLines": "remove_lines", "RemoveStr": "remove_str", "KeepAll": "keep_all"}[name]
            if not line.strip().startswith(ascii_name):
                problems.append(f"{line[:80]!r} parsed as {ascii_name}")
    return problems


# ----------------------------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------------------------


@dataclass
class FuzzReport:
    programs: int = 0
    documents: int = 0
    program_lines: int = 0
    program_bytes: int = 0
    doc_bytes: int = 0
    seconds: float = 0.0
    families: Counter[str] = field(default_factory=Counter)
    applied: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    invalid: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    forbidden_events: dict[str, int] = field(default_factory=dict)
    event_examples: dict[str, str] = field(default_factory=dict)
    sentinel_calls: int = 0
    marker_created: bool = False
    crashes: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    bombs: int = 0
    bomb_bytes: int = 0
    bomb_max_program: int = 0
    bomb_peak_ratio: float = 0.0  # worst peak traced memory / (program + document size), length-bomb documents
    bomb_peak_ratio_1mb: float = 0.0  # the same over documents whose programs total 1 MB or more
    bomb_peak_bytes: int = 0
    bomb_seconds_per_mb: float = 0.0  # worst time per MB of input (program + document), length-bomb documents
    bomb_seconds_per_mb_1mb: float = 0.0  # the same over documents whose programs total 1 MB or more
    peak_rss_mb: float = 0.0

    @property
    def n_failures(self) -> int:
        return len(self.failures)

    def summary(self) -> str:
        rate = self.programs / self.seconds if self.seconds else 0.0
        out = [
            f"programs {self.programs:,}  documents {self.documents:,}  counted program lines {self.program_lines:,}",
            f"program text {self.program_bytes / 1e6:.1f} MB  document text {self.doc_bytes / 1e6:.1f} MB",
            (
                f"time {self.seconds:.1f} s  throughput {rate:,.0f} programs/s, "
                f"{self.program_lines / max(self.seconds, 1e-9):,.0f} calls/s, "
                f"{(self.program_bytes + self.doc_bytes) / 1e6 / max(self.seconds, 1e-9):.1f} MB/s"
            ),
            (
                f"crashes {sum(self.crashes.values())}  failures {len(self.failures)}  "
                f"sentinel calls {self.sentinel_calls}  marker file created {self.marker_created}"
            ),
            f"audit events while armed: {dict(self.events)}  forbidden: {self.forbidden_events}",
            "families: " + ", ".join(f"{k} {v:,}" for k, v in sorted(self.families.items())),
            "applied: " + ", ".join(f"{k} {v:,}" for k, v in sorted(self.applied.items())),
            "skipped: " + ", ".join(f"{k} {v:,}" for k, v in sorted(self.skipped.items())),
            "invalid: " + ", ".join(f"{k} {v:,}" for k, v in sorted(self.invalid.items())),
            (
                f"length bombs {self.bombs:,} ({self.bomb_bytes / 1e6:.1f} MB, largest program "
                f"{self.bomb_max_program / 1e6:.1f} MB): peak traced memory at most {self.bomb_peak_ratio:.2f} x "
                f"the input size (program + document), {self.bomb_peak_ratio_1mb:.2f} x for programs of 1 MB or "
                f"more (largest peak {self.bomb_peak_bytes / 1e6:.1f} MB), at most "
                f"{self.bomb_seconds_per_mb:.3f} s per MB of input, {self.bomb_seconds_per_mb_1mb:.3f} s for programs of "
                "1 MB or more (under tracemalloc)"
            ),
            f"process peak RSS {self.peak_rss_mb:.0f} MB",
        ]
        out.extend(f"FAIL {f}" for f in self.failures[:20])
        return "\n".join(out)


def _warm_up() -> None:
    # imports done lazily on first use (unicodedata for \N{...} escapes) must not count as events
    for program in ['remove_str(1, "\\N{DIGIT ONE}")', 'remove_str(1, "\\d")', "x(", "remove_lines(1, 1)"]:
        execute_document("a\nb", [ChunkProgram(Chunk(0, 2), program)])


def run_fuzz(n_programs: int = 100_000, seed: int = 0, *, max_failures: int = 200) -> FuzzReport:
    """Fuzz ``n_programs`` chunk programs (on as many random documents as that takes)."""
    rng = random.Random(seed)
    report = FuzzReport()
    marker = Path(_marker())
    marker.unlink(missing_ok=True)
    Tripwire.install()
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        # ast.parse warns about invalid escapes ("\d"); keep the run quiet
        warnings.simplefilter("ignore")
        _warm_up()
        Tripwire.reset()
        while report.programs < n_programs:
            text = random_document(rng)
            lines = text.split("\n")
            chunks = random_chunks(rng, lines)
            programs = []
            doc_families: set[str] = set()
            for c in chunks:
                ctx = lines[c.start : c.start + c.n_lines] if c.start >= 0 else []
                program, names = random_program(rng, ctx)
                report.families.update(names)
                doc_families.update(names)
                programs.append(ChunkProgram(c, program))
            policy = ExecPolicy() if rng.random() < 0.8 else ExecPolicy("keep_chunk", rng.randint(1, 3))
            report.programs += len(programs)
            report.documents += 1
            report.doc_bytes += len(text)
            expected_calls = sum(counted_lines(cp.program) for cp in programs)
            report.program_lines += expected_calls
            report.program_bytes += sum(len(cp.program) for cp in programs)

            bomb = "length_bomb" in doc_families or any(len(cp.program) >= 100_000 for cp in programs)
            Tripwire.armed = True
            try:
                if bomb:  # measured alone: the parse checks below parse line by line
                    size = sum(len(cp.program.encode("utf-8", "surrogatepass")) for cp in programs)
                    tracemalloc.start()
                    t_bomb = time.perf_counter()
                    execute_document(text, programs, policy)
                    t_bomb = time.perf_counter() - t_bomb
                    _, peak = tracemalloc.get_traced_memory()
                    tracemalloc.stop()
                    report.bombs += 1
                    report.bomb_bytes += size
                    report.bomb_max_program = max(report.bomb_max_program, size)
                    input_bytes = size + len(text.encode("utf-8", "surrogatepass"))
                    ratio = peak / input_bytes
                    report.bomb_peak_ratio = max(report.bomb_peak_ratio, ratio)
                    if size >= 1_000_000:
                        report.bomb_peak_ratio_1mb = max(report.bomb_peak_ratio_1mb, ratio)
                        report.bomb_seconds_per_mb_1mb = max(
                            report.bomb_seconds_per_mb_1mb, t_bomb / (input_bytes / 1e6)
                        )
                    report.bomb_peak_bytes = max(report.bomb_peak_bytes, peak)
                    report.bomb_seconds_per_mb = max(report.bomb_seconds_per_mb, t_bomb / (input_bytes / 1e6))
                problems = [p for cp in programs for p in check_parse(cp.program, max_call_chars(lines, cp.chunk))]
                res = execute_document(text, programs, policy, spans=True)
            except BaseException as e:  # a crash of any kind is what we are looking for
                Tripwire.armed = False
                if isinstance(e, KeyboardInterrupt):
                    raise
                report.crashes[type(e).__name__] += 1
                if len(report.failures) < max_failures:
                    report.failures.append(f"crash {type(e).__name__}: {e!s:.100} programs={_short(programs)}")
                continue
            finally:
                Tripwire.armed = False

            report.applied.update(res.applied)
            report.skipped.update(res.skipped)
            report.invalid.update(res.invalid)
            if res.n_calls != expected_calls:
                problems.append(f"counted {res.n_calls} calls, program has {expected_calls} lines")
            if res.skipped.get("invalid_call", 0) != sum(res.invalid.values()):
                problems.append("invalid_call != sum of invalid reasons")
            if not is_deletion_of(text, res.text):
                problems.append("output is not a subsequence of the input")
            if delete_spans(text, res.deleted_spans) != res.text:
                problems.append("deleted_spans do not reproduce the output")
            if res.chars_removed != len(text) - len(res.text):
                problems.append("chars_removed is wrong")
            if res.text != reference_execute(text, programs, policy):
                problems.append("output differs from the reference execution")
            if problems and len(report.failures) < max_failures:
                report.failures.append(f"{'; '.join(dict.fromkeys(problems))}: programs={_short(programs)}")
    report.seconds = time.perf_counter() - t0
    report.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report.events = Counter(Tripwire.events)
    report.forbidden_events = Tripwire.forbidden()
    report.event_examples = dict(Tripwire.examples)
    report.sentinel_calls = Tripwire.sentinel_calls
    report.marker_created = marker.exists()
    return report


def _short(programs: list[ChunkProgram]) -> str:
    return repr([(cp.chunk.start, cp.chunk.n_lines, cp.program[:120]) for cp in programs[:3]])[:400]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="number of chunk programs (default 100,000)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    report = run_fuzz(args.n, args.seed)
    print(report.summary())
    bad = report.failures or report.forbidden_events or report.sentinel_calls or report.marker_created
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
