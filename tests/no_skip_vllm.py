"""pytest plugin for ``make test-vllm``: the run fails when any test marked ``vllm`` is skipped (or none ran).

    pytest -m vllm -p tests.no_skip_vllm

Without it a missing ``vllm`` or a missing model would turn the whole check into a green row of skips.
"""

from __future__ import annotations

import pytest


_skipped: list[str] = []
_passed: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "vllm" not in report.keywords:
        return
    if report.skipped:
        _skipped.append(report.nodeid)
    elif report.when == "call" and report.passed:
        _passed.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if exitstatus != 0:
        return
    if _skipped or not _passed:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if _skipped:
        terminalreporter.write_line(f"FAILED: {len(_skipped)} vllm test(s) skipped; make test-vllm needs 0 skipped:", red=True)
        for nodeid in _skipped:
            terminalreporter.write_line(f"  {nodeid}", red=True)
    elif not _passed:
        terminalreporter.write_line("FAILED: no vllm test ran", red=True)
