"""The refine pipeline as a plain list of datatrove steps, built from a config mapping.

Shared by ``pipelines/refine.py`` (YAML), ``pipelines/refine_two_stage.py`` and ``refinex refine`` (CLI), so the
three build the same pipeline. The order follows datatrove's ``examples/fineweb.py``:

    reader (jsonl | parquet)
    -> URLFilter -> LanguageFilter -> GopherRepetitionFilter -> GopherQualityFilter -> C4QualityFilter
       -> FineWebQualityFilter                   (each toggleable; exclusions to excluded/<n>_<name>/)
    -> RefineModelAnnotator -> FailedGenerationFilter (documents the model could not answer for, to
       excluded/<n>_refinex_failed/) -> ProgramExecutor -> QualityFilter (exclusions to excluded/<n>_refinex_quality/)
    -> writer (jsonl | parquet)

The model annotates the text *after* the datatrove filters, C4QualityFilter included (it edits ``doc.text``),
so the stored line numbers refer to the text the executor runs on.

Config sections (see ``pipelines/configs/refine.yaml``): ``executor``
(:class:`~refinex_datatrove.launch.ExecutorArgs`),
``reader``, ``filters``, ``annotate``, ``execute``, ``quality``, ``output``; the two-stage recipe replaces
``annotate`` by ``inference`` and adds ``stage2_executor``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from refinex_datatrove.launch import config_call
from refinex_datatrove.refine_model.requests import DEFAULT_MAX_NEW_TOKENS

SECTIONS = {"executor", "reader", "filters", "annotate", "execute", "quality", "output"}
TWO_STAGE_SECTIONS = (SECTIONS - {"annotate"}) | {"inference", "stage2_executor"}

FILTER_ORDER: tuple[tuple[str, str], ...] = (
    ("url", "URLFilter"),
    ("language", "LanguageFilter"),
    ("gopher_repetition", "GopherRepetitionFilter"),
    ("gopher_quality", "GopherQualityFilter"),
    ("c4_quality", "C4QualityFilter"),
    ("fineweb_quality", "FineWebQualityFilter"),
)
"""datatrove's FineWeb filters in the order of ``examples/fineweb.py`` (after extraction, before dedup)."""

DEFAULT_FILTERS: dict[str, dict[str, Any]] = {
    "url": {"enabled": False},  # needs metadata["url"] on every document
    "language": {"enabled": False, "languages": ["en"]},  # downloads a fastText model on first use
    "gopher_repetition": {"enabled": True},
    "gopher_quality": {"enabled": True},
    "c4_quality": {"enabled": True, "filter_no_terminal_punct": False},  # FineWeb's setting
    "fineweb_quality": {"enabled": True},
}

READER_FORMATS = ("jsonl", "parquet")
OUTPUT_KEYS = {"format", "folder", "excluded", "compression", "output_filename", "extra_metadata"}


def _section(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = config.get(name)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"config section {name!r} must be a mapping, got {type(value).__name__}")
    return dict(value)


def make_reader(reader: Mapping[str, Any], excluded: str | None = None, compression: str | None = "gzip") -> Any:
    """The reader from the ``reader`` section (``format`` + reader kwargs).

    JSONL goes through :class:`~refinex_datatrove.steps.guard.GuardedJsonlReader` (datatrove's ``JsonlReader``
    skips bad lines and empty texts with only a warning): unusable records are counted by reason and written to
    ``<excluded>/0_read``. Parquet uses datatrove's ``ParquetReader`` with
    :func:`~refinex_datatrove.metadata.parquet_reader_adapter`, so documents written by :func:`make_writer` come
    back with the metadata they were written with (other Parquet files read as with datatrove's own adapter).
    Paths may be local or any fsspec URL.
    """
    kw = dict(reader)
    fmt = kw.pop("format", "jsonl")
    if "data_folder" not in kw:
        raise ValueError("reader.data_folder is required")
    if fmt == "jsonl":
        from refinex_datatrove.steps.guard import GuardedJsonlReader

        return config_call(
            "reader", GuardedJsonlReader, kw, exclusion_writer=_exclusion_writer(excluded, 0, "read", compression)
        )
    if fmt == "parquet":
        from datatrove.pipeline.readers import ParquetReader

        from refinex_datatrove.metadata import parquet_reader_adapter

        kw.setdefault("adapter", parquet_reader_adapter)
        return config_call("reader", ParquetReader, kw)
    raise ValueError(f"reader.format must be one of {READER_FORMATS}, got {fmt!r}")


