"""The package works as `pip install .` leaves it, not only from a checkout.

The wheel is built from a copy of the sources, installed into a folder of its own, and used from a
directory outside the repository with that folder first on PYTHONPATH (dependencies come from the
venv). The venv's editable install of this checkout stays on sys.meta_path, so each check asserts
that what ran came from the installed folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "README.md", "agent", "prompts")  # what a build reads
BUILD_TIMEOUT = 300


def run(cmd, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=BUILD_TIMEOUT, **kwargs)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """(wheel, target folder it was installed into)."""
    base = tmp_path_factory.mktemp("wheel")
    source = base / "source"  # a copy, so the build leaves no build/ or egg-info in the checkout
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in SOURCES:
        item = ROOT / name
        shutil.copytree(item, source / name, ignore=ignore) if item.is_dir() else shutil.copy2(item, source / name)
    env = dict(os.environ, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    built = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", base / "dist", source], env=env)
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = (base / "dist").glob("rvos_agent-*.whl")
    target = base / "site"
    done = run([sys.executable, "-m", "pip", "install", "--no-deps", "--target", target, wheel], env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    return wheel, target


def outside_env(target: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RVOS_PROMPTS", "PYTHONPATH")}
    return env | {"PYTHONPATH": str(target), "HF_HUB_OFFLINE": "1", "PYTHONDONTWRITEBYTECODE": "1"}


def package_files() -> set[str]:
    """Every file the package needs, by its name inside the wheel."""
    files = {p.relative_to(ROOT).as_posix() for p in (ROOT / "agent").rglob("*")
             if p.is_file() and "__pycache__" not in p.parts and not p.name.startswith(".")}
    prompts = {"agent/_prompts/" + p.relative_to(ROOT / "prompts").as_posix() for p in (ROOT / "prompts").rglob("*")
               if p.is_file() and "__pycache__" not in p.parts and not p.name.startswith(".")}
    assert prompts, "prompts/ holds the templates"
    return files | prompts


def test_wheel_holds_every_module_template_and_data_file(installed):
    wheel, _ = installed
    names = {n for n in zipfile.ZipFile(wheel).namelist() if not n.endswith("/")}
    packaged = {n for n in names if ".dist-info/" not in n}
    missing = sorted(package_files() - packaged)
    assert not missing, f"not in the wheel (a new folder under agent/ or prompts/ must be listed in pyproject.toml): {missing}"
    assert all(n.startswith("agent/") for n in packaged), sorted(n for n in packaged if not n.startswith("agent/"))


CHECK_OUTSIDE = r"""
import json, sys
from importlib.machinery import PathFinder
from pathlib import Path
target = Path(sys.argv[1]).resolve()
import agent, agent.prompts as prompts
here = Path(agent.__file__).resolve()
assert here.is_relative_to(target), f"agent imported from {here}, not {target}; meta_path: {sys.meta_path}"
# PathFinder (PYTHONPATH) must answer before the editable install's finder for this to hold everywhere
finders = [type(f).__name__ if not isinstance(f, type) else f.__name__ for f in sys.meta_path]
assert finders.index("PathFinder") < min([i for i, n in enumerate(finders) if "editable" in n.lower()] or [len(finders)]), finders
folder = prompts.PROMPTS_DIR.resolve()
assert folder == target / "agent" / "_prompts", folder
seen = []
for path in sorted(folder.rglob("*")):
    if not path.is_file():
        continue
    name = path.relative_to(folder).as_posix()
    if path.suffix == ".txt":
        family, stem = path.parent.name, path.stem
        body = prompts.load_template(stem, family)
        fields = prompts.template_fields(body)
        text = prompts.render(stem, family, **{f: f"<{f}>" for f in fields})
        assert text.strip() and all(f"<{f}>" in text for f in fields), name
    elif path.suffix == ".json":
        json.loads(prompts.prompt_file(*path.relative_to(folder).parts).read_text())
    else:
        assert prompts.prompt_file(*path.relative_to(folder).parts).read_text().strip(), name
    seen.append(name)
from agent.planner.client import tool_schemas
from agent.backends.sa2va.internvl import chat_template
assert tool_schemas() and chat_template("qwen_chat")
print(json.dumps(seen))
"""


def test_installed_wheel_loads_every_prompt_template_from_outside_the_repository(installed, tmp_path):
    _, target = installed
    done = run([sys.executable, "-c", CHECK_OUTSIDE, target], cwd=tmp_path, env=outside_env(target))
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stdout.strip().splitlines()[-1]))
    assert loaded == {p.relative_to(ROOT / "prompts").as_posix() for p in (ROOT / "prompts").rglob("*") if p.is_file()}


def test_installed_rvos_segments_a_sa2va_checkpoint_from_outside_the_repository(installed, qwen25_fixture, tmp_path):
    _, target = installed
    rvos = target / "bin" / "rvos"  # the console script pip wrote for the wheel; runs with the venv's python
    assert rvos.is_file()
    out = tmp_path / "out"
    run_json = json.loads((qwen25_fixture / "expected" / "one_object" / "run.json").read_text())
    done = run([rvos, "segment", qwen25_fixture / "inputs", "the red square", "--backend", "sa2va",
                "--model", qwen25_fixture / "checkpoint", "--sam2-config", qwen25_fixture / "sam2_tiny_test.yaml",
                "--answer", run_json["forced_answer"], "--mode", "direct", "--device", "cpu", "--out", out],
               cwd=tmp_path, env=outside_env(target))
    assert done.returncode == 0, done.stderr
    assert f"answer: {run_json['forced_answer']}" in done.stdout
    result = json.loads((out / "result.json").read_text())
    assert [o["id"] for o in result["objects"]] == [1] and len(result["frames"]) == run_json["num_frames"]
    assert len(list((out / "masks").glob("*.png"))) == run_json["num_frames"]
