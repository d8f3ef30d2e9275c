"""`rvos describe VIDEO`: words about one object (marked with --mask/--box/--point, or taken from an earlier
result with --object-from), or, with no object, a grounded caption of the video whose phrases are linked to
tracked objects. A marked object is tracked first (the one path: `Pipeline.run`), then described from its track
(`Pipeline.describe`); --object-from describes the masks as they were saved."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from agent.errors import UserError


def add_parser(sub, add_backend_options) -> None:
    describe = sub.add_parser("describe", help="describe an object (or ask about it), or caption the video with phrases linked to masks")
    describe.add_argument("video", help="video file, folder of frames, or image")
    describe.add_argument("question", nargs="?", help='what to ask about the object, e.g. "what is it doing?" (default: describe it)')
    describe.add_argument("--mask", action="append", default=[], metavar="FILE[@FRAME]", help="the object's mask on a frame (a PNG)")
    describe.add_argument("--box", action="append", default=[], metavar="X0,Y0,X1,Y1[@FRAME]", help="a box around the object")
    describe.add_argument("--point", action="append", default=[], metavar="X,Y[,+|-][@FRAME]", help="clicks on (+) or off (-) the object")
    describe.add_argument("--object-from", metavar="RESULT_JSON:ID", help="an object of an earlier output (rvos segment --out), e.g. out/result.json:1")
    describe.add_argument("--out", help="also save the object's (or the caption's) masks and result.json in this folder")
    describe.add_argument("--overwrite", action="store_true", help="replace an earlier output in --out")
    describe.add_argument("--json", action="store_true", help="print the answer with the frames used and what was measured, as JSON")
    add_backend_options(describe)
    describe.add_argument("--answer", help="force the model's answer (teacher forcing)")
    describe.add_argument("--debug", action="store_true", help="show tracebacks")


def saved_object(spec: str, num_frames: int) -> tuple[int, list[np.ndarray]]:
    """`RESULT_JSON:ID` → (ID, its mask on every frame) from an output folder of ours."""
    path, colon, number = spec.rpartition(":")
    if not colon or not number.isdigit():
        raise UserError(f"--object-from {spec!r}: write RESULT_JSON:ID, e.g. out/result.json:1")
    path = Path(path)
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"--object-from: cannot read {path} ({exc}); give the result.json of an rvos output folder") from None
    frames, object_id = result.get("frames") if isinstance(result, dict) else None, int(number)
    if not isinstance(frames, list) or len(frames) != num_frames:
        raise UserError(f"--object-from: {path} holds {len(frames) if isinstance(frames, list) else 'no'} frames but the video has "
                        f"{num_frames}; give the result of this video")
    known = {o.get("id") for o in result.get("objects", []) if isinstance(o, dict)}
    if object_id not in known:
        raise UserError(f"--object-from: {path} has no object {object_id} (it has: {', '.join(map(str, sorted(known))) or 'none'})")
    masks = []
    for frame in frames:
        png = path.parent / "masks" / f"{Path(str(frame.get('name', ''))).name}.png"
        try:
            with Image.open(png) as image:
                masks.append(np.asarray(image) == object_id)
        except OSError as exc:
            raise UserError(f"--object-from: cannot read {png} ({exc}); the output folder is incomplete") from None
    return object_id, masks


def run(args: argparse.Namespace, checked_backend, backend_options) -> int:
    from agent.backends import load_backend
    from agent.pipeline import Pipeline, Request
    from agent.video.source import VideoSource
    from agent.visual_syntax import command_line_prompts
    from agent.writers.output import check_output_folder

    # every check that needs no model first
    source = VideoSource.open(args.video)
    prompts = command_line_prompts(len(source), source.size, args.point, args.box, args.mask)
    if args.object_from and prompts:
        raise UserError("give the object one way: --object-from, or --mask/--box/--point")
    if len({p.object_id for p in prompts}) > 1:
        raise UserError("rvos describe takes one object; mark one (one mask id, one box, or clicks on one object)")
    question = args.question.strip() if args.question else None
    if args.question is not None and not question:
        raise UserError('the question is empty; ask something ("what is it doing?") or leave it out to describe the object')
    if question and not (prompts or args.object_from):
        raise UserError("say which object the question is about (--mask, --box, --point or --object-from); "
                        "with no object and no question, rvos describe captions the video")
    saved = saved_object(args.object_from, len(source)) if args.object_from else None
    if args.out:
        check_output_folder(Path(args.out), args.overwrite)
    name, device = checked_backend(args)
    backend = load_backend(name, args.model, device, **backend_options(args))
    pipeline = Pipeline(backend, source)
    if saved is not None:
        reply = pipeline.describe(saved[1], question, saved[0])
    elif prompts:
        tracked = pipeline.run(Request(None, tuple(prompts)))
        object_id = next(iter(tracked.objects))
        reply = pipeline.describe([tracked.masks(t).get(object_id) for t in range(len(source))], question, object_id)
    else:
        reply = pipeline.caption()
    if args.out:
        reply.save(args.out, overwrite=args.overwrite)
    if args.json:
        print(json.dumps({"answer": reply.answer, "mode": reply.mode, "objects": reply.objects, **reply.details}, indent=1, default=str))
    else:
        print(f"answer: {reply.answer}")
        for link in reply.details.get("caption", {}).get("phrases", []):
            print(f"  object {link['object']}: {link['phrase']}")
        if "description" in reply.details:
            print(f"frames looked at: {', '.join(map(str, reply.details['description']['frames']))}")
    return 0
