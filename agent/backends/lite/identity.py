"""What a tracked object is, in the ImageNet classifier's words: whether its mask still holds it, and where it is.

Optical flow follows pixels, not objects: an object that passes behind a trunk leaves its mask on the
trunk, which moves on with the background and keeps a plausible size. The classifier can tell: on its
first mask the object is named (the everyday group of its top class, e.g. all ~120 dog breeds are "dog",
or that class alone), and later masks are checked against that name, relative to how sure it was at
first. An object that is not confidently named at first (a person: ImageNet has no such class) is not
checked at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torchvision.ops import nms

from agent.backends.lite.classifier import ImageNetClassifier
from agent.backends.lite.detector import Detection
from agent.backends.lite.text import VOCABULARY

NAMED = 0.5  # probability on its first mask that makes a name to check against
DOUBT = 0.25  # of that probability: below this the mask no longer holds the object
FOUND = 0.5  # of that probability: a box that holds the object again
SEARCHED = 12  # boxes the classifier looks at when searching (~60 ms each)


@dataclass
class Identity:
    classes: list[int]  # ImageNet classes
    name: str
    sureness: float  # their probability on the first mask

    def __str__(self) -> str:
        return f"{self.name} {self.sureness:.2f}"


def _groups() -> list[tuple[str, set[int]]]:
    return [(name, {i for a, b in group["ranges"] for i in range(a, b + 1)})
            for name, group in VOCABULARY["imagenet_groups"].items() if not name.startswith("_")]


class Identifier:
    def __init__(self, classifier: ImageNetClassifier):
        self.classifier = classifier
        self.groups = _groups()

    def identify(self, image: Image.Image, mask: np.ndarray, box) -> Identity | None:
        """The object's name from its first mask: the largest group holding its top class (the most
        forgiving of a changing view), else that class; None when the classifier is not sure of it."""
        probabilities = self.classifier.probabilities([self.classifier.crop(image, box, mask)])[0]
        top = int(probabilities.argmax())
        holding = [(name, classes) for name, classes in self.groups if top in classes]
        name, classes = max(holding, key=lambda item: len(item[1])) if holding else (self.classifier.names[top], {top})
        identity = Identity(sorted(classes), name, float(probabilities[sorted(classes)].sum()))
        return identity if identity.sureness >= NAMED else None

    def probability(self, identity: Identity, image: Image.Image, boxes, masks=None) -> np.ndarray:
        masks = masks if masks is not None else [None] * len(boxes)
        crops = [self.classifier.crop(image, box, mask) for box, mask in zip(boxes, masks)]
        return self.classifier.probabilities(crops)[:, identity.classes].sum(1)

    def holds(self, identity: Identity, image: Image.Image, mask: np.ndarray, box) -> bool:
        return float(self.probability(identity, image, [box], [mask])[0]) >= DOUBT * identity.sureness

    def search(self, identity: Identity, image: Image.Image, detections: list[Detection]) -> list[tuple[tuple, float]]:
        """The detections' boxes, of any class (the detector may call a dog a sheep), that the classifier
        names as the object, surest first: (box, probability)."""
        if not detections:
            return []
        boxes = torch.tensor([d.box for d in detections], dtype=torch.float32)
        keep = nms(boxes, torch.tensor([d.score for d in detections]), 0.7)[:SEARCHED]  # one box per place
        boxes = [detections[int(i)].box for i in keep]
        found = self.probability(identity, image, boxes)
        return sorted(((box, float(p)) for box, p in zip(boxes, found) if p >= FOUND * identity.sureness), key=lambda item: -item[1])
