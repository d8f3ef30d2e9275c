"""Reading an instruction without a VLM: its structure, then head noun → detector class.

`structure` splits the words into phrases at prepositions, conjunctions and verbs (`grammar` in
`vocabulary.json`): the first phrase's last noun is the head noun ("a white and blue bus" → bus;
a colour, size or position word is never a noun), the words before it its modifiers; a phrase
after "with" or "in" (clothing) is a part of the object, its colours describe the object too; a
phrase after "and", "on" or a verb such as "riding" / "carrying" is a companion (a thing the object
is with or on: "and his bike", "on a white horse"), unless it names a place ("on the rocks"); the
verbs are its actions. MiniLM maps the head noun (else the nouns compounded with it: "soccer ball")
and each companion's to the detector class whose names it is closest to, with a threshold below
which nothing matches. Colour, position, size, motion and plural words come from `vocabulary.json`.
"""

from __future__ import annotations

import json
import re
import threading
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
    part_colours: list[str] = field(default_factory=list)  # of `colours`, those only a part has ("in a white helmet")
    positions: list[str] = field(default_factory=list)
    sizes: list[str] = field(default_factory=list)
    motion: str | None = None  # "moving" or "still"
    direction: str | None = None  # of the motion: left/right/up/down
    plural: bool = False
    imagenet: list[int] = field(default_factory=list)  # ImageNet classes the noun names (the classifier's vocabulary)
    imagenet_name: str | None = None  # how: a group ("dog") or the closest class name ("flamingo")
    imagenet_similarity: float = 0.0
    actions: list[str] = field(default_factory=list)  # its verbs: "walking", "riding", "pushes"
    companions: list["Companion"] = field(default_factory=list)  # things it is with or on, each with its class
    structure: "Structure | None" = None

    @property
    def class_name(self) -> str | None:
        return None if self.class_index is None else VOCABULARY["classes"][self.class_index]["name"]

    @property
    def imagenet_first(self) -> bool:
        """The noun names an ImageNet class better than any detector class ("lion", "kangaroo")."""
        return bool(self.imagenet) and self.imagenet_similarity > self.class_similarity + 0.05


