"""Reading an instruction without a VLM: head noun → detector class, plus attribute words.

The head noun is the last word of the first noun phrase (the words before a relation word
or a verb in -ing); MiniLM maps it to the detector class whose names it is closest to,
with a threshold below which nothing matches. Colour, position, size, motion and plural
words come from `vocabulary.json`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from agent.backends.lite.classifier import imagenet_names

VOCABULARY = json.loads((Path(__file__).with_name("vocabulary.json")).read_text())


@dataclass
class Query:
    text: str
    noun: str | None = None
    class_index: int | None = None  # None: nothing in the detector's vocabulary fits
    class_similarity: float = 0.0
    colours: list[str] = field(default_factory=list)
    positions: list[str] = field(default_factory=list)
    sizes: list[str] = field(default_factory=list)
    motion: str | None = None  # "moving" or "still"
    direction: str | None = None  # of the motion: left/right/up/down
    plural: bool = False
    imagenet: list[int] = field(default_factory=list)  # ImageNet classes the noun names (the classifier's vocabulary)
    imagenet_name: str | None = None  # how: a group ("dog") or the closest class name ("flamingo")
    imagenet_similarity: float = 0.0

    @property
    def class_name(self) -> str | None:
        return None if self.class_index is None else VOCABULARY["classes"][self.class_index]["name"]

    @property
    def imagenet_first(self) -> bool:
        """The noun names an ImageNet class better than any detector class ("lion", "kangaroo")."""
        return bool(self.imagenet) and self.imagenet_similarity > self.class_similarity + 0.05


def words_of(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def first_noun_phrase(words: list[str]) -> list[str]:
    relation = set(VOCABULARY["relation_words"])
    phrase = []
    for n, word in enumerate(words):
        if phrase and (word in relation or (word.endswith("ing") and len(word) > 4 and n > 0)):
            break
        if word not in VOCABULARY["determiners"]:
            phrase.append(word)
    return phrase


class ClassMatcher:
    """MiniLM similarity between a word and every class's names."""

    def __init__(self, model_dir: Path):
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(model_dir), device="cpu")
        self.threshold = VOCABULARY["class_threshold"]

    @cached_property
    def _names(self) -> tuple[np.ndarray, np.ndarray]:
        owners, names = [], []
        for index, entry in enumerate(VOCABULARY["classes"]):
            for word in entry["words"]:
                owners.append(index)
                names.append(word)
        return np.array(owners), self.model.encode(names, normalize_embeddings=True)

    @cached_property
    def _imagenet(self) -> np.ndarray:
        return self.model.encode(imagenet_names(), normalize_embeddings=True)

    def imagenet(self, word: str) -> tuple[list[int], str, float] | None:
        """The ImageNet classes a noun names: a class's own name ("flamingo", "jeep"), else the smallest
        group that lists the word ("duck", "kangaroo"), else the class names within 0.05 of the closest
        one when that is above `imagenet_threshold`."""
        similarity = (self.model.encode([word], normalize_embeddings=True) @ self._imagenet.T)[0]
        best = float(similarity.max())
        closest = [int(i) for i in np.flatnonzero(similarity >= best - 0.05)]
        if best >= 0.95:
            return closest, imagenet_names()[int(similarity.argmax())], best
        groups = [(name, g) for name, g in VOCABULARY["imagenet_groups"].items() if not name.startswith("_") and word in g["words"]]
        if groups:
            name, group = min(groups, key=lambda item: sum(b - a + 1 for a, b in item[1]["ranges"]))
            return [i for a, b in group["ranges"] for i in range(a, b + 1)], name, 1.0
        if best < VOCABULARY["imagenet_threshold"]:
            return None
        return closest, imagenet_names()[int(similarity.argmax())], best

    def best(self, words: list[str]) -> list[tuple[int, float]]:
        """Per word: (class index, similarity) of its closest class name."""
        if not words:
            return []
        owners, names = self._names
        similarity = self.model.encode(words, normalize_embeddings=True) @ names.T
        return [(int(owners[row.argmax()]), float(row.max())) for row in similarity]


def _singular(word: str) -> str:
    return word[:-1] if word.endswith("s") and not word.endswith("ss") and len(word) > 3 else word


def parse(text: str, matcher: ClassMatcher) -> Query:
    words = words_of(text)
    query = Query(text)
    phrase = first_noun_phrase(words) or words
    skip = set(VOCABULARY["determiners"]) | set(VOCABULARY["pronouns"])
    phrase = [w for w in phrase if w not in skip]
    candidates = [phrase[-1]] + phrase[:-1][::-1] if phrase else []
    candidates += [w for w in words if w not in candidates and w not in skip]
    for word, (index, similarity) in zip(candidates, matcher.best([_singular(w) for w in candidates])):
        if similarity >= matcher.threshold:
            query.noun, query.class_index, query.class_similarity = word, index, similarity
            break
    if query.noun is None and candidates:
        query.noun = candidates[0]
    if query.noun is not None:
        named = matcher.imagenet(_singular(query.noun))
        if named:
            query.imagenet, query.imagenet_name, query.imagenet_similarity = named
    query.plural = (
        any(w in VOCABULARY["plural_words"] for w in words)
        or "them" in words or "they" in words  # "track them", "where are they going"
        or (query.noun is not None and query.noun != _singular(query.noun) and query.noun not in ("bus", "glass"))
    )
    query.colours = [w for w in words if isinstance(VOCABULARY["colours"].get(w), dict)]
    query.sizes = [VOCABULARY["sizes"][w] for w in words if w in VOCABULARY["sizes"]]
    for n, word in enumerate(words):
        if word in VOCABULARY["motions"]:
            query.motion = query.motion or VOCABULARY["motions"][word]
            following = [w for w in words[n + 1 : n + 4] if w not in ("to", "the", "towards", "toward")]
            if following and following[0] in VOCABULARY["directions"]:
                query.direction = VOCABULARY["directions"][following[0]]
                query.motion = "moving"
        elif word in VOCABULARY["positions"] and not (query.direction and VOCABULARY["directions"].get(word) == query.direction):
            query.positions.append(VOCABULARY["positions"][word])
    return query
