"""Grounders read keyframes and an instruction and say which objects are meant."""

from agent.grounder.protocol import Grounder, Grounding, ObjectPrompt, Thought, Turn, Verdict

__all__ = ["Grounder", "Grounding", "ObjectPrompt", "Thought", "Turn", "Verdict"]
