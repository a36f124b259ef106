"""Reading the project's inputs outside a datatrove pipeline: text files byte for byte, and JSON Lines (or
Parquet) files or folders through fsspec (datatrove's I/O layer: local paths and remote URLs, compressed or not).

The one record reader of the package: ``refinex eval`` / ``report``, the refine report, SFT record loading and
the WCXB pairs all read through :func:`iter_records`. (Inside a pipeline, datatrove's readers do; see
:class:`~refinex_datatrove.steps.guard.GuardedJsonlReader`.) Pure: fsspec and orjson are imported inside.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".jsonl.bz2", ".jsonl.xz")
"""JSON Lines files of a folder that are read (datatrove's ``JsonlWriter`` writes ``.jsonl.gz`` by default)."""

PARQUET_SUFFIXES = (".parquet",)
RECORD_SUFFIXES = JSONL_SUFFIXES + PARQUET_SUFFIXES
"""Files of a folder that are read: JSON Lines and Parquet (``refinex refine --output-format parquet``)."""


class InputError(ValueError):
    """A file that cannot be read as asked (missing, unreadable, not UTF-8, not JSON); the CLI reports it on
    stderr with exit status 2."""


def read_text_file(path: str, what: str = "file") -> str:
    """The UTF-8 text of ``path``, byte for byte (no newline translation).

    Raises:
        InputError: missing, a directory, unreadable, or not valid UTF-8.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except IsADirectoryError:
        raise InputError(f"{what} {path!r} is a directory") from None
    except FileNotFoundError:
        raise InputError(f"{what} {path!r} does not exist") from None
    except OSError as e:
        raise InputError(f"cannot read {what} {path!r}: {e.strerror or e}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(
            f"{what} {path!r} is not valid UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start})"
        ) from None


def record_files(path: str, suffixes: tuple[str, ...] = RECORD_SUFFIXES) -> list[str]:
    """``path`` itself when it is a file, else the files under the folder ending in ``suffixes`` (recursively,
    sorted).

    Raises:
        InputError: the path does not exist, or the folder holds no such file.
    """
    from fsspec.core import url_to_fs

    fs, root = url_to_fs(path)
    if not fs.exists(root):
        raise InputError(f"{path!r} does not exist")
    if not fs.isdir(root):
        return [fs.unstrip_protocol(root) if "://" in path else root]
    files = sorted(f for f in fs.find(root) if f.endswith(suffixes))
    if not files:
        raise InputError(f"no {', '.join(suffixes)} file under {path!r}")
    return [fs.unstrip_protocol(f) if "://" in path else f for f in files]


def _iter_parquet(file: str) -> Iterator[tuple[str, int, Any]]:
    import fsspec
    import pyarrow as pa
    import pyarrow.parquet as pq

    from refinex_datatrove.metadata import record_from_parquet

    n = 0
    try:
        with fsspec.open(file, "rb") as f:
            for batch in pq.ParquetFile(f).iter_batches():
                for row in batch.to_pylist():
                    n += 1
                    try:
                        record: Any = record_from_parquet(row)
                    except ValueError as e:  # a side column that is not a JSON object
                        record = e
                    yield file, n, record
    except (OSError, pa.ArrowException) as e:  # unreadable or truncated file
        raise InputError(f"cannot read {file!r}: {e}") from None


def iter_records(path: str, suffixes: tuple[str, ...] = RECORD_SUFFIXES) -> Iterator[tuple[str, int, Any]]:
    """``(file, line_number, parsed_or_exception)`` for every non-blank line of the JSONL file(s) at ``path``,
    and every row (numbered from 1) of its Parquet files, each as its JSONL record
    (:func:`refinex_datatrove.metadata.record_from_parquet`).

    A line that is not valid JSON yields the ``orjson.JSONDecodeError`` instead of raising, so callers decide.

    Raises:
        InputError: a missing path, or a file that cannot be read (e.g. a truncated compressed file).
    """
    import fsspec
    import orjson

    for file in record_files(path, suffixes):
        if file.endswith(PARQUET_SUFFIXES):
            yield from _iter_parquet(file)
            continue
        try:
            with fsspec.open(file, "rb", compression="infer") as f:
                for n, raw in enumerate(f, start=1):
                    if not raw.strip():
                        continue
                    try:
                        yield file, n, orjson.loads(raw)
                    except orjson.JSONDecodeError as e:
                        yield file, n, e
        except (OSError, EOFError) as e:  # unreadable / truncated compressed file
            raise InputError(f"cannot read {file!r}: {e}") from None


def iter_record_objects(path: str, suffixes: tuple[str, ...] = RECORD_SUFFIXES) -> Iterator[tuple[str, int, dict]]:
    """Like :func:`iter_records` for input that must be clean (gold pairs, SFT records): every line a JSON object.

    Raises:
        InputError: a line that is not valid JSON or not an object, with its file and line number.
    """
    for file, n, rec in iter_records(path, suffixes):
        if isinstance(rec, Exception):
            raise InputError(f"{file}:{n}: not valid JSON ({rec})")
        if not isinstance(rec, dict):
            raise InputError(f"{file}:{n}: expected a JSON object, got {type(rec).__name__}")
        yield file, n, rec


__all__ = [
    "JSONL_SUFFIXES",
    "PARQUET_SUFFIXES",
    "RECORD_SUFFIXES",
    "InputError",
    "iter_record_objects",
    "iter_records",
    "read_text_file",
    "record_files",
]
