"""Sa2VA region prompts: questions about regions a person marks on ONE image (official `mask_prompts`).

Only the InternVL family has them (Sa2VA-1B/4B/8B/26B, Sa2VA-InternVL3-*); the official Qwen-VL classes
take `mask_prompts` and ignore them, so a grounder of another family refuses (`RegionPromptsUnsupported`).
The official inference (`Sa2VAChatModel.predict_forward`, single-image path), step by step:

1. the image is tiled (InternVL's dynamic tiling + a thumbnail; internvl.py);
2. each region mask is resized `nearest` to the feature grid (g × g = 16 × 16 for 448² tiles) over the
   WHOLE image, ignoring the tiling; a region's features are the thumbnail's (the last tile's) rows under
   its sampled cells, row-major;
3. after the image block comes the region list (prompts/internvl/regions.txt, region.txt) with one
   `<IMG_CONTEXT>` per sampled cell inside each `<vp>…</vp>`; the question follows;
4. all `<IMG_CONTEXT>` tokens of the prompt are filled, in order, by the tiles' rows and then every
   region's rows.

A region that covers none of the sampled cells (a thin or tiny one falls between them) gets an empty
`<vp></vp>` and no features, exactly as the official code does; this is reported in `notes`. Where the
official code would silently insert NO image features (its token count and feature count differ), this
module refuses with a UserError instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from agent.errors import UserError
from agent.grounder.protocol import Grounding
from agent.prompts import render

VP_START, VP_END = "<vp>", "</vp>"
REGIONS_FAMILY = "internvl"  # the prompts/ folder of the region templates: the only family that has them


class RegionPromptsUnsupported(UserError):
    """The checkpoint's family has no region prompts in the official code (the Qwen-VL classes ignore them)."""

    def __init__(self, family: str):
        self.family = family
        super().__init__(
            f"{family} models take no region prompts: only Sa2VA's InternVL family has them (the official Sa2VA code "
            "ignores mask_prompts for its Qwen-VL models); use an InternVL-based Sa2VA (e.g. ByteDance/Sa2VA-4B, "
            "Sa2VA-InternVL3-2B) or ask about the object's crops"
        )


@dataclass
class RegionPrompts:
    """Region masks as the model sees them: each sampled on the g × g feature grid of the whole image."""

    grid: torch.Tensor  # [n, g, g] bool
    image_size: tuple[int, int]  # (width, height) of the image the masks were drawn on

    @property
    def pixels(self) -> list[int]:
        """Feature rows (sampled cells) per region: the official `region_pixels`."""
        return [int(n) for n in self.grid.flatten(1).sum(1)]

    @property
    def empty(self) -> list[int]:
        """Region numbers (1 for the first) that cover no sampled cell, so the model sees nothing of them."""
        return [i + 1 for i, n in enumerate(self.pixels) if n == 0]

    def text(self, context_token: str) -> str:
        """The region list that follows the image block (empty without regions)."""
        if not len(self.grid):
            return ""
        regions = ", ".join(render("region", REGIONS_FAMILY, number=str(i + 1), features=context_token * n)
                            for i, n in enumerate(self.pixels))
        # the official code puts the list on its own line between the image block and the question
        return "\n" + render("regions", REGIONS_FAMILY, count=str(len(self.grid)), regions=regions) + "\n"

    def features(self, thumbnail: torch.Tensor) -> torch.Tensor:
        """Every region's rows of the thumbnail's features [g·g, d], region 1 first: [sum(pixels), d]."""
        flat = self.grid.flatten(1).to(thumbnail.device)
        return torch.cat([thumbnail[cells] for cells in flat]) if len(flat) else thumbnail[:0]

    def notes(self) -> list[str]:
        """What a trace should say about these regions (each empty region, as the reference treats it)."""
        width, height = self.image_size
        g = self.grid.shape[-1]
        return [
            f"region {i} covers none of the {g}×{g} points the model samples (about every {height / g:.3g} rows "
            f"and {width / g:.3g} columns), so the model is told of it but sees no features of it, as in the "
            f"official Sa2VA code; mark a larger region to ask about it"
            for i in self.empty
        ]


