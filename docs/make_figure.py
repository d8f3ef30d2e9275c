"""The README's picture, made from a generated video (no licensed data): in one session a box adds the red
circle on frame 0 and a click adds the blue square on frame 12; both are tracked through the video
(the square backwards too). Four frames with the masks. Run: python docs/make_figure.py"""

from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw

from agent.assistant import Assistant
from agent.training.synthetic import Shape, render_video

OUT = Path(__file__).resolve().parent / "images" / "session.png"


def main() -> None:
    shapes = [Shape(1, "red", "circle", "right", 18, (50, 80), 5), Shape(2, "blue", "square", "left", 16, (260, 170), 4),
              Shape(3, "yellow", "triangle", "still", 20, (160, 120), 0)]
    frames, labels = render_video(shapes, 24, 320)
    session = Assistant.load("lite").open(frames, progress=False)
    ys, xs = (labels[0] == 1).nonzero()
    session.add_box(0, (xs.min() - 4, ys.min() - 4, xs.max() + 5, ys.max() + 5))
    ys, xs = (labels[12] == 2).nonzero()
    reply = session.add_points(12, [(float(xs.mean()), float(ys.mean()))], [1])
    tiles = []
    for t in (0, 8, 12, 23):
        tile = reply.overlay(t)
        draw = ImageDraw.Draw(tile)
        for object_id, mask in reply.masks(t).items():  # outlines and ids, so the masks read on flat colours
            contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            for contour in contours:
                draw.line([tuple(p) for p in contour[:, 0]] + [tuple(contour[0, 0])], fill=(255, 255, 255), width=2)
            if mask.any():
                ys, xs = mask.nonzero()
                draw.text((int(xs.max()) + 4, int(ys.min())), f"#{object_id}", fill=(255, 255, 255))
        draw.text((6, 6), f"frame {t}", fill=(255, 255, 255))
        tiles.append(tile)
    figure = Image.new("RGB", (sum(t.width for t in tiles) + 6 * (len(tiles) - 1), tiles[0].height), (255, 255, 255))
    for i, tile in enumerate(tiles):
        figure.paste(tile, (i * (tile.width + 6), 0))
    OUT.parent.mkdir(exist_ok=True)
    figure.save(OUT)
    print(reply.answer, "→", OUT)


if __name__ == "__main__":
    main()
