"""SAM 3 checkpoints (transformers' `sam3_video` layout): a local folder or a hub id, checked before anything loads.

Nothing from a checkpoint runs as code: its configs must name transformers' own SAM 3 classes (no `auto_map`,
which is how a checkpoint would ask for its own code), and only safetensors weights are read.
"""

from __future__ import annotations

import json
from pathlib import Path

from agent.errors import UserError
from agent.backends.hub import cached_snapshot, looks_like_hub_id  # noqa: F401  (cached_snapshot: used as checkpoint.cached_snapshot)

DEFAULT_MODEL = "facebook/sam3"
MODEL_TYPE = "sam3_video"
# Files loading reads, nothing else: configs, tokenizer files (vocab/merges .txt) and safetensors weights; never a
# pickle (.pt/.bin, such as the original sam3.pt beside them) and never .py.
SNAPSHOT_PATTERNS = ["*.json", "*.safetensors", "*.txt"]
CONFIG_FILES = ("config.json", "processor_config.json", "preprocessor_config.json", "tokenizer_config.json",
                "video_preprocessor_config.json")


def _access_help(model: str, option: str = "--model") -> str:
    return (f"request access at https://huggingface.co/{model} (accept the licence), log in with `hf auth login` "
            f"or set HF_TOKEN, and run again; or pass a downloaded folder with {option}")


def resolve_checkpoint(model: str, option: str = "--model") -> Path:
    """A local folder, or a hub id downloaded through huggingface_hub's cache (configs, tokenizer, safetensors);
    `option`: the command-line option that gave it, for the messages."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise UserError(f"{option} {model} is a file; give a SAM 3 checkpoint folder or a hub id such as {DEFAULT_MODEL}")
    if not looks_like_hub_id(model):
        raise UserError(f"{option} {model}: no such folder, and not a hub id (owner/name) such as {DEFAULT_MODEL}")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return Path(snapshot_download(model, allow_patterns=SNAPSHOT_PATTERNS))
    except GatedRepoError:  # also what a gated repo answers when no token is given
        raise UserError(f"{model} is gated on the Hugging Face hub and this machine has no access to it: {_access_help(model, option)}") from None
    except RepositoryNotFoundError:  # a private or gated repo looks absent to a request without a token
        raise UserError(f"{model} is not on the Hugging Face hub, or not visible without a token: check the id; "
                        f"if it is gated, {_access_help(model, option)}") from None
    except LocalEntryNotFoundError:
        raise UserError(f"cannot reach the Hugging Face hub and {model} is not in its cache here; connect (and log in: "
                        f"`hf auth login`), or download it elsewhere and pass the folder with {option}") from None
    except Exception as exc:  # offline, a proxy, a full disk: all mean "cannot get it here"
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot get {model} from the Hugging Face hub ({type(exc).__name__}: {reason}); check the id and "
                        f"the connection, or download it elsewhere and pass the folder with {option}") from None


def _names_code(value: object) -> bool:
    """Whether a config (at any depth) asks for a checkpoint's own code."""
    if isinstance(value, dict):
        return "auto_map" in value or any(_names_code(v) for v in value.values())
    if isinstance(value, list):
        return any(_names_code(v) for v in value)
    return False


def check_checkpoint(folder: Path) -> dict:
    """The folder's config once it is a SAM 3 video checkpoint that names no code and has safetensors weights."""
    path = folder / "config.json"
    if not path.is_file():
        raise UserError(f"{folder} has no config.json; give a SAM 3 checkpoint folder (the {DEFAULT_MODEL} layout)")
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path}: {exc}; give a SAM 3 checkpoint folder") from None
    if not isinstance(config, dict) or config.get("model_type") != MODEL_TYPE:
        kind = config.get("model_type") if isinstance(config, dict) else None
        raise UserError(f"{folder} holds a {kind!r} model, not SAM 3 video (model_type {MODEL_TYPE}); "
                        f"give a checkpoint in the {DEFAULT_MODEL} layout")
    for name in CONFIG_FILES:
        file = folder / name
        if file.is_file():
            try:
                names_code = _names_code(json.loads(file.read_text()))
            except ValueError:
                raise UserError(f"{file} is not valid JSON; give an intact SAM 3 checkpoint") from None
            if names_code:
                raise UserError(f"{file} names code of its own (auto_map); refusing it: only transformers' own SAM 3 "
                                "classes are loaded (no trust_remote_code)")
    if not ((folder / "model.safetensors").is_file() or (folder / "model.safetensors.index.json").is_file()):
        raise UserError(f"{folder} has no model.safetensors (or index); only safetensors weights are loaded")
    return config
