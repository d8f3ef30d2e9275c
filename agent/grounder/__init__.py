"""Grounders read keyframes and an instruction and say which objects are meant."""

from agent.grounder.protocol import Grounder, Grounding, ObjectPrompt, Turn

__all__ = ["Grounder", "Grounding", "ObjectPrompt", "Turn"]
