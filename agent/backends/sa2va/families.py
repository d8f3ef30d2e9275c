"""VLM families inside Sa2VA checkpoints, mapped onto transformers' own classes."""

from __future__ import annotations

from dataclasses import dataclass

from agent.errors import UserError


@dataclass(frozen=True)
class VLMFamily:
    name: str  # also the prompts/ folder the family's templates live in
    text_model_type: str
    config_class: str
    model_class: str


FAMILIES = (
    VLMFamily("qwen2_5_vl", "qwen2_5_vl_text", "Qwen2_5_VLConfig", "Qwen2_5_VLForConditionalGeneration"),
    VLMFamily("qwen3_vl", "qwen3_vl_text", "Qwen3VLConfig", "Qwen3VLForConditionalGeneration"),
)

# Sa2VA's own config fields, which the VLM config does not take.
SA2VA_ONLY_FIELDS = ("model_type", "architectures", "template", "auto_map", "transformers_version")

# Official files keep the whole VLM under `model.`, in either of transformers' two Qwen-VL
# layouts (`model.*`/`visual.*` or `model.language_model.*`/`model.visual.*`); dropping the
# prefix leaves transformers' own legacy-key conversion to handle both.
VLM_KEY_MAPPING = {r"^model\.": ""}


def family_of(config: dict) -> VLMFamily:
    text_type = (config.get("text_config") or {}).get("model_type")
    for family in FAMILIES:
        if family.text_model_type == text_type:
            return family
    kind = text_type or (config.get("llm_config") or {}).get("model_type") or "unknown"
    raise UserError(
        f"this Sa2VA checkpoint's language model ({kind}) is not supported yet; "
        f"supported: {', '.join(f.name for f in FAMILIES)} (InternVL-based Sa2VA is planned)"
    )


def vlm_classes(family: VLMFamily):
    import transformers

    return getattr(transformers, family.config_class), getattr(transformers, family.model_class)