def words_of(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


GRAMMAR = VOCABULARY["grammar"]


@dataclass
class Phrase:
    """A noun phrase: its head noun, the nouns compounded with it and the words that qualify it."""
    noun: str | None = None
    compounds: list[str] = field(default_factory=list)  # "soccer" in "soccer ball", nearest first
    colours: list[str] = field(default_factory=list)
    sizes: list[str] = field(default_factory=list)  # "big" / "small"
    count: int | None = None  # "the two people"
    possessed: bool = False  # "his bike", "its rider": it belongs with the object
    lead: str | None = None  # the preposition, conjunction or verb that introduces it


@dataclass
class Structure:
    head: Phrase
    parts: list[Phrase] = field(default_factory=list)  # with / in (clothing): the object's own, its colours describe it
    companions: list[Phrase] = field(default_factory=list)  # and / on / riding …: things it is with or on
    others: list[Phrase] = field(default_factory=list)  # where it is or what it acts on ("on the rocks", "playing tennis")
    actions: list[str] = field(default_factory=list)


def _is_modifier(word: str) -> bool:
    return (isinstance(VOCABULARY["colours"].get(word), dict) or word in VOCABULARY["sizes"] or word in VOCABULARY["positions"]
            or word in GRAMMAR["numbers"])


def _is_verb_form(word: str) -> bool:
    """A word that is a verb when it follows a noun ("a dog running", "a car covered in stickers")."""
    if word in VOCABULARY["motions"] and word not in VOCABULARY["positions"]:
        return True
    if word.endswith("ing") and len(word) > 4:
        return word not in GRAMMAR["ing_nouns"]
    return word.endswith("ed") and len(word) > 4 and word not in GRAMMAR["ed_nouns"] and not _is_modifier(word)


def _phrase(words: list[str], lead: str | None) -> Phrase:
    phrase = Phrase(lead=lead)
    nouns = []
    for n, word in enumerate(words):
        if word in GRAMMAR["possessives"]:
            phrase.possessed = True
        elif word in GRAMMAR["numbers"]:
            phrase.count = GRAMMAR["numbers"][word]
        elif isinstance(VOCABULARY["colours"].get(word), dict):
            phrase.colours.append(word)
        elif word in VOCABULARY["sizes"]:
            phrase.sizes.append(VOCABULARY["sizes"][word])
        elif word in VOCABULARY["determiners"] or word in VOCABULARY["positions"] or word in VOCABULARY["pronouns"]:
            continue
        elif _is_verb_form(word) and n < len(words) - 1:  # "a drifting race car", "a black feathered swan"
            continue
        else:
            nouns.append(word)
    if nouns:
        phrase.noun, phrase.compounds = nouns[-1], nouns[:-1][::-1]
    return phrase


def _segments(words: list[str]) -> list[tuple[str | None, list[str]]]:
    """The words cut into (lead, phrase words): a new phrase starts at a preposition, a conjunction of
    nouns (not of colours: "white and blue"), a clause word, a subject pronoun ("the scooter he rides")
    and a verb once the phrase has a noun."""
    segments: list[tuple[str | None, list[str]]] = [(None, [])]
    for n, word in enumerate(words):
        lead, phrase = segments[-1]
        has_noun = any(not _is_modifier(w) and w not in VOCABULARY["determiners"] and w not in GRAMMAR["possessives"] for w in phrase)
        after = words[n + 1] if n + 1 < len(words) else None
        if word in VOCABULARY["positions"] and after == "of":  # "in front of graffiti": a place, not the object's position
            segments.append(("of", []))
        elif word == "of" and lead == "of" and not phrase:
            continue
        elif word in GRAMMAR["prepositions"] or word in GRAMMAR["clause_words"] or word in GRAMMAR["worn_prepositions"]:
            segments.append((word, []))
        elif word in GRAMMAR["conjunctions"]:
            if phrase and _is_modifier(phrase[-1]) and not has_noun:  # "white and blue": one phrase, two colours
                continue
            segments.append((word, []))
        elif word in GRAMMAR["subject_pronouns"] and phrase and has_noun and after is not None:
            segments.append(("clause", []))  # "the stroller she pushes": a clause about the phrase before
        elif _is_verb_form(word) and (has_noun or lead in ("clause", *GRAMMAR["clause_words"]) or (lead is not None and not phrase)):
            segments.append((word, []))
        elif word in GRAMMAR["subject_pronouns"] and not phrase:
            continue
        elif lead == "clause" and not phrase:
            segments[-1] = (word, [])  # "she pushes": the word after the pronoun is its verb
        else:
            phrase.append(word)
    return segments


def _first_clause(text: str) -> list[str]:
    """The words of the first clause that says something ("the swan and its mate: segment them" → the
    swan and its mate), less a command that opens it ("segment the dog")."""
    clauses = []
    for clause in re.split(r"[:;.!?]", text):
        words = words_of(clause)
        while words and words[0] in GRAMMAR["commands"]:
            words = words[1:]
        clauses.append(words)
    return next((words for words in clauses if any(w not in VOCABULARY["pronouns"] and w not in VOCABULARY["determiners"] for w in words)),
                clauses[0])


def structure(text: str) -> Structure:
    """How the words are built: the head phrase, its parts, companions and places, and the actions."""
    segments = _segments(_first_clause(text))
    parsed = Structure(head=_phrase(segments[0][1], None))
    for word in segments[0][1]:  # "a drifting race car": a verb before the noun is an action too ("feathered" is not)
        if _is_verb_form(word) and not word.endswith("ed"):
            parsed.actions.append(word)
    role = "head"
    not_actions = {*GRAMMAR["prepositions"], *GRAMMAR["conjunctions"], *GRAMMAR["clause_words"], *GRAMMAR["worn_prepositions"], "clause"}
    for lead, words in segments[1:]:
        if lead not in not_actions:
            parsed.actions.append(lead)
        phrase = _phrase(words, lead)
        if phrase.noun is None:
            if lead not in GRAMMAR["conjunctions"] and lead not in GRAMMAR["clause_words"]:
                role = "place"  # "on the left", "running left": what follows is not the object's
            continue
        place = phrase.noun in GRAMMAR["places"]
        if lead in GRAMMAR["conjunctions"]:  # a conjunct is what the phrase before it was
            role = {"head": "companion", "worn": "worn" if phrase.noun in GRAMMAR["clothing"] else "companion"}.get(role, role)
        elif lead in GRAMMAR["part_prepositions"]:
            role = "part"
        elif lead in GRAMMAR["worn_prepositions"]:
            role = "worn" if phrase.noun in GRAMMAR["clothing"] else "place"
        elif lead in GRAMMAR["on_prepositions"] or lead in GRAMMAR["companion_verbs"]:
            role = "companion"
        else:
            role = "place"
        if role == "companion" and place and not phrase.possessed:
            role = "place"
        {"part": parsed.parts, "worn": parsed.parts, "companion": parsed.companions, "place": parsed.others}[role].append(phrase)
    return parsed


class ClassMatcher:
    """MiniLM similarity between a word and every class's names."""

    def __init__(self, model_dir: Path):
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(model_dir), device="cpu")
        self.threshold = VOCABULARY["class_threshold"]
        self._encoding = threading.Lock()  # the fast tokenizer may not be used from two threads at once

    def _encode(self, texts: list[str]) -> np.ndarray:
        with self._encoding:
            return self.model.encode(texts, normalize_embeddings=True)

    @cached_property
    def _names(self) -> tuple[np.ndarray, np.ndarray]:
        owners, names = [], []
        for index, entry in enumerate(VOCABULARY["classes"]):
            for word in entry["words"]:
                owners.append(index)
                names.append(word)
        return np.array(owners), self._encode(names)

    @cached_property
    def _imagenet(self) -> np.ndarray:
        return self._encode(imagenet_names())

    def imagenet(self, word: str) -> tuple[list[int], str, float] | None:
        """The ImageNet classes a noun names: a class's own name ("flamingo", "jeep"), else the smallest
        group that lists the word ("duck", "kangaroo"), else the class names within 0.05 of the closest
        one when that is above `imagenet_threshold` and does not use the word as a modifier of another noun."""
        similarity = (self._encode([word]) @ self._imagenet.T)[0]
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
        name = imagenet_names()[int(similarity.argmax())]
        if word in name.split()[:-1]:  # "rhinoceros beetle" is a beetle: the word only qualifies that name's noun
            return None
        return closest, name, best

    @cached_property
    def _exact(self) -> dict[str, int]:
        """Words that name a class only when written as they are (a "windsurfer" is a person): they are not
        embedded, so an unknown word cannot come close to a class through them."""
        return {word: index for index, entry in enumerate(VOCABULARY["classes"]) for word in entry.get("exact_words", [])}

    def best(self, words: list[str]) -> list[tuple[int, float]]:
        """Per word: (class index, similarity) of its closest class name (1.0 for a class's exact word)."""
        if not words:
            return []
        owners, names = self._names
        similarity = self._encode(words) @ names.T
        return [(self._exact[word], 1.0) if word in self._exact else (int(owners[row.argmax()]), float(row.max()))
                for word, row in zip(words, similarity)]


