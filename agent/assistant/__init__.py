"""The agent: sessions on a video, multi-turn, direct or reasoning, replies with lazy masks and a trace."""

from agent.reply import Reply
from agent.assistant.live import LiveSession
from agent.assistant.session import Assistant, Session
from agent.trace import Step

__all__ = ["Assistant", "LiveSession", "Reply", "Session", "Step"]
