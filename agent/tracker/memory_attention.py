"""SAM 2's memory cross-attention with a faster path for bfloat16 on the CPU.

Same module, same weights as the package's `RoPEAttention`; it is swapped in through the yaml's
`_target_`. In float32, on GPUs and wherever gradients are needed it runs the package's own
forward. For inference under CPU bfloat16 autocast it attends in chunks of queries with bfloat16
matmuls (the CPU's native bf16 dot products run at twice float32's rate; the fused SDPA kernel
does not use them) and applies the value projection after the attention: softmax rows sum to
one, so `A (X Wᵀ + b) = (A X) Wᵀ + b`, and the attention weights multiply the memory's 64
channels instead of 256.
"""

from __future__ import annotations

import math

import torch
from sam2.modeling.position_encoding import apply_rotary_enc
from sam2.modeling.sam.transformer import RoPEAttention

QUERY_CHUNK = 256  # queries per chunk: a [256, memory] score block stays in cache-friendly sizes


def _cpu_bfloat16(x: torch.Tensor) -> bool:
    return x.device.type == "cpu" and torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16


def chunked_attention(q: torch.Tensor, k: torch.Tensor, values: torch.Tensor, chunk: int = QUERY_CHUNK) -> torch.Tensor:
    """softmax(q kᵀ / √d) values, `chunk` queries at a time; q, k [B, H, N, d], values [B, 1 or H, M, e].
    Returns float32 [B, H, N, e]."""
    scale = q.shape[-1] ** -0.5
    keys = k.transpose(-1, -2)
    out = torch.empty(*q.shape[:-1], values.shape[-1], dtype=torch.float32, device=q.device)
    for start in range(0, q.shape[-2], chunk):
        scores = torch.matmul(q[..., start : start + chunk, :] * scale, keys)
        weights = (scores - scores.amax(-1, keepdim=True)).exp_()
        total = weights.sum(-1, keepdim=True, dtype=torch.float32)
        out[..., start : start + chunk, :] = torch.matmul(weights, values).float() / total
    return out


class MemoryCrossAttention(RoPEAttention):
    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_k_exclude_rope: int = 0) -> torch.Tensor:
        if self.training or torch.is_grad_enabled() or not _cpu_bfloat16(q):  # inference only
            return super().forward(q, k, v, num_k_exclude_rope)
        heads = self.num_heads
        q = self._separate_heads(self.q_proj(q), heads)
        k = self._separate_heads(self.k_proj(k), heads)
        side = int(math.sqrt(q.shape[-2]))
        if self.freqs_cis.shape[0] != q.shape[-2]:
            self.freqs_cis = self.compute_cis(end_x=side, end_y=side)
        rotated = k.size(-2) - num_k_exclude_rope
        q, k[:, :, :rotated] = apply_rotary_enc(q, k[:, :, :rotated], freqs_cis=self.freqs_cis.to(q.device),
                                                repeat_freqs_k=self.rope_k_repeat)
        mixed = chunked_attention(q, k, v[:, None])  # [B, H, N, kv_in_dim]: the memory itself, per head
        weight = self.v_proj.weight.view(heads, -1, self.v_proj.in_features).to(mixed.dtype)
        bias = self.v_proj.bias.view(heads, 1, -1).to(mixed.dtype)
        out = torch.einsum("bhnc,hdc->bhnd", mixed, weight) + bias
        return self.out_proj(self._recombine_heads(out))
