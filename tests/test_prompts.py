"""Every prompt the agent sends is a template in prompts/: each renders and documents its variables."""

from pathlib import Path

import pytest

from agent.prompts import PROMPTS_DIR, load_template, render, template_fields

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
    source = (PROMPTS_DIR.parent / "agent" / "backends" / "sa2va" / "grounder.py").read_text()
    assert "Please segment" not in source and "Is it the right object" not in source
