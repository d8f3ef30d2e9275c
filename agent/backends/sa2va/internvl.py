"""InternVL-based Sa2VA (Sa2VA-1B/4B/8B/26B, Sa2VA-InternVL3-*) on transformers' own InternVL classes.

Official files keep the original InternVL names (`vision_model.*` InternViT with a fused qkv,
`mlp1.*`, `language_model.model.*`); they are mapped onto `InternVLForConditionalGeneration`
by a conversion list registered with transformers' loader, so `from_pretrained` does the
loading (dtype, device_map, bitsandbytes) and `save_pretrained` writes the official names back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from transformers import InternVLConfig, InternVLForConditionalGeneration

from agent.backends.sa2va import internlm2
from agent.errors import UserError
from agent.grounder.protocol import Turn
from agent.prompts import PROMPTS_DIR

IMG_START, IMG_END, IMG_CONTEXT = "<img>", "</img>", "<IMG_CONTEXT>"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Language models transformers has classes for; InternLM2 (Sa2VA-8B/26B) runs as Llama (internlm2.py).
SUPPORTED_LLMS = {"Qwen2ForCausalLM": "qwen2", "Qwen3ForCausalLM": "qwen3", "LlamaForCausalLM": "llama", internlm2.ARCHITECTURE: "llama"}


class Sa2VAInternVLForConditionalGeneration(InternVLForConditionalGeneration):
    """transformers' InternVL under its own name, so the Sa2VA key conversion applies to it alone."""


def _conversions():
    from transformers.core_model_loading import Chunk, WeightConverter, WeightRenaming

    renames = [
        (r"^vision_model\.", "model.vision_tower."),
        (r"embeddings\.class_embedding", "embeddings.cls_token"),
        (r"embeddings\.patch_embedding\.", "embeddings.patch_embeddings.projection."),
        (r"embeddings\.position_embedding", "embeddings.position_embeddings"),
        (r"encoder\.layers\.", "encoder.layer."),
        (r"\.attn\.proj\.", ".attention.projection_layer."),
        (r"\.attn\.q_norm\.", ".attention.q_norm."),
        (r"\.attn\.k_norm\.", ".attention.k_norm."),
        (r"\.ls1", ".lambda_1"),
        (r"\.ls2", ".lambda_2"),
        (r"\.norm1\.", ".layernorm_before."),
        (r"\.norm2\.", ".layernorm_after."),
        (r"^mlp1\.0\.", "model.multi_modal_projector.layer_norm."),
        (r"^mlp1\.1\.", "model.multi_modal_projector.linear_1."),
        (r"^mlp1\.3\.", "model.multi_modal_projector.linear_2."),
        (r"^language_model\.lm_head\.", "lm_head."),
        (r"^language_model\.model\.", "model.language_model."),
    ]
    split_qkv = WeightConverter(
        source_patterns="attn.qkv",
        target_patterns=["attention.q_proj", "attention.k_proj", "attention.v_proj"],
        operations=[Chunk(dim=0)],
    )
    return [WeightRenaming(source, target) for source, target in renames] + [split_qkv] + internlm2.conversions()


def register_conversions() -> None:
    from transformers.conversion_mapping import register_checkpoint_conversion_mapping

    register_checkpoint_conversion_mapping(Sa2VAInternVLForConditionalGeneration.__name__, _conversions(), overwrite=True)


