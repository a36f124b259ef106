from __future__ import annotations

import argparse
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from refinex_datatrove import cli

REPO = Path(__file__).resolve().parents[1]
TEXT = "Menu | Home\r\nReal content here.\nMore content.\n\nShare on X"  # CRLF and an empty line, no final newline


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "refinex_datatrove.cli", *args], capture_output=True, cwd=REPO, env=env, timeout=120
    )


@pytest.fixture
def doc_file(tmp_path: Path) -> Path:
    path = tmp_path / "doc.txt"
    path.write_bytes(TEXT.encode("utf-8"))
    return path


def _program(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "program.txt"
    path.write_text(text, encoding="utf-8")
    return path


def test_render_numbers_every_line(doc_file, capsys):
    assert cli.main(["render", str(doc_file)]) == 0
    out = capsys.readouterr().out
    assert out == "[1] Menu | Home\r\n[2] Real content here.\n[3] More content.\n[4] \n[5] Share on X\n"


def test_render_with_window_prints_one_block_per_chunk(tmp_path, capsys):
    path = tmp_path / "doc.txt"
    path.write_text("aaaa\nbbbb\n" + "c" * 30 + "\ndddd", encoding="utf-8")
    assert cli.main(["render", str(path), "--window", "12"]) == 0
    assert capsys.readouterr().out.split("\n") == [
        "### chunk 1: lines 1-2",
        "[1] aaaa",
        "[2] bbbb",
        "### chunk 2: lines 3-3 (skipped)",
        "[1] " + "c" * 30,
        "### chunk 3: lines 4-4",
        "[1] dddd",
        "",
    ]


def test_render_words_unit(tmp_path, capsys):
    path = tmp_path / "doc.txt"
    path.write_text("one two\nthree four\nfive", encoding="utf-8")
    assert cli.main(["render", str(path), "--window", "2", "--unit", "words"]) == 0
    out = capsys.readouterr().out
    assert out.count("### chunk") == 3 and "(skipped)" not in out


def test_apply_prints_refined_text_exactly(doc_file, tmp_path):
    program = _program(tmp_path, 'remove_lines(1, 1)\nremove_str(2, " here")\n')
    res = _cli("apply", "--program", str(program), str(doc_file))
    assert res.returncode == 0, res.stderr
    assert res.stdout == b"Real content.\nMore content.\n\nShare on X"  # no newline added
    assert b"remove_lines=1" in res.stderr and b"remove_str=1" in res.stderr


def test_apply_keeps_crlf_and_unicode_bytes(tmp_path):
    text = "garbage ▓╚\r\nCafé — “quoted”\r\n"
    path = tmp_path / "doc.txt"
    path.write_bytes(text.encode("utf-8"))
    res = _cli("apply", "--program", str(_program(tmp_path, 'remove_str(1, " ▓╚")')), str(path))
    assert res.returncode == 0, res.stderr
    assert res.stdout == "garbage\r\nCafé — “quoted”\r\n".encode()


def test_apply_reports_skipped_calls_and_still_exits_zero(doc_file, tmp_path, capsys):
    program = _program(tmp_path, 'remove_lines(9, 9)\nremove_str(2, "absent")\nremove_lines(5, 5)\nbogus(')
    assert cli.main(["apply", "--program", str(program), str(doc_file)]) == 0
    captured = capsys.readouterr()
    assert captured.out == TEXT.rsplit("\n", 1)[0]
    assert "line_out_of_range=1" in captured.err and "str_not_found=1" in captured.err
    assert "invalid_call=1" in captured.err and "syntax_error=1" in captured.err
    assert captured.err.count("\n") == 1  # one line


def test_apply_keep_chunk_policy(doc_file, tmp_path, capsys):
    program = _program(tmp_path, "remove_lines(1, 1)\nremove_lines(2 2)")
    assert cli.main(["apply", "--policy", "keep_chunk", "--program", str(program), str(doc_file)]) == 0
    assert capsys.readouterr().out == TEXT
    assert cli.main(["apply", "--program", str(program), str(doc_file)]) == 0
    assert capsys.readouterr().out == TEXT.split("\n", 1)[1]


def test_apply_uses_render_numbering(doc_file, tmp_path, capsys):
    cli.main(["render", str(doc_file)])
    rendered = capsys.readouterr().out.split("\n")
    n = next(i for i, line in enumerate(rendered, start=1) if line.endswith("More content."))
    cli.main(["apply", "--program", str(_program(tmp_path, f"remove_lines({n}, {n})")), str(doc_file)])
    assert "More content." not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: d / "missing.txt", "does not exist"),
        (lambda d: d, "is a directory"),
        (lambda d: (d / "latin1.txt").write_bytes("café".encode("latin-1")) and d / "latin1.txt", "not valid UTF-8"),
    ],
    ids=["missing", "directory", "not_utf8"],
)
@pytest.mark.parametrize("command", ["render", "apply_file", "apply_program"])
def test_unreadable_files_exit_2_with_a_clear_message(tmp_path, doc_file, capsys, setup, message, command):
    bad = str(setup(tmp_path))
    good_program = str(_program(tmp_path, "keep_all()"))
    argv = {
        "render": ["render", bad],
        "apply_file": ["apply", "--program", good_program, bad],
        "apply_program": ["apply", "--program", bad, str(doc_file)],
    }[command]
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.out == ""


def test_unreadable_file_via_subprocess(tmp_path):
    res = _cli("render", str(tmp_path / "nope.txt"))
    assert res.returncode == 2
    assert b"does not exist" in res.stderr and b"Traceback" not in res.stderr


