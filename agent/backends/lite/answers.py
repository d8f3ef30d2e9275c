"""lite's answers in words: what it calls the object, how it read the noun, how sure it is, and the sentence it
answers with (prompts/lite/found.txt); the scores and candidates go to the trace, not the answer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from agent.backends.lite.text import Companion, Query
from agent.grounder.protocol import Grounding, ObjectPrompt
from agent.prompts import render

if TYPE_CHECKING:
    from agent.backends.lite.grounder import Candidate

LOOK_ALIKE = 0.95  # a noun matched less closely than this is only like the class ("rhinoceros" → elephant 0.50)
WEAK_DETECTION = 0.2  # below this the object's surest detection is weak: the answer says it is not sure


def kind_of(query: Query) -> str:
    """What the answer calls the object: the detector's class, the classifier's name, or "object"."""
    return (query.imagenet_name if query.imagenet_first else query.class_name) or "object"


def read_as(query: Query) -> str:
    """How the words were read, when the noun is not the kind's own name."""
    kind = kind_of(query)
    if query.noun in (kind, f"{kind}s"):
        return ""
    similarity = query.imagenet_similarity if query.imagenet_first else query.class_similarity
    return f" ({query.noun} → {kind} {similarity:.2f})"


def grounding_of(query: Query, chosen: list[Candidate], candidates: list[Candidate], noun: str, note: str = "",
                 companions: Sequence[tuple[Companion, Candidate]] = ()) -> Grounding:
    """The chosen candidates (and the companions the words put with them) as objects with their prompts; the answer
    a sentence from prompts/lite/found.txt, the scores and reasons in `extras["details"]` (the trace's line)."""
    prompts, objects, kind = [], {}, kind_of(query)
    if kind == "object" and chosen:  # the fallback: say what the detector took it for
        kind = chosen[0].first.class_name
    for object_id, candidate in enumerate(chosen, start=1):
        label = candidate.first.class_name if query.imagenet_first or query.class_index is None else query.class_name  # the tracker re-detects by it
        objects[object_id] = f"{kind} detection ({candidate.score:.2f})"
        prompts += [ObjectPrompt(object_id, t, box=d.box, label=label, score=d.score) for t, d in sorted(candidate.detections.items())]
    details = "; ".join(f"#{i}: {c.score:.2f}" + (", " + ", ".join(c.reasons) if c.reasons else "") for i, c in enumerate(chosen, 1))
    details = f"{kind}{noun}: {len(chosen)} of {len(candidates)} candidate(s) — {details}"
    with_it = []
    for object_id, (companion, candidate) in enumerate(companions, start=len(chosen) + 1):
        objects[object_id] = f"{companion.class_name} with it ({candidate.score:.2f})"
        prompts += [ObjectPrompt(object_id, t, box=d.box, label=companion.class_name, score=d.score) for t, d in sorted(candidate.detections.items())]
        read = "" if companion.phrase.noun in (companion.class_name, f"{companion.class_name}s") else f"{companion.phrase.noun} → "
        details += f"; and its {read}{companion.class_name} #{object_id}: {candidate.score:.2f}, " + ", ".join(candidate.reasons)
        with_it.append(f"the {companion.class_name} with it")
    certainty = certainty_of(query, chosen)
    what, unsure = what_found(query, kind, chosen, with_it, bool(note)), f" I am not sure:{certainty[len(' (not sure:'):-1]}." if certainty else ""
    if note:  # the noun was not known: the note says which object was taken
        answer = f"{note}{what}.{unsure}"
    else:
        answer = render("found", "lite", what=what, certainty=unsure,
                        among=f" — the best of the {len(candidates)} candidates I saw" if len(chosen) == 1 < len(candidates) else "")
    return Grounding(answer, prompts, objects, extras={"query": query, "candidates": candidates, "details": details + certainty})


def what_found(query: Query, kind: str, chosen: list[Candidate], with_it: list[str], unknown_noun: bool) -> str:
    """What the answer says it found: the person's own noun when it names the kind (else the kind), with the
    colours they asked for; a number when several."""
    similarity = query.imagenet_similarity if query.imagenet_first else query.class_similarity
    noun = query.noun if query.noun and similarity >= LOOK_ALIKE and not unknown_noun else kind
    noun = noun[:-1] if noun.endswith("s") and noun[:-1] == kind else noun
    words = " ".join([*(c for c in query.colours if c not in query.part_colours), noun])
    # a part's colour is said with its part: "the man in the white helmet", never "the white man"
    parts = "".join(f" {part.lead} the {' '.join([*part.colours, part.noun])}" for part in (query.structure.parts if query.structure else [])
                    if part.colours and part.noun and part.lead)
    what = f"{len(chosen)} {words}s{parts}" if len(chosen) > 1 else f"the {words}{parts}"
    return " and ".join([what, *with_it])


def certainty_of(query: Query, chosen: list[Candidate]) -> str:
    """How sure the choice is, when it is not: weak detections, of a class the noun is only like."""
    surest = max((d.score for c in chosen for d in c.detections.values()), default=0.0)
    if not chosen or surest >= WEAK_DETECTION:
        return ""
    similarity = query.imagenet_similarity if query.imagenet_first else query.class_similarity
    kind = kind_of(query)
    article = "an" if kind[0] in "aeiou" else "a"
    like = f'"{query.noun}" is only like {article} {kind} ({similarity:.2f}) and ' if query.noun and similarity < LOOK_ALIKE else ""
    return f" (not sure: {like}its surest detection scores {surest:.2f})"
