"""What a GPU run needs that a CPU-only machine can still check: the `[SEG]` embedding arrives from the
grounder on the CPU and must follow SAM 2's prompt encoder to the model's device. The meta device stands
in for a GPU here: mixing it with CPU tensors fails as mixing CUDA and CPU tensors does (a lent H200
found this: every Sa2VA fixture failed on CUDA before the fix, see benchmarks/gpu_check.py)."""

from types import SimpleNamespace

import torch

from agent.tracker.sam2_language import LanguagePromptedSAM2


def test_language_token_follows_the_prompt_encoder_to_its_device():
    model = SimpleNamespace(_language_tokens=torch.ones(1, 1, 4))  # as the grounder hands it over
    sparse, dense = torch.empty(1, 2, 4, device="meta"), torch.empty(1, 4, 2, 2, device="meta")
    out_sparse, out_dense = LanguagePromptedSAM2._append_language_token(model, None, None, (sparse, dense))
    assert out_sparse.device.type == "meta" and out_sparse.shape == (1, 3, 4) and out_dense is dense
