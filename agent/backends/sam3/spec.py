"""The `sam3` backend: SAM 3 (transformers' `Sam3VideoModel` + `Sam3VideoProcessor`) finds and tracks every
instance of a phrase; a hub id (`facebook/sam3`, gated) or a folder in that layout."""

from __future__ import annotations

import importlib.util
import inspect
from typing import Any

from agent.backends.base import Backend
from agent.backends.sam3 import checkpoint
from agent.backends.sam3.checkpoint import DEFAULT_MODEL
from agent.errors import UserError
from agent.backends.hub import quiet_transformers as _quiet_transformers

DTYPES = ("float32", "bfloat16", "float16")
# the config values that decide what SAM 3 outputs (result.json records them)
CONFIG_SETTINGS = ("score_threshold_detection", "new_det_thresh", "det_nms_thresh", "assoc_iou_thresh", "trk_assoc_iou_thresh",
                   "hotstart_delay", "hotstart_unmatch_thresh", "hotstart_dup_thresh", "fill_hole_area", "max_num_objects",
                   "recondition_every_nth_frame", "high_conf_thresh", "high_iou_thresh", "low_res_mask_size")


def load_sam3(model: str = DEFAULT_MODEL, device: str = "cpu", *, dtype: str | None = None) -> Backend:
    """Load a SAM 3 video checkpoint with transformers' own classes (no trust_remote_code, safetensors only).
    `dtype`: float32 (the default on CPU) or bfloat16 (the default on CUDA); float16 on CUDA only."""
    import torch

    dtype = dtype or ("bfloat16" if device.startswith("cuda") else "float32")
    if dtype not in DTYPES:
        raise UserError(f"--dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    if dtype == "float16" and not device.startswith("cuda"):
        raise UserError("--dtype float16 runs on a CUDA GPU only; use float32 or bfloat16 on the CPU")
    folder = checkpoint.resolve_checkpoint(model)
    checkpoint.check_checkpoint(folder)  # before any weights load
    from transformers import Sam3VideoModel, Sam3VideoProcessor

    from agent.backends.sam3.grounder import Sam3Grounder
    from agent.backends.sam3.tracker import Sam3Tracker

    torch_dtype = getattr(torch, dtype)
    with _quiet_transformers():
        network, info = Sam3VideoModel.from_pretrained(folder, dtype=torch_dtype, use_safetensors=True, trust_remote_code=False,
                                                       output_loading_info=True)
        processor = Sam3VideoProcessor.from_pretrained(folder, trust_remote_code=False)
    missing = list(info.get("missing_keys") or [])
    if missing:
        shown = ", ".join(sorted(missing)[:4]) + (" …" if len(missing) > 4 else "")
        raise UserError(f"the checkpoint in {folder} lacks {len(missing)} of SAM 3's weights ({shown}); give a complete "
                        f"SAM 3 video checkpoint (the {DEFAULT_MODEL} layout)")
    network = network.to(device).eval()
    import transformers

    settings = {"dtype": dtype, "transformers": transformers.__version__,
                "config": {name: getattr(network.config, name, None) for name in CONFIG_SETTINGS}}
    from agent.backends.sam3.clicks import ClickTracker

    tracker = Sam3Tracker(network, processor, device, torch_dtype, ClickTracker(folder, device, torch_dtype))
    return Backend("sam3", str(model), device, Sam3Grounder(), tracker, settings=settings)


class Sam3Spec:
    name = "sam3"
    summary = "SAM 3: every instance of a phrase, detected and tracked in one pass (facebook/sam3, gated; or a folder)"
    options = frozenset(inspect.signature(load_sam3).parameters) - {"model", "device"}  # every keyword load_sam3 takes
    devices = ("cpu", "cuda")

    def unavailable_reason(self, model: str | None = None) -> str | None:
        try:
            has_sam3 = importlib.util.find_spec("transformers.models.sam3_video") is not None
        except ModuleNotFoundError:  # no transformers at all
            has_sam3 = False
        if not has_sam3:
            return "this transformers has no SAM 3 (Sam3VideoModel); pip install 'transformers>=5.24'"
        if model is not None:
            return None  # loading says precisely what is wrong with it
        if checkpoint.cached_snapshot(DEFAULT_MODEL) is None:
            return (f"no --model given and {DEFAULT_MODEL} is not downloaded; pass --model {DEFAULT_MODEL} (gated: accept "
                    f"its licence at https://huggingface.co/{DEFAULT_MODEL} and log in) or a local folder")
        return None

    def load(self, model: str | None = None, device: str = "cpu", **options: Any) -> Backend:
        return load_sam3(model or DEFAULT_MODEL, device, **{k: v for k, v in options.items() if v is not None})


SAM3 = Sam3Spec()
