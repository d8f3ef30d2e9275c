"""InternLM2 (the language model of Sa2VA-8B/26B) as transformers' own Llama classes, no remote code.

InternLM2 is a Llama-style decoder with other tensor names and one fused `wqkv` whose rows are laid out
per key/value group: for each group, its query heads, then one key head, then one value head. The
conversion list below maps the official names onto `LlamaForCausalLM`'s (and back for `save_pretrained`);
the sentencepiece tokenizer loads as `LlamaTokenizer` with the official one's BOS and prefix handling.
"""

from __future__ import annotations

from pathlib import Path

import torch

ARCHITECTURE = "InternLM2ForCausalLM"
QKV, Q, K, V = "attention.wqkv", "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"


def is_internlm2(llm_config: dict) -> bool:
    return ARCHITECTURE in (llm_config.get("architectures") or []) or llm_config.get("model_type") == "internlm2"


def llama_config(llm: dict) -> dict:
    """An InternLM2 `llm_config` as a Llama text config (same numbers, Llama's field names)."""
    rope = {"rope_type": "default", "rope_theta": llm.get("rope_theta", 10000.0)}
    scaling = llm.get("rope_scaling") or {}
    if scaling:  # InternLM2.5: dynamic NTK ×2 (it acts only beyond max_position_embeddings)
        rope.update(rope_type=scaling.get("rope_type", scaling.get("type", "default")), factor=scaling.get("factor", 1.0))
    bias = bool(llm.get("bias", False))
    return {
        "model_type": "llama", "architectures": ["LlamaForCausalLM"],
        "vocab_size": llm["vocab_size"], "hidden_size": llm["hidden_size"], "intermediate_size": llm["intermediate_size"],
        "num_hidden_layers": llm["num_hidden_layers"], "num_attention_heads": llm["num_attention_heads"],
        "num_key_value_heads": llm.get("num_key_value_heads", llm["num_attention_heads"]),
        "hidden_act": llm.get("hidden_act", "silu"), "max_position_embeddings": llm.get("max_position_embeddings", 32768),
        "rms_norm_eps": llm.get("rms_norm_eps", 1e-6), "rope_parameters": rope, "attention_bias": bias, "mlp_bias": False,
        "tie_word_embeddings": llm.get("tie_word_embeddings", False), "bos_token_id": llm.get("bos_token_id", 1),
        "eos_token_id": llm.get("eos_token_id", 2), "pad_token_id": llm.get("pad_token_id", 2),
    }


def _heads(config) -> tuple[int, int, int]:
    text = config.get_text_config()
    heads, kv_heads = text.num_attention_heads, text.num_key_value_heads
    return heads, kv_heads, getattr(text, "head_dim", None) or text.hidden_size // heads


def _conversion_ops():
    from transformers.core_model_loading import ConversionOps

    class SplitGroupedQKV(ConversionOps):
        """`wqkv` [(q_per_kv + 2)·kv·d, hidden] → q, k, v (query heads in group-major order)."""

        @torch.no_grad
        def convert(self, input_dict, source_patterns, target_patterns, config=None, **kwargs):
            tensor = next(iter(input_dict.values()))
            tensor = tensor[0] if isinstance(tensor, list) else tensor
            heads, kv_heads, head_dim = _heads(config)
            grouped = tensor.reshape(kv_heads, heads // kv_heads + 2, head_dim, *tensor.shape[1:])
            q = grouped[:, :-2].reshape(heads * head_dim, *tensor.shape[1:])
            k, v = (grouped[:, i].reshape(kv_heads * head_dim, *tensor.shape[1:]) for i in (-2, -1))
            return dict(zip(target_patterns, (q.contiguous(), k.contiguous(), v.contiguous())))

        @property
        def reverse_op(self):
            return MergeGroupedQKV()

    class MergeGroupedQKV(ConversionOps):
        """q, k, v → the official fused `wqkv` (what `save_pretrained` writes back)."""

        @torch.no_grad
        def convert(self, input_dict, source_patterns, target_patterns, config=None, **kwargs):
            q, k, v = (input_dict[p][0] if isinstance(input_dict[p], list) else input_dict[p] for p in source_patterns)
            heads, kv_heads, head_dim = _heads(config)
            rest = q.shape[1:]
            grouped = torch.cat([q.reshape(kv_heads, heads // kv_heads, head_dim, *rest),
                                 k.reshape(kv_heads, 1, head_dim, *rest), v.reshape(kv_heads, 1, head_dim, *rest)], dim=1)
            return {target_patterns[0]: grouped.reshape(-1, *rest).contiguous()}

        @property
        def reverse_op(self):
            return SplitGroupedQKV()

    return SplitGroupedQKV


def conversions() -> list:
    """InternLM2's official names → Llama's (after the InternVL prefix rename to `model.language_model.`)."""
    from transformers.core_model_loading import WeightConverter, WeightRenaming

    renames = [
        (r"^language_model\.output\.", "lm_head."),
        (r"\.tok_embeddings\.", ".embed_tokens."),
        (r"\.attention\.wo\.", ".self_attn.o_proj."),
        (r"\.feed_forward\.w1\.", ".mlp.gate_proj."),
        (r"\.feed_forward\.w3\.", ".mlp.up_proj."),
        (r"\.feed_forward\.w2\.", ".mlp.down_proj."),
        (r"\.attention_norm\.", ".input_layernorm."),
        (r"\.ffn_norm\.", ".post_attention_layernorm."),
    ]
    split = WeightConverter(source_patterns=QKV, target_patterns=[Q, K, V], operations=[_conversion_ops()()])
    return [WeightRenaming(source, target) for source, target in renames] + [split]


def tokenizer(folder: Path):
    """The official slow InternLM2Tokenizer's behaviour: BOS first, no `▁` before each text chunk."""
    from transformers import LlamaTokenizer

    return LlamaTokenizer.from_pretrained(folder, add_prefix_space=False, add_bos_token=True)
