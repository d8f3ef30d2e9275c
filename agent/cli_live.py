"""`rvos segment --live`: the live door's checks (all before a model loads) and its summary; `agent.live` runs it."""

from __future__ import annotations

import argparse
import sys

from agent.errors import UserError

LIVE_OPTIONS = ("warmup", "reground", "max_latency", "duration", "max_frames", "reconnect", "queue")


def add_live_arguments(parser: argparse.ArgumentParser) -> None:
    """The `segment` command's live options (no defaults: one given on a plain file without --live is refused)."""
    group = parser.add_argument_group("live", "segment a stream as it arrives (implied for -, a named pipe, a stream URL, "
                                      "/dev/videoN); results go to DIR/frames.jsonl and DIR/masks/ frame by frame")
    group.add_argument("--live", action="store_true", help="read SOURCE as a live stream (a video file: read causally, nothing dropped)")
    group.add_argument("--warmup", type=int, metavar="N", help="look for the object on each of the first N frames until found (default 5)")
    group.add_argument("--reground", type=float, metavar="S", help="ground again every S seconds and soon after the object is lost (default: never)")
    group.add_argument("--max-latency", type=float, metavar="S", help="drop queued frames older than S seconds while a newer one waits")
    group.add_argument("--duration", type=float, metavar="S", help="stop after S seconds of stream")
    group.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames received")
    group.add_argument("--reconnect", type=float, metavar="S", help="a network stream that drops: try to reopen it for S seconds")
    group.add_argument("--queue", type=int, metavar="N", help="frames decoded ahead of the model (default 2; the newest are kept)")


def is_live(args: argparse.Namespace) -> bool:
    """`--live`, or a source that can only be live (stdin, a pipe, a stream URL, a device); a live option on a
    plain file without --live is refused rather than ignored."""
    from agent.video.live import live_kind

    if args.live or live_kind(args.video) is not None:
        return True
    given = next((o for o in LIVE_OPTIONS if getattr(args, o) is not None), None)
    if given is not None:
        raise UserError(f"--{given.replace('_', '-')} is for live runs: add --live, or drop it")
    return False


def run(args: argparse.Namespace, planner, mode: str, checked_backend, backend_options) -> int:
    from agent.backends import load_backend
    from agent.live import LiveSettings, print_progress, run_live
    from agent.pipeline import Request
    from agent.video.live import DEFAULT_QUEUE, LiveSource, check_live_spec
    from agent.writers.live import check_live_folder

    if args.overwrite:
        raise UserError("a live run writes into a new or empty folder and replaces nothing; drop --overwrite or choose another --out")
    settings = LiveSettings(**{name: getattr(args, name) for name in ("warmup", "reground", "max_latency", "duration", "max_frames")
                               if getattr(args, name) is not None}).check()
    if args.reconnect is not None and args.reconnect < 0:
        raise UserError(f"--reconnect must be a number of seconds ≥ 0, not {args.reconnect!r}")
    if args.queue is not None and args.queue < 1:
        raise UserError(f"--queue must be at least 1 frame, not {args.queue!r}")
    check_live_spec(args.video)
    visual = bool(args.mask or args.box or args.point)
    request = Request(args.instruction, (), mode) if not visual else None  # the mode's own checks, now
    check_live_folder(args.out)
    name, device = checked_backend(args)
    source = LiveSource.open(args.video, queue_size=args.queue or DEFAULT_QUEUE, reconnect=args.reconnect or 0.0)
    try:
        if visual:
            request = Request(args.instruction, tuple(first_frame_prompts(args, source)), mode)
        backend = load_backend(name, args.model, device, **backend_options(args))
    except BaseException:
        source.close()
        raise
    run = run_live(source, backend, request, args.out, settings=settings, planner=planner, progress=print_progress,
                   overlay=not args.no_overlay)
    if sys.stderr.isatty():
        print(file=sys.stderr)  # past the progress line
    print(f"answer: {run.answer}")
    print(f"objects: {len(run.objects)}  frames handled: {run.handled}  dropped: {run.dropped}  "
          f"latency p50/p95: {run.latency_p50_ms} / {run.latency_p95_ms} ms  ({run.ended})")
    print(f"frames:  {run.out / 'frames.jsonl'}")
    print(f"result:  {run.out / 'result.json'}")
    if not args.no_overlay:
        print(f"overlay: {run.out / 'overlay.mp4'}")
    return 0


def first_frame_prompts(args: argparse.Namespace, source) -> list:
    """--mask/--box/--point of a live run: on the first frame handled, so checked against the stream's frame size,
    which is known once its first frame has come (waited for before a model loads)."""
    from agent.live import STALL_SECONDS
    from agent.video.live import GrowingFrames
    from agent.visual_syntax import command_line_prompts

    size = source.wait_for_first(STALL_SECONDS + source.reconnect)
    if size is None:
        raise UserError(f"no frame came from {source.spec} ({source.end_reason or 'the stream stalled'}); "
                        "check that the stream is playing and is a video")
    prompts = command_line_prompts(GrowingFrames.BOUND, size, args.point, args.box, args.mask)
    if any(p.frame_index != 0 for p in prompts):
        raise UserError("in a live run a visual prompt applies to the first frame handled; drop its @FRAME")
    return prompts
