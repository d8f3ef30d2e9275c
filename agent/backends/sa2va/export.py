"""Write a Sa2VA checkpoint in the official file layout, so it loads wherever official ones do.

The VLM's tensors are the family's (`official_tensors`: transformers' names under `model.` for
Qwen-VL, transformers' reverse key conversion for InternVL); SAM 2 goes under
`grounding_encoder.sam2_model.` with `gamma` stored as `g_weight`; the projector is
`text_hidden_fcs.*`. The folder is written next to its target and moved into place at the end.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from agent.backends.sa2va import checkpoint


def saved_tensors(vlm) -> dict[str, torch.Tensor]:
    """What transformers' `save_pretrained` writes (its reverse key conversion applied)."""
    with tempfile.TemporaryDirectory() as scratch:
        vlm.save_pretrained(scratch, safe_serialization=True)
        tensors = {}
        for file in sorted(Path(scratch).glob("*.safetensors")):
            tensors.update(load_file(file))
    return tensors


def sam2_tensors(sam2: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {
        checkpoint.SAM2_PREFIX + (key[: -len("gamma")] + "g_weight" if key.endswith(".gamma") else key): value
        for key, value in sam2.state_dict().items()
    }


def save_checkpoint(
    folder: Path, config: dict, vlm, family, inputs, projector: torch.nn.Module, sam2: torch.nn.Module,
    *, sam2_yaml: Path | None = None, extras: dict | None = None,
) -> Path:
    """Write `folder` (replacing it); `config` is the Sa2VA config.json to write."""
    folder = Path(folder)
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    tensors = family.official_tensors(vlm)
    tensors.update({checkpoint.PROJECTOR_PREFIX + k: v for k, v in projector.state_dict().items()})
    tensors.update(sam2_tensors(sam2))
    # clones: tied embeddings are written as two tensors, as official files hold them
    save_file({k: v.detach().cpu().clone().contiguous() for k, v in tensors.items()}, staging / "model.safetensors", metadata={"format": "pt"})
    inputs.save(staging)
    config = dict(config)
    extras = dict(extras or {})
    if sam2_yaml is not None:
        shutil.copyfile(sam2_yaml, staging / "sam2_config.yaml")
        extras["sam2_config"] = "sam2_config.yaml"
    if extras:
        config[checkpoint.EXTRAS_KEY] = {**(config.get(checkpoint.EXTRAS_KEY) or {}), **extras}
    (staging / "config.json").write_text(json.dumps(config, indent=2))
    if folder.exists():
        shutil.rmtree(folder)
    staging.rename(folder)
    return folder
