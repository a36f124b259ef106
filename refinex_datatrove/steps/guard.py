"""GuardedJsonlReader: datatrove's JsonlReader without silent loss.

datatrove's ``JsonlReader`` skips a line that is not JSON with only a log warning, skips every document with
empty or missing text after a single warning, loses the rest of a file at the first byte that is not UTF-8,
and stops the whole task at a line that is valid JSON but not an object. This reader accounts for every
non-blank line of its input: it either yields a document or excludes the record with a named stat and, with an
``exclusion_writer``, writes it there for audit. So for every task::

    records read = documents (datatrove's reader stat) + read_excluded

Excluded records are written as documents whose ``text`` is the raw input line (undecodable bytes as
``\\xNN`` escapes), ``id`` is ``"<file>/<line index>"`` (0-based, datatrove's id convention) and
``metadata["refinex_guard"]`` says why: ``{"reason", "file_path", "line", "error"}``, where ``line`` is the
1-based line number the warning names.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Callable
from enum import StrEnum
from typing import Literal

from datatrove.data import Document, DocumentsPipeline, Media
from datatrove.io import DataFileLike, DataFolderLike
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers.disk_base import DiskWriter
from datatrove.utils.logging import logger

GUARD_KEY = "refinex_guard"
"""Metadata key of excluded records: ``{"reason", "file_path", "line", "error"}``."""

_BOM = b"\xef\xbb\xbf"
_MAX_WARNINGS = 10


class ReadStat(StrEnum):
    """Stats of :class:`GuardedJsonlReader` besides datatrove's ``documents`` and ``input_files``.

    Excluded (never yielded; written to the exclusion writer): ``read_bad_encoding``, ``read_bad_json``,
    ``read_unsupported_json``, ``read_not_an_object``, ``read_missing_text``, ``read_text_not_a_string``,
    ``read_empty_text``, ``read_bad_record``; their sum is ``read_excluded``. Yielded with a repair:
    ``read_missing_id`` (id ``"<file>/<line index>"``), ``read_id_not_a_string`` (``str(id)``). Not a record:
    ``read_blank_line``.
    """

    BLANK_LINE = "read_blank_line"
    BAD_ENCODING = "read_bad_encoding"  # the line is not valid UTF-8
    BAD_JSON = "read_bad_json"  # not JSON
    UNSUPPORTED_JSON = "read_unsupported_json"  # valid JSON that orjson (and datatrove's writers) reject
    NOT_AN_OBJECT = "read_not_an_object"  # a JSON array, string, number or null
    MISSING_TEXT = "read_missing_text"
    TEXT_NOT_A_STRING = "read_text_not_a_string"
    EMPTY_TEXT = "read_empty_text"
    BAD_RECORD = "read_bad_record"  # the adapter or the media field failed
    MISSING_ID = "read_missing_id"
    ID_NOT_A_STRING = "read_id_not_a_string"
    EXCLUDED = "read_excluded"


EXCLUDED_REASONS = (
    ReadStat.BAD_ENCODING,
    ReadStat.BAD_JSON,
    ReadStat.UNSUPPORTED_JSON,
    ReadStat.NOT_AN_OBJECT,
    ReadStat.MISSING_TEXT,
    ReadStat.TEXT_NOT_A_STRING,
    ReadStat.EMPTY_TEXT,
    ReadStat.BAD_RECORD,
)


class _Excluded(Exception):
    def __init__(self, reason: ReadStat, error: str) -> None:
        super().__init__(error)
        self.reason = reason
        self.error = error


class GuardedJsonlReader(JsonlReader):
    """Read JSONL files like datatrove's ``JsonlReader``, but count and keep every record it cannot use.

    Reads each file as bytes and decodes line by line, so a bad byte costs one line, not the rest of the file;
    a UTF-8 byte order mark at the start of a file is ignored. A record is excluded, with the stat named in
    :class:`ReadStat`, when its line is not UTF-8, not JSON (or JSON that orjson cannot represent: lone
    surrogates, NaN), not an object, has no text, a text that is not a string or is empty, or when the adapter
    or the ``media`` field fails. A missing or non-string id is repaired and counted. Blank lines are counted
    as ``read_blank_line`` and are not records.

    If no JSON object read by a task has the text key, the task raises :class:`ValueError` (``text_key`` is
    wrong).

    Args:
        data_folder: as for ``JsonlReader``.
        exclusion_writer: a datatrove writer for excluded records (see the module docstring); ``None`` still
            counts them.
        paths_file: as for ``JsonlReader``.
        compression: as for ``JsonlReader``.
        limit: documents per task; like ``skip``, it counts yielded documents only.
        skip: documents to skip at the start of each task.
        file_progress: show a progress bar over files.
        doc_progress: show a progress bar over documents.
        adapter: as for ``JsonlReader``: ``(self, data, path, id_in_file) -> {"text", "id", ...}``.
        text_key: key of the text in the default adapter.
        id_key: key of the id in the default adapter.
        default_metadata: metadata added to every document.
        recursive: search ``data_folder`` recursively.
        glob_pattern: only read files matching it.
        shuffle_files: shuffle the files of each task.
        add_file_path: add ``metadata["file_path"]``.
    """

    name = "🛡️ Jsonl (guarded)"

    def __init__(
        self,
        data_folder: DataFolderLike,
        *,
        exclusion_writer: DiskWriter | None = None,
        paths_file: DataFileLike | None = None,
        compression: Literal["infer", "gzip", "zstd"] | None = "infer",
        limit: int = -1,
        skip: int = 0,
        file_progress: bool = False,
        doc_progress: bool = False,
        adapter: Callable | None = None,
        text_key: str = "text",
        id_key: str = "id",
        default_metadata: dict | None = None,
        recursive: bool = True,
        glob_pattern: str | None = None,
        shuffle_files: bool = False,
        add_file_path: bool = True,
    ) -> None:
        super().__init__(
            data_folder,
            paths_file=paths_file,
            compression=compression,
            limit=limit,
            skip=skip,
            file_progress=file_progress,
            doc_progress=doc_progress,
            adapter=adapter,
            text_key=text_key,
            id_key=id_key,
            default_metadata=default_metadata,
            recursive=recursive,
            glob_pattern=glob_pattern,
            shuffle_files=shuffle_files,
            add_file_path=add_file_path,
        )
        self.custom_adapter = adapter is not None
        self.exclusion_writer = exclusion_writer
        self._writer: DiskWriter | None = None
        self._rank = 0
        self._objects = self._missing_text = self._warnings = 0

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        self._rank = rank
        self._objects = self._missing_text = self._warnings = 0
        with self.exclusion_writer or contextlib.nullcontext() as writer:
            self._writer = writer
            yield from super().run(data, rank, world_size)
        self._writer = None
        if self._objects and self._missing_text == self._objects:
            raise ValueError(
                f"none of the {self._objects} JSON objects read by task {rank} has the text key "
                f"{self.text_key!r}: is reader.text_key correct?"
            )

    def read_file(self, filepath: str) -> DocumentsPipeline:
        with self.data_folder.open(filepath, "rb", compression=self.compression) as f:
            for li, raw in enumerate(f):
                if li == 0 and raw.startswith(_BOM):
                    raw = raw[len(_BOM) :]
                if not raw.strip():
                    self.stat_update(ReadStat.BLANK_LINE)
                    continue
                with self.track_time():
                    try:
                        document = self._document(raw, filepath, li)
                    except _Excluded as e:
                        self._exclude(raw, filepath, li, e)
                        continue
                yield document

    def _document(self, raw: bytes, filepath: str, li: int) -> Document:
        """The document of one line; raises ``_Excluded`` with the reason when there is none."""
        import orjson

        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise _Excluded(ReadStat.BAD_ENCODING, str(e)) from None
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise _Excluded(_json_failure(raw), str(e)) from None
        if not isinstance(data, dict):
            raise _Excluded(ReadStat.NOT_AN_OBJECT, f"a JSON {type(data).__name__}, not an object")
        self._objects += 1
        if not self.custom_adapter and data.get(self.text_key) is None:
            self._missing_text += 1
            if self.text_key in data:
                raise _Excluded(ReadStat.MISSING_TEXT, f"{self.text_key!r} is null")
            raise _Excluded(ReadStat.MISSING_TEXT, f"no {self.text_key!r}; keys: {sorted(data)[:20]}")
        id_missing = not self.custom_adapter and data.get(self.id_key) in (None, "")
        try:
            for media in data.get("media") or []:
                if media["media_bytes"] is not None:
                    media["media_bytes"] = base64.decodebytes(media["media_bytes"].encode("ascii"))
            parsed = self.adapter(data, filepath, li)
            text = parsed.get("text")
            if not isinstance(text, str):
                raise _Excluded(ReadStat.TEXT_NOT_A_STRING, f"text is {type(text).__name__}")
            if not text:
                raise _Excluded(ReadStat.EMPTY_TEXT, "text is empty")
            doc_id = parsed.get("id")
            if id_missing or doc_id is None or doc_id == "":
                self.stat_update(ReadStat.MISSING_ID)
                parsed["id"] = f"{filepath}/{li}"
            elif not isinstance(doc_id, str):
                self.stat_update(ReadStat.ID_NOT_A_STRING)
                parsed["id"] = str(doc_id)
            # what BaseReader/BaseDiskReader.get_document_from_dict do after the adapter
            if parsed.get("media"):
                parsed["media"] = [Media(**media) for media in parsed["media"]]
            document = Document(**parsed)
        except _Excluded:
            raise
        except Exception as e:  # a malformed record must not stop the task
            raise _Excluded(ReadStat.BAD_RECORD, f"{type(e).__name__}: {e}") from None
        if self.default_metadata:
            document.metadata = self.default_metadata | document.metadata
        if self.add_file_path:
            document.metadata.setdefault("file_path", self.data_folder.resolve_paths(filepath))
        return document

    def _exclude(self, raw: bytes, filepath: str, li: int, exc: _Excluded) -> None:
        self.stat_update(exc.reason)
        self.stat_update(ReadStat.EXCLUDED)
        if self._warnings < _MAX_WARNINGS:
            self._warnings += 1
            logger.warning(
                f"{filepath} line {li + 1} (record {filepath}/{li}): {exc.reason.value} ({exc.error[:200]}); "
                "record excluded"
            )
        if self._writer is None:
            return
        record = Document(
            text=raw.rstrip(b"\r\n").decode("utf-8", errors="backslashreplace"),
            id=f"{filepath}/{li}",
            metadata={
                GUARD_KEY: {
                    "reason": exc.reason.value,
                    "file_path": filepath,
                    "line": li + 1,
                    "error": exc.error[:500],
                }
            },
        )
        self._writer.write(record, self._rank)


def _json_failure(raw: bytes) -> ReadStat:
    """``unsupported_json`` for JSON only the standard library accepts (lone surrogates, NaN), else ``bad_json``."""
    import json

    try:
        json.loads(raw)
    except Exception:  # noqa: BLE001 - whatever the standard library rejects is simply not JSON
        return ReadStat.BAD_JSON
    return ReadStat.UNSUPPORTED_JSON


__all__ = ["EXCLUDED_REASONS", "GUARD_KEY", "GuardedJsonlReader", "ReadStat"]
