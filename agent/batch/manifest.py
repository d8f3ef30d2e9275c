"""The input of `rvos batch`: a folder of clips or a JSONL / CSV manifest, read into items and checked whole
(prompt syntax, instructions, fields) before any model loads. Nothing here opens a video: a missing or corrupt
one fails its own item at run time."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from agent.errors import UserError

SUMMARY_FILE = "batch.json"
MANIFEST_FIELDS = ("video", "instruction", "mask", "box", "point")
PROMPT_FIELDS = {"mask": "FILE[@FRAME]", "box": "X0,Y0,X1,Y1[@FRAME]", "point": "X,Y[,+|-][@FRAME]"}
CSV_SEPARATOR = ";"  # several prompts of one kind in one CSV cell (the prompts themselves hold commas)
NAME_LIMIT = 80  # characters of the video's name kept in its output folder's name


@dataclass(frozen=True)
class BatchItem:
    """One video and its request, as `rvos segment VIDEO INSTRUCTION --mask … --box … --point …` takes them."""

    name: str  # its output folder under DIR: safe, unique
    video: str
    instruction: str | None
    masks: tuple[str, ...] = ()
    boxes: tuple[str, ...] = ()
    points: tuple[str, ...] = ()
    line: int | None = None  # the manifest line it came from (None: an entry of a folder)


def _safe_name(video: str) -> str:
    from agent.video.source import VIDEO_SUFFIXES

    path = Path(video)
    stem = path.stem if path.suffix.lower() in VIDEO_SUFFIXES else path.name
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._-")[:NAME_LIMIT] or "video"


def _checked_prompts(kind: str, texts: Sequence[str], where: str, base: Path | None) -> tuple[str, ...]:
    """The prompts' syntax checked as the command line checks it; mask paths resolved against `base`."""
    from agent.visual_syntax import parse_box, parse_mask, parse_point

    checked = []
    for text in texts:
        if not isinstance(text, str) or not text.strip():
            raise UserError(f"{where}: {kind} {text!r} is not a {PROMPT_FIELDS[kind]} string; write it as the command line's --{kind} takes it")
        text = text.strip()
        try:
            if kind == "point":
                parse_point(text)
            elif kind == "box":
                parse_box(text)
            else:
                frame, path = parse_mask(text)
                path = path.expanduser()
                if base is not None and not path.is_absolute():
                    path = base / path
                text = f"{path.absolute()}@{frame}"  # Ray workers may start in another folder
        except UserError as exc:
            raise UserError(f"{where}: {exc}" if where else str(exc)) from None
        checked.append(text)
    return tuple(checked)


def _item(where: str, line: int | None, video: str, instruction: str | None, prompts: dict[str, Sequence[str]],
          base: Path | None) -> BatchItem:
    if not isinstance(video, str) or not video.strip():
        raise UserError(f"{where}: no video; give the video file or frame folder to segment")
    if instruction is not None and not isinstance(instruction, str):
        raise UserError(f"{where}: the instruction must be text, e.g. \"the dog on the left\"")
    instruction = instruction.strip() if instruction and instruction.strip() else None
    checked = {kind: _checked_prompts(kind, prompts.get(kind) or (), where, base) for kind in PROMPT_FIELDS}
    if instruction is None and not any(checked.values()):
        raise UserError(f"{where}: say what to segment: an instruction or a visual prompt (mask, box, point)")
    path = Path(video.strip()).expanduser()
    if base is not None and not path.is_absolute():
        path = base / path
    return BatchItem("", str(path.absolute()), instruction, checked["mask"], checked["box"], checked["point"], line)


def _as_list(value: Any, kind: str, where: str) -> list:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return value
    raise UserError(f"{where}: {kind} must be a {PROMPT_FIELDS[kind]} string or a list of them")


def _read_jsonl(path: Path, lines: list[str]) -> list[BatchItem]:
    items = []
    for number, text in enumerate(lines, 1):
        if not text.strip():
            continue
        where = f"{path.name} line {number}"
        try:
            record = json.loads(text)
        except ValueError as exc:
            raise UserError(f"{where}: not JSON ({exc.msg}); write one object per line, e.g. "
                            '{"video": "clip.mp4", "instruction": "the dog"}') from None
        if not isinstance(record, dict):
            raise UserError(f"{where}: write one JSON object per line, with \"video\" and \"instruction\" or a prompt")
        unknown = sorted(set(record) - set(MANIFEST_FIELDS))
        if unknown:
            raise UserError(f"{where}: unknown field {unknown[0]!r}; the fields are {', '.join(MANIFEST_FIELDS)}")
        prompts = {kind: _as_list(record.get(kind), kind, where) for kind in PROMPT_FIELDS}
        items.append(_item(where, number, record.get("video"), record.get("instruction"), prompts, path.parent))
    return items


