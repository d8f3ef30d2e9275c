"""Which frames the grounder looks at."""

from collections.abc import Sequence

import numpy as np

from agent.errors import UserError

STRATEGIES = ("uniform", "first", "uniform-floor")


def select_keyframes(
    num_frames: int,
    count: int = 5,
    strategy: str = "uniform",
    indices: Sequence[int] | None = None,
) -> list[int]:
    """Sorted, distinct frame indices.

    `uniform` spreads `count` frames over the whole video, first and last included
    (grounding sees the whole clip); `uniform-floor` does the same with the indices rounded
    down, as the Sa2VA-i reference does (8 frames, 5 keyframes: 0, 1, 3, 5, 7); `first` takes
    the first `count` frames, as the Sa2VA reference inference does; explicit `indices` win.
    """
    if num_frames < 1:
        raise UserError("the video has no frames; give a video with at least one frame")
    if indices is not None:
        chosen = sorted(set(int(i) for i in indices))
        bad = [i for i in chosen if not 0 <= i < num_frames]
        if bad or not chosen:
            raise UserError(
                f"keyframe indices {bad or '[]'} are outside the video's 0..{num_frames - 1}; "
                "give indices inside the video"
            )
        return chosen
    if count < 1:
        raise UserError(f"keyframe count must be at least 1, got {count}")
    count = min(count, num_frames)
    if strategy == "first":
        return list(range(count))
    if strategy == "uniform":
        return sorted(set(np.linspace(0, num_frames - 1, count).round().astype(int).tolist()))
    if strategy == "uniform-floor":
        return sorted(set(np.floor(np.linspace(0, num_frames - 1, count)).astype(int).tolist()))
    raise UserError(f"unknown keyframe strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
