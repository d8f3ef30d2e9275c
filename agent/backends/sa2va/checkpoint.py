"""Official Sa2VA checkpoints: find them (local folder or hub), read their config, split their weights.

No `trust_remote_code`: `config.json` (`model_type: "sa2va_chat"`) is read here and its
tensors mapped onto transformers' and the `sam2` package's own modules.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import safe_open

from agent.errors import UserError
from agent.backends.hub import cached_snapshot, looks_like_hub_id  # noqa: F401  (cached_snapshot: used as checkpoint.cached_snapshot)

SAM2_PREFIX = "grounding_encoder.sam2_model."
PROJECTOR_PREFIX = "text_hidden_fcs."
VLM_PREFIX = "model."
EXTRAS_KEY = "rvos"  # what checkpoints written by `rvos train` add to config.json (SAM 2 yaml, pixel limits)
# Files loading reads, nothing else: configs and tokenizer files (.json, chat templates .jinja, merges/vocab
# .txt, sentencepiece .model, .tiktoken), safetensors weights (never .bin/.pt pickles), and the SAM 2 yaml
# a checkpoint of `rvos train` carries (checked before it is built). No .py: no remote code is ever run.
SNAPSHOT_PATTERNS = ["*.json", "*.safetensors", "*.jinja", "*.txt", "*.model", "*.tiktoken", "*.yaml"]


def resolve_checkpoint(model: str) -> Path:
    """A local folder, or a hub id downloaded through huggingface_hub's cache."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise UserError(f"--model {model} is a file; give a checkpoint folder or a hub id such as ByteDance/Sa2VA-Qwen2_5-VL-3B")
    if not looks_like_hub_id(model):
        raise UserError(f"--model {model}: no such folder, and not a hub id (owner/name)")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(model, allow_patterns=SNAPSHOT_PATTERNS))
    except Exception as exc:  # offline, unknown repo, auth: all mean "cannot get it here"
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"cannot get {model} from the Hugging Face hub ({type(exc).__name__}: {reason}); "
            "check the id and the connection, or download it elsewhere and pass the folder with --model"
        ) from None


def file_inside(folder: Path, name: object, what: str) -> Path:
    """`folder / name` for a file the checkpoint names (`what`: where it names it), refused unless it stays
    inside the folder, symlinks resolved. A hub cache's snapshot links each file to its repo's `blobs/`,
    which counts as inside."""
    if not isinstance(name, str) or not name.strip():
        raise UserError(f"the checkpoint's {what} must name a file inside {folder}, not {name!r}")
    base = Path(folder).resolve()
    lexical = Path(os.path.normpath(base / name))  # an absolute `name` replaces base here
    real = lexical.resolve()
    homes = [base] + ([base.parent.parent / "blobs"] if base.parent.name == "snapshots" else [])
    if not lexical.is_relative_to(base) or not any(real.is_relative_to(home) for home in homes):
        raise UserError(f"the checkpoint's {what} ({name}) leads outside the checkpoint folder {folder}; "
                        "refusing it (a checkpoint may only name files inside its own folder)")
    if not real.is_file():
        raise UserError(f"the checkpoint's {what} names {name}, which is not a file in {folder}")
    return lexical


def read_config(folder: Path) -> dict:
    path = folder / "config.json"
    if not path.is_file():
        raise UserError(f"{folder} has no config.json; give a Sa2VA checkpoint folder")
    config = json.loads(path.read_text())
    if config.get("model_type") != "sa2va_chat":
        raise UserError(
            f"{folder} holds a {config.get('model_type')!r} model, not Sa2VA (model_type sa2va_chat); "
            "give a Sa2VA checkpoint"
        )
    return config


def weight_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [folder / name for name in names]
    single = folder / "model.safetensors"
    if single.is_file():
        return [single]
    raise UserError(f"{folder} has no model.safetensors (or index); only safetensors weights are loaded")


def load_tensors(folder: Path, prefix: str) -> dict[str, torch.Tensor]:
    """Tensors whose names start with `prefix`, the prefix removed."""
    tensors = {}
    for file in weight_files(folder):
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():
                if key.startswith(prefix):
                    tensors[key[len(prefix):]] = f.get_tensor(key)
    return tensors


def sam2_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    """SAM 2 weights under the `sam2` package's names (Sa2VA stores CXBlock `gamma` as `g_weight`)."""
    return {
        (key[: -len("g_weight")] + "gamma" if key.endswith(".g_weight") else key): value
        for key, value in load_tensors(folder, SAM2_PREFIX).items()
    }


def check_keys(what: str, missing: list[str], unexpected: list[str]) -> None:
    if missing or unexpected:
        def show(keys):
            return ", ".join(sorted(keys)[:4]) + (" …" if len(keys) > 4 else "")

        raise UserError(
            f"the checkpoint's {what} weights do not fit the architecture: {len(missing)} missing "
            f"({show(missing)}), {len(unexpected)} unexpected ({show(unexpected)}); "
            "check that the checkpoint is an official Sa2VA one (or pass the matching --sam2-config)"
        )
