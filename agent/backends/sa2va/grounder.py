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

from agent.backends.sa2va import region_prompts
from agent.backends.sa2va.internvl import IMG_CONTEXT, INTERNVL
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


def grounded_phrases(answer: str) -> dict[int, str]:
    """Grounded conversation generation (GCG): the phrase each `[SEG]` of the answer segments, when the answer
    marks it the way Sa2VA was trained to (`<p>a man</p> [SEG] walking a <p>dog</p> [SEG]`); [SEG] n → phrase."""
    phrases, start = {}, 0
    for n, seg in enumerate(re.finditer(re.escape(SEG_TOKEN), answer), start=1):
        marked = re.findall(r"<p>\s*(.*?)\s*</p>", answer[start:seg.start()], flags=re.DOTALL)
        if marked and marked[-1]:
            phrases[n] = " ".join(marked[-1].split())
        start = seg.end()
    return phrases


def plain_caption(answer: str) -> str:
    """The answer as a person reads it: phrase marks and [SEG] tokens taken out."""
    text = re.sub(r"</?p>", "", answer.replace(SEG_TOKEN, ""))
    return re.sub(r"\s+([.,;:!?])", r"\1", " ".join(text.split()))


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
    answer_logits: torch.Tensor | None = None  # [answer tokens, vocab]: row k predicted token k (when recorded)


