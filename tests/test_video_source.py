import numpy as np
import pytest
import torch
from PIL import Image

from agent.errors import UserError
from agent.video import VideoSource, select_keyframes
from conftest import VIDEOS, encode_video, mean_abs_diff


@pytest.mark.parametrize("video", VIDEOS)
def test_real_frame_folders(refdavis, refdavis_meta, video):
    source = VideoSource.open(refdavis / "JPEGImages" / video)
    expected = refdavis_meta["videos"][video]["frames"]
    assert len(source) == len(expected)
    assert source.frame_names == expected
    assert source.size == (854, 480) and source.fps is None
    indices = [i for i, _ in source.frames()]
    assert indices == list(range(len(expected)))
    last = source.frame(-1)
    assert last.size == (854, 480) and last.mode == "RGB"
    assert np.array_equal(np.asarray(last), np.asarray(Image.open(refdavis / "JPEGImages" / video / f"{expected[-1]}.jpg")))


@pytest.mark.parametrize("codec,suffix", [("libx264", "mp4"), ("libvpx-vp9", "webm")])
def test_real_videos_encoded_as_files(refdavis, tmp_path, codec, suffix):
    folder = refdavis / "JPEGImages" / "libby"
    path = tmp_path / f"libby.{suffix}"
    count = encode_video(folder, path, codec, fps=24, limit=20)
    source = VideoSource.open(path)
    assert len(source) == count
    assert source.fps == pytest.approx(24)
    assert source.size == (854, 480)
    assert source.frame_names[:2] == ["00000", "00001"]
    originals = sorted(folder.glob("*.jpg"))
    frames = list(source.frames())
    assert [i for i, _ in frames] == list(range(count))
    # lossy codecs: decoded frames stay close to their originals and far from other frames
    for i in (0, count - 1):
        own = mean_abs_diff(frames[i][1], Image.open(originals[i]))
        other = mean_abs_diff(frames[i][1], Image.open(originals[count - 1 - i]))
        assert own < 6 and own < other
    keyframes = source.read_many([3, 17])
    assert mean_abs_diff(keyframes[17], frames[17][1]) == 0


def test_single_image_is_one_frame_video(tmp_path):
    path = tmp_path / "photo.png"
    Image.new("RGBA", (33, 17), (10, 20, 30, 128)).save(path)
    source = VideoSource.open(path)
    assert len(source) == 1 and source.size == (33, 17) and source.frame_names == ["00000"]
    assert source.frame(0).mode == "RGB"


def test_in_memory_frames_of_every_kind():
    gray = np.full((5, 7), 200, dtype=np.uint8)
    sources = [
        VideoSource.open([Image.new("L", (7, 5), 200), Image.new("RGBA", (7, 5))]),
        VideoSource.open(np.stack([np.stack([gray] * 3, -1)] * 2)),  # T×H×W×C
        VideoSource.open(torch.full((2, 3, 5, 7), 200, dtype=torch.uint8)),  # T×C×H×W
        VideoSource.open([gray, gray]),
    ]
    for source in sources:
        assert len(source) == 2 and source.size == (7, 5) and source.frame_names == ["00000", "00001"]
        assert np.asarray(source.frame(0)).shape == (5, 7, 3)
        assert int(np.asarray(source.frame(0))[0, 0, 0]) == 200


def test_natural_sort_and_resize(tmp_path):
    for i in (10, 2, 1):
        Image.new("RGB", (9, 7), (i, i, i)).save(tmp_path / f"f{i}.png")
    source = VideoSource.open(tmp_path, resize=(4, 6))
    assert source.frame_names == ["f1", "f2", "f10"]
    assert source.original_size == (9, 7) and source.size == (4, 6)
    assert [np.asarray(img)[0, 0, 0] for img in source] == [1, 2, 10]
    assert source.frame(2).size == (4, 6)


def test_keyframe_selection():
    assert select_keyframes(50, 5, "uniform") == [0, 12, 24, 37, 49]
    assert select_keyframes(50, 5, "first") == [0, 1, 2, 3, 4]
    assert select_keyframes(3, 5, "uniform") == [0, 1, 2]
    assert select_keyframes(1, 5) == [0]
    assert select_keyframes(10, indices=[7, 2, 2]) == [2, 7]
    with pytest.raises(UserError):
        select_keyframes(10, indices=[10])
    with pytest.raises(UserError):
        select_keyframes(10, 3, "random")


