"""Prompt templates: the top-level `prompts/` folder of the repository, shipped in the package.

A template is `prompts/<family>/<name>.txt` (falling back to `prompts/default/<name>.txt`);
leading lines starting with `#` document it and are not sent; `{variable}` fields are filled
with `str.format`. Chat formats (`*.jinja`) and the planner's tool schemas (`planner/tools.json`)
live beside them.

Where they are read from, first match wins:
1. `RVOS_PROMPTS`, a folder laid out like `prompts/` that replaces it as a whole;
2. an installed wheel, which carries `prompts/` as `agent/_prompts/` (see pyproject.toml);
3. a checkout (plain or `pip install -e`), whose `prompts/` sits beside `agent/`.
"""

from __future__ import annotations

import os
import string
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

from agent.errors import UserError

OVERRIDE_VARIABLE = "RVOS_PROMPTS"
SHIPPED_NAME = "_prompts"  # the folder name of prompts/ inside an installed package


def shipped_prompts() -> Path:
    """The templates that came with this installation of the package."""
    installed = resources.files("agent") / SHIPPED_NAME
    if isinstance(installed, Path) and installed.is_dir():
        return installed
    checkout = Path(__file__).resolve().parent.parent
    # pyproject.toml marks a checkout, so that a stray `prompts` folder in site-packages is never taken for ours
    if (checkout / "pyproject.toml").is_file() and (checkout / "prompts").is_dir():
        return checkout / "prompts"
    return Path(str(installed))  # absent: template_path says the installation is incomplete


def prompts_folder(environ: Mapping[str, str] = os.environ) -> Path:
    override = environ.get(OVERRIDE_VARIABLE)
    return Path(override).expanduser() if override else shipped_prompts()


PROMPTS_DIR = prompts_folder()
OVERRIDDEN = bool(os.environ.get(OVERRIDE_VARIABLE))  # the folder is the user's, so a missing file is theirs to fix


def prompt_file(*parts: str) -> Path:
    """A file of the prompts folder, e.g. `prompt_file("planner", "tools.json")`, or one clear error."""
    _check_folder()
    path = PROMPTS_DIR.joinpath(*parts)
    if not path.is_file():
        raise _missing(f"no {'/'.join(parts)} in {PROMPTS_DIR}")
    return path


def template_path(name: str, family: str = "default") -> Path:
    _check_folder()
    for folder in (family, "default"):
        path = PROMPTS_DIR / folder / f"{name}.txt"
        if path.is_file():
            return path
    raise _missing(f"no prompt template {name!r} for {family!r} in {PROMPTS_DIR} (looked for {family}/{name}.txt and default/{name}.txt)")


def _check_folder() -> None:
    if PROMPTS_DIR.is_dir():
        return
    if OVERRIDDEN:
        raise UserError(f"{OVERRIDE_VARIABLE}={PROMPTS_DIR} is not a folder; point it at a copy of {shipped_prompts()} or unset it")
    raise UserError(f"the prompt templates are missing from this installation ({PROMPTS_DIR}); reinstall rvos-agent")


def _missing(message: str) -> Exception:
    # Missing from the shipped folder, it is a bug in the caller, not something a user can mend.
    if OVERRIDDEN:
        return UserError(f"{message}; {OVERRIDE_VARIABLE} replaces the whole folder, so copy {shipped_prompts()} and edit the copy")
    return FileNotFoundError(message)


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