def internvl_config(config: dict, image_token_id: int) -> InternVLConfig:
    """transformers' InternVLConfig from a Sa2VA `config.json` (InternVL's own field names)."""
    llm = dict(config.get("llm_config") or {})
    architecture = (llm.get("architectures") or ["unknown"])[0]
    if architecture not in SUPPORTED_LLMS:
        raise UserError(
            f"this InternVL-based Sa2VA checkpoint uses {architecture} as language model, which is not supported; "
            f"supported: {', '.join(SUPPORTED_LLMS)}"
        )
    llm = internlm2.llama_config(llm) if internlm2.is_internlm2(llm) else llm
    llm["model_type"] = SUPPORTED_LLMS[architecture]
    vit = config["vision_config"]
    patch, size = vit["patch_size"], config.get("force_image_size") or vit["image_size"]
    ratio = config.get("downsample_ratio", 0.5)
    vision = dict(
        hidden_size=vit["hidden_size"], num_hidden_layers=vit["num_hidden_layers"],
        num_attention_heads=vit["num_attention_heads"], intermediate_size=vit["intermediate_size"],
        hidden_act=vit.get("hidden_act", "gelu"), layer_norm_eps=vit.get("layer_norm_eps", 1e-6),
        norm_type=vit.get("norm_type", "rms_norm"), attention_bias=vit.get("qkv_bias", True),
        use_qk_norm=vit.get("qk_normalization", False), image_size=size, patch_size=patch,
        use_mean_pooling=True,  # InternViT's last hidden state has no final norm
    )
    return InternVLConfig(
        vision_config=vision, text_config=llm, image_token_id=image_token_id,
        image_seq_length=int((size // patch) ** 2 * ratio**2), downsample_ratio=ratio,
        vision_feature_layer=config.get("select_layer", -1), vision_feature_select_strategy="default",
        projector_hidden_act="gelu", tie_word_embeddings=config.get("tie_word_embeddings", False),
    )


def chat_template(template: str) -> str:
    path = PROMPTS_DIR / "internvl" / f"{template}.jinja"
    if not path.is_file():
        have = ", ".join(sorted(p.stem for p in path.parent.glob("*.jinja")))
        raise UserError(f"this Sa2VA checkpoint's chat template {template!r} is not supported (have: {have})")
    return path.read_text()


class InternVLInputs:
    """Model inputs as the official InternVL Sa2VA inference builds them.

    Video: one 448² tile per frame; a single image: InternVL's dynamic tiling plus a thumbnail.
    Each tile is `<img>` + `<IMG_CONTEXT>` × 256 + `</img>`; the chat format is the checkpoint's
    `template` (a Jinja file in prompts/internvl/).
    """

    def __init__(self, folder: Path, config: dict):
        from transformers import AutoTokenizer
        from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil

        llm = config.get("llm_config") or {}
        self.tokenizer = internlm2.tokenizer(folder) if internlm2.is_internlm2(llm) else AutoTokenizer.from_pretrained(folder)
        self.template = chat_template(config.get("template", "qwen_chat"))
        size = config.get("force_image_size") or config["vision_config"]["image_size"]
        self.tokens_per_tile = int((size // config["vision_config"]["patch_size"]) ** 2 * config.get("downsample_ratio", 0.5) ** 2)
        self.images = GotOcr2ImageProcessorPil(
            size={"height": size, "width": size}, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD,
            do_convert_rgb=True, min_patches=config.get("min_dynamic_patch", 1), max_patches=config.get("max_dynamic_patch", 12),
        )
        self.image_token_id = self.tokenizer.convert_tokens_to_ids(IMG_CONTEXT)

    def save(self, folder: Path) -> None:
        self.tokenizer.save_pretrained(folder)

    def tiles(self, frames: Sequence[Image.Image]) -> torch.Tensor:
        tiling = len(frames) == 1
        out = self.images([frame.convert("RGB") for frame in frames], crop_to_patches=tiling, return_tensors="pt")
        return out["pixel_values"]

    @property
    def feature_grid(self) -> int:
        """Side of a tile's feature grid (16 for 448² tiles): region masks are sampled on it."""
        return math.isqrt(self.tokens_per_tile)

    def __call__(self, frames: Sequence[Image.Image], text: str, history: Sequence[Turn] = (), system: str | None = None,
                 regions: str = "") -> dict:
        """`regions`: the region list of a single image (region_prompts.py), put right after its image block."""
        pixel_values = self.tiles(frames) if frames else None
        # one <img> span per video frame; a single image's tiles and thumbnail share one span
        spans = [len(pixel_values)] if len(frames) == 1 else [1] * len(frames)
        images = "\n".join(f"{IMG_START}{IMG_CONTEXT * self.tokens_per_tile * n}{IMG_END}" for n in spans) if frames else ""
        images += regions
        messages = [{"role": "system", "content": system}] if system else []
        for n, turn in enumerate([*history, Turn("user", text)]):
            content = turn.text.replace("<image>", "")
            messages.append({"role": turn.role, "content": images + content if n == 0 else content})
        prompt = self.tokenizer.apply_chat_template(messages, chat_template=self.template, tokenize=False, add_generation_prompt=True)
        encoded = self.tokenizer(prompt, return_tensors="pt")
        inputs = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
        if pixel_values is not None:
            inputs["pixel_values"] = pixel_values
        return inputs


class InternVLFamily:
    """Sa2VA-1B/4B (InternVL2.5), Sa2VA-InternVL3-* (Qwen2) and Sa2VA-8B/26B (InternLM2): InternViT + `mlp1` + the LLM."""

    name = "internvl"

    def matches(self, config: dict) -> bool:
        return "llm_config" in config and (config.get("vision_config") or {}).get("model_type") == "intern_vit_6b"

    def inputs(self, folder: Path, config: dict, **pixels: int) -> InternVLInputs:
        return InternVLInputs(folder, config)  # fixed 448² tiles: min/max pixels do not apply

    def official_tensors(self, vlm) -> dict:
        """InternVL's original names, from transformers' reverse of the registered conversion."""
        from agent.backends.sa2va.export import saved_tensors

        register_conversions()
        return saved_tensors(vlm)

    def model_and_options(self, config: dict, inputs: InternVLInputs) -> tuple[type, dict]:
        register_conversions()
        return Sa2VAInternVLForConditionalGeneration, {"config": internvl_config(config, inputs.image_token_id)}


INTERNVL = InternVLFamily()
