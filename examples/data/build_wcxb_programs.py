"""Rebuild ``wcxb_programs.jsonl`` from WCXB dev ``sample.jsonl`` (see ATTRIBUTION.md).

Each record's ``text`` is WCXB's noisy page text; its program, stored in ``metadata["refinex"]["program"]``,
deletes the lines labelled ``keep=0``. One document in four gets a single whole-document chunk, the others are
chunked (2,000-character windows); the last two documents get no program, to show how they pass.

    python examples/data/build_wcxb_programs.py /path/to/wcxb-dev/sample.jsonl examples/data/wcxb_programs.jsonl
"""

from __future__ import annotations

import argparse
import json

from datatrove.data import Document

from refinex_datatrove.labels import programs_from_keep_labels
from refinex_datatrove.metadata import write_program

WINDOW = 2000
N_WITHOUT_PROGRAM = 2


def build(records: list[dict]) -> list[dict]:
    out = []
    for i, rec in enumerate(records):
        text = rec["noisy"]
        doc = Document(text=text, id=rec["id"], metadata={"url": rec["url"], "page_type": rec["page_type"]})
        if i < len(records) - N_WITHOUT_PROGRAM:
            window = None if i % 4 == 0 else WINDOW
            programs = programs_from_keep_labels(text, rec["keep"], window=window, unit="chars")
            write_program(doc, programs, source="labels", n_lines=len(rec["keep"]))
        out.append({"id": doc.id, "text": doc.text, "metadata": doc.metadata})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sample", help="WCXB dev sample.jsonl")
    parser.add_argument("output", help="output .jsonl")
    args = parser.parse_args()
    with open(args.sample, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    with open(args.output, "w", encoding="utf-8") as f:
        for rec in build(records):
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
