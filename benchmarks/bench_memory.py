"""Peak memory of refining one shard: does it stream? (10,000 vs 100,000 documents, one subprocess each)

Two pipelines, each one datatrove task (LocalPipelineExecutor, workers=1) over a single gzipped JSONL file:

* ``execute``: GuardedJsonlReader -> ProgramExecutor -> QualityFilter (with exclusion writer) -> JsonlWriter, on
  documents that already carry a program in ``metadata["refinex"]``;
* ``annotate``: the refine pipeline of :func:`refinex_datatrove.recipes.build_refine_pipeline` (datatrove
  filters off) with a scripted test double as the model: annotate -> execute -> quality -> write;
* ``annotate_scripted`` (not run by default): the same with ``ScriptedBackend``, which records every request.

Each run is a fresh subprocess; it reports the peak resident set size (``resource.getrusage(...).ru_maxrss``)
and the RSS after imports, before the pipeline starts. Streaming means the peak does not grow with the shard.

Usage (from the repository root)::

    python -m benchmarks.bench_memory                       # 10k and 100k, execute and annotate
    python -m benchmarks.bench_memory --sizes 1000 5000 --modes execute annotate_scripted
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


WORDS = (
    "the river plant council water city spring work project budget school road park market news weather "
    "sport local report people year house family music film"
).split()


def make_document(rng: random.Random, i: int) -> dict:
    """A ~1.3 KB web-like page: navigation lines, paragraphs, a share footer, a few [ad] tags."""
    lines = ["NAV Home | News | Sport | Weather | Login"]
    for _ in range(rng.randint(6, 10)):
        words = [rng.choice(WORDS) for _ in range(rng.randint(12, 30))]
        if rng.random() < 0.2:
            words.insert(rng.randrange(len(words)), "[ad]")
        lines.append(" ".join(words).capitalize() + ".")
    lines.append("NAV Share on Facebook | Share on X | Print")
    return {"id": f"doc-{i}", "text": "\n".join(lines)}


def program_for(text: str) -> str:
    """The scripted model's program for a whole document (same rules as :func:`scripted_reply`)."""
    calls = []
    for n, line in enumerate(text.split("\n"), start=1):
        if line.startswith("NAV"):
            calls.append(f"remove_lines({n}, {n})")
        elif line.count("[ad]") == 1:
            calls.append(f'remove_str({n}, "[ad]")')
    return "\n".join(calls) or "keep_all()"


def scripted_reply(request, params) -> str:
    """ScriptedBackend reply: delete NAV rows and single [ad] tags of the rendered chunk."""
    from refinex_datatrove.llm.scripted import request_text
    from refinex_datatrove.program import REFINE_INSTRUCTION

    rows = request_text(request)[len(REFINE_INSTRUCTION) + 1 :].removesuffix("\n").split("\n")
    lines = [row.split("] ", 1)[1] for row in rows]
    return program_for("\n".join(lines))


class ReplyBackend:
    """An LLMBackend test double answering with :func:`scripted_reply` and keeping nothing.

    ``ScriptedBackend`` records every request in ``.requests`` (for assertions in tests), so its memory grows with
    the shard; the ``annotate_scripted`` mode measures exactly that.
    """

    def generate(self, requests, params):
        from refinex_datatrove.llm.base import Generation

        return [Generation(text=scripted_reply(r, params), finish_reason="stop") for r in requests]

    def close(self) -> None:
        pass


