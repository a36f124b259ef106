"""Which modules may import what. The pure core imports no datatrove, torch, transformers, trl or vllm at all; the
rest of the package (except the datatrove steps) imports them only inside functions, so ``import
refinex_datatrove...`` and ``refinex --help`` stay light. A new module must be put in one of the lists below."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

import refinex_datatrove


HEAVY = ("datatrove", "torch", "transformers", "trl", "vllm")

PURE = [
    "refinex_datatrove",
    "refinex_datatrove.distill",
    "refinex_datatrove.distill.align",
    "refinex_datatrove.distill.to_program",
    "refinex_datatrove.eval.baselines",
    "refinex_datatrove.eval.inputs",
    "refinex_datatrove.eval.metrics",
    "refinex_datatrove.expert_protocol",
    "refinex_datatrove.files",
    "refinex_datatrove.labels",
    "refinex_datatrove.llm.base",
    "refinex_datatrove.program",
    "refinex_datatrove.program.chunking",
    "refinex_datatrove.program.executor",
    "refinex_datatrove.program.ops",
    "refinex_datatrove.program.parser",
    "refinex_datatrove.program.render",
    "refinex_datatrove.prompts",
    "refinex_datatrove.refine_model.card",
    "refinex_datatrove.refine_model.decision",
    "refinex_datatrove.refine_model.grammar",
    "refinex_datatrove.refine_model.requests",
    "refinex_datatrove.train.records",
    "refinex_datatrove.train.wcxb",
]
"""No heavy import anywhere in the module, not even inside a function (checked at import here, and by
``test_pure_modules_have_no_heavy_import_statement`` in the source)."""

LIGHT = [
    "refinex_datatrove.cli",
    "refinex_datatrove.cli.apply",
    "refinex_datatrove.cli.common",
    "refinex_datatrove.cli.distill",
    "refinex_datatrove.cli.eval",
    "refinex_datatrove.cli.refine",
    "refinex_datatrove.cli.render",
    "refinex_datatrove.cli.report",
    "refinex_datatrove.cli.train",
    "refinex_datatrove.eval",
    "refinex_datatrove.eval.dev",
    "refinex_datatrove.eval.report",
    "refinex_datatrove.launch",
    "refinex_datatrove.llm",
    "refinex_datatrove.llm._util",
    "refinex_datatrove.llm.openai_endpoint",
    "refinex_datatrove.llm.scripted",
    "refinex_datatrove.llm.transformers_backend",
    "refinex_datatrove.llm.vllm_backend",
    "refinex_datatrove.metadata",  # datatrove only inside the Parquet writer adapter
    "refinex_datatrove.recipes",
    "refinex_datatrove.refine_model",
    "refinex_datatrove.refine_model.backend",
    "refinex_datatrove.refine_model.weights",
    "refinex_datatrove.run_stats",
    "refinex_datatrove.steps",
    "refinex_datatrove.train",
    "refinex_datatrove.train.sft",
]
"""Heavy imports only inside functions: importing the module loads none of them."""

STEPS_PREFIX = "refinex_datatrove.steps."
"""The datatrove steps import datatrove at the top, as datatrove's own steps do."""


def _all_modules() -> list[str]:
    names = ["refinex_datatrove"]
    for info in pkgutil.walk_packages(refinex_datatrove.__path__, "refinex_datatrove."):
        if not info.name.endswith("__main__"):
            names.append(info.name)
    return sorted(names)


def test_every_module_is_classified():
    unclassified = [m for m in _all_modules() if m not in PURE + LIGHT and not m.startswith(STEPS_PREFIX)]
    assert unclassified == []
    assert not set(PURE) & set(LIGHT)


@pytest.mark.parametrize("module", PURE + LIGHT)
def test_importing_loads_no_heavy_framework(module):
    code = f"import sys, {module}\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"{module} imports {out.stdout.strip()}"


@pytest.mark.parametrize("module", PURE)
def test_pure_modules_have_no_heavy_import_statement(module):
    """Not even inside a function (``if TYPE_CHECKING:`` blocks aside): a pure module must work where none of
    them is installed."""
    import ast
    import importlib.util

    origin = importlib.util.find_spec(module).origin
    tree = ast.parse(open(origin, encoding="utf-8").read())
    for node in ast.walk(tree):  # type-checking-only imports never run
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            node.body = []
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert not imported & set(HEAVY), f"{module} imports {sorted(imported & set(HEAVY))}"
