"""The options several `rvos` commands share (backend, planner, mode, feature cache) and the checks they get before
any model loads: what `agent.cli` and its command modules build their parsers and backends from."""

from __future__ import annotations

import argparse

from agent.errors import UserError


def add_backend_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", default="auto", help="backend name (see `rvos backends`); auto: first that can run")
    parser.add_argument("--model", help="model id on the Hugging Face hub or a local checkpoint folder")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], help="model dtype (default: float32 on CPU, bfloat16 on CUDA; bfloat16 is faster on CPUs with AVX512-BF16 or AMX)")
    parser.add_argument("--quantize", choices=["4bit", "8bit"], help="quantize the language model with bitsandbytes (CUDA)")
    parser.add_argument("--sam2-config", help="SAM 2 architecture yaml when the checkpoint's is not the official Hiera-L")
    parser.add_argument("--keyframes", type=int, help="how many keyframes the grounder sees (default 5)")
    parser.add_argument("--keyframe-strategy", choices=["uniform", "uniform-floor", "first"],
                        help="uniform over the video (default; uniform-floor rounds down, as Sa2VA-i does and its default) or the first frames")
    parser.add_argument("--inference", choices=["sa2va", "sa2va-i"],
                        help="sa2va: [SEG] prompts SAM 2 on keyframes; sa2va-i: keyframe masks from Sa2VA's decoder, propagated by "
                             "SAM 2's original one (default: the checkpoint's own)")
    parser.add_argument("--propagation-weights", metavar="FILE_OR_HUB_ID",
                        help="original SAM 2 weights for Sa2VA-i on a plain Sa2VA checkpoint (sam2_hiera_large.pt, or facebook/sam2-hiera-large)")
    parser.add_argument("--tracker", choices=["sam2", "sam3"],
                        help="sa2va: what carries the [SEG] objects through the video: sam2 (default, Sa2VA's own) or sam3 (their "
                             "keyframe masks as mask prompts of SAM 3's tracker; --tracker-model, default facebook/sam3)")
    parser.add_argument("--tracker-model", metavar="DIR_OR_HUB_ID", help="the SAM 3 checkpoint for --tracker sam3")
    parser.add_argument("--motion-aware", action="store_const", const=True,
                        help="SAM 2 tracking with SAMURAI-style motion-aware memory (Kalman box re-ranking, confident frames only)")


def add_planner_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("planner", "an outside multimodal LLM on an OpenAI-compatible server plans over the tools "
                                      "(key: $RVOS_PLANNER_API_KEY or $OPENAI_API_KEY)")
    group.add_argument("--planner", metavar="URL", help="the server's address, e.g. http://127.0.0.1:8000/v1 (vLLM, Ollama, llama.cpp, …)")
    group.add_argument("--planner-model", metavar="NAME", help="the model the server serves, e.g. Qwen/Qwen2.5-VL-7B-Instruct")
    # no argparse defaults: an option given without --planner is refused; PlannerConfig holds the defaults
    group.add_argument("--planner-protocol", choices=["auto", "tools", "json"],
                       help="tools: tool calls; json: one JSON reply under the server's structured output; auto (default): tools, else json")
    group.add_argument("--planner-max-calls", type=int, help="tool calls per question (default 8)")
    group.add_argument("--planner-max-seconds", type=float, help="seconds per question (default 300)")
    group.add_argument("--planner-retries", type=int, help="unusable replies retried, the error shown to the model (default 2)")
    group.add_argument("--planner-candidates", type=int, help="most candidates one find returns (default 5)")
    group.add_argument("--no-planner-verify", dest="planner_verify", action="store_const", const=False,
                       help="end at the planner's select, without showing it the chosen masks to confirm")


def add_mode_option(parser: argparse.ArgumentParser) -> None:
    from agent.pipeline import MODES

    # no argparse default: `--protocol semi` refuses a mode given; every door's default is agent.pipeline.DEFAULT_MODE
    parser.add_argument("--mode", choices=MODES, help="how the words are answered: auto (default: direct, reasoning when "
                        "verification fails; with --planner: the planner), direct, reasoning or planner")


def add_feature_cache_option(parser: argparse.ArgumentParser) -> None:
    from agent.tracker.feature_cache import DEFAULT_FEATURE_CACHE_MB

    parser.add_argument("--feature-cache-mb", type=float, default=DEFAULT_FEATURE_CACHE_MB, metavar="MB",
                        help=f"per session: MB of frames' image features kept, so a correction re-encodes only frames it had not "
                             f"seen (default {DEFAULT_FEATURE_CACHE_MB:g}; 0: none)")


def checked_mode(args: argparse.Namespace, planner, switchable: bool = False) -> str:
    """The mode asked for (default: the one every door has); `switchable`: the door can change mode later (chat)."""
    from agent.pipeline import DEFAULT_MODE

    mode = args.mode or DEFAULT_MODE
    if mode == "planner" and planner is None:
        raise UserError("--mode planner needs a planner: add --planner URL --planner-model NAME, or use another --mode")
    if planner is not None and mode in ("direct", "reasoning") and not switchable:
        raise UserError(f"--mode {mode} does not ask the planner: drop --planner, or use --mode auto or planner")
    return mode


PLANNER_OPTIONS = {"planner_model": "model", "planner_protocol": "protocol", "planner_max_calls": "max_calls",
                   "planner_max_seconds": "max_seconds", "planner_retries": "retries", "planner_candidates": "candidates",
                   "planner_verify": "verify"}


def planner_from(args: argparse.Namespace):
    """The planner's config from the flags (checked before any model loads), or None."""
    given = {field: getattr(args, option) for option, field in PLANNER_OPTIONS.items() if getattr(args, option, None) is not None}
    if not getattr(args, "planner", None):
        if given:
            option = next(o for o, f in PLANNER_OPTIONS.items() if f in given)
            raise UserError(f"--{option.replace('_', '-')} needs --planner URL (the server's address); add it or drop the option")
        return None
    from agent.planner import PlannerConfig

    return PlannerConfig(args.planner, **({"model": ""} | given)).check()


def backend_options(args: argparse.Namespace) -> dict:
    names = ("dtype", "quantize", "sam2_config", "keyframes", "keyframe_strategy", "answer", "motion_aware", "inference",
             "propagation_weights", "tracker", "tracker_model")
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def checked_backend(args: argparse.Namespace) -> tuple[str, str]:
    """The backend `--backend` stands for and the device to load it on, once every check that needs no model has
    passed: it can run here, the device exists and suits it, and it honours every option given (one it would
    ignore is refused)."""
    from agent.backends import check_backend

    spec, device = check_backend(args.backend, args.model, args.device, **backend_options(args))
    return spec.name, device
