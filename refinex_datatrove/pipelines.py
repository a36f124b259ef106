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

from refinex_datatrove.annotate import DEFAULT_MAX_NEW_TOKENS


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

        return GuardedJsonlReader(**kw, exclusion_writer=_exclusion_writer(excluded, 0, "read", compression))
    if fmt == "parquet":
        from datatrove.pipeline.readers import ParquetReader

        from refinex_datatrove.metadata import parquet_reader_adapter

        kw.setdefault("adapter", parquet_reader_adapter)
        return ParquetReader(**kw)
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
        steps.append(getattr(dt_filters, cls_name)(exclusion_writer=writer, **kw))
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
            exclusion_writer=_exclusion_writer(output.get("excluded"), first_exclusion_index, "refinex_failed", compression)
        ),
        ProgramExecutor(policy=ExecPolicy(**policy) if policy else None, **execute),
        QualityFilter(
            exclusion_writer=_exclusion_writer(
                output.get("excluded"), first_exclusion_index, "refinex_quality", compression
            ),
            **_section(config, "quality"),
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
        RefineModelAnnotator(**annotate),
        *_refine_tail(config, len(FILTER_ORDER) + 1),
    ]


# ---------------------------------------------------------------------------------------------------------------
# Two stages: InferenceRunner (terminal step, managed vLLM server, checkpoints) then execute + filter.

INFERENCE_KEYS = {
    "model", "server_type", "endpoint_url", "model_max_context", "tp", "dp", "pp", "model_kwargs",
    "max_concurrent_generations", "max_concurrent_documents", "records_per_chunk", "checkpoints_local_dir",
    "output_folder", "window", "unit", "max_tokens", "guided", "server_log_folder", "metric_interval",
    "skip_bad_requests", "request_timeout",
}


def build_two_stage(config: Mapping[str, Any]) -> tuple[list[Any], list[Any]]:
    """The two-stage refine recipe: (stage 1 steps, stage 2 steps).

    Stage 1: reader -> FineWeb filters -> ``InferenceRunner(make_annotate_rollout(...))`` writing
    ``${rank}_chunk_${chunk_index}.jsonl`` files to ``inference.output_folder`` with checkpoints (resume inside a
    task). Stage 2: ``JsonlReader(inference.output_folder)`` -> ProgramExecutor -> QualityFilter -> writer; run it
    with ``depends=`` on stage 1.

    ``inference.model`` must be a full model folder (or a served model name for ``server_type: endpoint``): the
    runner names that model in every request and ``vllm serve`` loads it, so merge a LoRA adapter first
    (:func:`merge_refine_model`). Window and unit come from its ``refinex.json`` unless set.
    """
    from datatrove.pipeline.inference.run_inference import InferenceConfig, InferenceRunner
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    from refinex_datatrove.annotate import DEFAULT_UNIT, DEFAULT_WINDOW
    from refinex_datatrove.steps.annotate import make_annotate_rollout, resolve_model

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
            "with refinex_datatrove.pipelines.merge_refine_model(adapter_dir, out_dir)"
        )
    window = inference.get("window") or (info.window if info else None) or DEFAULT_WINDOW
    unit = inference.get("unit") or (info.unit if info else None) or DEFAULT_UNIT
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


def merge_refine_model(adapter_dir: str | Path, out_dir: str | Path) -> str:
    """Merge a LoRA refine model into its base and save a full model folder (with ``refinex.json``) for serving.

    Args:
        adapter_dir: a trained adapter folder (``refinex.json`` with ``"adapter": true``).
        out_dir: where to write the merged model.

    Returns:
        ``out_dir`` as a string; its ``refinex.json`` says ``"adapter": false``.
    """
    import json

    from refinex_datatrove.models import REFINEX_JSON, load_refine_model, read_refinex_json

    meta = read_refinex_json(adapter_dir)
    model, tok = load_refine_model(adapter_dir, merge=True)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    meta = {**meta, "adapter": False, "merged_from": str(adapter_dir)}
    (out / REFINEX_JSON).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return str(out)


# ---------------------------------------------------------------------------------------------------------------
# Summary of a finished local run


def _total(value: Any) -> int | float:
    return value["total"] if isinstance(value, Mapping) else value