@pytest.mark.parametrize("args", [["--help"], ["render", "--help"], ["apply", "--help"]])
def test_help(args):
    res = _cli(*args)
    assert res.returncode == 0
    assert b"usage: refinex" in res.stdout


def test_no_subcommand_prints_help_and_exits_2(capsys):
    assert cli.main([]) == 2
    assert "render" in capsys.readouterr().err


def test_usage_errors_exit_2(doc_file):
    with pytest.raises(SystemExit) as e:
        cli.main(["apply", str(doc_file)])  # --program is required
    assert e.value.code == 2
    with pytest.raises(SystemExit):
        cli.main(["render", str(doc_file), "--window", "0"])


def test_every_subcommand_module_is_registered_under_its_own_name():
    """One module per subcommand in ``refinex_datatrove/cli/``, each registered once with ``add_parser``/``run``."""
    import pkgutil

    import refinex_datatrove.cli as package

    modules = {m.name for m in pkgutil.iter_modules(package.__path__)} - {"common", "__main__"}
    assert modules == set(cli.SUBCOMMANDS)
    parser = cli.build_parser()
    choices = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert set(choices) == set(cli.SUBCOMMANDS)
    for name, module in cli.SUBCOMMANDS.items():
        assert module.__name__ == f"refinex_datatrove.cli.{name}"
        assert choices[name].get_default("_run") is module.run


def test_a_new_subcommand_is_one_entry(monkeypatch, capsys):
    module = types.ModuleType("fake_refinex_subcommand")

    def add_parser(subparsers):
        subparsers.add_parser("hello").add_argument("--name", default="world")

    def run(args):
        print(f"hello {args.name}")
        return 3

    module.add_parser, module.run = add_parser, run
    monkeypatch.setitem(cli.SUBCOMMANDS, "hello", module)
    assert cli.main(["hello", "--name", "refinex"]) == 3
    assert capsys.readouterr().out == "hello refinex\n"


def test_the_command_line_imports_no_heavy_library():
    """``refinex --help`` loads every subcommand module: none may import datatrove, torch or transformers."""
    code = (
        "import sys, refinex_datatrove.cli as c; c.build_parser(); "
        "print(sorted(m for m in ('datatrove', 'torch', 'transformers', 'trl', 'vllm') if m in sys.modules))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_apply_on_a_crlf_file_keeps_its_crlf_byte_for_byte(tmp_path):
    """README: line handling is byte for byte; ``a\\r\\nb\\r\\nc`` minus line 2 is ``a\\r\\nc``, through the real
    console entry point with stdout a pipe."""
    text, program = tmp_path / "crlf.txt", tmp_path / "p.txt"
    text.write_bytes(b"a\r\nb\r\nc")
    program.write_bytes(b"remove_lines(2, 2)\r\n")
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    for cmd in (["apply", "--program", str(program), str(text)], ["render", str(text)]):
        res = subprocess.run([sys.executable, "-m", "refinex_datatrove.cli", *cmd], capture_output=True, env=env)
        assert res.returncode == 0, res.stderr
        expected = b"a\r\nc" if cmd[0] == "apply" else b"[1] a\r\n[2] b\r\n[3] c\n"
        assert res.stdout == expected


def test_apply_on_a_terminal_starts_the_summary_on_its_own_line(tmp_path):
    """In a terminal (stdout and stderr both a pty) the refined text has no final newline: the summary must not be
    glued to its last line, and stdout keeps the text byte for byte."""
    import pty

    text, program = tmp_path / "doc.txt", tmp_path / "p.txt"
    text.write_bytes(b"keep me\nnav | menu\nsee you next month")
    program.write_bytes(b"remove_lines(2, 2)\n")
    leader, follower = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "refinex_datatrove.cli", "apply", "--program", str(program), str(text)],
        stdout=follower, stderr=follower, env=env, timeout=120,
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    screen = b"".join(chunks).replace(b"\r\n", b"\n")
    assert proc.returncode == 0
    assert b"see you next month\napplied: " in screen
    assert b"monthapplied" not in screen
    # through a pipe nothing changes: stdout is exactly the refined text
    res = _cli("apply", "--program", str(program), str(text))
    assert res.stdout == b"keep me\nsee you next month"
    assert res.stderr.startswith(b"applied: ")


def test_refine_terminal_filter_drops_datatrove_info_records_only():
    """``refinex refine`` shows datatrove's warnings and errors, not its INFO / SUCCESS records (stats blocks)."""
    import io

    from refinex_datatrove.cli.refine import DatatroveInfoFilter

    sink = io.StringIO()
    quiet = DatatroveInfoFilter(sink)
    records = {
        "2026-12-02 08:59:41.382 | SUCCESS  | datatrove.executor.base:_run_for_rank:140 - Processing done\n": False,
        "2026-12-02 08:59:41.384 | INFO     | datatrove.executor.base:_run_for_rank:147 - \n\nStats: Task 0\n": False,
        "\x1b[32m2026-12-02 08:59:41.390\x1b[0m | \x1b[1mINFO    \x1b[0m | datatrove - colored\n": False,
        "[NODE 1] 2026-12-02 08:59:41.390 | INFO     | datatrove - multi-node\n": False,
        "2026-12-02 08:59:41.390 | WARNING  | refinex - bad line 2 excluded\n": True,
        "2026-12-02 08:59:41.390 | ERROR    | datatrove - a task failed\n": True,
        "refine task 0: 12/36 docs, 30 chunks, ETA 1m02s\n": True,
        "INFO is a word a user may print\n": True,
    }
    for text in records:
        assert quiet.write(text) == len(text)
    assert sink.getvalue() == "".join(t for t, shown in records.items() if shown)
