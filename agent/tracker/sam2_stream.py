"""SAM 2 video tracking in one streaming pass, with language-embedding prompts.

It follows the stock `SAM2VideoPredictor` step for step (prompted keyframes are
conditioning frames run without memory, their memory encoded before propagation,
memory features stored in bfloat16), with three differences that change cost, not
results: frames are decoded once and never held; the image encoder runs once per
frame for all objects; and only the memory that SAM 2 can still attend to is kept.

A call's state (object groups and their memory, the video's size) lives in the call, not on the tracker,
but the tracker is still one call at a time (`thread_safe = False`): `LanguagePromptedSAM2` passes a
language prompt, a rescoring rule and the decoder's logits through module hooks that read them from the
model itself, and `last_memory_frames` reports the latest call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from agent.grounder.protocol import ObjectPrompt
from agent.tracker.feature_cache import FeatureCache
from agent.tracker.protocol import FrameMasks
from agent.tracker.motion import MotionPrior
from agent.tracker.sam2_language import LanguagePromptedSAM2
from agent.video.source import VideoSource

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# A mask being corrected, as the decoder's previous-mask logits: ±8 (the stock predictor clamps its own at ±32)
PREVIOUS_MASK_LOGIT = 8.0


@dataclass
class _ObjectGroup:
    """Objects prompted on the same keyframes, tracked as one batch."""

    object_ids: list[int]
    tokens: dict[int, Any]  # frame index → [B, 1, C] language tokens, [B, 1, H, W] masks, or a click prompt
    kind: str = "embedding"  # or "mask", or "click" (a person's points / box, one object per group)
    memory: dict[str, dict[int, dict]] = field(
        default_factory=lambda: {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
    )
    motion: MotionPrior | None = None  # motion-aware tracking (one object per group)

    @property
    def first_frame(self) -> int:
        return min(self.tokens)


@dataclass
class FrameLogits:
    """One frame's SAM 2 output: low-resolution mask logits and object-score logits."""

    frame_index: int
    image: Image.Image
    low_res: dict[int, torch.Tensor]  # object id → [1, 1, S/4, S/4]
    object_scores: dict[int, float]  # object id → logit (> 0: present)
    size: int  # SAM 2's input size S
    via_size: set[int] = field(default_factory=set)  # objects resized through [S, S] first

    def resized(self, object_id: int, height: int, width: int) -> torch.Tensor:
        """Logits [height, width]. Each prompt kind is resized as its reference does: language prompts
        through [S, S] (the official Sa2VA inference), masks in one step (the stock SAM 2 predictor)."""
        logits = self.low_res[object_id].float()
        if object_id in self.via_size and (height, width) != (self.size, self.size):
            logits = F.interpolate(logits, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)[0, 0]

    @property
    def logits(self) -> dict[int, torch.Tensor]:
        """Object id → logits [S, S] at SAM 2's resolution."""
        return {i: self.resized(i, self.size, self.size) for i in self.low_res}


def _kind(prompt: ObjectPrompt) -> str:
    if prompt.points or prompt.box is not None:
        return "click"
    if prompt.embedding is not None:
        return "embedding"
    if prompt.mask is not None:
        return "mask"
    raise ValueError(f"object {prompt.object_id}: the SAM 2 tracker needs a language embedding, a mask, clicks or a box")


