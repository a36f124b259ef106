"""The report in a real browser: headless Chromium loads it without console errors and shows the deletions.

Needs Debian's ``chromium`` package (``apt-get install -y chromium``); skipped when no Chromium is installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from refinex_datatrove.eval.report import write_report
from tests.eval.report_helpers import hostile_doc, program, walk


def _find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


CHROMIUM = _find_chromium()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed (apt-get install -y chromium)")

CONSOLE = re.compile(r":CONSOLE[:(]")


def _load(path, tmp_path) -> tuple[str, list[str]]:
    """The DOM after scripts ran, and the page's console messages."""
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--no-default-browser-check",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--enable-logging=stderr",
        "--v=0",
        "--dump-dom",
        path.resolve().as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, [line for line in proc.stderr.splitlines() if CONSOLE.search(line)]


def test_console_errors_are_detected(tmp_path):
    """Control: the console check below would see a failing script."""
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><body><p>x</p><script>undefinedFunction();</script></body></html>")
    _, console = _load(page, tmp_path)
    assert any("undefinedFunction" in line for line in console)


def test_report_loads_cleanly_and_shows_deleted_spans(tmp_path):
    text = "Home | Shop | Cart\nA real paragraph about tea.\nShare: Facebook Twitter\nAnother real paragraph."
    docs = [
        {
            "id": "tea",
            "text": text,
            "program": program(text, [(0, 2, "remove_lines(1, 1)"), (2, 2, "remove_lines(1, 1)")]),
        },
        hostile_doc(),
    ]
    path = write_report(docs, tmp_path / "report.html", title="browser test")
    dom, console = _load(path, tmp_path)
    assert console == []
    assert 'data-rx-ready="1"' in dom  # our script ran to its end
    w = walk(dom)
    assert "Home | Shop | Cart\n" in w.dels
    assert "Share: Facebook Twitter\n" in w.dels
    assert '<script>alert("x")</script> ' in w.dels
    count = re.search(r'id="rx-del-count">(\d+)<', dom)
    assert count is not None and int(count.group(1)) == len(w.dels) > 0
    assert w.tags.count("script") == 1  # hostile markup stayed text
    assert "img" not in w.tags and "iframe" not in w.tags
