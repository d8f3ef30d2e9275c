"""Writers out: palette PNG masks, result.json with COCO RLE, overlay.mp4."""

from agent.writers.output import SegmentationWriter, masks_from_labels
from agent.writers.palette import davis_palette, label_map, read_palette_png, save_palette_png
from agent.masks import decode_rle, encode_rle

__all__ = [
    "SegmentationWriter",
    "davis_palette",
    "decode_rle",
    "encode_rle",
    "label_map",
    "masks_from_labels",
    "read_palette_png",
    "save_palette_png",
]
