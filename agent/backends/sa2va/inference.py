"""Which video inference a Sa2VA checkpoint runs, and the SAM 2 tracker for it.

- `sa2va`: the `[SEG]` embedding prompts SAM 2 on the keyframes; Sa2VA's finetuned decoder tracks.
- `sa2va-i`: the finetuned decoder only turns keyframes into masks; SAM 2's original decoder propagates
  them. Sa2VA-i checkpoints carry both decoders (`sam_mask_decoder_modified.*` is the finetuned one); any
  other Sa2VA checkpoint runs it with the original decoder from `--propagation-weights`.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from agent.backends.sa2va import checkpoint
from agent.errors import UserError
from agent.tracker.sa2va_i import Sa2VAiTracker
from agent.tracker.sam2_language import build_language_sam2
from agent.tracker.sam2_stream import SAM2StreamTracker

INFERENCES = ("sa2va", "sa2va-i")
DECODER = "sam_mask_decoder."
FINETUNED_DECODER = "sam_mask_decoder_modified."
WEIGHT_SUFFIXES = (".pt", ".pth", ".safetensors")


def default_inference(sam2_state: dict) -> str:
    return "sa2va-i" if any(k.startswith(FINETUNED_DECODER) for k in sam2_state) else "sa2va"


def _split_decoders(sam2_state: dict) -> tuple[dict, dict | None]:
    """(SAM 2 with the finetuned decoder as its decoder, the original decoder's tensors or None)."""
    finetuned = {k[len(FINETUNED_DECODER):]: v for k, v in sam2_state.items() if k.startswith(FINETUNED_DECODER)}
    if not finetuned:
        return sam2_state, None
    original = {k[len(DECODER):]: v for k, v in sam2_state.items() if k.startswith(DECODER)}
    rest = {k: v for k, v in sam2_state.items() if not k.startswith((DECODER, FINETUNED_DECODER))}
    return rest | {DECODER + k: v for k, v in finetuned.items()}, original


def _weights_file(source: str) -> Path:
    path = Path(source).expanduser()
    if path.is_file():
        return path
    if path.exists() or not checkpoint.looks_like_hub_id(source):
        raise UserError(f"--propagation-weights {source}: no such file, and not a hub id (owner/name); "
                        "give sam2_hiera_large.pt (or a .safetensors) or a hub id such as facebook/sam2-hiera-large")
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(source, allow_patterns=[f"*{s}" for s in WEIGHT_SUFFIXES]))
    except Exception as exc:  # offline, unknown repo, auth: all mean "cannot get it here"
        raise UserError(f"cannot get {source} from the Hugging Face hub ({type(exc).__name__}); "
                        "download the SAM 2 checkpoint elsewhere and pass the file") from None
    files = sorted(p for p in folder.rglob("*") if p.suffix in WEIGHT_SUFFIXES)
    if not files:
        raise UserError(f"{source} has no .pt or .safetensors weights")
    return files[0]


def propagation_decoder(source: str) -> dict[str, torch.Tensor]:
    """The `sam_mask_decoder.*` tensors of an original SAM 2 checkpoint (`sam2_hiera_large.pt`: {"model": …},
    read with weights_only; or safetensors), whatever prefix they carry."""
    path = _weights_file(source)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # not a tensor file, or one that would run code to load
            raise UserError(f"cannot read {path} as SAM 2 weights ({type(exc).__name__}); give the official .pt or a .safetensors") from None
        state = state.get("model", state) if isinstance(state, dict) else {}
    decoder = {k.split(DECODER, 1)[1]: v for k, v in state.items() if DECODER in k and FINETUNED_DECODER not in k}
    if not decoder:
        raise UserError(f"{path} holds no SAM 2 mask decoder (sam_mask_decoder.* tensors); give an original SAM 2 checkpoint")
    return decoder


def _load_decoder(module: torch.nn.Module, tensors: dict, what: str) -> None:
    own = module.state_dict()
    wrong = [k for k in own if k in tensors and tensors[k].shape != own[k].shape]
    missing = [k for k in own if k not in tensors]
    if wrong or missing:
        detail = f"{wrong[0]}: {tuple(tensors[wrong[0]].shape)} vs {tuple(own[wrong[0]].shape)}" if wrong else f"missing {missing[0]}"
        raise UserError(f"the {what} does not fit this checkpoint's SAM 2 ({len(wrong)} size mismatches, {len(missing)} missing; "
                        f"{detail}); give the SAM 2 weights of the same size (Sa2VA uses Hiera-L: sam2_hiera_large.pt)")
    module.load_state_dict({k: tensors[k] for k in own})


def decoder_copy(module: torch.nn.Module) -> torch.nn.Module:
    """A copy of the decoder alone (its hooks belong to the SAM 2 model, which must not be copied with it)."""
    hooks, module._forward_hooks = module._forward_hooks, type(module._forward_hooks)()
    try:
        return copy.deepcopy(module)
    finally:
        module._forward_hooks = hooks


def build_tracker(sam2_config, sam2_state: dict, device: str, *, inference: str | None, propagation_weights: str | None,
                  autocast, motion_aware: bool, normalisation: str):
    """The tracker for the chosen inference (default: the checkpoint's own)."""
    inference = inference or default_inference(sam2_state)
    if inference not in INFERENCES:
        raise UserError(f"--inference must be one of {', '.join(INFERENCES)}, not {inference!r}")
    state, original = _split_decoders(sam2_state)
    if inference == "sa2va-i" and original is None and propagation_weights is None:
        raise UserError("Sa2VA-i inference needs SAM 2's original mask decoder, and this checkpoint has only Sa2VA's: "
                        "pass --propagation-weights sam2_hiera_large.pt (or facebook/sam2-hiera-large), or use --inference sa2va")
    sam2, missing, unexpected = build_language_sam2(sam2_config, state)
    checkpoint.check_keys("SAM 2", missing, unexpected)
    stream_options = dict(device=device, autocast_dtype=autocast, motion_aware=motion_aware, normalisation=normalisation)
    if inference == "sa2va":
        return SAM2StreamTracker(sam2, **stream_options)
    finetuned = decoder_copy(sam2.sam_mask_decoder)
    if propagation_weights is not None:
        original = propagation_decoder(propagation_weights)
    _load_decoder(sam2.sam_mask_decoder, original, "original SAM 2 mask decoder")
    sam2.keep_logits_of_absent_objects = False  # propagation keeps stock SAM 2's semantics
    return Sa2VAiTracker(SAM2StreamTracker(sam2, **stream_options), finetuned)
