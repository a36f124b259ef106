import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from refinex_datatrove.cli.distill import EXIT_REJECTED
from refinex_datatrove.cli.distill import run as run_distill
from refinex_datatrove.program import Chunk, ChunkProgram, execute_document, parse_program, split_lines

REPO = Path(__file__).resolve().parents[2]

ORIGINAL = "Home | Blog | Café\nThe real article text.\nShare: é Twitter Facebook\nMore article text.\nCopyright"
REFINED = "The real article text.\nTwitter Facebook\nMore article text."


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return str(path)


def ns(original, refined, **kw):
    base = {"window": None, "unit": "chars", "min_deleted_chars": 10, "rewrite_span_limit": 20}
    base.update(kw)
    return argparse.Namespace(original=original, refined=refined, **base)


def test_one_chunk_prints_the_program(tmp_path, capsys):
    rc = run_distill(ns(write(tmp_path, "a.txt", ORIGINAL), write(tmp_path, "b.txt", REFINED)))
    out, err = capsys.readouterr()
    assert rc == 0
    assert out == 'remove_lines(1, 1)\nremove_str(3, "Share: é ")\nremove_lines(5, 5)\n'
    assert "deleted" in err
    # the printed program, run on the original, gives the refined text
    lines = split_lines(ORIGINAL)
    res = execute_document(ORIGINAL, [ChunkProgram(Chunk(0, len(lines)), out)])
    assert res.text == REFINED


def test_several_chunks_are_labelled(tmp_path, capsys):
    rc = run_distill(ns(write(tmp_path, "a.txt", ORIGINAL), write(tmp_path, "b.txt", REFINED), window=30))
    out, _ = capsys.readouterr()
    assert rc == 0
    headers = [line for line in out.splitlines() if line.startswith("# chunk lines ")]
    assert len(headers) >= 2
    assert headers[0].startswith("# chunk lines 1-")
    assert not parse_program(out).invalid  # comments are ignored by the parser


def test_rejected_pair_exits_3_with_the_reason(tmp_path, capsys):
    a = write(tmp_path, "a.txt", "Intro text.\nNavigation bar text here")
    b = write(tmp_path, "b.txt", "Intro" + "Z" * 25 + " text.")
    rc = run_distill(ns(a, b))
    out, err = capsys.readouterr()
    assert rc == EXIT_REJECTED == 3
    assert out == ""
    assert "insertion_too_long" in err


def test_rewrite_span_limit_zero_disables_the_filter(tmp_path, capsys):
    a = write(tmp_path, "a.txt", "Intro text.\nNavigation bar text here")
    b = write(tmp_path, "b.txt", "Intro" + "Z" * 25 + " text.")
    assert run_distill(ns(a, b, rewrite_span_limit=0)) == 0
    assert capsys.readouterr().out == "remove_lines(2, 2)\n"


@pytest.mark.parametrize("problem", ["missing", "directory", "not_utf8"])
def test_unreadable_input_exits_2(tmp_path, capsys, problem):
    good = write(tmp_path, "b.txt", REFINED)
    if problem == "missing":
        bad = str(tmp_path / "nope.txt")
    elif problem == "directory":
        bad = str(tmp_path)
    else:
        bad = str(tmp_path / "latin1.txt")
        Path(bad).write_bytes("caf\xe9".encode("latin-1"))
    rc = run_distill(ns(bad, good))
    out, err = capsys.readouterr()
    assert rc == 2 and out == ""
    assert "original file" in err and bad in err


def test_module_entry_point_and_refinex_console_script(tmp_path):
    a, b = write(tmp_path, "a.txt", ORIGINAL), write(tmp_path, "b.txt", REFINED)
    env = {**os.environ, "LC_ALL": "C", "PYTHONIOENCODING": ""}
    proc = subprocess.run(
        [sys.executable, "-m", "refinex_datatrove.cli", "distill", "--original", a, "--refined", b],
        check=False,
        cwd=REPO,
        capture_output=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode("utf-8").splitlines()[1] == 'remove_str(3, "Share: é ")'
    proc = subprocess.run(
        [sys.executable, "-m", "refinex_datatrove.cli", "distill", "--original", a, "--refined", str(tmp_path / "x")],
        check=False,
        cwd=REPO,
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert b"does not exist" in proc.stderr


def test_an_invented_clause_cut_into_short_spans_is_rejected_as_inserted_text(tmp_path, capsys):
    """The alignment matches stray letters of the deleted line inside the invented clause, so no single insert
    span reaches 20 characters; the run of new text (tiny matched islands included) does."""
    a = write(tmp_path, "a.txt", "Keep this line.\nDrop this line.")
    b = write(tmp_path, "b.txt", "Keep this line, and a brand new clause the expert invented.")
    rc = run_distill(ns(a, b))
    out, err = capsys.readouterr()
    assert rc == EXIT_REJECTED and out == ""
    assert "inserted_text" in err and "brand new clause" in err
