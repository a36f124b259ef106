"""Deterministic, picklable scripted 'refine models' for the resilience tests (importable by subprocesses).

Each is a module-level ``reply(request, params) -> str`` for :class:`~refinex_datatrove.llm.scripted.ScriptedBackend`:
the program depends only on the rendered chunk in the request, so every run gives the same programs.
"""

from __future__ import annotations

import os
import re
import time

from refinex_datatrove.llm.scripted import request_text
from refinex_datatrove.program import REFINE_INSTRUCTION


_ROW = re.compile(r"\[(\d+)\] ")


def prompt_rows(prompt: str) -> list[str]:
    """The rendered rows (``[n] line``) of a refine prompt: after the instruction line, without the prompt's
    final line break if it has one."""
    if not prompt.startswith(REFINE_INSTRUCTION + "\n"):
        raise ValueError("not a refine prompt")
    body = prompt[len(REFINE_INSTRUCTION) + 1 :]
    return body.removesuffix("\n").split("\n")


def rows(request) -> list[tuple[int, str]]:
    """``(line number, line)`` for every rendered row of the chunk in ``request``."""
    out = []
    for row in prompt_rows(request_text(request)):
        m = _ROW.match(row)
        if m is None:
            raise ValueError(f"unnumbered row {row[:80]!r}")
        out.append((int(m.group(1)), row[m.end() :]))
    return out


def nav_remover(request, params) -> str:
    """Delete every line that starts with ``NAV``; ``remove_str`` a single ``[ad]`` tag; else ``keep_all()``."""
    calls = []
    for n, line in rows(request):
        if line.startswith("NAV"):
            calls.append(f"remove_lines({n}, {n})")
        elif line.count("[ad]") == 1:
            calls.append(f'remove_str({n}, "[ad]")')
    return "\n".join(calls) or "keep_all()"


def expected_nav_removed(text: str) -> str:
    """What :func:`nav_remover` programs do to ``text`` (for chunks that were sent), computed without them."""
    out = []
    for line in text.split("\n"):
        if line.startswith("NAV"):
            continue
        out.append(line.replace("[ad]", "") if line.count("[ad]") == 1 else line)
    return "\n".join(out)


def slow_nav_remover(request, params) -> str:
    """:func:`nav_remover` after sleeping ``$REFINEX_TEST_DELAY`` seconds (default 0): a slow model, same programs."""
    delay = float(os.environ.get("REFINEX_TEST_DELAY", "0"))
    if delay:
        time.sleep(delay)
    return nav_remover(request, params)


def nav_endpoint_script(body: dict):
    """The fake OpenAI server's 'model' (tests/fake_openai_server.py): delete every numbered row of the prompt
    that starts with NAV."""
    from tests.fake_openai_server import Reply

    calls = []
    for row in prompt_rows(body.get("prompt", "")):
        n, _, text = row.partition("] ")
        if text.startswith("NAV"):
            calls.append(f"remove_lines({n[1:]}, {n[1:]})")
    return Reply(text="\n".join(calls) or "keep_all()")
