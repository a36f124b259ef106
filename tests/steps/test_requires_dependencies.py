"""The steps declare what they import as datatrove's own steps do (``_requires_dependencies``): a missing
package is datatrove's clear ImportError when the pipeline is built, not a failure inside a task."""

from __future__ import annotations

import pytest
from datatrove.utils import _import_utils

from refinex_datatrove.steps.annotate import RefineModelAnnotator
from refinex_datatrove.steps.distill import ProgramDistiller
from refinex_datatrove.steps.expert import ExpertRefiner


@pytest.fixture
def missing(monkeypatch):
    """Make the named modules look uninstalled to datatrove's dependency check."""
    absent: set[str] = set()
    real = _import_utils._is_package_available
    monkeypatch.setattr(_import_utils, "_is_package_available", lambda name: name not in absent and real(name))
    return absent


def test_distiller_needs_rapidfuzz(missing):
    missing.add("rapidfuzz")
    with pytest.raises(ImportError, match="rapidfuzz"):
        ProgramDistiller()


def test_expert_needs_yaml_for_its_prompts(missing):
    missing.add("yaml")
    with pytest.raises(ImportError, match="pyyaml"):
        ExpertRefiner(backend={"kind": "endpoint", "model": "m", "base_url": "http://x"})


@pytest.mark.parametrize(
    ("backend", "module"), [("transformers", "torch"), ("transformers", "peft"), ("endpoint", "httpx"), ("vllm", "vllm")]
)
def test_annotator_checks_the_modules_of_its_backend_kind(missing, backend, module):
    """Checked when the backend is built in the task, not at construction: a dry run or a Slurm submission from a
    login node without vllm still builds the pipeline."""
    missing.add(module)
    step = RefineModelAnnotator(model="some/model", backend=backend)
    with pytest.raises(ImportError, match=module):
        step._make_backend()


def test_annotator_needs_only_its_own_backend_kind(missing):
    missing.update({"vllm", "torch", "transformers", "peft"})  # none needed by the endpoint backend
    step = RefineModelAnnotator(model="some/model", backend="endpoint", backend_kwargs={"base_url": "http://x"})
    assert type(step._make_backend()).__name__ == "OpenAIEndpointBackend"
