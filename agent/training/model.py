"""Sa2VA as a trainable module: the language-model loss on the answer plus, for each `[SEG]`,
BCE + Dice on the masks SAM 2 predicts for the clip's frames through its decoder and memory.

What trains: LoRA adapters on the language model (peft), the `[SEG]` projector, and SAM 2 except
its image encoder; the VLM's vision encoder and SAM 2's image encoder are frozen unless asked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from agent.backends.sa2va.grounder import Sa2VAGrounder, as_request
from agent.grounder.protocol import Turn
from agent.tracker.sam2_stream import SAM2StreamTracker
from agent.training.data import Clip

LANGUAGE_MODEL_LAYERS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
VISION_PARTS = ("visual", "vision_tower", "multi_modal_projector")


@dataclass
class LossWeights:
    # Sa2VA's weights: mask BCE 2.0, Dice 0.5, language model 1.0
    lm: float = 1.0
    bce: float = 2.0
    dice: float = 0.5


@dataclass
class Trainable:
    lora_rank: int = 16  # 0: train the whole language model instead of LoRA adapters
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    vision_encoder: bool = False  # the VLM's
    sam2_image_encoder: bool = False
    extra: list[str] = field(default_factory=list)  # more parameter-name prefixes to train


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    prob = logits.sigmoid().flatten(1)
    target = target.flatten(1)
    return (1 - (2 * (prob * target).sum(1) + eps) / (prob.sum(1) + target.sum(1) + eps)).mean()


def mask_targets(masks: np.ndarray, size: int, device) -> torch.Tensor:
    """[..., H, W] bool → [..., size, size] float, resized as SAM 2 sees the frames."""
    target = torch.from_numpy(masks).float()
    flat = target.reshape(-1, 1, *target.shape[-2:])
    resized = F.interpolate(flat, size=(size, size), mode="bilinear", align_corners=False).round()
    return resized.reshape(*target.shape[:-2], size, size).to(device)


class Sa2VAForTraining(torch.nn.Module):
    def __init__(self, grounder: Sa2VAGrounder, tracker: SAM2StreamTracker, trainable: Trainable | None = None,
                 weights: LossWeights | None = None):
        super().__init__()
        self.trainable = trainable or Trainable()
        self.weights = weights or LossWeights()
        self.grounder, self.tracker = grounder, tracker
        self.vlm = self._adapt(grounder.vlm)
        grounder.vlm = self.vlm
        self.projector, self.sam2 = grounder.projector, tracker.model
        self._freeze()

    def _adapt(self, vlm):
        if self.trainable.lora_rank <= 0:
            return vlm
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(r=self.trainable.lora_rank, lora_alpha=self.trainable.lora_alpha,
                            lora_dropout=self.trainable.lora_dropout, target_modules=LANGUAGE_MODEL_LAYERS)
        return get_peft_model(vlm, config)

    def _freeze(self) -> None:
        t = self.trainable
        for name, param in self.vlm.named_parameters():
            vision = any(f".{part}." in f".{name}" for part in VISION_PARTS)
            if vision:
                param.requires_grad = t.vision_encoder
            elif t.lora_rank <= 0:
                param.requires_grad = True
            # with LoRA, peft has already left only the adapters trainable
            if any(name.startswith(prefix) or f".{prefix}" in name for prefix in t.extra):
                param.requires_grad = True
        for param in self.projector.parameters():
            param.requires_grad = True
        for name, param in self.sam2.named_parameters():
            param.requires_grad = t.sam2_image_encoder or not name.startswith("image_encoder.")

    def train(self, mode: bool = True):
        super().train(mode)
        # SAM 2 in train mode takes other memory paths (no object scores, no binarising): train it
        # as it tracks. With no clicks, SAM 2 predicts three candidate masks and keeps the one its IoU
        # head rates best, in training as in Sa2VA's (the mask loss goes to the kept one).
        self.sam2.eval()
        return self

    def merged_vlm(self):
        """The VLM with LoRA merged into its weights (what export writes)."""
        return self.vlm.merge_and_unload() if hasattr(self.vlm, "merge_and_unload") else self.vlm

    def conversation(self, clip: Clip) -> tuple[dict, torch.Tensor, torch.Tensor]:
        """The clip as one conversation, a turn per referral: (model inputs, labels on every answer,
        positions of each answer's first `[SEG]`)."""
        g = self.grounder
        keyframes = [clip.frames[i] for i in clip.keyframes]
        requests = [as_request(r.expression, g.family) for r in clip.referrals]
        history = [turn for request in requests[:-1] for turn in (Turn("user", request), Turn("assistant", clip.answer))]
        inputs = g.prompt_inputs(keyframes, requests[-1], history)
        answer_ids = g.tokenizer(clip.answer + g.end_token, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
        full = g._append(inputs, answer_ids)
        ids = full["input_ids"][0]
        labels = torch.full_like(full["input_ids"], -100)
        for start in _occurrences(ids, answer_ids.to(ids.device)):
            labels[0, start : start + len(answer_ids)] = ids[start : start + len(answer_ids)]
        positions = ((ids == g.seg_token_id) & (labels[0] != -100)).nonzero()[:, 0]
        per_turn = len(positions) // len(requests)
        if per_turn < 1 or per_turn * len(requests) != len(positions):
            raise ValueError(f"the conversation holds {len(positions)} [SEG] answers for {len(requests)} referrals; "
                             "check the answer template and the chat template")
        return full, labels, positions[::per_turn]

    def forward(self, clip: Clip) -> dict[str, torch.Tensor]:
        full, labels, positions = self.conversation(clip)
        out = self.vlm(**full, labels=labels, output_hidden_states=True)
        embedding = self.projector(out.hidden_states[-1][0, positions].float())  # [referrals, C]
        tokens = {t: embedding[:, None] for t in clip.keyframes}
        logits = self.tracker.clip_logits(clip.frames, tokens)  # [T, referrals, S, S]
        target = mask_targets(clip.masks, logits.shape[-1], logits.device)
        bce = F.binary_cross_entropy_with_logits(logits, target)
        dice = dice_loss(logits.flatten(0, 1), target.flatten(0, 1))
        w = self.weights
        total = w.lm * out.loss + w.bce * bce + w.dice * dice
        return {"loss": total, "lm": out.loss.detach(), "bce": bce.detach(), "dice": dice.detach()}


def _occurrences(sequence: torch.Tensor, pattern: torch.Tensor) -> list[int]:
    """Start positions of `pattern` in `sequence` (1-D token ids)."""
    n = len(pattern)
    if n == 0 or len(sequence) < n:
        return []
    windows = sequence.unfold(0, n, 1)
    return (windows == pattern).all(1).nonzero()[:, 0].tolist()
