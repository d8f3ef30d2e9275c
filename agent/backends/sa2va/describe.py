"""Sa2VA's words about a tracked object.

The InternVL family has region prompts (region_prompts.py): the object's mask is region1 on the ONE frame where it
is seen best (its largest view), as the official single-image inference takes one image with its regions. Other
families have none (the official Qwen-VL classes ignore `mask_prompts`): they are shown crops of the object on the
frames where it is seen best, through the video path, and the answer says so.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from PIL import Image

from agent.grounder.object_facts import ObjectFacts
from agent.grounder.protocol import ObjectDescription
from agent.prompts import render

CROP_PAD = 0.15  # of the object's box on each side: some of what is around it, which a question may be about


def _crop(image: Image.Image, mask: np.ndarray) -> Image.Image:
    rows, cols = np.nonzero(mask)
    x0, x1, y0, y1 = cols.min(), cols.max() + 1, rows.min(), rows.max() + 1
    dx, dy = CROP_PAD * (x1 - x0), CROP_PAD * (y1 - y0)
    return image.crop((max(0, int(x0 - dx)), max(0, int(y0 - dy)), min(image.width, int(x1 + dx)), min(image.height, int(y1 + dy))))


def describe_object(grounder, views: Mapping[int, tuple[Image.Image, np.ndarray]], facts: ObjectFacts,
                    question: str | None = None) -> ObjectDescription:
    frames = sorted(views)
    forced = grounder.teacher.get("describe")
    if grounder.supports_region_prompts:
        best = max(frames, key=lambda t: int(views[t][1].sum()))
        image, mask = views[best]
        if not question:
            text = render("describe_region", grounder.family)
        elif "region1" in question.lower():  # already in the words Sa2VA was trained on: sent as asked
            text = question
        else:
            text = render("region_question", grounder.family, question=question)
        grounding = grounder.describe(image, [mask], text, answer=forced)
        details = {"method": "region prompt", "request": text, "region_pixels": grounding.extras["region_pixels"],
                   "notes": grounding.extras["notes"]}
        return ObjectDescription(grounding.answer, [best], None, details)
    crops = [_crop(*views[t]) for t in frames]
    text = render("describe_crops", grounder.family, question=question or render("describe_object", grounder.family))
    answer = grounder.run(crops, text, answer=forced).answer
    note = render("no_region_prompts", grounder.family, model_family=grounder.family, frames=", ".join(map(str, frames)))
    return ObjectDescription(f"{note} {answer}", frames, None, {"method": "crops", "request": text, "notes": [note]})