def _singular(word: str) -> str:
    return word[:-1] if word.endswith("s") and not word.endswith(("ss", "us", "is", "os")) and len(word) > 3 else word


@dataclass
class Companion:
    """A thing the object is with or on, and the detector class its words name (None: no class fits)."""
    phrase: Phrase
    class_index: int | None = None
    class_similarity: float = 0.0

    @property
    def class_name(self) -> str | None:
        return None if self.class_index is None else VOCABULARY["classes"][self.class_index]["name"]


def _match(phrase: Phrase, matcher: ClassMatcher) -> tuple[int | None, float]:
    """(class index, similarity) of the phrase's head noun; (None, 0) when no class is close enough. Only the
    head noun: a "baby stroller" is no baby, nor a "hiker with a black backpack" a backpack."""
    if phrase.noun is None:
        return None, 0.0
    (index, similarity), = matcher.best([_singular(phrase.noun)])
    return (index, similarity) if similarity >= matcher.threshold else (None, 0.0)


def _without(words: list[str], phrases: list[Phrase], kind: str) -> list[str]:
    """`words` less one occurrence of each word the phrases own."""
    left = list(words)
    for phrase in phrases:
        for word in getattr(phrase, kind):
            if word in left:
                left.remove(word)
    return left


def own_colours(words: list[str], built: Structure) -> list[str]:
    """The colour words that describe the object: its own, its parts' ("in the pink dress", "with a black
    backpack") and what a clause says ("the car that is red"); not a companion's or a place's."""
    return _without([w for w in words if isinstance(VOCABULARY["colours"].get(w), dict)], built.companions + built.others, "colours")


