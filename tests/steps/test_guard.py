"""GuardedJsonlReader: every non-blank input line is a document or an excluded record with a named stat."""

from __future__ import annotations

import gzip
import json
import pickle

import pytest
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter

from refinex_datatrove.steps.guard import EXCLUDED_REASONS, GUARD_KEY, GuardedJsonlReader, ReadStat


GOOD = [
    {"id": "ok-1", "text": "plain text"},
    {"id": "ok-2", "text": "crlf\r\nand lone\rcr and nul \u0000 and tab\t", "metadata": {"url": "u"}},
    {"id": "ok-3", "text": "x" * 100_000},
    {"text": "no id here"},  # repaired: id "<file>/<line>"
    {"id": 42, "text": "int id"},  # repaired: id "42"
    {"id": "ok-4", "text": "   "},  # whitespace is text: passed on (the quality filter decides)
    {"id": "ok-5", "text": "meta is a string", "metadata": "not json"},
]
BAD = [  # (raw line, expected reason)
    (b"{not json", ReadStat.BAD_JSON),
    (b'{"id": "trunc", "text": "abc', ReadStat.BAD_JSON),
    (b'{"id": "sur", "text": "lone \\ud800 surrogate"}', ReadStat.UNSUPPORTED_JSON),
    (b'{"id": "nan", "text": "t", "score": NaN}', ReadStat.UNSUPPORTED_JSON),
    (b'{"id": "bytes", "text": "caf\xe9 latin-1"}', ReadStat.BAD_ENCODING),
    (b"[1, 2, 3]", ReadStat.NOT_AN_OBJECT),
    (b'"a string"', ReadStat.NOT_AN_OBJECT),
    (b"null", ReadStat.NOT_AN_OBJECT),
    (b'{"id": "nt", "content": "wrong key"}', ReadStat.MISSING_TEXT),
    (b'{"id": "nul", "text": null}', ReadStat.MISSING_TEXT),
    (b'{"id": "num", "text": 12}', ReadStat.TEXT_NOT_A_STRING),
    (b'{"id": "list", "text": ["a"]}', ReadStat.TEXT_NOT_A_STRING),
    (b'{"id": "empty", "text": ""}', ReadStat.EMPTY_TEXT),
    (b'{"id": "media", "text": "t", "media": [{"nope": 1}]}', ReadStat.BAD_RECORD),
    (b'{"id": "media2", "text": "t", "media": 5}', ReadStat.BAD_RECORD),
]


def write_input(folder, name="part.jsonl", compress=False, bom=False):
    folder.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(r).encode() for r in GOOD[:3]]
    lines += [raw for raw, _ in BAD]
    lines += [b"", b"   ", b"\r"]  # blank lines: not records
    lines += [json.dumps(r).encode() for r in GOOD[3:]]
    data = b"\n".join(lines) + b"\n"
    if bom:
        data = b"\xef\xbb\xbf" + data
    path = folder / (name + (".gz" if compress else ""))
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def read_all(reader):
    return list(reader.run(rank=0, world_size=1))


def totals(step):
    return {k: v.total for k, v in step.stats.stats.items()}