def _group_prompts(prompts: Sequence[ObjectPrompt], one_per_object: bool = False) -> list[_ObjectGroup]:
    """Objects prompted the same way on the same frames are tracked as one batch (or each alone); an
    object with a person's clicks or box is tracked alone, each of its frames with its whole prompt."""
    prompts_of: dict[int, dict[int, ObjectPrompt]] = {}
    for prompt in prompts:
        prompts_of.setdefault(prompt.object_id, {})[prompt.frame_index] = prompt
    kind_of = {}
    for object_id, frames in prompts_of.items():
        kinds = {_kind(p) for p in frames.values()}
        kind_of[object_id] = "click" if "click" in kinds or len(kinds) > 1 else kinds.pop()
    by_frames: dict[tuple, list[int]] = {}
    for object_id in sorted(prompts_of):
        alone = one_per_object or kind_of[object_id] == "click"
        key = (kind_of[object_id], tuple(sorted(prompts_of[object_id])), object_id if alone else None)
        by_frames.setdefault(key, []).append(object_id)
    groups = []
    for (kind, frames, _), ids in by_frames.items():
        if kind == "click":
            tokens = dict(prompts_of[ids[0]])
        elif kind == "embedding":
            tokens = {t: torch.stack([torch.as_tensor(prompts_of[i][t].embedding) for i in ids])[:, None] for t in frames}
        else:
            tokens = {t: torch.stack([torch.as_tensor(np.asarray(prompts_of[i][t].mask), dtype=torch.float32) for i in ids])[:, None] for t in frames}
        groups.append(_ObjectGroup(ids, tokens, kind=kind))
    return groups


