"""The refine model, in one place: what a model folder says about itself, how text becomes its requests, and how
its weights and backend are loaded.

- :mod:`.card` -- ``refinex.json`` (read, write, the one :data:`DEFAULT_WINDOW`), :func:`resolve_model`,
  the shipped default model's folder;
- :mod:`.requests` -- the chunk plan, the prompt of a chunk, requests with their token bound, and turning the
  model's answers back into chunk programs (pure; shared by the annotator, the rollout and SFT records);
- :mod:`.grammar` -- the program grammar as a regex for grammar-constrained decoding (pure);
- :mod:`.weights` -- GGUF base conversion, loading an adapter on its base, merging, exporting (torch inside);
- :mod:`.backend` -- the LLM backend for a model folder (base plus adapter).

The pipeline step that uses them is :class:`refinex_datatrove.steps.annotate.RefineModelAnnotator`.
"""

from refinex_datatrove.refine_model.card import (
    DEFAULT_MODEL,
    DEFAULT_UNIT,
    DEFAULT_WINDOW,
    REFINEX_JSON,
    RefineModelInfo,
    default_model_dir,
    read_refinex_json,
    resolve_model,
    write_refinex_json,
)

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_UNIT",
    "DEFAULT_WINDOW",
    "REFINEX_JSON",
    "RefineModelInfo",
    "default_model_dir",
    "read_refinex_json",
    "resolve_model",
    "write_refinex_json",
]
