"""Line-deletion scores of a refine model on the WCXB dev split (ids divisible by 10), with baselines.

    python benchmarks/eval_wcxb_dev.py --model default --pairs /path/to/wcxb-dev/pairs.jsonl.gz --docs 40
    python benchmarks/eval_wcxb_dev.py --pairs ... --window 2400 --guided  # another chunk size, guided decoding

Runs the pipeline's own steps (RefineModelAnnotator on the transformers backend, then ProgramExecutor) on a
seeded sample of dev documents and scores them with ``refinex_datatrove.eval.metrics`` next to keep-all,
C4's line rules and the gold projection. Data: WCXB, Murrough Foley, CC-BY-4.0.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model", default="default", help="refine model folder (with refinex.json) or 'default'")
    parser.add_argument("--pairs", required=True, help="WCXB pairs.jsonl.gz")
    parser.add_argument("--docs", type=int, default=40, help="dev documents to sample (0 = all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: from the cores and load)")
    parser.add_argument("--dtype", default=None, help="float32 / bfloat16 (default: bfloat16 where the CPU has it)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=512,
                        help="bound per program, as refinex refine (each chunk also bounded by its line count)")
    parser.add_argument("--window", type=int, default=None,
                        help="chunk size in the model's unit (default: the model's own, refinex.json)")
    parser.add_argument("--guided", action="store_true", help="decode inside each chunk's program grammar")
    parser.add_argument("--json", help="write the full result (with per-doc counts) here")
    parser.add_argument("--programs-out", help="write the annotated documents (chunk programs) here, as JSON Lines")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from refinex_datatrove.eval.metrics import format_table
    from refinex_datatrove.eval.dev import evaluate_on_dev

    t0 = time.time()
    result = evaluate_on_dev(
        args.pairs,
        args.model,
        n_docs=args.docs or None,
        seed=args.seed,
        backend_kwargs={
            k: v for k, v in (("num_threads", args.threads), ("dtype", args.dtype)) if v is not None
        },
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        programs_out=args.programs_out,
        window=args.window,
        guided=args.guided,
    )
    print(format_table(result))
    print(f"wall time {time.time() - t0:.0f} s")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result.to_dict(), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
