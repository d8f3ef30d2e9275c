"""`VideoSource`: frames read lazily, by index or in order, never the whole video at once."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from agent.errors import UserError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm")


def _natural_key(path: Path) -> list[Any]:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def _to_rgb(image: Image.Image) -> Image.Image:
    # Grayscale, palette and alpha frames all become plain RGB (alpha is dropped, not blended).
    return image if image.mode == "RGB" else image.convert("RGB")


def _open_image(path: Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            image.load()  # decode now: the file closes when the block ends
            return _to_rgb(image)
    except (UnidentifiedImageError, OSError) as exc:
        raise UserError(f"cannot read image {path}: {exc}; check the file or remove it") from None


class _FolderReader:
    """A folder of jpg/png frames (or one image), naturally sorted."""

    def __init__(self, files: list[Path], named: bool = True):
        self.files = files
        self.names = [f.stem for f in files] if named else None
        self.fps = None
        try:
            with Image.open(files[0]) as first:
                self.size = first.size
        except (UnidentifiedImageError, OSError) as exc:
            raise UserError(f"cannot read image {files[0]}: {exc}; check the file or remove it") from None

    def __len__(self) -> int:
        return len(self.files)

    def read(self, indices: Sequence[int]) -> Iterator[tuple[int, Image.Image]]:
        for i in indices:
            yield i, _open_image(self.files[i])


class _ContainerReader:
    """A video file decoded with PyAV. A request that starts past frame 0 seeks to the keyframe before
    it (frame indices come from a presentation-timestamp index built by demuxing, without decoding),
    so reading a long video backwards in chunks costs what reading it forwards does."""

    def __init__(self, path: Path):
        import av

        self.path = path
        self._pts: list[int] | None = None
        try:
            with av.open(str(path)) as container:
                if not container.streams.video:
                    raise UserError(f"{path} has no video frames (no video stream); give a video with at least one frame")
                stream = container.streams.video[0]
                self.size = (stream.codec_context.width, stream.codec_context.height)
                rate = stream.average_rate or stream.guessed_rate
                self.fps = float(rate) if rate else None
                count = stream.frames
                if not count:  # webm/mkv often do not store it: count the packets instead
                    count = sum(1 for p in container.demux(stream) if p.size)
        except av.error.FFmpegError as exc:
            raise UserError(f"cannot read video {path}: {exc}; check that the file is a valid video") from None
        self.count = count
        self.names = None

    def __len__(self) -> int:
        return self.count

    def _timestamps(self, container) -> list[int]:
        """Every frame's pts in presentation order, or [] when the file's timestamps can't index frames."""
        if self._pts is None:
            stream = container.streams.video[0]
            pts = sorted(p.pts for p in container.demux(stream) if p.size and p.pts is not None)
            self._pts = pts if len(pts) == self.count and len(set(pts)) == len(pts) else []
            container.seek(0)
        return self._pts

    def _decode_from(self, container, first: int) -> Iterator[tuple[int, Any]]:
        """(index, frame) from the keyframe at or before frame `first` on (from frame 0 if no index)."""
        import bisect

        stream = container.streams.video[0]
        pts = self._timestamps(container) if first > 0 else []
        if pts:
            container.seek(pts[first], stream=stream, backward=True, any_frame=False)
        for n, frame in enumerate(container.decode(stream)):
            if not pts:
                yield n, frame
            elif frame.pts is None:  # cannot place it: decode from the start instead
                self._pts = []
                container.seek(0)
                yield from self._decode_from(container, 0)
                return
            else:
                yield bisect.bisect_left(pts, frame.pts), frame

    def read(self, indices: Sequence[int]) -> Iterator[tuple[int, Image.Image]]:
        import av

        wanted = iter(indices)
        target = next(wanted, None)
        if target is None:
            return
        try:
            with av.open(str(self.path)) as container:
                for i, frame in self._decode_from(container, target):
                    if i == target:
                        yield i, frame.to_image()
                        target = next(wanted, None)
                        if target is None:
                            return
        except av.error.FFmpegError as exc:
            raise UserError(f"cannot decode video {self.path}: {exc}; the file may be corrupt") from None
        raise UserError(f"video {self.path} ended before frame {target}; the file may be truncated")


