"""Evidence CI can't skip: without the shared test data a test that needs it skips (with the path and how
to get it) on a developer's machine, and fails under CI (CI=true, or RVOS_REQUIRE_SHARED=1 as `.ci/run`
sets it). Run as a separate pytest on one test that needs ../shared, with RVOS_SHARED pointing nowhere."""

import os
import subprocess
import sys

import pytest

from conftest import ROOT

NEEDS_SHARED = "tests/test_long_video.py::test_object_that_exits_and_comes_back_keeps_its_id"


def pytest_in(tmp_path, *args, **env):
    base = {k: v for k, v in os.environ.items() if k not in ("CI", "RVOS_REQUIRE_SHARED")}
    base |= {"RVOS_SHARED": str(tmp_path / "nowhere"), **env}
    done = subprocess.run([sys.executable, "-m", "pytest", "-rfs", "-p", "no:cacheprovider", "-o", "addopts=", *args],
                          cwd=ROOT, env=base, capture_output=True, text=True, timeout=300)
    return done.returncode, done.stdout + done.stderr


def test_missing_shared_data_skips_with_the_reason(tmp_path):
    code, out = pytest_in(tmp_path, NEEDS_SHARED)
    assert code == 0 and "1 skipped" in out, out
    assert f"not found at {tmp_path / 'nowhere' / 'data' / 'refdavis-mini3'}" in out and "RVOS_SHARED" in out


@pytest.mark.parametrize("env", [{"CI": "true"}, {"RVOS_REQUIRE_SHARED": "1"}])
def test_missing_shared_data_fails_under_ci(tmp_path, env):
    code, out = pytest_in(tmp_path, NEEDS_SHARED, **env)
    assert code == 1 and "1 error" in out and "skipped" not in out, out  # fails in the fixture, before the test
    assert f"not found at {tmp_path / 'nowhere' / 'data' / 'refdavis-mini3'}" in out and "required under CI" in out


def test_a_test_that_checks_shared_itself_fails_under_ci_too(tmp_path):
    """The rule also holds for a test that looks for its data itself and skips naming ../shared."""
    (tmp_path / "test_own_check.py").write_text(
        "import pytest\n\ndef test_it():\n    pytest.skip('fixture not found at x (../shared is absent)')\n")
    code, out = pytest_in(tmp_path, str(tmp_path / "test_own_check.py"), "-p", "conftest", "--rootdir", str(tmp_path),
                          CI="true", PYTHONPATH=str(ROOT / "tests"))
    assert code == 1 and "1 failed" in out and "../shared is absent" in out, out
    code, out = pytest_in(tmp_path, str(tmp_path / "test_own_check.py"), "-p", "conftest", "--rootdir", str(tmp_path),
                          PYTHONPATH=str(ROOT / "tests"))
    assert code == 0 and "1 skipped" in out, out
