"""A sample clip for `make demo` on a machine with no videos: a slow camera move over a real photograph.

The photograph is scikit-image's `coffee.png` (an espresso cup on its saucer, by Rachel Michetti, courtesy of
Pikolo Espresso Bar; CC0, no copyright restrictions), which the scikit-image wheel ships, so nothing is
downloaded. The camera pans from left to right and pulls back a little; the cup stays whole in every frame.

    python -m agent.video.sample OUT_DIR      # writes OUT_DIR/00000.jpg … and prints the clip's instruction
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

from PIL import Image

from agent.errors import UserError

PHOTO = "coffee.png"  # inside the `skimage.data` package
INSTRUCTION = "the coffee cup"
NUM_FRAMES = 30
FRAME_SIZE = (480, 320)  # width, height
JPEG_QUALITY = 92
# The camera window in the photograph's pixels (x0, y0, width) at the first and the last frame; its height
# follows from FRAME_SIZE's aspect ratio. Every window holds the whole cup (x 172–409, y 17–306 with its handle).
WINDOW_START = (0.0, 8.0, 456.0)
WINDOW_END = (40.0, 0.0, 560.0)


def _photograph() -> Image.Image:
    try:
        path = resources.files("skimage.data") / PHOTO
        with resources.as_file(path) as file, Image.open(file) as image:
            return image.convert("RGB")
    except (ModuleNotFoundError, FileNotFoundError, OSError) as exc:
        raise UserError(f"cannot read scikit-image's sample photograph {PHOTO} ({exc}); "
                        "install scikit-image>=0.22 (pip install scikit-image)") from None


def camera_windows() -> list[tuple[float, float, float, float]]:
    """Each frame's window (x0, y0, x1, y1) in the photograph's pixels."""
    aspect = FRAME_SIZE[1] / FRAME_SIZE[0]
    boxes = []
    for i in range(NUM_FRAMES):
        t = i / (NUM_FRAMES - 1)
        t = t * t * (3 - 2 * t)  # ease in and out: the camera starts and stops gently
        x0, y0, width = (a + (b - a) * t for a, b in zip(WINDOW_START, WINDOW_END))
        boxes.append((x0, y0, x0 + width, y0 + width * aspect))
    return boxes


def make_sample_clip(out_dir: str | Path) -> tuple[Path, str]:
    """Write the clip into `out_dir` as JPEG frames 00000.jpg …; return (`out_dir`, the clip's instruction).

    Deterministic: the same Pillow writes the same bytes. A complete clip already there is reused; a folder
    holding anything else is refused, so the clip never mixes with other frames."""
    folder = Path(out_dir)
    names = [f"{i:05d}.jpg" for i in range(NUM_FRAMES)]
    if folder.exists():
        if not folder.is_dir():
            raise UserError(f"{folder} is a file, not a folder; give a new or empty folder for the sample clip")
        strangers = sorted(p.name for p in folder.iterdir() if p.name not in names and not p.name.endswith(".part"))
        if strangers:
            raise UserError(f"{folder} holds other files ({strangers[0]} …); "
                            "give a new or empty folder for the sample clip")
        if all((folder / name).is_file() for name in names):
            return folder, INSTRUCTION
    photo = _photograph()
    folder.mkdir(parents=True, exist_ok=True)
    for name, box in zip(names, camera_windows()):
        frame = photo.resize(FRAME_SIZE, Image.Resampling.LANCZOS, box=box)
        partial = folder / (name + ".part")  # a clip cut short never looks complete
        frame.save(partial, "JPEG", quality=JPEG_QUALITY)
        partial.replace(folder / name)
    return folder, INSTRUCTION


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m agent.video.sample OUT_DIR  (writes the demo clip, prints its instruction)",
              file=sys.stderr)
        return 2
    try:
        folder, instruction = make_sample_clip(args[0])
    except UserError as exc:
        print(f"rvos: error: {exc}", file=sys.stderr)
        return 2
    print(f"sample clip: {folder}/ ({NUM_FRAMES} frames, a camera move over scikit-image's {PHOTO}, CC0)",
          file=sys.stderr)
    print(instruction)
    return 0


if __name__ == "__main__":
    sys.exit(main())
