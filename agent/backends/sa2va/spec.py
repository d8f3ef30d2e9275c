"""The `sa2va` backend: an official Sa2VA checkpoint (hub id or folder) as grounder + SAM 2 tracker."""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path
from typing import Any

import torch

from agent.backends.base import Backend
from agent.backends.sa2va import checkpoint
from agent.backends.sa2va.families import family_of
from agent.backends.sa2va.grounder import Sa2VAGrounder
from agent.backends.sa2va.qwen_vl import OFFICIAL_MAX_PIXELS, OFFICIAL_MIN_PIXELS
from agent.errors import UserError
from agent.backends.sa2va.inference import build_tracker, default_inference
from agent.tracker.sam2_config import load_sam2_config
from agent.backends.hub import quiet_transformers as _quiet_transformers

DEFAULT_MODEL = "ByteDance/Sa2VA-Qwen2_5-VL-3B"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _quantization(quantize: str | None, device: str):
    if quantize is None:
        return None
    if not device.startswith("cuda"):
        raise UserError(f"--quantize {quantize} needs a CUDA GPU (bitsandbytes); drop --quantize on {device}")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise UserError("--quantize needs bitsandbytes: pip install 'rvos-agent[quant]'") from None
    from transformers import BitsAndBytesConfig

    if quantize == "4bit":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.bfloat16)
    return BitsAndBytesConfig(load_in_8bit=True)


def load_vlm(folder: Path, config: dict, dtype: torch.dtype, device: str, quantize: str | None = None, **pixels: int):
    """The VLM through transformers' `from_pretrained` (its dtype, device map and quantisation), and its input builder."""
    family = family_of(config)
    with _quiet_transformers():
        inputs = family.inputs(folder, config, **pixels)
    model_class, options = family.model_and_options(config, inputs)
    options.update(output_loading_info=True, dtype=dtype)
    quantization = _quantization(quantize, device)
    if quantization is not None:
        options.update(quantization_config=quantization, device_map={"": device})
    with _quiet_transformers():
        vlm, info = model_class.from_pretrained(folder, **options)
    ours = (checkpoint.SAM2_PREFIX, checkpoint.PROJECTOR_PREFIX)
    unexpected = [k for k in info["unexpected_keys"] if not k.startswith(ours)]
    checkpoint.check_keys("language model", list(info["missing_keys"]), unexpected)
    if quantization is None:
        vlm = vlm.to(device)
    return vlm.eval(), inputs, family


def load_projector(folder: Path) -> torch.nn.Sequential:
    """`text_hidden_fcs`: Linear(d, d) → ReLU → Linear(d, sam2 dim)."""
    weights = checkpoint.load_tensors(folder, checkpoint.PROJECTOR_PREFIX)
    if "0.weight" not in weights or "2.weight" not in weights:
        raise UserError(f"{folder} has no text_hidden_fcs projector weights; give an official Sa2VA checkpoint")
    d, out = weights["0.weight"].shape[1], weights["2.weight"].shape[0]
    projector = torch.nn.Sequential(torch.nn.Linear(d, d), torch.nn.ReLU(), torch.nn.Linear(d, out))
    projector.load_state_dict(weights, strict=True)
    return projector.eval()