@pytest.mark.parametrize("compress", [False, True])
def test_every_line_is_a_document_or_an_excluded_record(tmp_path, compress):
    write_input(tmp_path / "in", compress=compress, bom=True)
    reader = GuardedJsonlReader(str(tmp_path / "in"), exclusion_writer=JsonlWriter(str(tmp_path / "ex"),
                                                                                   compression=None))
    docs = read_all(reader)
    stats = totals(reader)
    assert len(docs) == len(GOOD) == stats["documents"]
    assert stats[ReadStat.EXCLUDED] == len(BAD)
    assert stats[ReadStat.BLANK_LINE] == 3
    for reason in EXCLUDED_REASONS:
        assert stats.get(reason, 0) == sum(r == reason for _, r in BAD), reason
    by_id = {d.id: d for d in docs}
    assert by_id["ok-2"].text == GOOD[1]["text"]  # control characters untouched
    assert by_id["42"].text == "int id" and stats[ReadStat.ID_NOT_A_STRING] == 1
    assert stats[ReadStat.MISSING_ID] == 1
    assert any(i.endswith("/21") and by_id[i].text == "no id here" for i in by_id)  # "<file>/<line index>"
    assert by_id["ok-1"].text == "plain text"  # the BOM of the first line is not part of the record

    excluded = [json.loads(line) for p in (tmp_path / "ex").glob("*.jsonl") for line in p.open()]
    assert len(excluded) == len(BAD)
    reasons = sorted(r["metadata"][GUARD_KEY]["reason"] for r in excluded)
    assert reasons == sorted(r.value for _, r in BAD)
    latin = next(r for r in excluded if r["metadata"][GUARD_KEY]["reason"] == ReadStat.BAD_ENCODING)
    assert latin["text"] == '{"id": "bytes", "text": "caf\\xe9 latin-1"}'  # the raw line, bad byte escaped
    errors = {r["text"]: r["metadata"][GUARD_KEY]["error"] for r in excluded}
    assert errors['{"id": "nul", "text": null}'] == "'text' is null"  # not "no 'text'; keys: ['id', 'text']"
    assert errors['{"id": "nt", "content": "wrong key"}'] == "no 'text'; keys: ['content', 'id']"


def test_datatrove_jsonl_reader_loses_what_the_guard_keeps(tmp_path):
    """Documents the loss the guard exists for: the stock reader silently yields fewer documents."""
    write_input(tmp_path / "in")
    stock = read_all(JsonlReader(str(tmp_path / "in")))
    guarded = read_all(GuardedJsonlReader(str(tmp_path / "in")))
    assert len(guarded) == len(GOOD)
    assert len(stock) < len(guarded)  # a bad byte loses the rest of the file; empty text is skipped silently


def test_a_bad_byte_costs_one_line_not_the_rest_of_the_file(tmp_path):
    (tmp_path / "in").mkdir()
    rows = [json.dumps({"id": str(i), "text": f"doc {i}"}).encode() for i in range(5)]
    rows.insert(2, b'{"id": "x", "text": "\xff\xfe"}')
    (tmp_path / "in" / "a.jsonl").write_bytes(b"\n".join(rows))
    reader = GuardedJsonlReader(str(tmp_path / "in"))
    assert [d.id for d in read_all(reader)] == ["0", "1", "2", "3", "4"]
    assert totals(reader)[ReadStat.BAD_ENCODING] == 1


def test_wrong_text_key_raises(tmp_path):
    write_input(tmp_path / "in")
    with pytest.raises(ValueError, match="text_key"):
        read_all(GuardedJsonlReader(str(tmp_path / "in"), text_key="content_typo"))


def test_limit_skip_and_pickle(tmp_path):
    write_input(tmp_path / "in")
    reader = GuardedJsonlReader(str(tmp_path / "in"), limit=2, skip=1)
    clone = pickle.loads(pickle.dumps(reader))
    assert [d.id for d in read_all(clone)] == ["ok-2", "ok-3"]


def test_the_warning_and_the_excluded_record_name_the_same_line(tmp_path):
    """The warning says "line N" as an editor counts (1-based); the excluded record's ``line`` is that N, and its
    id is datatrove's ``<file>/<index>`` with index N - 1."""
    from datatrove.utils.logging import logger

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "bad.jsonl").write_bytes(b'{"id": "a", "text": "fine"}\n{not json\n')
    messages: list[str] = []
    sink = logger.add(lambda m: messages.append(str(m)), level="WARNING")
    try:
        reader = GuardedJsonlReader(str(folder), exclusion_writer=JsonlWriter(str(tmp_path / "ex"), compression=None))
        read_all(reader)
    finally:
        logger.remove(sink)
    (record,) = [json.loads(line) for p in (tmp_path / "ex").glob("*.jsonl") for line in p.open()]
    (warning,) = [m for m in messages if "record excluded" in m]
    assert "bad.jsonl line 2 " in warning and "(record bad.jsonl/1)" in warning
    assert record["metadata"][GUARD_KEY]["line"] == 2
    assert record["id"] == "bad.jsonl/1"
