"""A tiny, randomly initialised Sa2VA (Qwen2.5-VL family) in the official layout, to train from scratch.

Tiny VLM config + word-level tokenizer over the words training data uses + the tiny SAM 2 yaml;
written with the same exporter as trained checkpoints, so it loads through the official path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from agent.backends.sa2va.export import save_checkpoint
from agent.backends.sa2va.qwen_vl import QWEN2_5_VL
from agent.prompts import PROMPTS_DIR, load_template
from agent.tracker.sam2_language import build_language_sam2
from agent.training import synthetic

CONFIGS = Path(__file__).resolve().parent / "configs"
TINY_SAM2_YAML = CONFIGS / "sam2_tiny.yaml"
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|image_pad|>", "<|video_pad|>", "[SEG]", "[UNK]"]
CHAT_WORDS = ["user", "assistant", "system", "yes", "no", "and", "there", "is", "not", "in", "this", "video", "it"]


@dataclass
class TinySizes:
    text_hidden: int = 64
    text_layers: int = 2
    vision_hidden: int = 32
    vision_layers: int = 2
    frame_pixels: int = 112 * 112  # min = max pixels: 16 visual tokens for a 112² frame


def prompt_words() -> list[str]:
    """Words of the prompt templates (segmentation request and training answer)."""
    import re

    text = " ".join(load_template(name) for name in ("segment", "answer"))
    return sorted({w.lower() for w in re.findall(r"[A-Za-z]+", text)})


def word_tokenizer(words: list[str]):
    """A lower-casing word-level tokenizer with Qwen-VL's special tokens and `[SEG]`."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: n for n, token in enumerate(SPECIAL_TOKENS)}
    for word in sorted(set(words) | set(",.?!'")):
        vocab.setdefault(word, len(vocab))
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token="[UNK]",
        additional_special_tokens=[t for t in SPECIAL_TOKENS if t not in ("<|im_end|>", "<|endoftext|>", "[UNK]")],
    )
    return tokenizer


def tiny_processor(words: list[str]):
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    template = (PROMPTS_DIR / "qwen2_5_vl" / "chat_template.jinja").read_text()
    return Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(), video_processor=Qwen2VLVideoProcessor(),
        tokenizer=word_tokenizer(words), chat_template=template,
    )


def tiny_sa2va_config(tokenizer, sizes: TinySizes) -> dict:
    ids = tokenizer.convert_tokens_to_ids
    heads = 4
    head_dim = sizes.text_hidden // heads
    section = [head_dim // 8, 3 * head_dim // 16, 3 * head_dim // 16]  # mrope: t, h, w halves of head_dim / 2
    section[0] += head_dim // 2 - sum(section)
    text = dict(
        model_type="qwen2_5_vl_text", hidden_size=sizes.text_hidden, num_hidden_layers=sizes.text_layers,
        num_attention_heads=heads, num_key_value_heads=2, intermediate_size=2 * sizes.text_hidden,
        vocab_size=len(tokenizer), max_position_embeddings=4096, bos_token_id=None,
        eos_token_id=ids("<|im_end|>"), pad_token_id=ids("<|endoftext|>"),
        # 1/sqrt(width), not transformers' 0.02: at 0.02 a tiny model's states are its input
        # embeddings, and the [SEG] state would not depend on the expression before training
        initializer_range=sizes.text_hidden**-0.5,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": section},
    )
    vision = dict(
        model_type="qwen2_5_vl_vision", depth=sizes.vision_layers, hidden_size=sizes.vision_hidden, num_heads=2,
        intermediate_size=2 * sizes.vision_hidden, out_hidden_size=sizes.text_hidden, patch_size=14,
        spatial_merge_size=2, temporal_patch_size=2, window_size=56, fullatt_block_indexes=[sizes.vision_layers - 1],
        initializer_range=sizes.vision_hidden**-0.5,
    )
    return dict(
        model_type="sa2va_chat", architectures=["Sa2VAChatModelQwen"], text_config=text, vision_config=vision,
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
        eos_token_id=ids("<|im_end|>"), pad_token_id=ids("<|endoftext|>"),
        # 1/sqrt(width), not transformers' 0.02: at 0.02 a tiny model's states are its input
        # embeddings, and the [SEG] state would not depend on the expression before training
        initializer_range=sizes.text_hidden**-0.5, tie_word_embeddings=False,
    )


def build_tiny_sa2va(out: Path, seed: int = 0, sizes: TinySizes | None = None, words: list[str] | None = None) -> Path:
    """Write a random tiny Sa2VA checkpoint folder (official layout + its SAM 2 yaml)."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    sizes = sizes or TinySizes()
    torch.manual_seed(seed)
    processor = tiny_processor((words or synthetic.vocabulary()) + prompt_words() + CHAT_WORDS)
    config = tiny_sa2va_config(processor.tokenizer, sizes)
    vlm = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(**{k: v for k, v in config.items() if k not in ("model_type", "architectures")}))
    sam2, _, _ = build_language_sam2(TINY_SAM2_YAML, {})
    d = sizes.text_hidden
    projector = torch.nn.Sequential(torch.nn.Linear(d, d), torch.nn.ReLU(), torch.nn.Linear(d, sam2.hidden_dim))
    # norm-preserving init: differences between [SEG] states must reach SAM 2 at their full size
    torch.nn.init.kaiming_normal_(projector[0].weight, nonlinearity="relu")
    torch.nn.init.normal_(projector[2].weight, std=d**-0.5)
    for layer in (projector[0], projector[2]):
        torch.nn.init.zeros_(layer.bias)
    inputs = _ProcessorFiles(processor)
    extras = {"min_pixels": sizes.frame_pixels, "max_pixels": sizes.frame_pixels}
    return save_checkpoint(out, config, vlm, QWEN2_5_VL, inputs, projector, sam2, sam2_yaml=TINY_SAM2_YAML, extras=extras)


@dataclass
class _ProcessorFiles:
    processor: object

    def save(self, folder: Path) -> None:
        self.processor.save_pretrained(folder)
