"""Prompt templates from the top-level `prompts/` folder.

A template is `prompts/<family>/<name>.txt` (falling back to `prompts/default/<name>.txt`);
leading lines starting with `#` document it and are not sent; `{variable}` fields are filled
with `str.format`.
"""

from __future__ import annotations

import os
import string
from pathlib import Path

PROMPTS_DIR = Path(os.environ.get("RVOS_PROMPTS", Path(__file__).resolve().parent.parent / "prompts"))


def template_path(name: str, family: str = "default") -> Path:
    for folder in (family, "default"):
        path = PROMPTS_DIR / folder / f"{name}.txt"
        if path.is_file():
            return path
    raise FileNotFoundError(f"no prompt template {name!r} for {family!r} in {PROMPTS_DIR}")


def load_template(name: str, family: str = "default") -> str:
    lines = template_path(name, family).read_text().splitlines()
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    return "\n".join(lines).strip("\n")


def template_fields(template: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(template) if field}


def render(name: str, family: str = "default", **values: str) -> str:
    template = load_template(name, family)
    missing = template_fields(template) - set(values)
    if missing:
        raise KeyError(f"prompt {name!r} needs {sorted(missing)}")
    return template.format(**values)