class _MemoryReader:
    """Frames already in memory: PIL images, HxW(xC) uint8 arrays or tensors."""

    def __init__(self, frames: Sequence[Any]):
        self.frames = frames
        self.names = None
        self.fps = None
        self.size = self._image(0).size

    def __len__(self) -> int:
        return len(self.frames)

    def _image(self, i: int) -> Image.Image:
        try:
            frame = self.frames[i]
        except IndexError:  # a sequence whose len() promises more frames than it holds
            raise UserError(f"in-memory frame {i} cannot be read although the video says it has {len(self)} frames; "
                            "give a sequence whose length is its number of frames") from None
        if isinstance(frame, Image.Image):
            return _to_rgb(frame)
        array = frame.detach().cpu().numpy() if hasattr(frame, "detach") else np.asarray(frame)
        if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
            array = array.transpose(1, 2, 0)  # CHW tensor layout
        if array.ndim == 3 and array.shape[-1] == 1:
            array = array[..., 0]
        if array.dtype != np.uint8:
            raise UserError(f"in-memory frame {i} has dtype {array.dtype}; give uint8 frames (0..255)")
        return _to_rgb(Image.fromarray(array))

    def read(self, indices: Sequence[int]) -> Iterator[tuple[int, Image.Image]]:
        for i in indices:
            yield i, self._image(i)


class _SpanReader:
    """Some frames of another source, in a given order (a reversed range runs a video backwards).
    Frames are read from the parent in chunks, each chunk in one decoding pass."""

    CHUNK = 32

    def __init__(self, parent: VideoSource, indices: Sequence[int]):
        self.parent, self.indices = parent, list(indices)
        self.names = [parent.frame_names[i] for i in self.indices]
        self.fps, self.size = parent.fps, parent.size

    def __len__(self) -> int:
        return len(self.indices)

    def read(self, indices: Sequence[int]) -> Iterator[tuple[int, Image.Image]]:
        indices = list(indices)
        for start in range(0, len(indices), self.CHUNK):
            chunk = indices[start : start + self.CHUNK]
            images = self.parent.read_many(self.indices[i] for i in chunk)
            for i in chunk:
                yield i, images[self.indices[i]]


def _split_frames(frames: Any) -> Sequence[Any]:
    if isinstance(frames, Image.Image):
        return [frames]
    if hasattr(frames, "detach") or isinstance(frames, np.ndarray):
        if frames.ndim == 4:
            return list(frames)
        if frames.ndim in (2, 3):
            return [frames]
        raise UserError(f"in-memory video has shape {tuple(frames.shape)}; give T×H×W×C or T×C×H×W frames")
    if hasattr(frames, "__len__") and hasattr(frames, "__getitem__"):
        return frames  # a sequence (maybe generating frames on demand): never materialised
    return list(frames)


def _reader_for_path(path: Path):
    if not path.exists():
        raise UserError(f"{path} does not exist; give a video file, a folder of frames or an image")
    if path.is_dir():
        files = sorted(
            (f for f in path.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES), key=_natural_key
        )
        if not files:
            raise UserError(f"folder {path} holds no {'/'.join(s[1:] for s in IMAGE_SUFFIXES)} frames; give a folder of frames")
        return _FolderReader(files)
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        _open_image(path)  # fail now, not half-way through writing
        return _FolderReader([path], named=False)
    if suffix in VIDEO_SUFFIXES:
        return _ContainerReader(path)
    raise UserError(
        f"{path.name}: unsupported file type {suffix or '(none)'}; "
        f"give a video ({', '.join(VIDEO_SUFFIXES)}), an image or a folder of frames"
    )


