"""No file that comes with a checkpoint may run code (`pytest -k trust`).

A checkpoint's SAM 2 yaml is built with hydra's recursive `instantiate`, which calls whatever a `_target_`
names at any depth: each case below would copy a file of the checkpoint to a marker path (or unpickle
one that does) if it were built. They must stop with one line and exit 2 before anything is built.
"""

import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from agent.backends.sa2va import checkpoint
from agent.errors import UserError
from agent.tracker.sam2_config import ALLOWED_TARGETS, load_sam2_config
from conftest import run_cli


def trust_checkpoint(fixture: Path, tmp_path: Path, sam2_config: str | None = None) -> Path:
    """A copy of the Sa2VA fixture's checkpoint whose config.json names `sam2_config` (rvos.sam2_config)."""
    folder = tmp_path / "checkpoint"
    shutil.copytree(fixture / "checkpoint", folder)
    if sam2_config is not None:
        config = json.loads((folder / "config.json").read_text())
        config["rvos"] = {"min_pixels": 4 * 28 * 28, "max_pixels": 16 * 28 * 28, "sam2_config": sam2_config}
        (folder / "config.json").write_text(json.dumps(config))
    return folder


def sam2_yaml(fixture: Path, path: Path, payload: dict | None = None) -> Path:
    """The fixture's (valid) SAM 2 yaml, with `payload` nested three levels down."""
    tree = yaml.safe_load((fixture / "sam2_tiny_test.yaml").read_text())
    if payload is not None:
        tree["model"]["image_encoder"]["neck"]["position_encoding"]["extra"] = payload
    path.write_text(yaml.safe_dump(tree))
    return path


def copy_payload(folder: Path, marker: Path) -> dict:
    return {"_target_": "shutil.copyfile", "src": str(folder / "config.json"), "dst": str(marker)}


def segment(capsys, fixture: Path, model: Path, out: Path, *extra):
    return run_cli(capsys, "segment", fixture / "inputs", "the red square", "--out", out, "--backend", "sa2va",
                   "--model", model, "--answer", "Sure, [SEG].", "--mode", "direct", "--no-overlay", *extra)


def assert_refused(code: int, err: str, out: Path, marker: Path, *words: str) -> None:
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert all(word in err for word in words), err
    assert not marker.exists() and not out.exists()


def test_trust_checkpoint_with_nested_file_copy_target_is_refused(qwen25_fixture, tmp_path, capsys):
    marker = tmp_path / "marker.pth"
    folder = trust_checkpoint(qwen25_fixture, tmp_path, "sam2_config.yaml")
    sam2_yaml(qwen25_fixture, folder / "sam2_config.yaml", copy_payload(folder, marker))
    code, _, err = segment(capsys, qwen25_fixture, folder, tmp_path / "out")
    assert_refused(code, err, tmp_path / "out", marker, "shutil.copyfile", "allow-list", "sam2_config.yaml",
                   "model.image_encoder.neck.position_encoding.extra")


def test_trust_checkpoint_with_a_valid_sam2_yaml_still_segments(qwen25_fixture, tmp_path, capsys):
    """The same checkpoint without the payload: what `rvos train` writes loads and runs."""
    folder = trust_checkpoint(qwen25_fixture, tmp_path, "sam2_config.yaml")
    sam2_yaml(qwen25_fixture, folder / "sam2_config.yaml")
    code, _, err = segment(capsys, qwen25_fixture, folder, tmp_path / "out")
    assert code == 0, err
    assert len(json.loads((tmp_path / "out" / "result.json").read_text())["frames"]) == 8


class CopiesWhenUnpickled:
    def __init__(self, src: Path, dst: Path):
        self.src, self.dst = str(src), str(dst)

    def __reduce__(self):
        return shutil.copyfile, (self.src, self.dst)


def test_trust_checkpoint_with_numpy_load_of_a_pickle_is_refused(qwen25_fixture, tmp_path, capsys):
    marker = tmp_path / "marker.pth"
    folder = trust_checkpoint(qwen25_fixture, tmp_path, "sam2_config.yaml")
    (folder / "extra.npy").write_bytes(pickle.dumps(CopiesWhenUnpickled(folder / "config.json", marker)))
    payload = {"_target_": "numpy.load", "file": str(folder / "extra.npy"), "allow_pickle": True}
    sam2_yaml(qwen25_fixture, folder / "sam2_config.yaml", payload)
    code, _, err = segment(capsys, qwen25_fixture, folder, tmp_path / "out")
    assert_refused(code, err, tmp_path / "out", marker, "numpy.load", "allow-list")


