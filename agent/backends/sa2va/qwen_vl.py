"""Qwen-VL-based Sa2VA (Qwen2.5-VL, Qwen3-VL) on transformers' own Qwen-VL classes.

Official files keep the whole VLM under `model.`, in either of transformers' two Qwen-VL
layouts (`model.*`/`visual.*` or `model.language_model.*`/`model.visual.*`); dropping the
prefix leaves transformers' own legacy-key conversion to handle both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from agent.grounder.protocol import Turn

KEY_MAPPING = {r"^model\.": ""}
# Sa2VA's own config fields, which the VLM config does not take.
SA2VA_ONLY_FIELDS = ("model_type", "architectures", "template", "auto_map", "transformers_version", "rvos")
# Official Sa2VA-Qwen inference resizes frames to between these many pixels.
OFFICIAL_MIN_PIXELS = 512 * 28 * 28
OFFICIAL_MAX_PIXELS = 2048 * 28 * 28


class QwenVLInputs:
    """Model inputs as the official Qwen-VL Sa2VA inference builds them: one user message with the
    keyframes as separate images, then the text; `qwen_vl_utils` resizing, then the processor with
    min/max pixels; the checkpoint's chat template with a generation prompt."""

    def __init__(self, folder: Path, min_pixels: int = OFFICIAL_MIN_PIXELS, max_pixels: int = OFFICIAL_MAX_PIXELS):
        from transformers import AutoProcessor

        self.processor = AutoProcessor.from_pretrained(folder)
        self.tokenizer = self.processor.tokenizer
        self.min_pixels = min_pixels
        self.max_pixels = max_pixels

    @staticmethod
    def messages(frames: Sequence[Image.Image], text: str, history: Sequence[Turn] = (), system: str | None = None) -> list[dict]:
        """Chat messages: the frames go with the first user turn, as Sa2VA was trained."""
        turns = [*history, Turn("user", text)]
        messages = [{"role": "system", "content": [{"type": "text", "text": system}]}] if system else []
        for n, turn in enumerate(turns):
            content = [{"type": "image", "image": frame} for frame in frames] if n == 0 else []
            content.append({"type": "text", "text": turn.text.replace("<image>", "")})
            messages.append({"role": turn.role, "content": content})
        return messages

    def save(self, folder: Path) -> None:
        self.processor.save_pretrained(folder)

    def __call__(self, frames: Sequence[Image.Image], text: str, history: Sequence[Turn] = (), system: str | None = None):
        from qwen_vl_utils import process_vision_info

        messages = self.messages(frames, text, history, system)
        prompt = self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        images, videos = process_vision_info(messages)
        return self.processor(
            text=[prompt], images=images, videos=videos, return_tensors="pt",
            size={"shortest_edge": self.min_pixels, "longest_edge": self.max_pixels},
        )


@dataclass(frozen=True)
class QwenVLFamily:
    name: str  # also the prompts/ folder the family's templates live in
    text_model_type: str
    config_class: str
    model_class: str

    def matches(self, config: dict) -> bool:
        return (config.get("text_config") or {}).get("model_type") == self.text_model_type

    def inputs(self, folder: Path, config: dict, **pixels: int) -> QwenVLInputs:
        return QwenVLInputs(folder, **pixels)

    def official_tensors(self, vlm) -> dict:
        """The VLM's tensors as official files hold them: transformers' names under `model.`."""
        return {"model." + key: value for key, value in vlm.state_dict().items()}

    def model_and_options(self, config: dict, inputs: QwenVLInputs) -> tuple[type, dict]:
        """transformers' model class and its `from_pretrained` options."""
        import transformers

        vlm_config = getattr(transformers, self.config_class)(**{k: v for k, v in config.items() if k not in SA2VA_ONLY_FIELDS})
        return getattr(transformers, self.model_class), {"config": vlm_config, "key_mapping": KEY_MAPPING}


QWEN2_5_VL = QwenVLFamily("qwen2_5_vl", "qwen2_5_vl_text", "Qwen2_5_VLConfig", "Qwen2_5_VLForConditionalGeneration")
QWEN3_VL = QwenVLFamily("qwen3_vl", "qwen3_vl_text", "Qwen3VLConfig", "Qwen3VLForConditionalGeneration")
