"""refinex-datatrove: RefineX deletion-only refinement of pre-training text as datatrove pipeline steps.

The step classes are imported lazily so that ``import refinex_datatrove`` (and the pure
``refinex_datatrove.program`` core) stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_STEPS = {
    "ExpertRefiner": "refinex_datatrove.steps.expert",
    "ProgramDistiller": "refinex_datatrove.steps.distill",
    "RefineModelAnnotator": "refinex_datatrove.steps.annotate",
    "ProgramExecutor": "refinex_datatrove.steps.execute",
    "QualityFilter": "refinex_datatrove.steps.quality_filter",
    "SFTRecordWriter": "refinex_datatrove.steps.sft_records",
    "GuardedJsonlReader": "refinex_datatrove.steps.guard",
}

__all__ = ["__version__", *_STEPS]


def __getattr__(name: str) -> Any:
    if name in _STEPS:
        return getattr(importlib.import_module(_STEPS[name]), name)
    raise AttributeError(f"module 'refinex_datatrove' has no attribute {name!r}")
