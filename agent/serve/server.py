"""`rvos serve`: checks that need no model first (where it listens, who may come in), then one model
for every browser session, then the page."""

from __future__ import annotations

import ipaddress
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.errors import UserError
from agent.serve.workspace import Limits
from agent.tracker.feature_cache import DEFAULT_FEATURE_CACHE_MB

AUTH_VARIABLE = "RVOS_SERVE_AUTH"  # USER:PASSWORD, for those who keep secrets out of the command line
REPOSITORY = Path(__file__).resolve().parents[2]  # the checkout, when the package runs from one


@dataclass
class ServeOptions:
    backend: str = "auto"
    model: str | None = None
    device: str = "auto"
    host: str = "127.0.0.1"
    port: int = 7860
    concurrency: int = 2
    auth: str | None = None
    limits: Limits = Limits()
    idle_minutes: float = 60.0
    examples: str | None = None
    planner: Any = None  # an agent.planner.PlannerConfig
    max_sessions: int = 8  # browser sessions open at once; each holds a video, its masks and its files
    feature_cache_mb: float = DEFAULT_FEATURE_CACHE_MB  # per session: image features of its frames, for corrections
    allow_streams: bool = False  # the live tab may make the server open network stream URLs a page gives


def parse_auth(text: str | None) -> tuple[str, str] | None:
    if not text:
        return None
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise UserError(f"authentication must be USER:PASSWORD (from --auth or ${AUTH_VARIABLE}), both not empty")
    return user, password


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve anywhere


def check_options(options: ServeOptions) -> tuple[str, str] | None:
    """Everything that can be refused before a model loads. Returns the credentials, if any."""
    auth = parse_auth(options.auth or os.environ.get(AUTH_VARIABLE))
    if not is_loopback(options.host) and auth is None:
        raise UserError(f"refusing to listen on {options.host} without authentication: anyone who can reach it could use it. "
                        f"Pass --auth USER:PASSWORD (or set {AUTH_VARIABLE}), or keep the default --host 127.0.0.1")
    if not 0 < options.port < 65536:
        raise UserError(f"--port {options.port} is not a port; give 1–65535")
    if options.concurrency < 1:
        raise UserError("--concurrency must be at least 1")
    if options.max_sessions < 1:
        raise UserError("--max-sessions must be at least 1")
    if options.feature_cache_mb < 0:
        raise UserError("--feature-cache-mb must be 0 (no cache) or more")
    limits = options.limits
    if min(limits.max_upload_mb, limits.max_frames, limits.max_side) <= 0 or options.idle_minutes <= 0:
        raise UserError("--max-upload-mb, --max-frames, --max-side and --idle-minutes must be positive")
    if options.examples and not Path(options.examples).is_dir():
        raise UserError(f"--examples {options.examples} is not a folder")
    return auth


def checkout_examples(repository: Path | None = None) -> Path | None:
    """The shared videos beside a git checkout the package runs from (`../shared/data`); an installed
    package (in site-packages, no `.git` above it) has none and looks nowhere else."""
    repository = repository or REPOSITORY
    shared = repository.parent / "shared" / "data"
    from_checkout = (repository / ".git").exists() and (repository / "agent" / "serve").is_dir()
    return shared if from_checkout and shared.is_dir() else None


def find_examples(folder: str | Path | None = None) -> dict[str, Path]:
    """Example videos: frame folders laid out as DAVIS (DATASET/JPEGImages/VIDEO/) and video files, under
    `folder` (default: the shared data beside the checkout, when the package runs from one that has it)."""
    from agent.video.source import VIDEO_SUFFIXES

    root = Path(folder) if folder else checkout_examples()
    examples: dict[str, Path] = {}
    if root is None or not root.is_dir():
        return examples
    for video in sorted(root.glob("*/JPEGImages/*")):
        if video.is_dir() and any(video.glob("*.jpg")):
            examples[f"{video.parent.parent.name}/{video.name}"] = video
    for file in sorted(root.iterdir()):
        if file.suffix.lower() in VIDEO_SUFFIXES:
            examples[file.name] = file
    return examples


def serve(options: ServeOptions, backend_options: dict | None = None) -> None:
    """Load the model once and serve the page until interrupted."""
    auth = check_options(options)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline: nothing phones home

    from agent.assistant.session import Assistant

    if not logging.getLogger("rvos").handlers:  # the log has what the page leaves out: tracebacks, paths
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        logging.getLogger("rvos").addHandler(handler)
    assistant = Assistant.load(options.backend, options.model, options.device, planner=options.planner, **(backend_options or {}))
    app = make_app(assistant, options)
    try:
        launch(app, options, auth)
    finally:
        app.close_all()


def make_app(assistant: Any, options: ServeOptions):
    """The page's handlers over one loaded assistant. Workspaces live in gradio's own upload folder, so
    what the page shows is served from where it was written, not copied into gradio's cache."""
    from gradio.utils import get_upload_folder

    from agent.serve.app import App

    workspaces = Path(get_upload_folder())
    workspaces.mkdir(parents=True, exist_ok=True)
    return App(assistant, options.limits, find_examples(options.examples), options.idle_minutes * 60, options.max_sessions, workspaces,
               options.feature_cache_mb, options.allow_streams)


def launch(app: Any, options: ServeOptions, auth: tuple[str, str] | None = None, block: bool = True):
    """Serve the page (until interrupted, or in the background with `block=False`); returns the page."""
    import gradio as gr

    from agent.serve.app import CSS, build_app

    page = build_app(app, options.concurrency)
    page.queue(default_concurrency_limit=options.concurrency)
    # System fonts only: the default theme would ask a font service the machine may not reach.
    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
    page.launch(server_name=options.host, server_port=options.port, auth=auth, max_file_size=int(options.limits.max_upload_mb * 2**20),
                share=False, ssr_mode=False, show_error=False, theme=theme, css=CSS, footer_links=["api"], prevent_thread_lock=not block,
                quiet=not block)
    return page
