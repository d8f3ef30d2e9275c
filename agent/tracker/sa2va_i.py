"""Sa2VA-i's video inference (arXiv 2509.19082): Sa2VA's finetuned mask decoder turns each keyframe's
`[SEG]` embedding into a mask with no memory; those masks seed SAM 2 as mask prompts, and SAM 2 with
its original decoder propagates them through the video with its stock semantics.

The keyframes' image features are computed once for all objects, and every object is propagated in the
same streaming pass as any other prompt (memory flat in video length), where the reference re-runs
everything per `[SEG]`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace

import torch
import torch.nn.functional as F
from PIL import Image

from agent.grounder.protocol import ObjectPrompt
from agent.tracker.protocol import FrameMasks
from agent.tracker.sam2_stream import FrameLogits, SAM2StreamTracker
from agent.video.source import VideoSource


class Sa2VAiTracker:
    """A `SAM2StreamTracker` (original decoder, stock semantics) fed by a keyframe decode with the
    finetuned decoder. Prompts that are not `[SEG]` embeddings (a person's masks, clicks, boxes) go to
    propagation as they are; an embedding that comes with clicks becomes the mask the clicks refine."""

    def __init__(self, stream: SAM2StreamTracker, finetuned_decoder: torch.nn.Module):
        self.stream = stream
        self.model = stream.model
        self.finetuned_decoder = finetuned_decoder.to(stream.device).eval()
        stream.resize_through_model_size = True  # the reference: S/4 → S → frame size

    @torch.inference_mode()
    def keyframe_logits(self, images: Sequence[Image.Image], embeddings: torch.Tensor, keep_features: bool = False) -> torch.Tensor:
        """The finetuned decoder's low-resolution logits [objects, keyframes, 1, S/4, S/4] from the
        `[SEG]` embeddings [objects, C] on each keyframe image, without memory. `keep_features`: the
        propagation that follows takes these frames' image features from here (with the original
        decoder's convs), so the image encoder runs once per frame."""
        model, decoder, stream = self.model, self.finetuned_decoder, self.stream
        with stream._autocast():
            backbone = model.image_encoder(torch.cat([stream.preprocess(image) for image in images]))
            raw = list(backbone["backbone_fpn"][-model.num_feature_levels:])
            fpn = [decoder.conv_s0(raw[0]), decoder.conv_s1(raw[1]), *raw[2:]]  # the finetuned decoder's own
            original = [model.sam_mask_decoder.conv_s0(raw[0]), model.sam_mask_decoder.conv_s1(raw[1]), *raw[2:]]
            for n, image in enumerate(images if keep_features else ()):
                stream.precomputed[id(image)] = {
                    "backbone_fpn": [x[n : n + 1].float() for x in original],
                    "vision_pos_enc": [x[n : n + 1].float() for x in backbone["vision_pos_enc"][-model.num_feature_levels:]],
                }
            top = fpn[-1]
            if model.directly_add_no_mem_embed:
                top = top + model.no_mem_embed.view(1, -1, 1, 1)
            count = len(images)
            padding = (torch.zeros(count, 1, 2, device=stream.device), -torch.ones(count, 1, dtype=torch.int32, device=stream.device))
            sparse, dense = model.sam_prompt_encoder(points=padding, boxes=None, masks=None)
            logits = []
            for embedding in embeddings.to(stream.device):
                tokens = torch.cat([sparse, embedding.view(1, 1, -1).expand(count, 1, -1).to(sparse.dtype)], dim=1)
                masks, ious, _, _ = decoder(
                    image_embeddings=top, image_pe=model.sam_prompt_encoder.get_dense_pe(), sparse_prompt_embeddings=tokens,
                    dense_prompt_embeddings=dense, multimask_output=True, repeat_image=False, high_res_features=fpn[:2],
                )
                best = ious.argmax(dim=1)
                logits.append(masks[torch.arange(count), best][:, None].float())
        return torch.stack(logits)

    def keyframe_masks(self, keyframes: Mapping[int, Image.Image], prompts: Sequence[ObjectPrompt], size: tuple[int, int],
                       keep_features: bool = False) -> dict:
        """(object id, frame) → bool mask at frame size, for every `[SEG]`-prompted object and keyframe."""
        embedded = [p for p in prompts if p.embedding is not None]
        frames = sorted({p.frame_index for p in embedded})
        objects = sorted({p.object_id for p in embedded})
        if not embedded:
            return {}
        embedding_of = {p.object_id: torch.as_tensor(p.embedding) for p in embedded}
        logits = self.keyframe_logits([keyframes[t] for t in frames], torch.stack([embedding_of[i] for i in objects]), keep_features)
        width, height = size
        masks = F.interpolate(logits.flatten(0, 1), size=(height, width), mode="bilinear", align_corners=False) > 0
        masks = masks.view(len(objects), len(frames), height, width).cpu().numpy()
        wanted = {(p.object_id, p.frame_index) for p in embedded}
        return {(i, t): masks[n, k] for n, i in enumerate(objects) for k, t in enumerate(frames) if (i, t) in wanted}

    def _as_mask_prompts(self, video: VideoSource, prompts: Sequence[ObjectPrompt], images: Mapping[int, Image.Image]) -> list:
        decoded = self.keyframe_masks(images, prompts, video.size, keep_features=True)
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

    def _images(self, video: VideoSource, prompts: Sequence[ObjectPrompt], keyframes: Mapping[int, Image.Image]) -> dict:
        frames = {p.frame_index for p in prompts if p.embedding is not None}
        return dict(keyframes) | video.read_many(sorted(frames - set(keyframes)))

    def _propagate(self, run, video: VideoSource, prompts: Sequence[ObjectPrompt], keyframes: Mapping[int, Image.Image]) -> Iterator:
        images = self._images(video, prompts, keyframes)
        try:
            yield from run(video, self._as_mask_prompts(video, prompts, images), images)
        finally:
            self.stream.precomputed.clear()

    def track_logits(self, video: VideoSource, prompts: Sequence[ObjectPrompt], keyframes: Mapping[int, Image.Image]) -> Iterator[FrameLogits]:
        return self._propagate(self.stream.track_logits, video, prompts, keyframes)

    def track(self, video: VideoSource, prompts: Sequence[ObjectPrompt], keyframes: Mapping[int, Image.Image]) -> Iterator[FrameMasks]:
        return self._propagate(self.stream.track, video, prompts, keyframes)
