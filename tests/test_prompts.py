from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest
import yaml

from refinex_datatrove.prompts import Prompt, PromptError, available_prompts, load_prompt, prompt_from_dict


PROMPTS_DIR = Path(__file__).resolve().parents[1] / "refinex_datatrove" / "prompts"


def _valid(**changes):
    data = {"version": 1, "source": "test", "variables": ["DOCUMENT"], "system": "sys", "user": "[[DOCUMENT]]"}
    data.update(changes)
    return data


def test_expert_prompt_loads_with_declared_variable():
    prompt = load_prompt("expert_refine_v1")
    assert prompt.variables == ("DOCUMENT",)
    assert "[[DOCUMENT]]" in prompt.user
    assert "expert_refine_v1" in available_prompts()


def test_expert_prompt_states_the_io_protocol_and_every_rule():
    prompt = load_prompt("expert_refine_v1")
    text = prompt.system + prompt.user
    assert "[doc][[DOCUMENT]][/doc]" in prompt.user
    assert "modification_reason: [doc]" in text and "refined_text: [doc]" in text
    assert "refined_text: [doc][/doc]" in text  # the "delete everything" answer is spelled out
    for n in range(1, 6):
        assert re.search(rf"^\s*{n}\. ", prompt.system, re.M), f"rule {n} missing"
    for letter in "abcd":
        assert re.search(rf"^\s*{letter}\. ", prompt.system, re.M), f"rule 1{letter} missing"


def _examples(system: str) -> list[tuple[str, str]]:
    return re.findall(r"Input: \[doc\](.*?)\[/doc\]\nOutput:.*?refined_text: \[doc\](.*?)\[/doc\]", system, re.S)


def _is_deletion(original: str, refined: str) -> bool:
    it = iter(original)
    return all(ch in it for ch in refined)


def test_worked_examples_are_deletion_only_and_cover_the_paper_cases():
    examples = _examples(load_prompt("expert_refine_v1").system)
    assert len(examples) >= 4
    for original, refined in examples:
        assert _is_deletion(original, refined), (original, refined)
    unchanged = [o for o, r in examples if o == r]
    emptied = [o for o, r in examples if r == ""]
    first_line_removed = [o for o, r in examples if "\n" in o and r == o.split("\n", 1)[1]]
    assert unchanged and emptied and first_line_removed
    assert any("http" in r for _, r in examples)  # a content link is kept


def test_render_fills_verbatim_without_format_escapes():
    prompt = load_prompt("expert_refine_v1")
    doc = "price: ${cost} {0} %s \\1 \\g<0> [[DOCUMENT]] [doc]inner[/doc]"
    messages = prompt.render(DOCUMENT=doc)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert f"[doc]{doc}[/doc]" in messages[1]["content"]
    assert messages[0]["content"] == prompt.system


def test_render_rejects_missing_or_unknown_variables():
    prompt = load_prompt("expert_refine_v1")
    with pytest.raises(PromptError, match="missing"):
        prompt.render()
    with pytest.raises(PromptError, match="unknown"):
        prompt.render(DOCUMENT="x", OTHER="y")


def test_sha256_identifies_the_template():
    a = prompt_from_dict("a", _valid())
    b = prompt_from_dict("b", _valid(user="Doc: [[DOCUMENT]]"))
    assert a.sha256 == prompt_from_dict("c", _valid()).sha256
    assert a.sha256 != b.sha256
    assert re.fullmatch(r"[0-9a-f]{64}", a.sha256)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"version": 1, "source": "s", "variables": [], "system": ""}, "missing required keys"),
        (_valid(user="no placeholder"), "appear in neither"),
        (_valid(system="[[OTHER]]"), "not declared"),
        (_valid(variables="DOCUMENT"), "list of names"),
        (_valid(user=""), "empty"),
        (["not", "a", "mapping"], "mapping"),
    ],
)
def test_invalid_prompt_files_are_rejected(data, match):
    with pytest.raises(PromptError, match=match):
        prompt_from_dict("bad", data)


def test_unknown_prompt_name():
    with pytest.raises(PromptError, match="no prompt named"):
        load_prompt("does_not_exist_v9")
    with pytest.raises(PromptError, match="invalid prompt name"):
        load_prompt("../pyproject")


def test_every_shipped_prompt_file_validates():
    for path in PROMPTS_DIR.glob("*.yaml"):
        prompt = load_prompt(path.stem)
        assert isinstance(prompt, Prompt)
        assert yaml.safe_load(path.read_text())["version"] is not None


def test_prompts_ship_as_package_data(tmp_path):
    pytest.importorskip("setuptools")
    import shutil
    import subprocess
    import sys

    root = PROMPTS_DIR.parents[1]
    src = tmp_path / "src"  # build a copy: setuptools writes build/ and *.egg-info next to the sources
    shutil.copytree(
        root / "refinex_datatrove", src / "refinex_datatrove", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(root / "pyproject.toml", src)
    (src / "README.md").write_text((root / "README.md").read_text() if (root / "README.md").exists() else "x")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(src)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (wheel,) = tmp_path.glob("refinex_datatrove-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "refinex_datatrove/prompts/expert_refine_v1.yaml" in names
    assert "refinex_datatrove/prompts/__init__.py" in names