@pytest.mark.parametrize("where", ["parent", "absolute", "symlink"])
def test_trust_checkpoint_config_path_outside_its_folder_is_refused(qwen25_fixture, tmp_path, capsys, where):
    marker = tmp_path / "marker.pth"
    evil = tmp_path / "evil.yaml"  # beside the checkpoint folder, not in it
    name = {"parent": "../evil.yaml", "absolute": str(evil), "symlink": "linked.yaml"}[where]
    folder = trust_checkpoint(qwen25_fixture, tmp_path, name)
    sam2_yaml(qwen25_fixture, evil, copy_payload(folder, marker))
    if where == "symlink":
        (folder / "linked.yaml").symlink_to(evil)
    code, _, err = segment(capsys, qwen25_fixture, folder, tmp_path / "out")
    assert_refused(code, err, tmp_path / "out", marker, "outside the checkpoint folder", name)


def test_trust_users_own_sam2_config_is_checked_too(qwen25_fixture, tmp_path, capsys):
    """A user's --sam2-config may lie anywhere, but it only describes an architecture: the same allow-list."""
    marker = tmp_path / "marker.pth"
    folder = trust_checkpoint(qwen25_fixture, tmp_path)
    config = sam2_yaml(qwen25_fixture, tmp_path / "mine.yaml", copy_payload(folder, marker))
    code, _, err = segment(capsys, qwen25_fixture, folder, tmp_path / "out", "--sam2-config", config)
    assert_refused(code, err, tmp_path / "out", marker, "shutil.copyfile", "mine.yaml")


def test_trust_resolvers_and_weight_files_are_refused_node_references_kept(qwen25_fixture, tmp_path):
    tree = yaml.safe_load((qwen25_fixture / "sam2_tiny_test.yaml").read_text())
    tree["model"]["sam_mask_decoder_extra_args"] = {"dynamic_multimask_stability_delta": "${oc.env:HOME}"}
    (tmp_path / "resolver.yaml").write_text(yaml.safe_dump(tree))
    with pytest.raises(UserError, match=r"resolver.*oc\.env:HOME.*model\.sam_mask_decoder_extra_args"):
        load_sam2_config(tmp_path / "resolver.yaml")

    tree = yaml.safe_load((qwen25_fixture / "sam2_tiny_test.yaml").read_text())
    tree["model"]["image_encoder"]["trunk"]["weights_path"] = str(tmp_path / "hiera.pt")
    (tmp_path / "weights.yaml").write_text(yaml.safe_dump(tree))
    with pytest.raises(UserError, match="weights_path.*model.image_encoder.trunk"):
        load_sam2_config(tmp_path / "weights.yaml")

    tree = yaml.safe_load((qwen25_fixture / "sam2_tiny_test.yaml").read_text())
    size = tree["model"]["image_size"]
    tree["model"]["memory_encoder"]["mask_downsampler"]["total_stride"] = 16
    tree["model"]["mask_stride_copy"] = "${model.memory_encoder.mask_downsampler.total_stride}"
    (tmp_path / "reference.yaml").write_text(yaml.safe_dump(tree))
    node = load_sam2_config(tmp_path / "reference.yaml")
    assert node.mask_stride_copy == 16 and node.image_size == size


def test_trust_allow_list_names_sam2_module_classes():
    from hydra.utils import get_class

    assert all(issubclass(get_class(name), torch.nn.Module) for name in ALLOWED_TARGETS)
    assert not any(name.startswith(("os.", "shutil.", "numpy.", "torch.", "builtins.", "subprocess.")) for name in ALLOWED_TARGETS)


def test_trust_hub_download_fetches_no_code():
    code = (".py", ".pyc", ".so", ".pkl", ".pickle", ".bin", ".pt", ".pth")
    assert not [p for p in checkpoint.SNAPSHOT_PATTERNS if p.endswith(code) or p in ("*", "*.*")]
    # what loading reads: configs, tokenizers, chat templates, weights, and the SAM 2 yaml of `rvos train`
    assert {"*.json", "*.safetensors", "*.jinja", "*.yaml"} <= set(checkpoint.SNAPSHOT_PATTERNS)


def test_trust_hub_cache_links_to_its_own_blobs_count_as_inside(tmp_path):
    """A hub snapshot's files are links into the repo's blobs/: inside. A link anywhere else is not."""
    repo = tmp_path / "models--owner--name"
    snapshot, blobs = repo / "snapshots" / "0123abc", repo / "blobs"
    snapshot.mkdir(parents=True)
    blobs.mkdir()
    (blobs / "f00d").write_text("model: {}\n")
    (snapshot / "sam2_config.yaml").symlink_to(Path("..", "..", "blobs", "f00d"))
    assert checkpoint.file_inside(snapshot, "sam2_config.yaml", "rvos.sam2_config").read_text() == "model: {}\n"
    (tmp_path / "elsewhere.yaml").write_text("model: {}\n")
    (snapshot / "other.yaml").symlink_to(tmp_path / "elsewhere.yaml")
    for name in ("other.yaml", "../../blobs/f00d"):
        with pytest.raises(UserError, match="leads outside the checkpoint folder"):
            checkpoint.file_inside(snapshot, name, "rvos.sam2_config")
