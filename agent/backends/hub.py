"""What every backend that loads a model from the Hugging Face hub needs: telling a hub id from a folder, the
cached snapshot of one, and transformers kept quiet while it loads."""

from __future__ import annotations

import contextlib
from pathlib import Path


def looks_like_hub_id(model: str) -> bool:
    parts = model.split("/")
    return len(parts) == 2 and all(parts) and not model.startswith((".", "/", "~"))


def cached_snapshot(model: str) -> Path | None:
    """The local snapshot folder of a hub id, if its config is already in the cache."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(model, "config.json")
    return Path(found).parent if isinstance(found, str) else None


@contextlib.contextmanager
def quiet_transformers():
    """transformers' info lines and progress bars off while a model loads (our own progress is shown instead)."""
    from transformers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(level)
        logging.enable_progress_bar()