class VideoSource:
    """A video as a lazy sequence of RGB frames.

    Open it from a video file, a folder of frames, one image (a one-frame video) or
    frames in memory. `resize=(w, h)` resizes every frame as it is read.
    """

    def __init__(self, reader, path: Path | None = None, resize: tuple[int, int] | None = None):
        self._reader = reader
        self.path = path
        self.resize = resize
        if len(reader) == 0:
            raise UserError(f"{path or 'the video'} has no video frames; give a video with at least one frame")

    @classmethod
    def open(cls, video: Any, resize: tuple[int, int] | None = None) -> VideoSource:
        if isinstance(video, VideoSource):
            return video
        if isinstance(video, (str, Path)):
            path = Path(video).expanduser()
            return cls(_reader_for_path(path), path=path, resize=resize)
        frames = _split_frames(video)
        if len(frames) == 0:
            raise UserError("the in-memory video has no video frames; give at least one frame")
        return cls(_MemoryReader(frames), resize=resize)

    @classmethod
    def from_frame_files(cls, files: Sequence[Path | str]) -> VideoSource:
        """Exactly these frame files, in this order (a benchmark's frame list)."""
        paths = [Path(f) for f in files]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise UserError(f"frame files not found: {', '.join(missing[:3])}; check the dataset")
        if not paths:
            raise UserError("no frame files given")
        return cls(_FolderReader(paths), path=paths[0].parent)

    def __len__(self) -> int:
        return len(self._reader)

    @property
    def num_frames(self) -> int:
        return len(self._reader)

    @property
    def fps(self) -> float | None:
        return self._reader.fps

    @property
    def original_size(self) -> tuple[int, int]:
        """(width, height) as stored."""
        return self._reader.size

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the frames this source returns."""
        return self.resize or self._reader.size

    @property
    def frame_names(self) -> list[str]:
        return self._reader.names or [f"{i:05d}" for i in range(len(self))]

    def __repr__(self) -> str:
        w, h = self.size
        return f"VideoSource({self.path or 'in-memory'}, {len(self)} frames, {w}x{h}, fps={self.fps})"

    def frames(self, indices: Iterable[int] | None = None) -> Iterator[tuple[int, Image.Image]]:
        """(index, frame) pairs in increasing index order, decoded once each."""
        wanted = range(len(self)) if indices is None else sorted(set(int(i) for i in indices))
        self._check_indices(wanted)
        for i, image in self._reader.read(wanted):
            if self.resize and image.size != tuple(self.resize):
                image = image.resize(self.resize, Image.BILINEAR)
            yield i, image

    def __iter__(self) -> Iterator[Image.Image]:
        for _, image in self.frames():
            yield image

    def _check_indices(self, indices: Iterable[int]) -> None:
        bad = [i for i in indices if not 0 <= i < len(self)]
        if bad:
            raise UserError(f"frame {bad[0]} is outside {self.path or 'the video'}, which has {len(self)} frames "
                            f"(0..{len(self) - 1}); give a frame index in that range")

    def frame(self, index: int) -> Image.Image:
        """One frame; a negative index counts from the end."""
        if -len(self) <= index < 0:
            index += len(self)
        for _, image in self.frames([index]):
            return image
        raise UserError(f"frame {index} of {self.path or 'the video'} could not be read; check the file")

    def read_many(self, indices: Iterable[int]) -> dict[int, Image.Image]:
        """A few frames (keyframes) by index, in one decoding pass."""
        return dict(self.frames(indices))

    def source_index(self, index: int) -> int:
        """Frame `index`'s index in the video this one was cut from (through spans of spans): what a
        session's feature cache is keyed by, since a span numbers its frames from 0."""
        reader = self._reader
        return reader.parent.source_index(reader.indices[index]) if isinstance(reader, _SpanReader) else index

    def span(self, indices: Sequence[int]) -> VideoSource:
        """These frames, in this order, as a video of their own (frame i of the span is `indices[i]`)."""
        indices = [int(i) for i in indices]
        self._check_indices(indices)
        return VideoSource(_SpanReader(self, indices), path=self.path)