def test_frame_sequences_are_read_lazily():
    """A sequence that makes frames on demand is never materialised (long videos stay out of memory)."""
    from collections.abc import Sequence

    class Counting(Sequence):
        def __init__(self):
            self.reads = []

        def __len__(self):
            return 10_000

        def __getitem__(self, index):
            if not 0 <= index < len(self):
                raise IndexError(index)
            self.reads.append(index)
            return np.full((6, 8, 3), index % 256, np.uint8)

    frames = Counting()
    source = VideoSource.open(frames)
    assert len(source) == 10_000 and source.size == (8, 6)
    assert np.asarray(source.frame(9_999))[0, 0, 0] == 9_999 % 256
    assert sorted(set(frames.reads)) == [0, 9_999]


def test_video_files_seek_instead_of_decoding_from_the_start(refdavis, tmp_path, monkeypatch):
    """Reading a late chunk decodes from the keyframe before it, not from frame 0; frames are the same."""
    import av

    path = tmp_path / "libby.mp4"
    count = encode_video(refdavis / "JPEGImages" / "libby", path, "libx264", fps=24, limit=40, keyframe_every=8)
    source = VideoSource.open(path)
    linear = [np.asarray(image) for _, image in source.frames()]
    decoded = []
    real_open = av.open

    class Counting:  # a container that counts the frames it decodes
        def __init__(self, container):
            self.container = container

        def __getattr__(self, name):
            return getattr(self.container, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.container.__exit__(*exc)

        def decode(self, *args, **kwargs):
            for frame in self.container.decode(*args, **kwargs):
                decoded.append(frame.pts)
                yield frame

    def counting_open(*args, **kwargs):
        return Counting(real_open(*args, **kwargs))

    monkeypatch.setattr(av, "open", counting_open)
    late = source.read_many(range(count - 3, count))
    assert sorted(late) == list(range(count - 3, count))
    for i, image in late.items():
        assert np.array_equal(np.asarray(image), linear[i])
    # from the keyframe at or before frame 37 (one every 8 frames), not from frame 0
    assert 3 <= len(decoded) <= 3 + 8
    middle = source.read_many([20, 21])
    assert all(np.array_equal(np.asarray(middle[i]), linear[i]) for i in (20, 21))


@pytest.mark.parametrize("read", [
    lambda s: s.frame(len(s)),
    lambda s: s.frame(-len(s) - 1),
    lambda s: list(s.frames([1, len(s) + 4])),
    lambda s: s.read_many([0, -1]),
    lambda s: s.span([0, len(s)]),
], ids=["frame-past-the-end", "frame-before-the-start", "frames", "read_many-negative", "span"])
@pytest.mark.parametrize("kind", ["folder", "memory", "mp4"])
def test_a_frame_outside_the_video_is_one_clear_error(tmp_path, kind, read):
    frames = [Image.new("RGB", (16, 12), (40 * t, 0, 0)) for t in range(5)]
    if kind == "memory":
        source = VideoSource.open(frames)
    else:
        for t, image in enumerate(frames):
            image.save(tmp_path / f"{t:05d}.jpg")
        if kind == "mp4":
            encode_video(tmp_path, tmp_path / "clip.mp4", "libx264")
        source = VideoSource.open(tmp_path / "clip.mp4" if kind == "mp4" else tmp_path)
    with pytest.raises(UserError, match=r"outside .*which has 5 frames \(0\.\.4\)"):
        read(source)
    assert source.frame(-5).size == (16, 12)  # the same source still reads


def test_a_sequence_shorter_than_its_length_is_one_clear_error():
    class Promising(list):
        def __len__(self):
            return 3  # holds one frame

    source = VideoSource.open(Promising([np.zeros((6, 8, 3), np.uint8)]))
    with pytest.raises(UserError, match="in-memory frame 1 cannot be read"):
        list(source.frames())


def test_broken_video_files_are_one_clear_error(tmp_path):
    """Empty, garbage, cut short, or a container that promises more frames than it decodes."""
    for t in range(6):
        Image.new("RGB", (32, 24), (40 * t, 90, 0)).save(tmp_path / f"{t:05d}.jpg")
    encode_video(tmp_path, tmp_path / "clip.mp4", "libx264")
    data = (tmp_path / "clip.mp4").read_bytes()
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "garbage.mkv").write_bytes(bytes(range(256)) * 20)
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    for name in ("empty.mp4", "garbage.mkv", "cut.mp4"):
        with pytest.raises(UserError, match="cannot read video"):
            VideoSource.open(tmp_path / name)
    source = VideoSource.open(tmp_path / "clip.mp4")
    source._reader.count += 2  # what a container whose header counts frames it does not hold reports
    with pytest.raises(UserError, match="ended before frame 6"):
        list(source.frames())
    with pytest.raises(UserError, match="ended before frame 7"):
        source.frame(7)