def refine_summary(logging_dir: str | Path) -> dict[str, Any]:
    """Figures of a finished local refine run, from the executor's merged ``stats.json``.

    Returns:
        ``{"documents_in", "documents_out", "excluded": {step name: n}, "excluded_total", "chars_removed",
        "lines_removed", "calls": {kind: n} (applied), "calls_skipped": {reason: n}, "model": {annotator stats}}``.
        ``documents_in == documents_out + excluded_total`` for a finished run.
    """
    import json

    merged = json.loads((Path(logging_dir) / "stats.json").read_text(encoding="utf-8"))
    out: dict[str, Any] = {
        "documents_in": 0, "documents_out": 0, "excluded": {}, "excluded_total": 0, "chars_removed": 0,
        "lines_removed": 0, "calls": {}, "calls_skipped": {}, "model": {},
    }
    for entry in merged:
        name, stats = entry.get("name", ""), entry.get("stats", {})
        totals = {k: _total(v) for k, v in stats.items()}
        if "READER" in name:
            unreadable = totals.get("read_excluded", 0)
            out["documents_in"] += totals.get("documents", 0) + unreadable
            if unreadable:
                out["excluded"]["unreadable records"] = unreadable
                out["excluded_total"] += unreadable
        elif "WRITER" in name:
            out["documents_out"] += totals.get("total", 0)
        elif "FILTER" in name:
            dropped = totals.get("dropped", 0)
            out["excluded"][name.split(": ", 1)[-1]] = dropped
            out["excluded_total"] += dropped
        if "RefineX execute" in name:
            out["chars_removed"] = totals.get("chars_removed", 0)
            out["lines_removed"] = totals.get("lines_removed", 0)
            out["calls"] = {k.removeprefix("applied_"): v for k, v in totals.items() if k.startswith("applied_")}
            out["calls_skipped"] = {
                k.removeprefix("skipped_"): v for k, v in totals.items() if k.startswith("skipped_")
            }
        if "RefineX annotate" in name:
            out["model"] = {k: v for k, v in totals.items() if k not in ("total", "forwarded")}
    return out


def merge_completed_stats(logging_dir: str | Path) -> int:
    """Rewrite ``logging_dir/stats.json`` as the merge of every *completed* task's ``stats/<rank>.json``.

    datatrove's local executor writes ``stats.json`` from the tasks it ran in that launch only, so after a resume
    it would count only the rerun tasks. Returns the number of tasks merged (0: nothing is written).
    """
    import json

    from datatrove.utils.stats import PipelineStats

    logs = Path(logging_dir)
    completions = logs / "completions"
    ranks = sorted(int(p.name) for p in completions.iterdir() if p.name.isdigit()) if completions.is_dir() else []
    merged, n = PipelineStats(), 0
    for rank in ranks:
        path = logs / "stats" / f"{rank:05d}.json"
        if path.is_file():
            merged += PipelineStats.from_json(json.loads(path.read_text(encoding="utf-8")))
            n += 1
    target = logs / "stats.json"
    text = merged.to_json()
    if n and not (target.is_file() and target.read_text(encoding="utf-8") == text):  # untouched when nothing ran
        target.write_text(text, encoding="utf-8")
    return n


def format_summary(summary: Mapping[str, Any]) -> str:
    """A short human-readable report of :func:`refine_summary`."""
    lines = [
        f"documents in: {summary['documents_in']}",
        f"documents out: {summary['documents_out']}",
        f"documents excluded: {summary['excluded_total']}",
    ]
    lines += [f"  {name}: {n}" for name, n in summary["excluded"].items() if n]
    lines.append(f"chars removed by programs: {summary['chars_removed']} ({summary['lines_removed']} whole lines)")
    calls = ", ".join(f"{k}={v}" for k, v in sorted(summary["calls"].items())) or "none"
    lines.append(f"calls applied: {calls}")
    if summary["calls_skipped"]:
        lines.append("calls skipped: " + ", ".join(f"{k}={v}" for k, v in sorted(summary["calls_skipped"].items())))
    model = summary["model"]
    if model:
        keys = ("requests", "chunks_skipped", "gen_truncated", "gen_failed", "gen_empty", "gen_retries", "tokens_in",
                "tokens_out")
        lines.append("model: " + ", ".join(f"{k}={model[k]}" for k in keys if k in model))
        causes = {k: v for k, v in model.items() if k.startswith("gen_failed_")}
        if causes:
            lines.append("failed requests by cause: " + ", ".join(f"{k.removeprefix('gen_failed_')}={v}"
                                                                   for k, v in sorted(causes.items())))
    return "\n".join(lines)


__all__ = [
    "DEFAULT_FILTERS",
    "FILTER_ORDER",
    "OUTPUT_FORMATS",
    "SECTIONS",
    "build_refine_pipeline",
    "build_two_stage",
    "format_summary",
    "make_filters",
    "make_reader",
    "make_writer",
    "keep_text_adapter",
    "merge_completed_stats",
    "merge_refine_model",
    "refine_summary",
    "resolve_filters",
]