def _read_csv(path: Path, lines: list[str]) -> list[BatchItem]:
    reader = csv.reader(lines)
    try:
        return _csv_items(path, reader)
    except csv.Error as exc:
        raise UserError(f"{path.name} line {reader.line_num}: not CSV ({exc}); write one video per line under a header") from None


def _csv_items(path: Path, reader) -> list[BatchItem]:
    header = [h.strip().lower() for h in next(reader, [])]
    missing = [name for name in ("video", "instruction") if name not in header]
    unknown = [name for name in header if name not in MANIFEST_FIELDS]
    if missing or unknown or len(set(header)) != len(header):
        problem = (f"no {missing[0]!r} column" if missing else f"unknown column {unknown[0]!r}" if unknown else "a column is named twice")
        raise UserError(f"{path.name} line 1: {problem}; the header is video,instruction[,mask,box,point]")
    items, last = [], reader.line_num
    for row in reader:
        number, last = last + 1, reader.line_num  # a quoted cell may span lines: the record's first line
        if not any(cell.strip() for cell in row):
            continue
        where = f"{path.name} line {number}"
        if len(row) != len(header):
            raise UserError(f"{where}: {len(row)} cells, the header has {len(header)}; quote a cell that holds commas "
                            '(e.g. "10,20,200,180")')
        cells = dict(zip(header, row))
        prompts = {kind: [p for p in cells.get(kind, "").split(CSV_SEPARATOR) if p.strip()] for kind in PROMPT_FIELDS}
        items.append(_item(where, number, cells["video"], cells["instruction"] or None, prompts, path.parent))
    return items


def _folder_entries(folder: Path, out: Path) -> list[Path]:
    from agent.video.source import IMAGE_SUFFIXES, VIDEO_SUFFIXES

    def natural(path: Path) -> list:  # clip2 before clip10
        return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]

    try:
        entries = sorted(folder.iterdir(), key=natural)
    except OSError as exc:
        raise UserError(f"cannot read folder {folder}: {exc.strerror}") from None
    out = out.expanduser().absolute()
    videos = [e for e in entries if not e.name.startswith(".") and e.absolute() != out
              and (e.is_dir() or e.suffix.lower() in VIDEO_SUFFIXES)]
    if not videos:
        if any(e.suffix.lower() in IMAGE_SUFFIXES for e in entries):
            raise UserError(f"{folder} holds frames, not videos: segment it as one video with `rvos segment {folder}`")
        raise UserError(f"{folder} holds no videos ({', '.join(VIDEO_SUFFIXES)}) or frame folders; give a folder of clips or a manifest")
    return videos


def _unique_names(items: list[BatchItem]) -> list[BatchItem]:
    """Each item's folder name: a manifest's carries its line number; a folder's entries are told apart by a count."""
    taken, named = {SUMMARY_FILE}, []
    for item in items:
        base = _safe_name(item.video)
        name = f"{item.line:04d}-{base}" if item.line is not None else base
        count = 1
        while name.lower() in taken:  # case-insensitively: some file systems are
            count += 1
            name = f"{base}-{count}"
        taken.add(name.lower())
        named.append(replace(item, name=name))
    return named


def read_items(source: Path | str, out: Path | str, instruction: str | None = None, points: Sequence[str] = (),
               boxes: Sequence[str] = (), masks: Sequence[str] = ()) -> list[BatchItem]:
    """The items of a folder (asked `instruction` and the prompts given) or of a .jsonl / .csv manifest, every one
    checked; a bad line raises `UserError` naming it."""
    source, out = Path(source).expanduser(), Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder path")
    if not source.exists():
        raise UserError(f"{source} does not exist; give a folder of videos or a .jsonl / .csv manifest")
    if source.is_dir():
        if instruction is not None:
            from agent.pipeline import check_instruction

            check_instruction(instruction)
        if instruction is None and not (points or boxes or masks):
            raise UserError('say what to segment in every video: an instruction ("the dog on the left") or a visual prompt '
                            "(--mask, --box, --point); or give a manifest with one per video")
        entries = _folder_entries(source, out)
        prompts = {"point": points, "box": boxes, "mask": masks}
        items = [_item("", None, str(e), instruction, prompts, None) for e in entries]
        return _unique_names(items)
    if instruction is not None or points or boxes or masks:
        raise UserError("a manifest gives each video its own instruction and prompts: drop INSTRUCTION, --point, --box "
                        "and --mask from the command line (or give a folder of videos instead)")
    suffix = source.suffix.lower()
    if suffix not in (".jsonl", ".csv"):
        raise UserError(f"{source.name}: give a folder of videos or a manifest (.jsonl or .csv); one video is `rvos segment {source}`")
    try:
        lines = source.read_text(encoding="utf-8-sig").splitlines(keepends=True)
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read manifest {source}: {getattr(exc, 'strerror', None) or exc}; give a UTF-8 text file") from None
    items = _read_jsonl(source, lines) if suffix == ".jsonl" else _read_csv(source, lines)
    if not items:
        raise UserError(f"manifest {source} lists no videos; add one line per video")
    return _unique_names(items)

