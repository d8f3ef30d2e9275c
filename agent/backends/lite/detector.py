"""MobileNetV3-CenterNet (COCO-80) from @vladmandic/human, run from its converted TFJS graph."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.ops import batched_nms

from agent.backends.lite.text import VOCABULARY
from agent.backends.lite.tfjs_graph import TfjsGraph

INPUT, OUTPUT = "tower_0/images", "tower_0/detections"


@dataclass
class Detection:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in frame pixels
    score: float
    class_index: int

    @property
    def class_name(self) -> str:
        return VOCABULARY["classes"][self.class_index]["name"]

    @property
    def area(self) -> float:
        return max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1])

    @property
    def center(self) -> tuple[float, float]:
        return (self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2


class CenterNetDetector:
    def __init__(self, folder: Path):
        self.graph = TfjsGraph(folder / "centernet.safetensors", folder / "centernet_graph.json")
        self.size = int(self.graph.signature["inputs"][INPUT]["tensorShape"]["dim"][1]["size"])

    def detect(self, image: Image.Image, min_score: float = 0.1, iou: float = 0.5) -> list[Detection]:
        """Detections above `min_score`, after per-class non-maximum suppression, best first."""
        width, height = image.size
        pixels = np.asarray(image.convert("RGB").resize((self.size, self.size), Image.BILINEAR), dtype=np.float32)
        raw = self.graph({INPUT: torch.from_numpy(pixels)[None]}, [OUTPUT])[OUTPUT][0]
        raw = raw[raw[:, 4] >= min_score]
        if len(raw) == 0:
            return []
        scale = torch.tensor([width, height, width, height], dtype=torch.float32) / self.size
        boxes = raw[:, :4] * scale
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
        keep = batched_nms(boxes, raw[:, 4], raw[:, 5].long(), iou)
        return [Detection(tuple(float(v) for v in boxes[i]), float(raw[i, 4]), int(raw[i, 5])) for i in keep]
