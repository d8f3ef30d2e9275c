"""SAM 2 (the `sam2` package's `SAM2Base`) extended with a language prompt, as Sa2VA uses it.

The projected `[SEG]` embedding is appended as one more sparse token after the prompt
encoder's output (which, with no clicks, is one padding point). Sa2VA also keeps the
decoder's mask logits when the object score says "absent" (stock SAM 2 overwrites them
with -1024); the object pointer still switches to the no-object pointer as usual.
Both are done with hooks around the package's modules, so its code runs unchanged.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from sam2.modeling.sam.transformer import RoPEAttention
from sam2.modeling.sam2_base import SAM2Base

from agent.tracker.memory_attention import MemoryCrossAttention
from agent.tracker.sam2_config import instantiate_checked, load_sam2_config


class LanguagePromptedSAM2(SAM2Base):
    def __init__(self, *args: Any, keep_logits_of_absent_objects: bool = True, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.keep_logits_of_absent_objects = keep_logits_of_absent_objects
        self._language_tokens: torch.Tensor | None = None
        self._decoder_logits: torch.Tensor | None = None
        self._rescore = None
        self.sam_prompt_encoder.register_forward_hook(self._append_language_token)
        self.sam_mask_decoder.register_forward_hook(self._decoder_output)

    @contextmanager
    def language_prompt(self, tokens: torch.Tensor):
        """Within the block, prompts carry `tokens` [B, 1, C] after the padding point."""
        self._language_tokens = tokens
        try:
            yield
        finally:
            self._language_tokens = None

    def _append_language_token(self, module, inputs, output):
        if self._language_tokens is None:
            return output
        sparse, dense = output
        return torch.cat([sparse, self._language_tokens.to(sparse.device, sparse.dtype)], dim=1), dense

    @contextmanager
    def candidate_scores(self, rescore):
        """Within the block, SAM 2 picks among its candidate masks by `rescore(masks [B, K, h, w],
        ious [B, K]) -> scores [B, K]` instead of its IoU estimates (motion-aware tracking)."""
        self._rescore = rescore
        try:
            yield
        finally:
            self._rescore = None

    def _decoder_output(self, module, inputs, output):
        self._decoder_logits = output[0]
        masks, ious, tokens, object_scores = output
        if self._rescore is None or ious.shape[1] < 2:
            return output
        return masks, self._rescore(masks, ious), tokens, object_scores

    def _forward_sam_heads(self, backbone_features, point_inputs=None, mask_inputs=None, high_res_features=None, multimask_output=False):
        out = super()._forward_sam_heads(backbone_features, point_inputs, mask_inputs, high_res_features, multimask_output)
        object_score_logits = out[6]
        if not (self.keep_logits_of_absent_objects and self.pred_obj_scores) or (object_score_logits > 0).all():
            return out
        # Put back the decoder's logits where SAM 2 wrote NO_OBJ_SCORE; masks are chosen as before.
        multimasks = self._decoder_logits.float()
        high_res = F.interpolate(multimasks, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        if multimask_output:
            best = torch.argmax(out[2], dim=-1)
            rows = torch.arange(multimasks.size(0), device=multimasks.device)
            low_res_best, high_res_best = multimasks[rows, best].unsqueeze(1), high_res[rows, best].unsqueeze(1)
        else:
            low_res_best, high_res_best = multimasks, high_res
        return (multimasks, high_res, out[2], low_res_best, high_res_best, out[5], object_score_logits)


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def build_language_sam2(config: str | Path | DictConfig | None, state_dict: dict[str, torch.Tensor]) -> tuple[LanguagePromptedSAM2, list[str], list[str]]:
    """Build from a sam2 yaml (a path, None for the official one, or a node `load_sam2_config` gave) and load
    weights; returns (model, missing keys, unexpected keys). Every target is checked first (sam2_config.py)."""
    source = "the given SAM 2 config" if isinstance(config, DictConfig) else f"the SAM 2 config {config}"
    node = copy.deepcopy(config) if isinstance(config, DictConfig) else load_sam2_config(config)
    node._target_ = _qualified(LanguagePromptedSAM2)
    cross = node.memory_attention.layer.cross_attention
    if cross._target_ == _qualified(RoPEAttention):  # same weights; a faster CPU bfloat16 path
        cross._target_ = _qualified(MemoryCrossAttention)
    model = instantiate_checked(node, source)
    result = model.load_state_dict(state_dict, strict=False)
    return model.eval(), list(result.missing_keys), list(result.unexpected_keys)
