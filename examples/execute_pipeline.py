"""Execute stored RefineX programs inside a FineWeb-style datatrove pipeline (CPU, offline, < 1 minute).

The bundled ``data/wcxb_programs.jsonl`` holds 40 noisy web pages from WCXB (CC-BY-4.0, "WCXB, Murrough Foley";
see ``data/ATTRIBUTION.md``) with programs derived from WCXB's per-line keep labels, standing in for the
refine model's annotations. The pipeline:

    JsonlReader
    -> GopherRepetitionFilter -> GopherQualityFilter -> FineWebQualityFilter   (datatrove, FineWeb settings)
    -> ProgramExecutor -> QualityFilter                                         (refinex)
    -> C4QualityFilter(filter_no_terminal_punct=False)                          (datatrove, FineWeb settings)
    -> JsonlWriter

Every filter writes what it drops under ``OUTPUT/removed/<n>_<filter>/`` as in datatrove's ``examples/fineweb.py``.

Two deliberate differences from FineWeb's filter list:

* URLFilter and LanguageFilter are left out: they need downloads (block lists, a fastText model).
* C4QualityFilter runs *after* the executor. Unlike the other filters it edits ``doc.text`` (it drops lines of
  fewer than 3 words, strips lines, removes citation marks), so the line numbers of a program written for
  the text before it would no longer match; ProgramExecutor would then leave the document unchanged with the
  stat ``program_mismatch``. In a real run, annotate after the text-editing filters, or execute before them.

datatrove's English word tokenizer (used by the Gopher and FineWeb filters) is spaCy's rule-based blank
``en`` pipeline: it needs the ``spacy`` package but no model download.

    python examples/execute_pipeline.py --output out/execute_pipeline
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.filters import (
    C4QualityFilter,
    FineWebQualityFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
)
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter

from refinex_datatrove.steps.execute import ProgramExecutor
from refinex_datatrove.steps.quality_filter import QualityFilter

DATA = Path(__file__).parent / "data"
REMOVED = ("1_gopher_rep", "2_gopher_qual", "3_fineweb_qual", "4_refinex_quality", "5_c4")


def build_pipeline(input_folder: str, output: Path) -> list:
    """The pipeline as a readable list, as in datatrove's examples/fineweb.py."""

    def removed(name: str) -> JsonlWriter:
        return JsonlWriter(str(output / "removed" / name), compression=None)

    return [
        JsonlReader(input_folder, glob_pattern="wcxb_programs.jsonl"),
        GopherRepetitionFilter(exclusion_writer=removed("1_gopher_rep")),
        GopherQualityFilter(exclusion_writer=removed("2_gopher_qual")),
        FineWebQualityFilter(exclusion_writer=removed("3_fineweb_qual")),
        ProgramExecutor(keep_original=True),
        QualityFilter(exclusion_writer=removed("4_refinex_quality")),
        C4QualityFilter(filter_no_terminal_punct=False, exclusion_writer=removed("5_c4")),
        JsonlWriter(str(output / "output"), compression=None),
    ]


def count_docs(folder: Path) -> int:
    return sum(1 for f in folder.rglob("*.jsonl") for line in f.open(encoding="utf-8") if line.strip())


def summarize(output: Path, n_in: int, seconds: float) -> str:
    """A short report: documents kept and dropped per filter, and the executor's counts."""
    lines = [f"{n_in} documents in, {count_docs(output / 'output')} out ({seconds:.1f} s)"]
    for name in REMOVED:
        lines.append(f"  removed by {name:<20} {count_docs(output / 'removed' / name):>4}")
    stats = json.loads((output / "logs" / "stats.json").read_text())
    executor = next(s for s in stats if "RefineX execute" in s["name"])["stats"]

    def total(key: str) -> int:
        value = executor.get(key, {})
        return int(value.get("total", 0)) if isinstance(value, dict) else int(value)

    lines.append(
        f"executor: {total('executed')} executed, {total('no_program')} without program, "
        f"{total('docs_changed')} changed; removed {total('lines_removed')} lines, {total('chars_removed')} chars"
    )
    calls = {k: total(k) for k in sorted(executor) if k.startswith(("applied_", "skipped_", "invalid_"))}
    lines.append("calls: " + (", ".join(f"{k}={v}" for k, v in calls.items()) or "none"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="out/execute_pipeline", help="output folder (default: %(default)s)")
    parser.add_argument("--input", default=str(DATA), help="folder holding wcxb_programs.jsonl")
    parser.add_argument("--force", action="store_true", help="rerun even if the logs say the task is complete")
    args = parser.parse_args(argv)

    output = Path(args.output)
    start = time.perf_counter()
    LocalPipelineExecutor(
        pipeline=build_pipeline(args.input, output),
        tasks=1,
        workers=1,
        logging_dir=str(output / "logs"),
        skip_completed=not args.force,
    ).run()
    n_in = sum(1 for line in (Path(args.input) / "wcxb_programs.jsonl").open(encoding="utf-8") if line.strip())
    print(summarize(output, n_in, time.perf_counter() - start))


if __name__ == "__main__":
    main()