def write_input(path: Path, n: int, with_programs: bool, seed: int = 0) -> None:
    from refinex_datatrove.metadata import empty_refinex
    from refinex_datatrove.program import RENDER_FORMAT

    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=1) as f:
        for i in range(n):
            doc = make_document(rng, i)
            if with_programs:
                n_lines = doc["text"].count("\n") + 1
                meta = empty_refinex()
                chunk = {"start": 0, "n_lines": n_lines, "skipped": False, "program": program_for(doc["text"])}
                meta["program"] = {"render": RENDER_FORMAT, "source": "bench", "n_lines": n_lines, "chunks": [chunk]}
                doc["metadata"] = {"refinex": meta}
            f.write(json.dumps(doc) + "\n")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def child(mode: str, input_dir: str, output_dir: str) -> dict:
    """Run one pipeline in this process and report its figures."""
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.writers import JsonlWriter

    from refinex_datatrove.llm.scripted import ScriptedBackend
    from refinex_datatrove.steps.execute import ProgramExecutor
    from refinex_datatrove.steps.guard import GuardedJsonlReader
    from refinex_datatrove.steps.quality_filter import QualityFilter

    if mode == "execute":
        pipeline = [
            GuardedJsonlReader(input_dir, glob_pattern="*.jsonl.gz"),
            ProgramExecutor(),
            QualityFilter(exclusion_writer=JsonlWriter(f"{output_dir}/excluded")),
            JsonlWriter(f"{output_dir}/refined"),
        ]
    else:
        from refinex_datatrove.recipes import build_refine_pipeline

        config = {
            "reader": {"format": "jsonl", "data_folder": input_dir, "glob_pattern": "*.jsonl.gz"},
            "filters": dict.fromkeys(["gopher_repetition", "gopher_quality", "c4_quality", "fineweb_quality"], False),
            "annotate": {"model": "scripted", "window": 4_000, "batch_size": 64},
            "output": {"folder": f"{output_dir}/refined", "excluded": f"{output_dir}/excluded"},
        }
        backend = ScriptedBackend(scripted_reply) if mode == "annotate_scripted" else ReplyBackend()
        pipeline = build_refine_pipeline(config, backend=backend)
        import datatrove.pipeline.readers  # noqa: F401 - same import cost as the execute pipeline
    executor = LocalPipelineExecutor(pipeline, tasks=1, workers=1, logging_dir=f"{output_dir}/logs")
    before = _rss_mb()
    t0 = time.perf_counter()
    executor.run()
    seconds = time.perf_counter() - t0
    stats = json.loads(Path(f"{output_dir}/logs/stats.json").read_text())
    written = next(s["stats"]["total"] for s in stats if "WRITER" in s["name"])
    return {"mode": mode, "rss_before_mb": round(before, 1), "peak_rss_mb": round(_rss_mb(), 1),
            "seconds": round(seconds, 1), "written": written}


def measure(mode: str, n: int, workdir: Path) -> dict:
    input_dir = workdir / f"in-{'execute' if mode == 'execute' else 'annotate'}-{n}"
    if not input_dir.exists():
        write_input(input_dir / "part.jsonl.gz", n, with_programs=(mode == "execute"))
    output_dir = workdir / f"out-{mode}-{n}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(  # -m from the repository root: works with or without the package installed
        [sys.executable, "-m", "benchmarks.bench_memory", "--child", mode, str(input_dir), str(output_dir)],
        capture_output=True, text=True, env=env, check=False, cwd=Path(__file__).resolve().parents[1],
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} n={n} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["n"] = n
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument(
        "--modes", nargs="+", default=["execute", "annotate"], choices=["execute", "annotate", "annotate_scripted"]
    )
    parser.add_argument("--workdir", default=None, help="where inputs and outputs go (default: a temp dir)")
    parser.add_argument("--child", nargs=3, metavar=("MODE", "INPUT", "OUTPUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(*args.child)))
        return 0
    with tempfile.TemporaryDirectory(prefix="refinex-bench-mem-") as tmp:
        workdir = Path(args.workdir or tmp)
        results = [measure(mode, n, workdir) for mode in args.modes for n in args.sizes]
    header = ("pipeline", "docs", "RSS before", "peak RSS", "growth", "seconds", "written")
    print("{:<17} {:>9} {:>11} {:>9} {:>8} {:>8} {:>8}".format(*header))
    for r in results:
        growth = r["peak_rss_mb"] - r["rss_before_mb"]
        print(f"{r['mode']:<17} {r['n']:>9,} {r['rss_before_mb']:>9.1f}MB {r['peak_rss_mb']:>7.1f}MB "
              f"{growth:>6.1f}MB {r['seconds']:>8.1f} {r['written']:>8,}")
    for mode in args.modes:
        peaks = [r["peak_rss_mb"] for r in results if r["mode"] == mode]
        if len(peaks) > 1:
            sizes = f"{min(args.sizes):,}-{max(args.sizes):,}"
            print(f"{mode}: peak RSS {min(peaks):.1f}-{max(peaks):.1f} MB over {sizes} documents "
                  f"(difference {max(peaks) - min(peaks):.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
