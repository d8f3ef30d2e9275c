"""Every prompt the agent sends is a template in prompts/: each renders and documents its variables."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import agent
from agent.prompts import PROMPTS_DIR, OVERRIDE_VARIABLE, load_template, prompts_folder, render, template_fields

ROOT = Path(__file__).resolve().parent.parent

TEMPLATES = sorted(PROMPTS_DIR.glob("*/*.txt"))


def test_the_prompts_folder_has_every_step():
    names = {p.stem for p in TEMPLATES}
    assert {"segment", "reason", "retry", "verify", "system"} <= names


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_template_renders_and_documents_its_variables(path: Path):
    header = "".join(line for line in path.read_text().splitlines(True) if line.startswith("#"))
    assert header, "a template starts with comment lines that say what it is for"
    assert "Variables:" in header
    body = load_template(path.stem, path.parent.name)
    fields = template_fields(body)
    for field in fields:
        assert "{" + field + "}" in header, f"{field} is used but not documented"
    text = render(path.stem, path.parent.name, **{f: f"<{f}>" for f in fields} | {"feedback": "<feedback>"})
    assert text.strip() and "{" not in text and not text.startswith("#")
    for field in fields:
        assert f"<{field}>" in text


def test_no_prompt_strings_in_the_sa2va_grounder():
    source = (Path(agent.__file__).parent / "backends" / "sa2va" / "grounder.py").read_text()
    assert "Please segment" not in source and "Is it the right object" not in source


def test_a_checkout_reads_its_own_prompts_folder():
    """From a checkout (plain or `pip install -e`), editing prompts/ takes effect: no copy stands in between."""
    assert prompts_folder({}) == ROOT / "prompts"
    assert PROMPTS_DIR == prompts_folder(os.environ)  # what the package reads: the checkout's, or the override


def test_the_override_variable_names_the_folder(tmp_path):
    assert prompts_folder({OVERRIDE_VARIABLE: str(tmp_path)}) == tmp_path
    assert prompts_folder({OVERRIDE_VARIABLE: ""}) == ROOT / "prompts"


def python_with_override(folder: Path, code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, **{OVERRIDE_VARIABLE: str(folder)})
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


def test_the_override_variable_replaces_the_templates(tmp_path):
    mine = tmp_path / "prompts"
    shutil.copytree(ROOT / "prompts", mine)
    (mine / "default" / "segment.txt").write_text("# Mine.\n# Variables: {expression}\nFind {expression}, please.\n")
    done = python_with_override(mine, "from agent.prompts import render; print(render('segment', 'qwen2_5_vl', expression='the swan'))")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Find the swan, please."


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "absent", "is not a folder"),
    (lambda d: d.mkdir() or d, "RVOS_PROMPTS replaces the whole folder"),
], ids=["missing-folder", "missing-template"])
def test_a_wrong_override_is_one_clear_error(tmp_path, make, message):
    folder = make(tmp_path / "mine")
    done = python_with_override(folder, "from agent.prompts import render; render('segment', expression='x')")
    assert done.returncode != 0
    assert "UserError" in done.stderr and message in done.stderr and OVERRIDE_VARIABLE in done.stderr