def as_mask_stack(region_masks, image_size: tuple[int, int]) -> np.ndarray:
    """Region masks (one [H, W] array or PIL image each, or one [n, H, W] array) as bool [n, H, W]; a
    mask is on where it is non-zero, as the official `torch.Tensor(mask).bool()`."""
    width, height = image_size
    if isinstance(region_masks, np.ndarray) and region_masks.ndim == 3:
        region_masks = list(region_masks)
    masks = []
    for n, mask in enumerate(region_masks or (), start=1):
        array = np.asarray(mask.convert("L") if isinstance(mask, Image.Image) else mask)
        if array.ndim != 2:
            raise UserError(f"region mask {n} has shape {array.shape}; give one 2-D mask (height × width) per region")
        if array.shape != (height, width):
            raise UserError(f"region mask {n} is {array.shape[1]}×{array.shape[0]} but the image is {width}×{height}; "
                            "draw each region mask on the image itself (same width and height)")
        masks.append(array != 0)
    return np.stack(masks) if masks else np.zeros((0, height, width), bool)


def region_prompts(region_masks, image_size: tuple[int, int], grid: int) -> RegionPrompts:
    """Sample each mask on the `grid` × `grid` feature grid as the official code does: PyTorch's `nearest`
    (source pixel floor(i · H / grid), not 'nearest-exact') over the whole image."""
    masks = torch.from_numpy(as_mask_stack(region_masks, image_size)).float()
    if not len(masks):
        return RegionPrompts(torch.zeros((0, grid, grid), dtype=torch.bool), image_size)
    sampled = F.interpolate(masks[None], size=(grid, grid), mode="nearest")[0]
    return RegionPrompts(sampled.bool(), image_size)


def context_features(tile_features: torch.Tensor, regions: RegionPrompts | None) -> torch.Tensor:
    """What fills the prompt's `<IMG_CONTEXT>` embeddings, in order: every tile's rows [tiles, g·g, d],
    then each region's rows from the last tile (the thumbnail, or the only tile of a one-tile image)."""
    rows = tile_features.flatten(0, 1)
    if regions is not None and len(regions.grid):
        rows = torch.cat([rows, regions.features(tile_features[-1])])
    return rows[None]


def check_context_tokens(input_ids: torch.Tensor, context_token_id: int, features: int) -> None:
    """Refuse a prompt whose `<IMG_CONTEXT>` count differs from the features for it: the official code
    prints "Shape mismatch" there and goes on with no image features at all."""
    tokens = int((input_ids == context_token_id).sum())
    if tokens != features:
        raise UserError(
            f"the prompt has {tokens} image placeholder tokens (<IMG_CONTEXT>) for {features} image and region features, "
            "so the model would see no image at all; remove special tokens such as <IMG_CONTEXT>, <img> or <vp> from the "
            "question and the conversation"
        )


@dataclass
class RegionAnswer:
    """The answer to a question about marked regions of one image."""

    text: str  # the model's answer, special tokens removed
    masks: dict[int, np.ndarray]  # one bool [H, W] mask per [SEG] of the answer (1 for the first)
    region_pixels: list[int]  # features the model saw per region (0: none; see `notes`)
    empty_regions: list[int]  # region numbers the model saw nothing of
    notes: list[str] = field(default_factory=list)  # for the trace
    grounding: Grounding | None = None  # the grounder's reply ([SEG] states and prompts in `extras`)


def describe(backend, image: Image.Image, region_masks, question: str, answer: str | None = None) -> RegionAnswer:
    """Ask `question` about `image` with region masks (region 1 is the first mask; the question may say
    "region1", "region2", … as Sa2VA was trained), and segment every `[SEG]` of the answer with SAM 2 as the
    official single-image inference does. `answer` forces the answer (teacher forcing). Raises
    `RegionPromptsUnsupported` for a checkpoint family (or a backend) without region prompts."""
    from agent.video import VideoSource

    if not getattr(backend.grounder, "supports_region_prompts", False):  # another family, or not Sa2VA at all
        raise RegionPromptsUnsupported(getattr(backend.grounder, "family", backend.name))
    image = image.convert("RGB")
    grounding = backend.grounder.describe(image, region_masks, question, answer=answer)
    masks: dict[int, np.ndarray] = {}
    if grounding.prompts:
        frame = next(iter(backend.tracker.track(VideoSource.open(image), grounding.prompts, {0: image})))
        masks = {i: frame.masks[i] for i in grounding.object_ids}
    extras = grounding.extras
    return RegionAnswer(grounding.answer, masks, extras["region_pixels"], extras["empty_regions"],
                        list(extras["notes"]), grounding)
