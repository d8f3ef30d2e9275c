"""The `rvos` command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agent import __version__
from agent.cli_options import (add_backend_options, add_feature_cache_option, add_mode_option, add_planner_options,
                               backend_options, checked_backend, checked_mode, planner_from)
from agent.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rvos", description="Referring video object segmentation.")
    parser.add_argument("--version", action="version", version=f"rvos-agent {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    seg = sub.add_parser("segment", help="segment the object an instruction refers to on every frame")
    seg.add_argument("video", help="video file, folder of frames, or image; or a live stream: - (stdin), a pipe, a URL, /dev/videoN")
    seg.add_argument("instruction", nargs="?", help='what to segment, e.g. "the dog that catches the frisbee" (may be left out with a visual prompt)')
    seg.add_argument("--out", required=True, help="output folder (masks/, result.json, overlay.mp4)")
    seg.add_argument("--mask", action="append", default=[], metavar="FILE[@FRAME]",
                     help="objects' masks on a frame (default 0): a palette or grey PNG of the frame's size, non-zero values are object ids (DAVIS first-frame annotation)")
    seg.add_argument("--box", action="append", default=[], metavar="X0,Y0,X1,Y1[@FRAME]", help="a box around an object (one object each; repeatable)")
    seg.add_argument("--point", action="append", default=[], metavar="X,Y[,+|-][@FRAME]",
                     help="a click on (+, default) or off (-) the object; the clicks are one object, the box's when there is one box (repeatable)")
    add_backend_options(seg)
    add_planner_options(seg)
    add_mode_option(seg)
    seg.add_argument("--answer", help="force the model's answer (teacher forcing), e.g. 'Sure, [SEG].'")
    seg.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    seg.add_argument("--no-overlay", action="store_true", help="do not write overlay.mp4")
    seg.add_argument("--debug", action="store_true", help="show tracebacks")
    from agent import cli_live
    cli_live.add_live_arguments(seg)

    chat = sub.add_parser("chat", help="talk about a video: multi-turn questions and segmentation requests")
    chat.add_argument("video", help="video file, folder of frames, or image")
    add_backend_options(chat)
    add_planner_options(chat)
    add_mode_option(chat)
    add_feature_cache_option(chat)
    chat.add_argument("--answer", help=argparse.SUPPRESS)
    chat.add_argument("--debug", action="store_true", help="show tracebacks")

    from agent import cli_describe

    cli_describe.add_parser(sub, add_backend_options)

    score = sub.add_parser("score", help="score palette masks against ground truth (DAVIS J, F, J&F)")
    score.add_argument("gt_root", help="folder with Annotations/<video>/<frame>.png")
    score.add_argument("pred_root", help="folder with <video>/<frame>.png (same object ids; a missing frame is empty)")
    score.add_argument("--out", required=True, help="report.json to write")
    score.add_argument("--skip-first-last", action="store_true", help="DAVIS semi-supervised protocol: leave out the first and last frame")
    score.add_argument("--debug", action="store_true", help="show tracebacks")

    evaluate = sub.add_parser("eval", help="run a backend on a benchmark, write predictions, scores and plots (resumable)")
    evaluate.add_argument("root", help="dataset root as downloaded")
    evaluate.add_argument("--dataset", help="generic (default), ref-youtube-vos, ref-davis17, mevis, mevis-v2, revos, long-rvos")
    evaluate.add_argument("--split", help="dataset split (each reader has its usual default)")
    evaluate.add_argument("--protocol", choices=["referring", "semi"], default="referring",
                          help="referring: ground each expression (default); semi: DAVIS semi-supervised, the first annotated frame's masks as the prompt")
    evaluate.add_argument("--out", required=True, help="evaluation folder (re-run the same command to resume)")
    add_backend_options(evaluate)
    add_planner_options(evaluate)
    add_mode_option(evaluate)
    evaluate.add_argument("--answer", help="force the model's answer (teacher forcing)")
    evaluate.add_argument("--ray", metavar="auto|ADDRESS", help="distribute videos over a Ray cluster (auto: running one, else local)")
    evaluate.add_argument("--workers", type=int, help="Ray workers (default: one per GPU, else 2)")
    evaluate.add_argument("--debug", action="store_true", help="show tracebacks")

    weights = sub.add_parser("weights", help="offline weights of backends that ship them")
    weights_sub = weights.add_subparsers(dest="action", required=True)
    fetch = weights_sub.add_parser("fetch", help="fetch, verify and convert a backend's weights into $RVOS_HOME")
    fetch.add_argument("backend", choices=["lite"], help="lite: the offline backend's weights")
    fetch.add_argument("--force", action="store_true", help="fetch again even if present")
    fetch.add_argument("--debug", action="store_true", help="show tracebacks")

    train = sub.add_parser("train", help="fine-tune a Sa2VA model (LoRA + projector + SAM 2 decoder); resumable")
    train.add_argument("config", help="training config YAML (see README: Training)")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config value, e.g. --set steps=200 (repeatable)")
    train.add_argument("--debug", action="store_true", help="show tracebacks")

    synth = sub.add_parser("synth", help="generate synthetic referring videos (moving shapes) in the generic layout")
    synth.add_argument("out", help="dataset folder to write (must not exist)")
    synth.add_argument("--videos", type=int, default=100, help="how many videos (two expressions each)")
    synth.add_argument("--seed", type=int, default=0, help="generator seed (same seed, same data)")
    synth.add_argument("--frames", type=int, default=8, help="frames per video")
    synth.add_argument("--size", type=int, default=112, help="frame width and height")
    synth.add_argument("--debug", action="store_true", help="show tracebacks")

    serve = sub.add_parser("serve", help="a web page to talk to videos, look at the masks and correct them (one model, many browsers)")
    add_backend_options(serve)
    add_planner_options(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; any other needs --auth)")
    serve.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    serve.add_argument("--concurrency", type=int, default=2, help="jobs in progress at a time (default 2); on lite they run at once on the "
                       "one loaded model, on SAM 2 backends one at a time")
    add_feature_cache_option(serve)
    serve.add_argument("--auth", metavar="USER:PASSWORD", help="ask for this login (or set $RVOS_SERVE_AUTH)")
    serve.add_argument("--max-upload-mb", type=float, default=200, help="largest upload in MB (default 200)")
    serve.add_argument("--max-frames", type=int, default=3000, help="longest video in frames (default 3000)")
    serve.add_argument("--max-side", type=int, default=4096, help="largest frame side in pixels (default 4096)")
    serve.add_argument("--idle-minutes", type=float, default=60, help="a browser session idle this long is closed and its files removed (default 60)")
    serve.add_argument("--max-sessions", type=int, default=8, help="browser sessions open at once; one more is asked to come back later (default 8)")
    serve.add_argument("--examples", metavar="DIR", help="example videos (DATASET/JPEGImages/VIDEO frame folders, video files); "
                       "default: ../shared/data beside the git checkout it runs from, when present")
    serve.add_argument("--allow-streams", action="store_true", help="let the page's live tab make the server open a network stream URL "
                       "(rtsp, http(s), udp, …) it gives (default: the browser's camera only)")
    serve.add_argument("--debug", action="store_true", help="show tracebacks")

    from agent.batch import add_batch_command  # its options sit beside the code that reads them

    add_batch_command(sub, add_backend_options)

    backends = sub.add_parser("backends", help="list backends and whether each can run here")
    backends.add_argument("--model", help="check this model for backends that take one")
    backends.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def _segment(args: argparse.Namespace) -> int:
    from agent.backends import load_backend
    from agent.visual_syntax import command_line_prompts
    from agent.pipeline import Request, check_instruction, segment
    from agent.video.source import VideoSource
    from agent.writers.output import check_output_folder

    # Cheap checks first: bad input must not wait for a model to load.
    if args.instruction is None and not (args.mask or args.box or args.point):
        raise UserError('say what to segment: an instruction ("the dog on the left") or a visual prompt (--mask, --box, --point)')
    if args.instruction is not None:
        check_instruction(args.instruction)
    planner = planner_from(args)
    mode = checked_mode(args, planner)
    from agent import cli_live
    if cli_live.is_live(args):  # stdin, a pipe, a stream URL, a device, or --live: checked and run there
        return cli_live.run(args, planner, mode, checked_backend, backend_options)
    source = VideoSource.open(args.video)
    prompts = command_line_prompts(len(source), source.size, args.point, args.box, args.mask)
    Request(args.instruction, tuple(prompts), mode)  # refuses what the mode cannot take
    check_output_folder(Path(args.out), args.overwrite)
    name, device = checked_backend(args)
    backend = load_backend(name, args.model, device, **backend_options(args))
    run = segment(source, args.instruction, backend, args.out, mode=mode, planner=planner, prompts=prompts, overwrite=args.overwrite,
                  overlay=not args.no_overlay)
    print(f"answer: {run.answer}")
    print(f"objects: {len(run.reply.objects)}  frames: {len(source)}  backend: {backend.name} ({backend.model})  mode: {run.reply.mode}")
    print(f"masks:   {run.out / 'masks'}")
    print(f"result:  {run.out / 'result.json'}")
    if not args.no_overlay:
        print(f"overlay: {run.out / 'overlay.mp4'}")
    return 0


def _chat(args: argparse.Namespace) -> int:
    from agent.assistant import Assistant
    from agent.assistant.chat import run_chat
    from agent.video.source import VideoSource

    video = VideoSource.open(args.video)  # bad input fails before a model loads
    planner = planner_from(args)
    mode = checked_mode(args, planner, switchable=True)
    if args.feature_cache_mb < 0:
        raise UserError("--feature-cache-mb must be 0 (no cache) or more")
    name, device = checked_backend(args)
    assistant = Assistant.load(name, args.model, device, planner=planner, **backend_options(args))
    return run_chat(assistant.open(video, feature_cache_mb=args.feature_cache_mb), mode=mode)


def _describe(args: argparse.Namespace) -> int:
    from agent import cli_describe

    return cli_describe.run(args, checked_backend, backend_options)


def _score(args: argparse.Namespace) -> int:
    import json

    from agent.evaluation.scoring import score_folders

    report = score_folders(Path(args.gt_root), Path(args.pred_root), args.skip_first_last)
    out = Path(args.out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(json.dumps(report, indent=1))
        tmp.replace(out)
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror}; choose a writable --out") from None
    overall = report["overall"]
    print(f"{report['protocol']}: J {overall['J']:.4f}  F {overall['F']:.4f}  J&F {overall['JF']:.4f}  ({len(report['videos'])} videos) → {out}")
    return 0


def _batch(args: argparse.Namespace) -> int:
    from agent.batch import BatchJob, print_summary, read_items, run_batch

    # the whole input is checked (a bad manifest line named) before any model loads
    items = read_items(args.input, args.out, args.instruction, args.point, args.box, args.mask)
    if args.workers is not None and (args.workers < 1 or not args.ray):
        raise UserError("--workers N (N ≥ 1) sets the Ray workers: give it with --ray, or drop it")
    name, device = checked_backend(args)
    # on Ray the device as asked: workers resolve `auto` on their own machines
    job = BatchJob(args.out, name, args.model, args.device if args.ray else device, backend_options(args), overlay=not args.no_overlay)
    summary = run_batch(job, items, source=args.input, ray_address=args.ray, workers=args.workers)
    print_summary(summary)
    return 0 if not summary["failed"] else 1


def _eval(args: argparse.Namespace) -> int:
    from agent.evaluation.runner import EvalJob, run_evaluation

    # fail before any work: options the protocol or the backend would ignore, a device that is not there
    if args.workers is not None and (args.workers < 1 or not args.ray):
        raise UserError("--workers N (N ≥ 1) sets the Ray workers: give it with --ray, or drop it")
    planner = planner_from(args)
    if args.protocol == "semi":
        from agent.evaluation.semi import check_semi_options

        check_semi_options(planner=args.planner, split=args.split, dataset=None if args.dataset in (None, "generic") else args.dataset,
                           ray=args.ray, workers=args.workers, answer=args.answer, keyframes=args.keyframes,
                           keyframe_strategy=args.keyframe_strategy, mode=args.mode)
    name, _ = checked_backend(args)
    # the device as asked: Ray workers resolve `auto` on their own machines
    mode = checked_mode(args, planner)
    job = EvalJob(args.root, args.dataset or "generic", args.split, name, args.out, args.model, args.device, backend_options(args), planner,
                  mode)
    if args.protocol == "semi":
        from agent.evaluation.semi import run_semi_supervised

        report = run_semi_supervised(job)
        overall = report["overall"]
        print(f"{len(report['videos'])} videos, DAVIS semi-supervised: J {overall['J']:.4f}  F {overall['F']:.4f}  J&F {overall['JF']:.4f}"
              f"  ({report['seconds_per_frame']} s/frame)")
        print(f"report: {Path(args.out) / 'report.json'}")
        return 0
    report = run_evaluation(job, ray_address=args.ray, workers=args.workers)
    overall = report.get("overall") or {}
    print(f"{report['expressions_done']}/{report['expressions_total']} expressions, {len(report['failures'])} failed")
    if overall:
        print(f"J {overall['J']:.4f}  F {overall['F']:.4f}  J&F {overall['JF']:.4f}  ({report['seconds_per_frame']} s/frame)")
    print(f"report: {Path(args.out) / 'report.json'}")
    return 0 if not report["failures"] else 1


def _weights(args: argparse.Namespace) -> int:
    from agent.backends.lite import weights

    weights.fetch(force=args.force)
    return 0


def _train(args: argparse.Namespace) -> int:
    from agent.training.config import load_config
    from agent.training.trainer import train

    result = train(load_config(args.config, args.overrides))
    if result.resumed_from:
        print(f"resumed from step {result.resumed_from}")
    losses = "  ".join(f"{k} {v:.4f}" for k, v in result.last_losses.items())
    print(f"trained {result.steps} steps: {losses}")
    print(f"log:        {result.out / 'log.jsonl'} (curves: {result.out / 'loss.png'})")
    print(f"checkpoint: {result.checkpoint}  (rvos segment VIDEO TEXT --backend sa2va --model {result.checkpoint})")
    return 0


def _synth(args: argparse.Namespace) -> int:
    from agent.training.synthetic import generate

    out = Path(args.out)
    if out.exists():
        raise UserError(f"{out} already exists; give a new folder")
    if args.videos < 1 or args.frames < 2 or args.size < 32:
        raise UserError("need --videos ≥ 1, --frames ≥ 2 and --size ≥ 32")
    staging = out.with_name(out.name + ".partial")
    generate(staging, args.videos, seed=args.seed, length=args.frames, size=args.size)
    staging.rename(out)
    print(f"{args.videos} videos, {2 * args.videos} expressions → {out} (read it with --dataset generic)")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from agent.serve.server import ServeOptions, serve
    from agent.serve.workspace import Limits

    limits = Limits(max_upload_mb=args.max_upload_mb, max_frames=args.max_frames, max_side=args.max_side)
    options = ServeOptions(args.backend, args.model, args.device, args.host, args.port, args.concurrency, args.auth, limits,
                           args.idle_minutes, args.examples, planner_from(args), max_sessions=args.max_sessions,
                           feature_cache_mb=args.feature_cache_mb, allow_streams=args.allow_streams)
    serve(options, backend_options(args))
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
        commands = {"segment": _segment, "chat": _chat, "score": _score, "eval": _eval, "weights": _weights, "backends": _backends,
                    "train": _train, "synth": _synth, "serve": _serve, "batch": _batch, "describe": _describe}
        return commands[args.command](args)
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
