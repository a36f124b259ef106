"""Reading the project's inputs outside a datatrove pipeline: text files byte for byte, and JSON Lines files or
folders through fsspec (datatrove's I/O layer: local paths and remote URLs, compressed or not).

The one JSONL reader of the package: ``refinex eval`` / ``report``, the refine report, SFT record loading and
the WCXB pairs all read through :func:`iter_jsonl`. (Inside a pipeline, datatrove's readers do; see
:class:`~refinex_datatrove.steps.guard.GuardedJsonlReader`.) Pure: fsspec and orjson are imported inside.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".jsonl.bz2", ".jsonl.xz")
"""Files of a folder that are read (datatrove's ``JsonlWriter`` writes ``.jsonl.gz`` by default)."""


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


def jsonl_files(path: str, suffixes: tuple[str, ...] = JSONL_SUFFIXES) -> list[str]:
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


def iter_jsonl(path: str, suffixes: tuple[str, ...] = JSONL_SUFFIXES) -> Iterator[tuple[str, int, Any]]:
    """``(file, line_number, parsed_or_exception)`` for every non-blank line of the JSONL file(s) at ``path``.

    A line that is not valid JSON yields the ``orjson.JSONDecodeError`` instead of raising, so callers decide.

    Raises:
        InputError: a missing path, or a file that cannot be read (e.g. a truncated compressed file).
    """
    import fsspec
    import orjson

    for file in jsonl_files(path, suffixes):
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


def iter_json_objects(path: str, suffixes: tuple[str, ...] = JSONL_SUFFIXES) -> Iterator[tuple[str, int, dict]]:
    """Like :func:`iter_jsonl` for input that must be clean (gold pairs, SFT records): every line a JSON object.

    Raises:
        InputError: a line that is not valid JSON or not an object, with its file and line number.
    """
    for file, n, rec in iter_jsonl(path, suffixes):
        if isinstance(rec, Exception):
            raise InputError(f"{file}:{n}: not valid JSON ({rec})")
        if not isinstance(rec, dict):
            raise InputError(f"{file}:{n}: expected a JSON object, got {type(rec).__name__}")
        yield file, n, rec


__all__ = ["JSONL_SUFFIXES", "InputError", "iter_json_objects", "iter_jsonl", "jsonl_files", "read_text_file"]