def keep_text_adapter(writer: Any, document: Any) -> dict[str, Any]:
    """datatrove's default writer adapter, except that ``text`` is always written: its default drops falsy
    values, so a document emptied by deletion would lose its ``text`` key."""
    data = writer._default_adapter(document)
    data["text"] = document.text
    return data


def _exclusion_writer(excluded: str | None, index: int, name: str, compression: str | None) -> Any:
    if not excluded:
        return None
    from datatrove.pipeline.writers import JsonlWriter

    return JsonlWriter(f"{excluded.rstrip('/')}/{index}_{name}", compression=compression, adapter=keep_text_adapter)


def resolve_filters(filters: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Merge the ``filters`` section over :data:`DEFAULT_FILTERS`; ``name: false`` / ``name: true`` are shorthands.

    Raises:
        ValueError: an unknown filter name or a malformed entry.
    """
    out = copy.deepcopy(DEFAULT_FILTERS)
    known = [name for name, _ in FILTER_ORDER]
    for name, value in (filters or {}).items():
        if name not in out:
            raise ValueError(f"unknown filter {name!r}; known (in FineWeb order): {known}")
        if isinstance(value, bool):
            out[name]["enabled"] = value
        elif isinstance(value, Mapping):
            out[name].update(value)
        elif value is None:
            out[name]["enabled"] = False
        else:
            raise ValueError(f"filters.{name} must be a mapping or a bool, got {value!r}")
    return out


def make_filters(filters: Mapping[str, Any] | None, excluded: str | None, compression: str | None) -> list[Any]:
    """The enabled datatrove filters, in FineWeb order, each with its own exclusion folder."""
    from datatrove.pipeline import filters as dt_filters

    resolved = resolve_filters(filters)
    steps = []
    for index, (name, cls_name) in enumerate(FILTER_ORDER, start=1):
        kw = dict(resolved[name])
        if not kw.pop("enabled", True):
            continue
        if name == "language" and kw.get("languages") is not None:
            kw["languages"] = list(kw["languages"])
        writer = _exclusion_writer(excluded, index, name, compression)
        steps.append(config_call(f"filters.{name}", getattr(dt_filters, cls_name), kw, exclusion_writer=writer))
    return steps


OUTPUT_FORMATS = ("jsonl", "parquet")


def make_writer(output: Mapping[str, Any]) -> Any:
    """The final writer: ``JsonlWriter``, or ``ParquetWriter`` with
    :func:`~refinex_datatrove.metadata.refinex_arrow_schema` and
    :class:`~refinex_datatrove.metadata.ParquetMetadataAdapter`.

    Both keep every metadata key of every document: in Parquet, ``metadata["refinex"]`` is a typed struct,
    the ``extra_metadata`` keys (``{key: arrow type alias}``) are typed columns, and every other key is kept
    JSON-encoded in ``metadata["other_metadata_json"]`` (:func:`~refinex_datatrove.metadata.record_from_parquet`
    reads a row back as the JSONL record). ``compression`` ``gzip`` (the default) applies to either format.
    """
    fmt = output.get("format", "jsonl")
    folder = output.get("folder")
    if not folder:
        raise ValueError("output.folder is required")
    compression = output.get("compression", "gzip")
    kw: dict[str, Any] = {}
    if output.get("output_filename"):
        kw["output_filename"] = output["output_filename"]
    if fmt == "jsonl":
        from datatrove.pipeline.writers import JsonlWriter

        return JsonlWriter(folder, compression=compression, adapter=keep_text_adapter, **kw)
    if fmt == "parquet":
        import pyarrow as pa
        from datatrove.pipeline.writers import ParquetWriter

        from refinex_datatrove.metadata import ParquetMetadataAdapter, refinex_arrow_schema

        extra = [pa.field(k, pa.type_for_alias(t)) for k, t in (output.get("extra_metadata") or {}).items()]
        pq_compression = compression if compression in ("snappy", "gzip", "brotli", "lz4", "zstd") else None
        schema = refinex_arrow_schema(extra)
        return ParquetWriter(
            folder, compression=pq_compression, schema=schema, adapter=ParquetMetadataAdapter(schema), **kw
        )
    raise ValueError(f"output.format must be one of {OUTPUT_FORMATS}, got {fmt!r}")


def _refine_tail(config: Mapping[str, Any], first_exclusion_index: int) -> list[Any]:
    """FailedGenerationFilter -> ProgramExecutor -> QualityFilter -> writer (both filters exclude to
    ``<first_exclusion_index>_<name>``)."""
    from refinex_datatrove.program import ExecPolicy
    from refinex_datatrove.steps.execute import ProgramExecutor
    from refinex_datatrove.steps.failed import FailedGenerationFilter
    from refinex_datatrove.steps.quality_filter import QualityFilter

    output = _section(config, "output")
    unknown = set(output) - OUTPUT_KEYS
    if unknown:
        raise ValueError(f"unknown output key(s) {sorted(unknown)}; known: {sorted(OUTPUT_KEYS)}")
    execute = _section(config, "execute")
    policy = execute.pop("policy", None)
    compression = output.get("compression", "gzip")
    return [
        FailedGenerationFilter(
            exclusion_writer=_exclusion_writer(
                output.get("excluded"), first_exclusion_index, "refinex_failed", compression
            )
        ),
        config_call(
            "execute",
            ProgramExecutor,
            execute,
            policy=config_call("execute.policy", ExecPolicy, policy) if policy else None,
        ),
        config_call(
            "quality",
            QualityFilter,
            _section(config, "quality"),
            exclusion_writer=_exclusion_writer(
                output.get("excluded"), first_exclusion_index, "refinex_quality", compression
            ),
        ),
        make_writer(output),
    ]


def _check_sections(config: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = set(config) - allowed
    if unknown:
        raise ValueError(f"unknown config section(s) {sorted(unknown)}; known: {sorted(allowed)}")


def build_refine_pipeline(config: Mapping[str, Any], backend: Any = None) -> list[Any]:
    """The one-stage refine pipeline described by ``config`` (see the module docstring).

    Args:
        config: the resolved configuration (``pipelines/configs/refine.yaml`` plus overrides).
        backend: an :class:`~refinex_datatrove.llm.base.LLMBackend` instance overriding ``annotate.backend``
            (tests, notebooks).

    Returns:
        The steps, ready for an executor.
    """
    from refinex_datatrove.steps.annotate import RefineModelAnnotator

    _check_sections(config, SECTIONS)
    output = _section(config, "output")
    annotate = _section(config, "annotate")
    if backend is not None:
        annotate["backend"] = backend
    return [
        make_reader(_section(config, "reader"), output.get("excluded"), output.get("compression", "gzip")),
        *make_filters(config.get("filters"), output.get("excluded"), output.get("compression", "gzip")),
        config_call("annotate", RefineModelAnnotator, annotate),
        *_refine_tail(config, len(FILTER_ORDER) + 1),
    ]


# ---------------------------------------------------------------------------------------------------------------
# Two stages: InferenceRunner (terminal step, managed vLLM server, checkpoints) then execute + filter.

INFERENCE_KEYS = {
    "model",
    "server_type",
    "endpoint_url",
    "model_max_context",
    "tp",
    "dp",
    "pp",
    "model_kwargs",
    "max_concurrent_generations",
    "max_concurrent_documents",
    "records_per_chunk",
    "checkpoints_local_dir",
    "output_folder",
    "window",
    "unit",
    "max_tokens",
    "guided",
    "server_log_folder",
    "metric_interval",
    "skip_bad_requests",
    "request_timeout",
}


def build_two_stage(config: Mapping[str, Any]) -> tuple[list[Any], list[Any]]:
    """The two-stage refine recipe: (stage 1 steps, stage 2 steps).

    Stage 1: reader -> FineWeb filters -> ``InferenceRunner(make_annotate_rollout(...))`` writing
    ``${rank}_chunk_${chunk_index}.jsonl`` files to ``inference.output_folder`` with checkpoints (resume inside a
    task). Stage 2: ``JsonlReader(inference.output_folder)`` -> ProgramExecutor -> QualityFilter -> writer; run it
    with ``depends=`` on stage 1.

    ``inference.model`` must be a full model folder (or a served model name for ``server_type: endpoint``): the
    runner names that model in every request and ``vllm serve`` loads it, so merge a LoRA adapter first
    (:func:`refinex_datatrove.refine_model.weights.merge_refine_model`). Window and unit come from its ``refinex.json`` unless set.
    """
    from datatrove.pipeline.inference.run_inference import InferenceConfig, InferenceRunner
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    from refinex_datatrove.refine_model.card import model_chunking, resolve_model
    from refinex_datatrove.steps.annotate import make_annotate_rollout

    _check_sections(config, TWO_STAGE_SECTIONS)
    output = _section(config, "output")
    inference = _section(config, "inference")
    unknown = set(inference) - INFERENCE_KEYS
    if unknown:
        raise ValueError(f"unknown inference key(s) {sorted(unknown)}; known: {sorted(INFERENCE_KEYS)}")
    for key in ("model", "output_folder", "checkpoints_local_dir"):
        if not inference.get(key):
            raise ValueError(f"inference.{key} is required")
    server_type = inference.get("server_type", "vllm")
    info = resolve_model(inference["model"]) if server_type != "endpoint" else None
    if info is not None and info.adapter:
        raise ValueError(
            f"{inference['model']} is a LoRA adapter: InferenceRunner serves one model by name; merge it first "
            "with refinex_datatrove.refine_model.weights.merge_refine_model(adapter_dir, out_dir)"
        )
    window, unit = model_chunking(info, inference.get("window"), inference.get("unit"))
    rollout = make_annotate_rollout(
        window,
        unit,
        inference.get("max_tokens", DEFAULT_MAX_NEW_TOKENS),
        bool(inference.get("guided", False)),
        model_name=info.name if info else str(inference["model"]),
    )
    inference_config = InferenceConfig(
        server_type=server_type,
        model_name_or_path=info.path if info else str(inference["model"]),
        endpoint_url=inference.get("endpoint_url"),
        model_max_context=inference.get("model_max_context", 8192),
        use_chat=False,  # refine-model prompts are raw text (program.render.PROMPT_STYLE)
        tp=inference.get("tp", 1),
        dp=inference.get("dp", 1),
        pp=inference.get("pp", 1),
        model_kwargs=inference.get("model_kwargs"),
        max_concurrent_generations=inference.get("max_concurrent_generations", 500),
        max_concurrent_documents=inference.get("max_concurrent_documents"),
        server_log_folder=inference.get("server_log_folder"),
        metric_interval=inference.get("metric_interval", 120),
        request_timeout=inference.get("request_timeout"),
        default_generation_params={"temperature": 0.0},
    )
    stage1 = [
        make_reader(_section(config, "reader"), output.get("excluded"), output.get("compression", "gzip")),
        *make_filters(config.get("filters"), output.get("excluded"), output.get("compression", "gzip")),
        InferenceRunner(
            rollout_fn=rollout,
            config=inference_config,
            output_writer=JsonlWriter(
                inference["output_folder"], output_filename="${rank}_chunk_${chunk_index}.jsonl", compression=None
            ),
            checkpoints_local_dir=inference["checkpoints_local_dir"],
            records_per_chunk=inference.get("records_per_chunk", 6000),
            skip_bad_requests=bool(inference.get("skip_bad_requests", False)),
        ),
    ]
    stage2 = [
        JsonlReader(inference["output_folder"], glob_pattern="*.jsonl"),
        *_refine_tail(config, len(FILTER_ORDER) + 1),
    ]
    return stage1, stage2


# ---------------------------------------------------------------------------------------------------------------
# The distill pipeline


DISTILL_SECTIONS = {"executor", "reader", "expert", "distill", "output"}
DISTILL_OUTPUT_KEYS = {"documents", "sft_records", "sft_format", "exclusions", "rewrites", "compression"}


def build_distill_pipeline(config: Mapping[str, Any], backend: Any = None) -> list[Any]:
    """The distill pipeline described by ``config``:
    JsonlReader -> [ExpertRefiner -> JsonlWriter(rewrites)] -> ProgramDistiller(exclusions) -> SFTRecordWriter
    -> JsonlWriter(documents).

    Args:
        config: the resolved configuration (see ``pipelines/configs/distill*.yaml``).
        backend: an LLM backend instance overriding ``expert.backend`` (tests, notebooks).
    """
    _check_sections(config, DISTILL_SECTIONS)
    out = _section(config, "output")
    if set(out) - DISTILL_OUTPUT_KEYS:
        raise ValueError(
            f"unknown output key(s) {sorted(set(out) - DISTILL_OUTPUT_KEYS)}; known: {sorted(DISTILL_OUTPUT_KEYS)}"
        )
    compression = out.get("compression", "gzip")

    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers.jsonl import JsonlWriter

    from refinex_datatrove.distill.to_program import DistillConfig
    from refinex_datatrove.llm.base import GenerationParams
    from refinex_datatrove.steps.distill import ProgramDistiller
    from refinex_datatrove.steps.expert import ExpertRefiner
    from refinex_datatrove.steps.sft_records import SFTRecordWriter

    pipeline: list[Any] = [config_call("reader", JsonlReader, _section(config, "reader"))]
    expert = config.get("expert")
    if expert:
        expert = dict(expert)
        params = expert.pop("params", None)
        if params is not None:
            params = config_call("expert.params", GenerationParams, {**params, "stop": tuple(params.get("stop", ()))})
        if backend is not None:
            expert["backend"] = backend
        pipeline.append(config_call("expert", ExpertRefiner, expert, params=params))
        if out.get("rewrites"):
            pipeline.append(JsonlWriter(out["rewrites"], compression=compression))

    distill = dict(config.get("distill") or {})
    filters = config_call("distill.config", DistillConfig, distill.pop("config", None) or {})
    exclusions = JsonlWriter(out["exclusions"], compression=compression) if out.get("exclusions") else None
    pipeline.append(config_call("distill", ProgramDistiller, distill, config=filters, exclusion_writer=exclusions))
    if out.get("sft_records"):
        pipeline.append(
            SFTRecordWriter(
                output_folder=out["sft_records"],
                compression=compression,
                fmt=out.get("sft_format", "prompt_completion"),
            )
        )
    if out.get("documents"):
        pipeline.append(JsonlWriter(out["documents"], compression=compression))
    return pipeline


def distill_summary(logging_dir: str | Path) -> str:
    """Counts per rejection reason and the round-trip rate, from the merged stats of a finished local run."""
    from refinex_datatrove.run_stats import read_merged_stats, step_stats
    from refinex_datatrove.steps.distill import ProgramDistiller

    stats = step_stats(read_merged_stats(logging_dir), ProgramDistiller.name)
    total, emitted = stats.get("total", 0), stats.get("forwarded", 0)
    lines = [f"documents: {total}", f"emitted: {emitted}", f"rejected: {stats.get('dropped', 0)}"]
    for label in sorted(k for k in stats if k.startswith("rejected_")):
        lines.append(f"  {label.removeprefix('rejected_')}: {stats[label]}")
    roundtrip = stats.get("roundtrip_ok", 0)
    rate = f"{roundtrip / emitted:.2%}" if emitted else "n/a"
    lines.append(f"round-trip (programs re-executed give the deletion target): {roundtrip}/{emitted} = {rate}")
    lines.append(f"deletion target equals the refined text exactly: {stats.get('matches_refined', 0)}/{emitted}")
    for label in ("docs_keep_all", "programs", "programs_keep_all", "ops_remove_lines", "ops_remove_str"):
        lines.append(f"{label}: {stats.get(label, 0)}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# Stages of the pipelines/ scripts (refinex_datatrove.launch.run_script)


def refine_stages(config: dict[str, Any], backend: Any = None) -> list[Any]:
    """``pipelines/refine.py``: one executor running :func:`build_refine_pipeline`."""
    from refinex_datatrove.launch import ExecutorArgs, Stage, make_executor

    args = ExecutorArgs.from_dict(config.get("executor"))
    config["executor"] = args.to_dict()
    return [Stage("refine", make_executor(build_refine_pipeline(config, backend=backend), args), args)]


def two_stage_stages(config: dict[str, Any]) -> list[Any]:
    """``pipelines/refine_two_stage.py``: stage 1 annotates with ``InferenceRunner``, stage 2 (``depends=`` on
    stage 1) executes and filters (:func:`build_two_stage`)."""
    from refinex_datatrove.launch import ExecutorArgs, Stage, make_executor

    stage1_args = ExecutorArgs.from_dict(config.get("executor"))
    stage2_args = ExecutorArgs.from_dict(config.get("stage2_executor"), "stage2_executor")
    if stage1_args.executor != stage2_args.executor:
        raise ValueError("executor and stage2_executor must both be local or both slurm (datatrove's depends=)")
    config["executor"], config["stage2_executor"] = stage1_args.to_dict(), stage2_args.to_dict()
    stage1_steps, stage2_steps = build_two_stage(config)
    stage1 = make_executor(stage1_steps, stage1_args)
    stage2 = make_executor(stage2_steps, stage2_args, depends=stage1)
    return [Stage("annotate (stage 1)", stage1, stage1_args), Stage("execute + filter (stage 2)", stage2, stage2_args)]


def distill_stages(config: dict[str, Any], backend: Any = None) -> list[Any]:
    """``pipelines/distill.py``: one executor running :func:`build_distill_pipeline`."""
    from refinex_datatrove.launch import ExecutorArgs, Stage, make_executor

    args = ExecutorArgs.from_dict(config.get("executor"))
    config["executor"] = args.to_dict()
    return [Stage("distill", make_executor(build_distill_pipeline(config, backend=backend), args), args)]


__all__ = [
    "DEFAULT_FILTERS",
    "DISTILL_SECTIONS",
    "FILTER_ORDER",
    "OUTPUT_FORMATS",
    "SECTIONS",
    "build_distill_pipeline",
    "build_refine_pipeline",
    "distill_stages",
    "distill_summary",
    "build_two_stage",
    "make_filters",
    "make_reader",
    "make_writer",
    "keep_text_adapter",
    "refine_stages",
    "resolve_filters",
    "two_stage_stages",
]
