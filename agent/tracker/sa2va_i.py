"""Sa2VA-i's video inference (arXiv 2509.19082): Sa2VA's finetuned mask decoder turns each keyframe's
`[SEG]` embedding into a mask with no memory; those masks seed SAM 2 as mask prompts, and SAM 2 with
its original decoder propagates them through the video with its stock semantics.

The keyframes' image features are computed once for all objects, and every object is propagated in the
same streaming pass as any other prompt (memory flat in video length), where the reference re-runs
everything per `[SEG]`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace

import torch
import torch.nn.functional as F
from PIL import Image

from agent.grounder.protocol import ObjectPrompt
from agent.tracker.feature_cache import FeatureCache
from agent.tracker.protocol import FrameMasks
from agent.tracker.sam2_stream import FrameLogits, SAM2StreamTracker
from agent.video.source import VideoSource


class Sa2VAiTracker:
    """A `SAM2StreamTracker` (original decoder, stock semantics) fed by a keyframe decode with the
    finetuned decoder. Prompts that are not `[SEG]` embeddings (a person's masks, clicks, boxes) go to
    propagation as they are; an embedding that comes with clicks becomes the mask the clicks refine."""

    thread_safe = False  # its stream's model carries a call's prompt in module hooks (sam2_language.py)

    def __init__(self, stream: SAM2StreamTracker, finetuned_decoder: torch.nn.Module):
        self.stream = stream
        self.model = stream.model
        self.finetuned_decoder = finetuned_decoder.to(stream.device).eval()
        stream.resize_through_model_size = True  # the reference: S/4 → S → frame size

    def _encode(self, images: Sequence[Image.Image]) -> tuple[list, list]:
        """The image encoder's feature levels and position encodings for a batch of keyframes."""
        model, stream = self.model, self.stream
        with stream._autocast():
            backbone = model.image_encoder(torch.cat([stream.preprocess(image) for image in images]))
        levels = model.num_feature_levels
        return list(backbone["backbone_fpn"][-levels:]), list(backbone["vision_pos_enc"][-levels:])

    def _decode(self, fpn: list, embeddings: torch.Tensor) -> torch.Tensor:
        """Low-resolution logits [objects, keyframes, 1, S/4, S/4] of the finetuned decoder, no memory."""
        model, decoder, stream = self.model, self.finetuned_decoder, self.stream
        count = len(fpn[0])
        padding = (torch.zeros(count, 1, 2, device=stream.device), -torch.ones(count, 1, dtype=torch.int32, device=stream.device))
        with stream._autocast():
            high_res = [decoder.conv_s0(fpn[0]), decoder.conv_s1(fpn[1])]  # the finetuned decoder's own
            top = fpn[-1] + model.no_mem_embed.view(1, -1, 1, 1) if model.directly_add_no_mem_embed else fpn[-1]
            logits = []
            for embedding in embeddings.to(stream.device):
                with model.language_prompt(embedding.view(1, 1, -1).expand(count, 1, -1)):
                    sparse, dense = model.sam_prompt_encoder(points=padding, boxes=None, masks=None)
                masks, ious, _, _ = decoder(
                    image_embeddings=top, image_pe=model.sam_prompt_encoder.get_dense_pe(), sparse_prompt_embeddings=sparse,
                    dense_prompt_embeddings=dense, multimask_output=True, repeat_image=False, high_res_features=high_res,
                )
                logits.append(masks[torch.arange(count), ious.argmax(dim=1)][:, None].float())
        return torch.stack(logits)

    def _propagation_features(self, fpn: list, positions: list, n: int) -> dict:
        """Keyframe n's features as propagation takes them (levels 0/1 through the original decoder's convs)."""
        decoder = self.model.sam_mask_decoder
        with self.stream._autocast():
            levels = [decoder.conv_s0(fpn[0][n : n + 1]), decoder.conv_s1(fpn[1][n : n + 1]), *(x[n : n + 1] for x in fpn[2:])]
        return {"backbone_fpn": [x.float() for x in levels], "vision_pos_enc": [x[n : n + 1].float() for x in positions]}

    @torch.inference_mode()
    def keyframe_logits(self, images: Sequence[Image.Image], embeddings: torch.Tensor) -> torch.Tensor:
        """The finetuned decoder's low-resolution logits [objects, keyframes, 1, S/4, S/4] from the
        `[SEG]` embeddings [objects, C] on each keyframe image, without memory."""
        return self._decode(self._encode(images)[0], embeddings)

    def keyframe_masks(self, keyframes: Mapping[int, Image.Image], prompts: Sequence[ObjectPrompt], size: tuple[int, int]) -> dict:
        """(object id, frame) → bool mask at frame size, for every `[SEG]`-prompted object and keyframe."""
        return self._keyframe_masks_and_features(keyframes, prompts, size)[0]

    @torch.inference_mode()
    def _keyframe_masks_and_features(self, keyframes: Mapping[int, Image.Image], prompts: Sequence[ObjectPrompt],
                                     size: tuple[int, int]) -> tuple[dict, dict]:
        """The keyframe masks, and the keyframes' features for propagation: the image encoder runs once."""
        embedded = [p for p in prompts if p.embedding is not None]
        if not embedded:
            return {}, {}
        frames = sorted({p.frame_index for p in embedded})
        objects = sorted({p.object_id for p in embedded})
        embedding_of = {p.object_id: torch.as_tensor(p.embedding) for p in embedded}
        fpn, positions = self._encode([keyframes[t] for t in frames])
        logits = self._decode(fpn, torch.stack([embedding_of[i] for i in objects]))
        width, height = size
        masks = F.interpolate(logits.flatten(0, 1), size=(height, width), mode="bilinear", align_corners=False) > 0
        masks = masks.view(len(objects), len(frames), height, width).cpu().numpy()
        wanted = {(p.object_id, p.frame_index) for p in embedded}
        decoded = {(i, t): masks[n, k] for n, i in enumerate(objects) for k, t in enumerate(frames) if (i, t) in wanted}
        return decoded, {t: self._propagation_features(fpn, positions, k) for k, t in enumerate(frames)}

    def _as_mask_prompts(self, decoded: dict, prompts: Sequence[ObjectPrompt]) -> list:
        converted = []
        for prompt in prompts:
            mask = decoded.get((prompt.object_id, prompt.frame_index))
            if mask is None:
                converted.append(prompt)
            elif prompt.points or prompt.box is not None:
                converted.append(replace(prompt, embedding=None, mask=prompt.mask if prompt.mask is not None else mask))
            else:
                converted.append(replace(prompt, embedding=None, mask=mask))
        return converted

    def _propagate(self, run, video: VideoSource, prompts: Sequence[ObjectPrompt], keyframes: Mapping[int, Image.Image],
                   cache: FeatureCache | None = None, progress: Callable[[int, int], None] | None = None) -> Iterator:
        frames = {p.frame_index for p in prompts if p.embedding is not None}
        images = dict(keyframes) | video.read_many(sorted(frames - set(keyframes)))
        decoded, features = self._keyframe_masks_and_features(images, prompts, video.size)
        return run(video, self._as_mask_prompts(decoded, prompts), images, features=features, cache=cache, progress=progress)

    def track_logits(self, video: VideoSource, prompts: Sequence[ObjectPrompt], keyframes: Mapping[int, Image.Image], *,
                     cache: FeatureCache | None = None, progress: Callable[[int, int], None] | None = None) -> Iterator[FrameLogits]:
        """`cache`: the session's propagation features of frames seen before (keyframes' come from their decode)."""
        return self._propagate(self.stream.track_logits, video, prompts, keyframes, cache, progress)

    def track(self, video: VideoSource, prompts: Sequence[ObjectPrompt], keyframes: Mapping[int, Image.Image], *,
              cache: FeatureCache | None = None, progress: Callable[[int, int], None] | None = None) -> Iterator[FrameMasks]:
        return self._propagate(self.stream.track, video, prompts, keyframes, cache, progress)