def load_sa2va(
    model: str = DEFAULT_MODEL,
    device: str = "cpu",
    *,
    dtype: str | None = None,
    quantize: str | None = None,
    sam2_config: str | Path | None = None,
    keyframes: int = 5,
    keyframe_strategy: str | None = None,
    answer: str | None = None,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    motion_aware: bool = False,
    normalisation: str | None = None,
    inference: str | None = None,
    propagation_weights: str | None = None,
    tracker: str | None = None,
    tracker_model: str | None = None,
) -> Backend:
    """Load an official Sa2VA checkpoint without `trust_remote_code`.

    Checkpoints written by `rvos train` may carry their SAM 2 yaml and frame-size limits
    (`sam2_config.yaml`, `config.json` → `rvos`); explicit arguments win, then those, then
    the official inference's values. `normalisation`: SAM 2's mean/std as the official code rounds
    them ("bfloat16", the default) or exact ("float32"). `inference`: "sa2va" or "sa2va-i" (default:
    the checkpoint's own; see inference.py), with `propagation_weights` the original SAM 2 for Sa2VA-i.
    `tracker`: "sam2" (the default, Sa2VA's own) or "sam3": the `[SEG]` objects' keyframe masks become mask prompts of
    SAM 3's tracker (`tracker_model`: a SAM 3 checkpoint, default facebook/sam3; agent/tracker/seeded.py).
    """
    if tracker not in (None, "sam2", "sam3"):
        raise UserError(f"--tracker must be sam2 or sam3, not {tracker!r}")
    if tracker_model is not None and tracker != "sam3":
        raise UserError("--tracker-model is the SAM 3 checkpoint of --tracker sam3; add --tracker sam3 or drop it")
    if tracker == "sam3" and motion_aware:
        raise UserError("--motion-aware changes SAM 2's memory; with --tracker sam3 SAM 3 tracks: drop one of them")
    if tracker == "sam3":  # its checkpoint checked before any weights load
        from agent.backends.sam3 import checkpoint as sam3_checkpoint

        tracker_model = tracker_model or sam3_checkpoint.DEFAULT_MODEL
        tracker_folder = sam3_checkpoint.resolve_checkpoint(tracker_model, "--tracker-model")
        sam3_checkpoint.check_checkpoint(tracker_folder)
    folder = checkpoint.resolve_checkpoint(model)
    config = checkpoint.read_config(folder)
    extras = config.get(checkpoint.EXTRAS_KEY) or {}
    min_pixels = min_pixels or extras.get("min_pixels") or OFFICIAL_MIN_PIXELS
    max_pixels = max_pixels or extras.get("max_pixels") or OFFICIAL_MAX_PIXELS
    # read and checked before any weights load: a yaml that names code outside SAM 2 is refused (sam2_config.py)
    if sam2_config is None and extras.get("sam2_config"):
        path = checkpoint.file_inside(folder, extras["sam2_config"], f"{checkpoint.EXTRAS_KEY}.sam2_config in config.json")
        sam2_node = load_sam2_config(path, source=f"the checkpoint's SAM 2 config {path}")
    else:
        sam2_node = load_sam2_config(sam2_config)  # None: the official architecture
    torch_dtype = DTYPES[dtype or ("bfloat16" if device.startswith("cuda") else "float32")]
    sam2_state = checkpoint.sam2_state_dict(folder)
    inference = inference or default_inference(sam2_state)
    keyframe_strategy = keyframe_strategy or ("uniform-floor" if inference == "sa2va-i" else "uniform")  # each reference's
    # SAM 2 keeps float32 weights and autocasts, as the official GPU inference does; on a CPU only
    # bfloat16 (native dot products on AVX512-BF16 / AMX) is faster than float32
    autocast = torch_dtype if torch_dtype == torch.bfloat16 or (device.startswith("cuda") and torch_dtype != torch.float32) else None
    if device == "cpu" and torch_dtype == torch.bfloat16 and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        warnings.warn("this CPU has no native bfloat16 (AVX512-BF16 or AMX): --dtype bfloat16 runs slower than float32 here")
    normalisation = normalisation or extras.get("sam2_normalisation") or "bfloat16"
    if normalisation not in ("bfloat16", "float32"):
        raise UserError(f"SAM 2 normalisation must be bfloat16 or float32, not {normalisation!r}")
    video_tracker = build_tracker(sam2_node, sam2_state, device, inference=inference, propagation_weights=propagation_weights,
                                 autocast=autocast, motion_aware=motion_aware, normalisation=normalisation)
    propagation = {}
    if tracker == "sam3":
        from agent.backends.sam3.spec import load_sam3
        from agent.tracker.seeded import MaskSeededTracker

        sam3 = load_sam3(str(tracker_folder), device, dtype=str(torch_dtype).removeprefix("torch."))
        propagation = {"tracker": "sam3", "tracker_model": tracker_model, "sam3": sam3.settings}
        video_tracker = MaskSeededTracker(video_tracker, sam3.tracker)
    vlm, inputs, family = load_vlm(folder, config, torch_dtype, device, quantize, min_pixels=min_pixels, max_pixels=max_pixels)
    projector = load_projector(folder).to(device)
    grounder = Sa2VAGrounder(vlm, inputs, projector, family.name, answer=answer)
    settings = {  # every value that shapes the results, as used (result.json and report.json record them)
        "family": family.name, "dtype": str(torch_dtype).removeprefix("torch."),
        "autocast": None if autocast is None else str(autocast).removeprefix("torch."),
        "quantize": quantize, "inference": inference, "propagation_weights": propagation_weights, "motion_aware": bool(motion_aware),
        "sam2_config": str(sam2_config or extras.get("sam2_config") or "official Hiera-L"), "sam2_normalisation": normalisation,
        "min_pixels": min_pixels, "max_pixels": max_pixels, "answer": answer, "tracker": "sam2", **propagation,
    }
    return Backend("sa2va", str(model), device, grounder, video_tracker, keyframes, keyframe_strategy, settings=settings)


class Sa2VASpec:
    name = "sa2va"
    summary = "Sa2VA: a VLM's [SEG] tokens prompt SAM 2 (official checkpoints: hub id or folder; GPU advised)"
    options = frozenset(inspect.signature(load_sa2va).parameters) - {"model", "device"}  # every keyword load_sa2va takes
    devices = ("cpu", "cuda")

    def unavailable_reason(self, model: str | None = None) -> str | None:
        if model is not None:
            return None  # loading says precisely what is wrong with it
        if checkpoint.cached_snapshot(DEFAULT_MODEL) is None:
            return f"no --model given and {DEFAULT_MODEL} is not downloaded; pass --model HUB_ID_OR_FOLDER"
        return None

    def load(self, model: str | None = None, device: str = "cpu", **options: Any) -> Backend:
        return load_sa2va(model or DEFAULT_MODEL, device, **options)


SA2VA = Sa2VASpec()
