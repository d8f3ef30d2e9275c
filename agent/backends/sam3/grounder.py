"""The SAM 3 grounder: the instruction becomes one concept prompt, "every instance of this phrase".

SAM 3 detects and tracks in one pass over the video, so grounding only decides the words: the tracker's session
finds the instances (its presence head says when there are none) and numbers them. The phrase is the instruction
as written, less a leading quantifier ("every car" → "car": every instance is what a concept prompt means);
SAM 3's text encoder reads the rest (articles and colours included) as it was trained to.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from PIL import Image

from agent.grounder.protocol import Grounding, ObjectPrompt, Turn

_QUANTIFIER = re.compile(r"^(?:every|each|all)(?:\s+of)?(?:\s+the)?\s+", re.IGNORECASE)


def concept_phrase(instruction: str) -> str:
    """The noun phrase SAM 3 is prompted with: the instruction, less a leading "every"/"each"/"all (of) (the)"
    and a final full stop."""
    text = " ".join(instruction.split()).rstrip(".!")
    phrase = _QUANTIFIER.sub("", text)
    return phrase or text


class Sam3Grounder:
    thread_safe = True  # no model and no state: the words only

    def ground(self, keyframes: Mapping[int, Image.Image], instruction: str, history: Sequence[Turn] = ()) -> Grounding:
        phrase = concept_phrase(instruction)
        first = min(keyframes, default=0)  # SAM 3 detects on every frame; the prompt needs a frame all the same
        prompt = ObjectPrompt(1, first, label=phrase, concept=True)
        return Grounding(f'Looking for every instance of "{phrase}".', [prompt], {1: f'SAM 3 concept "{phrase}"'},
                         extras={"concepts": [phrase]})
