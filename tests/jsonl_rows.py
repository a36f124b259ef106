"""Reading back what datatrove's JSONL writers wrote, for assertions."""

from __future__ import annotations

import gzip
import json
from pathlib import Path


def read_jsonl_folder(folder: Path) -> list[dict]:
    """Every non-blank record of every ``*.jsonl*`` file under ``folder`` (recursively, gzip or plain), in
    sorted file order."""
    rows = []
    for f in sorted(folder.rglob("*.jsonl*")):
        opener = gzip.open if f.name.endswith(".gz") else open
        with opener(f, "rt", encoding="utf-8") as fh:
            rows += [json.loads(line) for line in fh if line.strip()]
    return rows
