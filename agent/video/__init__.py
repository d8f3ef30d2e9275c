"""Video in: one lazy frame source for files, folders, images and in-memory frames."""

from agent.video.keyframes import select_keyframes
from agent.video.source import VideoSource

__all__ = ["VideoSource", "select_keyframes"]
