"""The `rvos` command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agent import __version__
from agent.errors import UserError


def _add_backend_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", default="auto", help="backend name (see `rvos backends`); auto: first that can run")
    parser.add_argument("--model", help="model id on the Hugging Face hub or a local checkpoint folder")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], help="model dtype (default: float32 on CPU, bfloat16 on CUDA)")
    parser.add_argument("--quantize", choices=["4bit", "8bit"], help="quantize the language model with bitsandbytes (CUDA)")
    parser.add_argument("--sam2-config", help="SAM 2 architecture yaml when the checkpoint's is not the official Hiera-L")
    parser.add_argument("--keyframes", type=int, help="how many keyframes the grounder sees (default 5)")
    parser.add_argument("--keyframe-strategy", choices=["uniform", "first"], help="uniform over the video (default) or the first frames")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rvos", description="Referring video object segmentation.")
    parser.add_argument("--version", action="version", version=f"rvos-agent {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    seg = sub.add_parser("segment", help="segment the object an instruction refers to on every frame")
    seg.add_argument("video", help="video file, folder of frames, or image")
    seg.add_argument("instruction", help='what to segment, e.g. "the dog that catches the frisbee"')
    seg.add_argument("--out", required=True, help="output folder (masks/, result.json, overlay.mp4)")
    _add_backend_options(seg)
    seg.add_argument("--answer", help="force the model's answer (teacher forcing), e.g. 'Sure, [SEG].'")
    seg.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    seg.add_argument("--no-overlay", action="store_true", help="do not write overlay.mp4")
    seg.add_argument("--debug", action="store_true", help="show tracebacks")

    backends = sub.add_parser("backends", help="list backends and whether each can run here")
    backends.add_argument("--model", help="check this model for backends that take one")
    backends.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def _backend_options(args: argparse.Namespace) -> dict:
    names = ("dtype", "quantize", "sam2_config", "keyframes", "keyframe_strategy", "answer")
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def _segment(args: argparse.Namespace) -> int:
    from agent.backends import load_backend
    from agent.pipeline import check_instruction, segment
    from agent.video.source import VideoSource
    from agent.writers.output import check_output_folder

    # Cheap checks first: bad input must not wait for a model to load.
    check_instruction(args.instruction)
    source = VideoSource.open(args.video)
    check_output_folder(Path(args.out), args.overwrite)
    backend = load_backend(args.backend, args.model, args.device, **_backend_options(args))
    run = segment(source, args.instruction, backend, args.out, overwrite=args.overwrite, overlay=not args.no_overlay)
    print(f"answer: {run.grounding.answer}")
    print(f"objects: {len(run.grounding.objects)}  frames: {len(source)}  backend: {backend.name} ({backend.model})")
    print(f"masks:   {run.out / 'masks'}")
    print(f"result:  {run.out / 'result.json'}")
    if not args.no_overlay:
        print(f"overlay: {run.out / 'overlay.mp4'}")
    return 0


def _backends(args: argparse.Namespace) -> int:
    from agent.backends import backend_specs

    for spec in backend_specs():
        reason = spec.unavailable_reason(args.model)
        status = "ready" if reason is None else f"cannot run: {reason}"
        print(f"{spec.name:8s} {spec.summary}\n{'':8s} {status}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return {"segment": _segment, "backends": _backends}[args.command](args)
    except UserError as exc:
        if args.debug:
            raise
        print(f"rvos: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rvos: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