class Sa2VAGrounder:
    def __init__(self, vlm, inputs, projector: torch.nn.Module, family: str, *,
                 max_new_tokens: int = 512, answer: str | None = None, teacher: dict[str, str] | None = None):
        self.vlm = vlm
        self.inputs = inputs  # the family's input builder: (frames, text, history, system) -> model inputs
        self.tokenizer = inputs.tokenizer
        self.projector = projector
        self.family = family
        self.max_new_tokens = max_new_tokens
        # Keep the answer's raw logits in the output (answer tokens × vocabulary floats: for checks against
        # the official code's, not needed to answer).
        self.record_logits = False
        # Forced answers per step ("segment", "reason", "verify", "describe"): teacher forcing for evaluation,
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

    @property
    def supports_region_prompts(self) -> bool:
        """Whether `describe` takes region masks: the official code has them for the InternVL family only."""
        return self.family == INTERNVL.name

    def prompt_inputs(self, frames: Sequence[Image.Image], text: str, history: Sequence[Turn] = (), system: str | None = None,
                      **options):
        """The model's inputs; `options` go to the family's input builder (InternVL: `regions`)."""
        built = self.inputs(frames, text, history, system, **options)
        inputs = {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in built.items()}
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.vlm.dtype)
        return inputs

    def _encode_images(self, inputs: dict, regions: region_prompts.RegionPrompts | None) -> dict:
        """InternVL: the image features computed here, region features appended, and checked against the
        prompt's placeholders, so that a mismatch is refused (region_prompts.py); other families unchanged."""
        if not self.supports_region_prompts or "pixel_values" not in inputs:
            return inputs
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        inputs = dict(inputs)
        tiles = self.vlm.get_image_features(pixel_values=inputs.pop("pixel_values"), return_dict=True).pooler_output
        features = region_prompts.context_features(tiles, regions)
        region_prompts.check_context_tokens(inputs["input_ids"], self.inputs.image_token_id, features.shape[1])
        inputs["mm_encoder_outputs"] = {"image": BaseModelOutputWithPooling(pooler_output=features)}
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
            system: str | None = None, regions: region_prompts.RegionPrompts | None = None) -> Sa2VAOutput:
        """Answer `text` about `frames` (greedy), or take `answer` as given (teacher forcing). `regions`:
        region prompts on a single image (InternVL family; see `describe`)."""
        options = {"regions": regions.text(IMG_CONTEXT)} if regions is not None and len(regions.grid) else {}
        inputs = self._encode_images(self.prompt_inputs(frames, text, history, system, **options), regions)
        tokenizer = self.tokenizer
        if answer is None:
            generated = self.vlm.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False,
                                          eos_token_id=self.stop_token_ids, pad_token_id=tokenizer.pad_token_id)
            answer_ids = generated[0, inputs["input_ids"].shape[1]:]
        else:
            answer_ids = tokenizer(answer + self.end_token, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
        full = self._append(inputs, answer_ids)
        # logits at the last prompt position and at each answer token but the last: one row per answer token
        forward = self.vlm(**full, output_hidden_states=True, logits_to_keep=len(answer_ids) + 1)
        hidden = forward.hidden_states[-1][0]
        logits = forward.logits[0, :-1].float().cpu() if self.record_logits else None
        positions = (full["input_ids"][0] == self.seg_token_id).nonzero()[:, 0]
        positions = positions[positions >= inputs["input_ids"].shape[1]]  # [SEG]s of this answer only
        seg_hidden = hidden[positions].float()
        seg_embedding = self.projector(seg_hidden.to(next(self.projector.parameters()).dtype)).float()
        text_out = tokenizer.decode(answer_ids, skip_special_tokens=False)
        for token in (self.end_token, tokenizer.pad_token):
            if token:
                text_out = text_out.replace(token, "")
        return Sa2VAOutput(text_out.strip(), seg_hidden.cpu(), seg_embedding.cpu(), logits)

    @staticmethod
    def _grounding(out: Sa2VAOutput, indices: Sequence[int], text: str, **extras) -> Grounding:
        """Each `[SEG]` of the answer as one object, prompted on every frame of `indices`."""
        phrases = grounded_phrases(out.answer)  # a grounded caption names its objects
        objects = {n + 1: phrases.get(n + 1, f"{SEG_TOKEN} #{n + 1} of the answer") for n in range(len(out.seg_embedding))}
        prompts = [
            ObjectPrompt(object_id=n + 1, frame_index=t, embedding=out.seg_embedding[n])
            for n in range(len(out.seg_embedding))
            for t in indices
        ]
        extras = {"seg_hidden": out.seg_hidden, "seg_embedding": out.seg_embedding, "request": text, **extras}
        if phrases:
            extras.update(phrases=phrases, caption=plain_caption(out.answer))
        if out.answer_logits is not None:
            extras["answer_logits"] = out.answer_logits
        return Grounding(out.answer, prompts, objects, extras=extras)

    def ground(self, keyframes: Mapping[int, Image.Image], instruction: str, history: Sequence[Turn] = (), answer: str | None = None) -> Grounding:
        indices = sorted(keyframes)
        text = as_request(instruction, self.family)
        out = self.run([keyframes[i] for i in indices], text, history, answer or self.teacher.get("segment"))
        return self._grounding(out, indices, text)

    def describe(self, image: Image.Image, region_masks, question: str, answer: str | None = None) -> Grounding:
        """Answer `question` about one image and the regions marked on it, as the official single-image
        inference with `mask_prompts` does (InternVL family only; region_prompts.py).

        `region_masks`: one mask per region (bool or 0/non-zero, the image's height × width; a list or an
        [n, H, W] array; empty: a plain question about the image). The question names them "region1",
        "region2", …. `answer` forces the answer (default: the "describe" teacher answer, else greedy).
        Returns a Grounding: the answer, one object per `[SEG]` prompted on frame 0, and in `extras`
        `region_pixels` (features the model saw per region), `empty_regions` (region numbers it saw nothing
        of) and `notes` (what a trace should say). Raises `RegionPromptsUnsupported` for other families and
        UserError for masks that do not fit the image or a question that breaks the image placeholders."""
        if not self.supports_region_prompts:
            raise region_prompts.RegionPromptsUnsupported(self.family)
        image = image.convert("RGB")
        regions = region_prompts.region_prompts(region_masks, image.size, self.inputs.feature_grid)
        text = question.replace("<image>", "").strip()
        out = self.run([image], text, answer=answer or self.teacher.get("describe"), regions=regions)
        return self._grounding(out, [0], text, region_pixels=regions.pixels, empty_regions=regions.empty,
                               notes=regions.notes(), region_grid=regions.grid)

    def describe_object(self, views, facts, question: str | None = None):
        """Words about a tracked object: a region prompt on its best frame, or its crops (describe.py)."""
        from agent.backends.sa2va.describe import describe_object

        return describe_object(self, views, facts, question)

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
