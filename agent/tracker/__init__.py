"""Trackers carry per-object prompts on keyframes through every frame of the video."""

from agent.tracker.protocol import FrameMasks, Tracker

__all__ = ["FrameMasks", "Tracker"]