def part_colours(built: Structure) -> list[str]:
    """The colours only a part of the object has ("in a white helmet", "with a black backpack"): measured on
    the part of its mask that has them most, and said with the part ("the man in the white helmet")."""
    return [c for c in dict.fromkeys(c for part in built.parts for c in part.colours) if c not in built.head.colours]


def own_sizes(words: list[str], built: Structure) -> list[str]:
    return _without([VOCABULARY["sizes"][w] for w in words if w in VOCABULARY["sizes"]], built.companions + built.others, "sizes")


def parse(text: str, matcher: ClassMatcher) -> Query:
    words = words_of(text)
    query = Query(text)
    built = query.structure = structure(text)
    query.noun = built.head.noun
    query.class_index, query.class_similarity = _match(built.head, matcher)
    if query.noun is not None:
        named = matcher.imagenet(_singular(query.noun))
        if named:
            query.imagenet, query.imagenet_name, query.imagenet_similarity = named
    for phrase in built.companions:
        index, similarity = _match(phrase, matcher)
        if index is not None and index == query.class_index and similarity < VOCABULARY["companion_same_kind"]:
            # "a girl on rollerblades" (→ person 0.52): only a word that names her kind ("its rider") is a second one
            index, similarity = None, 0.0
        query.companions.append(Companion(phrase, index, similarity))
    head_words = _segments(_first_clause(text))[0][1]
    query.plural = (
        any(w in VOCABULARY["plural_words"] for w in head_words) or (built.head.count or 1) > 1
        or "them" in words or "they" in words  # "track them", "where are they going"
        or (query.noun is not None and query.noun != _singular(query.noun) and query.noun not in ("bus", "glass"))
    )
    query.colours, query.sizes = own_colours(words, built), own_sizes(words, built)
    query.part_colours = part_colours(built)
    query.actions = list(built.actions)
    for n, word in enumerate(words):
        if word in VOCABULARY["motions"]:
            query.motion = query.motion or VOCABULARY["motions"][word]
            following = [w for w in words[n + 1 : n + 4] if w not in ("to", "the", "towards", "toward")]
            # "down the street", "up a hill": a preposition, not the direction of the motion
            preposition = n + 2 < len(words) and words[n + 1] == (following or [None])[0] and words[n + 2] in VOCABULARY["determiners"]
            if following and following[0] in VOCABULARY["directions"] and not preposition:
                query.direction = VOCABULARY["directions"][following[0]]
                query.motion = "moving"
        elif word in VOCABULARY["positions"] and not (query.direction and VOCABULARY["directions"].get(word) == query.direction):
            if not (n + 1 < len(words) and words[n + 1] == "of"):  # "in front of the graffiti": where the graffiti is
                query.positions.append(VOCABULARY["positions"][word])
    return query
