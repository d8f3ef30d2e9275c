"""The Sa2VA grounder: a transformers VLM whose `[SEG]` tokens become SAM 2 prompts.

Inputs come from the family's input builder, built as the official inference builds them
(qwen_vl.py, internvl.py). The `[SEG]` state is the last layer's hidden state at the position
where `[SEG]` is the input token, taken from one teacher-forced pass over prompt + answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import re
from dataclasses import dataclass

import torch
from PIL import Image

from agent.grounder.protocol import Grounding, ObjectPrompt, Thought, Turn, Verdict
from agent.prompts import render

SEG_TOKEN = "[SEG]"
STOP_TOKENS = ("<|im_end|>", "<|endoftext|>")  # the official inference's stop words
_REQUEST_STARTS = ("please", "segment", "can ", "could ", "what", "how", "where", "which", "who", "is ", "are ", "does ", "do ")


def as_request(instruction: str, family: str) -> str:
    """A bare referring expression becomes a segmentation request; requests pass unchanged."""
    text = instruction.replace("<image>", "").strip()
    if text.lower().startswith(_REQUEST_STARTS) or text.endswith("?"):
        return text
    return render("segment", family, expression=text.rstrip("."))


def settled_expression(text: str) -> str:
    """What follows the last 'Answer:' in a reasoning text (else its last sentence)."""
    match = re.findall(r"answer\s*:\s*(.+)", text, flags=re.IGNORECASE)
    if match:
        return match[-1].strip().rstrip(".")
    sentences = [s.strip() for s in re.split(r"[.\n]", text) if s.strip()]
    return sentences[-1] if sentences else text.strip()


@dataclass
class Sa2VAOutput:
    answer: str
    seg_hidden: torch.Tensor  # [num_seg, d]
    seg_embedding: torch.Tensor  # [num_seg, sam2 dim]


class Sa2VAGrounder:
    def __init__(self, vlm, inputs, projector: torch.nn.Module, family: str, *,
                 max_new_tokens: int = 512, answer: str | None = None, teacher: dict[str, str] | None = None):
        self.vlm = vlm
        self.inputs = inputs  # the family's input builder: (frames, text, history, system) -> model inputs
        self.tokenizer = inputs.tokenizer
        self.projector = projector
        self.family = family
        self.max_new_tokens = max_new_tokens
        # Forced answers per step ("segment", "reason", "verify"): teacher forcing for evaluation,
        # training and tests with models that cannot answer (random weights).
        self.teacher = dict(teacher or {})
        if answer is not None:
            self.teacher["segment"] = answer
        tokenizer = self.tokenizer
        self.seg_token_id = tokenizer.convert_tokens_to_ids(SEG_TOKEN)
        if self.seg_token_id is None or self.seg_token_id == tokenizer.unk_token_id:
            raise ValueError(f"the tokenizer has no {SEG_TOKEN} token; this is not a Sa2VA checkpoint")
        vocab = tokenizer.get_vocab()
        # the chat format's end of turn (InternLM2's eos is </s>, but its turns end with <|im_end|>)
        self.end_token = STOP_TOKENS[0] if STOP_TOKENS[0] in vocab else tokenizer.eos_token or STOP_TOKENS[0]
        self.stop_token_ids = [vocab[t] for t in dict.fromkeys((self.end_token, *STOP_TOKENS)) if t in vocab]

    @property
    def device(self) -> torch.device:
        return next(self.vlm.parameters()).device

    def prompt_inputs(self, frames: Sequence[Image.Image], text: str, history: Sequence[Turn] = (), system: str | None = None):
        inputs = {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in self.inputs(frames, text, history, system).items()}
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.vlm.dtype)
        return inputs

    def _append(self, inputs, answer_ids: torch.Tensor) -> dict:
        """Prompt inputs extended by answer tokens (per-token fields grow, images stay)."""
        length = inputs["input_ids"].shape[1]
        extended = dict(inputs)
        answer_ids = answer_ids.to(self.device).view(1, -1)
        fill = {"input_ids": answer_ids, "attention_mask": torch.ones_like(answer_ids)}
        for key, value in inputs.items():
            if torch.is_tensor(value) and value.dim() == 2 and value.shape == (1, length):
                extra = fill.get(key, torch.zeros_like(answer_ids))
                extended[key] = torch.cat([value, extra.to(value.dtype)], dim=1)
        return extended

    @torch.inference_mode()
    def run(self, frames: Sequence[Image.Image], text: str, history: Sequence[Turn] = (), answer: str | None = None,
            system: str | None = None) -> Sa2VAOutput:
        """Answer `text` about `frames` (greedy), or take `answer` as given (teacher forcing)."""
        inputs = self.prompt_inputs(frames, text, history, system)
        tokenizer = self.tokenizer
        if answer is None:
            generated = self.vlm.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False,
                                          eos_token_id=self.stop_token_ids, pad_token_id=tokenizer.pad_token_id)
            answer_ids = generated[0, inputs["input_ids"].shape[1]:]
        else:
            answer_ids = tokenizer(answer + self.end_token, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
        full = self._append(inputs, answer_ids)
        hidden = self.vlm(**full, output_hidden_states=True).hidden_states[-1][0]
        positions = (full["input_ids"][0] == self.seg_token_id).nonzero()[:, 0]
        positions = positions[positions >= inputs["input_ids"].shape[1]]  # [SEG]s of this answer only
        seg_hidden = hidden[positions].float()
        seg_embedding = self.projector(seg_hidden.to(next(self.projector.parameters()).dtype)).float()
        text_out = tokenizer.decode(answer_ids, skip_special_tokens=False)
        for token in (self.end_token, tokenizer.pad_token):
            if token:
                text_out = text_out.replace(token, "")
        return Sa2VAOutput(text_out.strip(), seg_hidden.cpu(), seg_embedding.cpu())

    def ground(self, keyframes: Mapping[int, Image.Image], instruction: str, history: Sequence[Turn] = (), answer: str | None = None) -> Grounding:
        indices = sorted(keyframes)
        text = as_request(instruction, self.family)
        out = self.run([keyframes[i] for i in indices], text, history, answer or self.teacher.get("segment"))
        objects = {n + 1: f"{SEG_TOKEN} #{n + 1} of the answer" for n in range(len(out.seg_embedding))}
        prompts = [
            ObjectPrompt(object_id=n + 1, frame_index=t, embedding=out.seg_embedding[n])
            for n in range(len(out.seg_embedding))
            for t in indices
        ]
        return Grounding(out.answer, prompts, objects, extras={"seg_hidden": out.seg_hidden, "seg_embedding": out.seg_embedding, "request": text})

    def reason(self, keyframes: Mapping[int, Image.Image], instruction: str, history: Sequence[Turn] = (), feedback: str | None = None) -> Thought:
        """Think in text first; the expression settled on is what gets grounded."""
        template = "retry" if feedback else "reason"
        prompt = render(template, self.family, instruction=instruction, feedback=feedback or "")
        frames = [keyframes[i] for i in sorted(keyframes)]
        text = self.run(frames, prompt, history, self.teacher.get("reason"), system=render("system", self.family)).answer
        return Thought(text, settled_expression(text))

    def verify(self, masked_keyframes: Mapping[int, Image.Image], instruction: str, grounding: Grounding) -> Verdict:
        """Show the model its own masks and ask whether they are what was asked for."""
        prompt = render("verify", self.family, instruction=instruction)
        frames = [masked_keyframes[i] for i in sorted(masked_keyframes)]
        text = self.run(frames, prompt, (), self.teacher.get("verify"), system=render("system", self.family)).answer
        return Verdict(text.strip().lower().startswith("yes"), text)
