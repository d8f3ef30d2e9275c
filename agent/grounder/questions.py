"""What a question about an object asks: its kind ("what", "where", "doing", "when", "count", "describe") and the
object it names ("object 2", "#2", "region 2"; "it"/"this" when only one could be meant).

A session answers such questions about objects it already tracks from the tracks (no new grounding), and the lite
backend picks the sentences of its description that answer them. The first kind whose words the question has wins.
"""

from __future__ import annotations

import re

KINDS = (  # (kind, regular expression on the lower-cased question)
    ("count", r"\bhow many\b"),
    ("when", r"\bwhen\b|\bwhich frames?\b|\b(visible|seen|hidden|appear|disappear)"),
    ("where", r"\bwhere\b(?! is it going| are they going)|\bwhich (side|part)\b|\bposition\b"),
    ("doing", r"\bdoing\b|\bdo(es)?\b.*\bdo\b|\bmov(e|es|ing)\b|\bgoing\b|\bmotion\b|\bhappen"),
    ("what", r"\bwhat (is|are|kind|sort|type)\b|\bwho\b|\bwhat's\b|\bidentify\b|\bname\b"),
    ("describe", r"\bdescribe\b|\bdescription\b|\btell me about\b|\bcaption\b"),
)
QUESTION_START = re.compile(r"^(what|what's|where|when|which|who|how|is|are|does|do|did|can|could|describe|tell)\b")
OBJECT_REFERENCE = re.compile(r"(?:\bobject|\bregion|\bid|#)\s*#?\s*(\d+)\b")
PRONOUN = re.compile(r"\b(it|its|this|that|this one|that one|the object)\b")


def is_question(text: str) -> bool:
    """A question or a request for words ("describe it"), not a referring expression ("the car moving left")."""
    lowered = text.strip().lower()
    return lowered.endswith("?") or bool(QUESTION_START.match(lowered))


def question_kind(question: str | None) -> str | None:
    """The kind of an object question; None: not one (a request to segment something, say)."""
    if not question or not is_question(question):
        return None
    lowered = question.lower()
    return next((kind for kind, pattern in KINDS if re.search(pattern, lowered)), None)


def named_objects(question: str) -> list[int]:
    """Object ids the question names explicitly, in order."""
    return [int(n) for n in OBJECT_REFERENCE.findall(question.lower())]


def refers_by_pronoun(question: str) -> bool:
    return bool(PRONOUN.search(question.lower()))
