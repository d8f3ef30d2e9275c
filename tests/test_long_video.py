"""Long videos: memory stays flat over thousands of frames; an object that leaves and comes back keeps its id."""

from collections.abc import Sequence

import numpy as np
from PIL import Image

from agent.writers import read_palette_png


def resident_mib() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    import os

    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


class Squares(Sequence):
    """Frames generated on demand: a red square bouncing left and right."""

    def __init__(self, length, size=(64, 48)):
        self.length, self.size = length, size

    def __len__(self):
        return self.length

    def __getitem__(self, index):
        if not 0 <= index < self.length:
            raise IndexError(index)
        w, h = self.size
        frame = np.full((h, w, 3), 30, np.uint8)
        x = abs((index % 80) - 40) * (w - 12) // 40
        frame[10:22, x : x + 12] = (220, 30, 30)
        return frame


def test_memory_stays_flat_over_thousands_of_frames(qwen25_fixture):
    from agent.backends.sa2va.spec import load_sa2va
    from agent.video import VideoSource

    backend = load_sa2va(str(qwen25_fixture / "checkpoint"), "cpu", sam2_config=qwen25_fixture / "sam2_tiny_test.yaml", answer="Sure, [SEG].")
    video = VideoSource.open(Squares(3000))
    keyframes = video.read_many([0, 1500, 2999])
    grounding = backend.grounder.ground(keyframes, "the red square")
    tracker = backend.tracker
    rss, held = {}, []
    for frame in tracker.track_logits(video, grounding.prompts, keyframes):
        held.append(max(tracker.last_memory_frames))
        if frame.frame_index in (500, 2999):
            rss[frame.frame_index] = resident_mib()
    assert max(held) <= tracker._horizon + 3  # conditioning frames + the recent window, whatever the length
    assert rss[2999] - rss[500] < 25, rss  # keeping every frame's memory would add far more


def sprite(refdavis, video, scale):
    """The object of a DAVIS video's first frame, cut out along its true mask: (image, alpha)."""
    image = Image.open(refdavis / "JPEGImages" / video / "00000.jpg").convert("RGB")
    mask = read_palette_png(refdavis / "Annotations" / video / "00000.png") == 1
    ys, xs = np.nonzero(mask)
    box = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    size = (int((box[2] - box[0]) * scale), int((box[3] - box[1]) * scale))
    cut = image.crop(box).resize(size, Image.BILINEAR)
    alpha = Image.fromarray(mask[box[1] : box[3], box[0] : box[2]].astype(np.uint8) * 255).resize(size, Image.NEAREST)
    return cut, alpha


class ExitAndReturn(Sequence):
    """A real swan (cut from DAVIS) swims right, leaves the frame, and comes back from the left, while a
    real car (cut from DAVIS too) stays parked above its path."""

    CAR_AT = (300, 15)

    def __init__(self, swan, car, length=240, size=(427, 240)):
        (self.sprite, self.alpha), (self.car, self.car_alpha) = swan, car
        self.length, self.size = length, size
        base = np.linspace(60, 140, size[0], dtype=np.float32)[None, :, None].repeat(size[1], 0).repeat(3, 2)
        self.background = Image.fromarray(base.astype(np.uint8))
        self.background.paste(self.car, self.CAR_AT, self.car_alpha)

    def __len__(self):
        return self.length

    def x(self, index):  # leaves on the right around frame 80, back from the left from frame 150
        w, sw = self.size[0], self.sprite.size[0]
        return 20 + index * 4 if index < 120 else -sw + (index - 150) * 4

    def __getitem__(self, index):
        frame = self.background.copy()
        frame.paste(self.sprite, (self.x(index), 110), self.alpha)
        return frame

    def truth(self, index):
        canvas = Image.new("L", self.size)
        canvas.paste(self.alpha, (self.x(index), 110))
        return np.asarray(canvas) > 0

    def car_truth(self):
        canvas = Image.new("L", self.size)
        canvas.paste(self.car_alpha, self.CAR_AT)
        return np.asarray(canvas) > 0


def iou(a, b) -> float:
    return np.count_nonzero(a & b) / max(1, np.count_nonzero(a | b))


def test_object_that_exits_and_comes_back_keeps_its_id(refdavis, lite_assistant):
    video = ExitAndReturn(sprite(refdavis, "blackswan", 0.4), sprite(refdavis, "car-shadow", 0.3))
    session = lite_assistant.open(video, progress=False)
    car = session.ask("the car", mode="direct")
    swan = session.ask("the swan", mode="direct")
    assert list(car.objects) == [1] and list(swan.objects) == [2] and sorted(session.objects.objects) == [1, 2]
    absent = [t for t in range(len(video)) if not video.truth(t).any()]
    assert absent and max(swan.area(2, t) for t in absent) < 0.2 * video.truth(10).sum()
    back = [t for t in range(200, len(video)) if video.truth(t).any()]
    ious = [iou(swan.masks(t)[2], video.truth(t)) for t in back]
    assert np.mean(ious) > 0.5, ious  # found again after coming back, under the same id
    parked = video.car_truth()
    car_ious = [iou(car.masks(t)[1], parked) for t in range(len(video))]
    assert min(car_ious) > 0.5, min(car_ious)  # the other object keeps its id (and its place) throughout
    assert max(np.count_nonzero(swan.masks(t)[2] & parked) for t in range(len(video))) < 0.1 * parked.sum()
