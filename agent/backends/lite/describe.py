"""lite's words about a tracked object, built only from what it measures (it has no language model):
the classifier's name and the detector's class on the frames where it is seen best, its main colours, its size
and place, how it moves against the background and when it is seen (agent.grounder.object_facts). The
sentences are templates in prompts/lite/; a question picks the ones that answer it
(agent.grounder.questions), any other question gets them all, and nothing is claimed that was not measured.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from PIL import Image

from agent.backends.lite.identity import NAMED, Identifier
from agent.backends.lite.regions import box_iou, box_of
from agent.backends.lite.text import VOCABULARY, parse
from agent.grounder.object_facts import FACTS_SETTINGS, ObjectFacts, spans
from agent.grounder.protocol import Grounding, ObjectDescription, ObjectPrompt
from agent.grounder.questions import question_kind
from agent.prompts import render

DETECTION_IOU = 0.5  # a detection whose box overlaps the mask's this much is of the object
SECOND_COLOUR = 0.7  # a second colour is named when its affinity is at least this share of the first's
CAPTION_SHARE = 0.5  # a caption names the things scoring at least this share of the surest one …
CAPTION_MOST = 5  # … and at most this many
COLOURS = [c for c, spec in VOCABULARY["colours"].items() if isinstance(spec, dict) and c != "grey"]  # grey = gray
SENTENCES = {"what": ["identity"], "where": ["place"], "doing": ["motion"], "when": ["visibility"]}


def _article(words: str) -> str:
    return ("an " if words[:1] in "aeiou" else "a ") + words


def _range(first: int, last: int) -> str:
    return f"{first}" if first == last else f"{first}–{last}"


def _seen(facts: ObjectFacts) -> str:
    n = facts.num_frames
    if len(facts.visible) == n:
        return f"all {n} frames" if n > 1 else "the only frame"
    shown = spans(facts.visible)
    text = "frame" + ("s " if len(facts.visible) > 1 else " ") + " and ".join(_range(a, b) for a, b in shown) + f" of {n}"
    if facts.hidden:
        text += " (hidden on " + ", ".join(_range(a, b) for a, b in facts.hidden) + ")"
    return text


def motion_words(facts: ObjectFacts) -> str:
    if facts.motion == "still":
        return "stays still"
    if facts.motion == "moving in place":
        return "moves in place (its parts move, it stays where it is)"
    words = "moves" + (f" {facts.direction}" if facts.direction else " about")
    if facts.speed >= FACTS_SETTINGS["fast_speed"]:
        words += ", fast"
    if facts.depth == "closer":
        words += ", coming closer"
    elif facts.depth == "away":
        words += ", going away"
    if facts.stops:
        words += ", and stops on frames " + ", ".join(_range(a, b) for a, b in facts.stops)
    return words


def colours_of(views: Mapping[int, tuple[Image.Image, np.ndarray]]) -> tuple[list[str], dict[str, float]]:
    """Its main colour (and a second close to it), by the mean affinity of its pixels to each colour word."""
    from agent.backends.lite.regions import colour_affinity

    affinity = {c: float(np.mean([colour_affinity(image, mask, c) for image, mask in views.values()])) for c in COLOURS}
    ranked = sorted(affinity, key=lambda c: -affinity[c])
    named = [ranked[0]] + [c for c in ranked[1:2] if affinity[c] >= SECOND_COLOUR * affinity[ranked[0]]]
    return named, affinity


def identify(grounder, views: Mapping[int, tuple[Image.Image, np.ndarray]]) -> dict:
    """What the object is: the classifier's everyday name on its masked crops (when sure, as the tracker names
    objects) and the detector's class for the detection that overlaps its mask best."""
    found: dict = {"classifier": None, "detector": None}
    if grounder.classifier is not None:
        identifier = Identifier(grounder.classifier)
        names = [identifier.identify(image, mask, box_of(mask)) for image, mask in views.values()]
        sure = [n for n in names if n is not None]
        if sure:
            best = max(sure, key=lambda n: n.sureness)
            found["classifier"] = {"name": best.name, "sureness": best.sureness, "views": len(sure)}
    matches = []
    for image, mask in views.values():
        box = box_of(mask)
        for detection in grounder.detector.detect(image, grounder.min_score):
            overlap = box_iou(box, detection.box)
            if overlap >= DETECTION_IOU:
                matches.append((detection.score * overlap, detection.class_name, detection.score))
    if matches:
        _, name, score = max(matches)
        found["detector"] = {"class": name, "score": score}
    return found


def describe_object(grounder, views: Mapping[int, tuple[Image.Image, np.ndarray]], facts: ObjectFacts,
                    question: str | None = None) -> ObjectDescription:
    identity = identify(grounder, views) if views else {"classifier": None, "detector": None}
    colours, affinity = colours_of(views) if views else ([], {})
    classifier, detector = identity["classifier"], identity["detector"]
    if classifier is not None and classifier["sureness"] >= NAMED:
        name, sureness = classifier["name"], f" (the classifier is {classifier['sureness']:.0%} sure)"
    elif detector is not None:
        name, sureness = detector["class"], f" (the detector's score: {detector['score']:.2f})"
    else:
        name, sureness = "object", " (neither the classifier nor the detector recognises it)"
    what = _article(" and ".join(colours) + " " + name if colours else name)
    sentences = {
        "identity": render("identity", "lite", what=what, sureness=sureness),
        "place": render("place", "lite", size=facts.size, position=facts.position),
        "motion": render("motion", "lite", motion=motion_words(facts)),
        "visibility": render("visibility", "lite", seen=_seen(facts)),
    }
    kind = question_kind(question)
    if kind in SENTENCES:
        text = " ".join(sentences[s] for s in SENTENCES[kind])
    else:
        text = render("describe", "lite", **sentences)
    details = {"identity": identity, "colours": colours, "colour_affinity": affinity, "question_kind": kind,
               "settings": {"detection_iou": DETECTION_IOU, "second_colour": SECOND_COLOUR}}
    return ObjectDescription(text, sorted(views), name, details)


def caption(grounder, keyframes: Mapping[int, Image.Image]) -> Grounding:
    """The things the detector sees clearly on the keyframes (any class, linked across keyframes), each one object
    named by its phrase ("a person", "another person"), said in one sentence (prompts/lite/caption.txt)."""
    candidates, _, _ = grounder._linked(parse("every object", grounder.matcher), keyframes, any_class=True)
    candidates.sort(key=lambda c: -c.score)
    best = candidates[0].score if candidates else 0.0
    chosen = [c for c in candidates if c.score >= CAPTION_SHARE * best][: CAPTION_MOST]
    if not chosen:
        return Grounding("I see nothing I can name in this video.")
    prompts, phrases, seen = [], {}, {}
    for object_id, candidate in enumerate(chosen, start=1):
        name = candidate.first.class_name
        phrases[object_id] = f"another {name}" if name in seen else _article(name)
        seen[name] = True
        prompts += [ObjectPrompt(object_id, t, box=d.box, label=name, score=d.score) for t, d in sorted(candidate.detections.items())]
    listed = list(phrases.values())
    things = listed[0] if len(listed) == 1 else ", ".join(listed[:-1]) + " and " + listed[-1]
    text = render("caption", "lite", things=things)
    details = "; ".join(f"#{i} {c.first.class_name}: {c.score:.2f}" for i, c in enumerate(chosen, 1))
    return Grounding(text, prompts, dict(phrases), extras={"phrases": phrases, "caption": text, "details": f"caption: {details}",
                                                            "candidates": candidates})