class SAM2StreamTracker:
    thread_safe = False  # the model's hooks carry a call's prompt on the model (sam2_language.py): one call at a time

    def __init__(self, model: LanguagePromptedSAM2, device: str = "cpu", autocast_dtype: torch.dtype | None = None,
                 motion_aware: bool = False, normalisation: str = "float32"):
        self.model = model.to(device)
        self.motion_aware = motion_aware  # SAMURAI-style candidate re-ranking and memory gating (motion.py)
        self.device = torch.device(device)
        self.autocast_dtype = autocast_dtype
        size = model.image_size
        # The official Sa2VA code builds mean and std as bfloat16 tensors (also in float32 runs): "bfloat16"
        # normalises with those rounded constants, "float32" with the exact ones (the sam2 package's).
        rounding = {"bfloat16": torch.bfloat16, "float32": torch.float32}[normalisation]
        self._mean = torch.tensor(IMAGENET_MEAN).to(rounding).float().to(self.device).view(3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD).to(rounding).float().to(self.device).view(3, 1, 1)
        self._size = size
        # Non-conditioning frames further back than this are never attended to again.
        self._horizon = max(model.num_maskmem, model.max_obj_ptrs_in_encoder)
        self.last_memory_frames: list[int] = []  # frames held per object group (for long-video checks)
        self.resize_through_model_size = False  # every prompt kind's logits go S/4 → S → frame size (Sa2VA-i)

    def _autocast(self):
        if self.autocast_dtype is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """A frame as SAM 2 sees it: square `image_size`, ImageNet-normalised, [1, 3, S, S]."""
        resized = np.array(image.convert("RGB").resize((self._size, self._size)))
        pixels = torch.from_numpy(resized).to(self.device).permute(2, 0, 1).float() / 255.0
        return ((pixels - self._mean) / self._std)[None]

    def _features(self, image: Image.Image) -> dict:
        with self._autocast():
            out = self.model.forward_image(self.preprocess(image))
        return {key: [x.float() for x in out[key]] for key in ("backbone_fpn", "vision_pos_enc")}

    def _frame_features(self, video: VideoSource, t: int, image: Image.Image, given: Mapping[int, dict],
                        cache: FeatureCache | None) -> dict:
        """Frame t's image features: a caller's, else the session's cache (by the frame's index in the
        session's video; the same tensors, so the same results), else encoded (and kept there)."""
        if t in given:
            return given[t]
        if cache is None:
            return self._features(image)
        return cache.get_or_compute(("sam2", video.source_index(t), image.size), lambda: self._features(image))

    def _expand(self, backbone_out: dict, batch: int):
        expanded = {key: [x.expand(batch, -1, -1, -1) for x in backbone_out[key]] for key in ("backbone_fpn", "vision_pos_enc")}
        _, feats, pos, sizes = self.model._prepare_backbone_features(expanded)
        return feats, pos, sizes

    def _step(self, group: _ObjectGroup, frame_index: int, backbone_out: dict, num_frames: int, conditioning: bool,
              reverse: bool = False, video_size: tuple[int, int] | None = None) -> dict:
        feats, pos, sizes = self._expand(backbone_out, len(group.object_ids))
        common = dict(
            frame_idx=frame_index, current_vision_feats=feats, current_vision_pos_embeds=pos, feat_sizes=sizes,
            point_inputs=None, mask_inputs=None, output_dict=group.memory, num_frames=num_frames, track_in_reverse=reverse,
        )
        with self._autocast():
            if conditioning:
                out = self._conditioning_step(group.kind, group.tokens[frame_index], common, video_size)
                high_res = F.interpolate(out["pred_masks"], size=(self._size, self._size), mode="bilinear", align_corners=False)
                out["maskmem_features"], out["maskmem_pos_enc"] = self.model._encode_new_memory(
                    feats, sizes, high_res, out["object_score_logits"], is_mask_from_pts=True
                )
            elif group.motion is not None:
                with self.model.candidate_scores(group.motion.rescore):
                    out = self.model.track_step(is_init_cond_frame=False, run_mem_encoder=True, **common)
            else:
                out = self.model.track_step(is_init_cond_frame=False, run_mem_encoder=True, **common)
        keep = True
        if group.motion is not None and not conditioning:
            keep = group.motion.observe(out["pred_masks"][0, 0], float(out["object_score_logits"][0, 0]))
        compact = {
            # bfloat16 memory, as the stock predictor stores it (results depend on this rounding)
            "maskmem_features": out["maskmem_features"].to(torch.bfloat16),
            "maskmem_pos_enc": out["maskmem_pos_enc"],
            "obj_ptr": out["obj_ptr"],
            "object_score_logits": out["object_score_logits"],
            "pred_masks": out["pred_masks"].float(),
        }
        if keep:  # motion-aware tracking leaves unconfident frames out of the memory bank
            group.memory["cond_frame_outputs" if conditioning else "non_cond_frame_outputs"][frame_index] = compact
        return compact

    def _conditioning_step(self, kind: str, token: Any, common: dict, video_size: tuple[int, int] | None = None) -> dict:
        """A prompted frame, run without memory (`video_size`: (width, height) of the frames clicks are on)."""
        if kind == "click":
            return self._click_step(token, common, video_size)
        if kind == "mask":  # resized as the stock predictor's add_new_mask resizes it
            masks = F.interpolate(token.to(self.device), size=(self._size, self._size), mode="bilinear", align_corners=False, antialias=True)
            return self.model.track_step(is_init_cond_frame=True, run_mem_encoder=False, **common | {"mask_inputs": (masks >= 0.5).float()})
        with self.model.language_prompt(token):
            return self.model.track_step(is_init_cond_frame=True, run_mem_encoder=False, **common)

    def _click_step(self, prompt: ObjectPrompt, common: dict, video_size: tuple[int, int]) -> dict:
        """A person's clicks and / or box on a conditioning frame, as the stock predictor sends them (a box
        is two corner points, labels 2 and 3), with the grounder's `[SEG]` token when that frame has one,
        and the mask being corrected as the decoder's previous-mask input."""
        if not (prompt.points or prompt.box is not None):  # this object's other frames: mask or language alone
            kind = _kind(prompt)
            value = prompt.embedding if kind == "embedding" else np.asarray(prompt.mask, dtype=np.float32)
            return self._conditioning_step(kind, torch.as_tensor(value)[None, None], common)
        width, height = video_size
        points, labels = [], []
        if prompt.box is not None:
            x0, y0, x1, y1 = prompt.box
            points, labels = [(x0, y0), (x1, y1)], [2, 3]
        points, labels = points + list(prompt.points or []), labels + list(prompt.point_labels or [])
        scale = torch.tensor([self._size / width, self._size / height], device=self.device)
        common["point_inputs"] = {
            "point_coords": torch.tensor(points, dtype=torch.float32, device=self.device)[None] * scale,
            "point_labels": torch.tensor(labels, dtype=torch.int32, device=self.device)[None],
        }
        previous = None
        if prompt.mask is not None:
            low = self._size // 4
            mask = torch.as_tensor(np.asarray(prompt.mask), dtype=torch.float32, device=self.device)[None, None]
            previous = (F.interpolate(mask, size=(low, low), mode="bilinear", align_corners=False) * 2 - 1) * PREVIOUS_MASK_LOGIT
        language = self.model.language_prompt(torch.as_tensor(prompt.embedding)[None, None]) if prompt.embedding is not None else nullcontext()
        with language:
            return self.model.track_step(is_init_cond_frame=True, run_mem_encoder=False, prev_sam_mask_logits=previous, **common)

    def _forget(self, group: _ObjectGroup, frame_index: int, reverse: bool = False) -> None:
        old = group.memory["non_cond_frame_outputs"]
        step = 1 if reverse else -1  # where the frames already tracked lie
        for t in [t for t in old if (t - frame_index) * step >= self._horizon]:
            del old[t]
        if frame_index + step in old:
            old[frame_index + step]["pred_masks"] = None  # only memory features are needed from now on

    def _track_backward(self, groups: list[_ObjectGroup], video: VideoSource, num_frames: int, cache: FeatureCache | None = None,
                        progress: Callable[[int, int], None] | None = None, chunk: int = 32) -> dict[int, dict]:
        """Frames before each group's first prompted frame, tracked from it towards frame 0 with SAM 2's
        reverse mode (a memory of its own per group; each frame read and encoded once for all groups).
        Returns id(group) → frame → low-res logits (float16) and object scores, for the forward pass."""
        late = [g for g in groups if g.first_frame > 0]
        backward = {id(g): _ObjectGroup(g.object_ids, g.tokens, g.kind) for g in late}
        for g in late:
            backward[id(g)].memory["cond_frame_outputs"] = dict(g.memory["cond_frame_outputs"])
        kept: dict[int, dict] = {id(g): {} for g in late}
        first = max((g.first_frame for g in late), default=0)
        for end in range(first, 0, -chunk):
            frames = video.read_many(range(max(0, end - chunk), end))
            for t in sorted(frames, reverse=True):
                features = self._frame_features(video, t, frames.pop(t), {}, cache)
                for g in (g for g in late if t < g.first_frame):
                    out = self._step(backward[id(g)], t, features, num_frames, conditioning=False, reverse=True)
                    self._forget(backward[id(g)], t, reverse=True)
                    kept[id(g)][t] = {"pred_masks": out["pred_masks"].half(), "object_score_logits": out["object_score_logits"]}
                if progress is not None:
                    progress(first - t, first)
        return kept

    @torch.inference_mode()
    def track_logits(
        self, video: VideoSource, prompts: Sequence[ObjectPrompt], keyframes: Mapping[int, Image.Image],
        features: Mapping[int, dict] | None = None, *, cache: FeatureCache | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> Iterator[FrameLogits]:
        """SAM 2 logits per frame, in frame order (frames before an object's first prompt tracked backwards).
        `features`: frame → image features a caller computed already (`_features`' form), used as they are;
        `cache`: the session's features of frames seen before (used and filled); `progress(done, total)`:
        called per frame of the backward pass."""
        features = features or {}
        groups = _group_prompts(prompts, one_per_object=self.motion_aware)
        for group in groups:
            group.motion = MotionPrior() if self.motion_aware else None
        num_frames = len(video)
        cond_frames = sorted({t for g in groups for t in g.tokens})
        missing = [t for t in cond_frames if t not in keyframes]
        images = dict(keyframes) | video.read_many(missing)
        # 1) prompted keyframes: conditioning frames, run without memory, then their memory encoded
        for t in cond_frames:
            backbone_out = self._frame_features(video, t, images[t], features, cache)
            for group in groups:
                if t in group.tokens:
                    self._step(group, t, backbone_out, num_frames, conditioning=True, video_size=video.size)
        # 2) objects first prompted after frame 0: tracked backwards from there
        before = self._track_backward(groups, video, num_frames, cache, progress)
        # 3) one forward pass over the video
        # each frame read when its turn comes, never sooner: a live source has only the frames pushed so far.
        # The frames already at hand are fixed now: `images` empties as the loop goes, and a source may take
        # the (lazy) indices only when it is first asked for a frame
        at_hand = set(images)
        others = video.frames(t for t in range(num_frames) if t not in at_hand)
        for t in range(num_frames):
            if t in images:
                image = images.pop(t)
            else:
                _, image = next(others)
            backbone_out = None
            logits, scores, via_size = {}, {}, set()
            for group in groups:
                if t in group.memory["cond_frame_outputs"]:
                    out = group.memory["cond_frame_outputs"][t]
                    if group.motion is not None:  # the filter follows from each prompted frame on
                        group.motion.start(out["pred_masks"][0, 0])
                elif t > group.first_frame:
                    backbone_out = backbone_out or self._frame_features(video, t, image, features, cache)
                    out = self._step(group, t, backbone_out, num_frames, conditioning=False)
                    self._forget(group, t)
                else:
                    out = before[id(group)].pop(t)
                for row, object_id in enumerate(group.object_ids):
                    logits[object_id] = out["pred_masks"][row : row + 1]
                    if group.kind == "embedding" or self.resize_through_model_size:
                        via_size.add(object_id)
                    scores[object_id] = float(out["object_score_logits"][row, 0])
            self.last_memory_frames = [len(g.memory["cond_frame_outputs"]) + len(g.memory["non_cond_frame_outputs"]) for g in groups]
            yield FrameLogits(t, image, logits, scores, self._size, via_size)

    def track(
        self, video: VideoSource, prompts: Sequence[ObjectPrompt], keyframes: Mapping[int, Image.Image],
        features: Mapping[int, dict] | None = None, *, cache: FeatureCache | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> Iterator[FrameMasks]:
        width, height = video.size
        for frame in self.track_logits(video, prompts, keyframes, features, cache=cache, progress=progress):
            masks = {}
            for object_id in frame.low_res:
                masks[object_id] = (frame.resized(object_id, height, width) > 0).cpu().numpy()
            scores = {i: float(torch.sigmoid(torch.tensor(s))) for i, s in frame.object_scores.items()}
            yield FrameMasks(frame.frame_index, masks, scores, image=frame.image)

    def clip_logits(self, images: Sequence[Image.Image], tokens: Mapping[int, torch.Tensor]) -> torch.Tensor:
        """A differentiable pass over a short clip (training): the frames in `tokens` (clip position →
        [B, 1, C] language tokens) are conditioning frames, the others are tracked from memory in
        order, as in `track_logits`. Returns SAM 2 logits [T, B, S, S] at `image_size`, from the first
        prompted frame on."""
        group = _ObjectGroup(list(range(next(iter(tokens.values())).shape[0])), dict(tokens))
        backbone = self.model.forward_image(torch.cat([self.preprocess(image) for image in images]))

        def frame(t: int) -> dict:
            return {key: [x[t : t + 1] for x in backbone[key]] for key in ("backbone_fpn", "vision_pos_enc")}

        low_res = {t: self._step(group, t, frame(t), len(images), conditioning=True)["pred_masks"] for t in sorted(tokens)}
        for t in range(group.first_frame + 1, len(images)):
            if t not in low_res:
                low_res[t] = self._step(group, t, frame(t), len(images), conditioning=False)["pred_masks"]
        logits = torch.stack([low_res[t][:, 0] for t in range(group.first_frame, len(images))])
        return F.interpolate(logits, size=(self._size, self._size), mode="bilinear", align_corners=False)
