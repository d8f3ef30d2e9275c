"""Backends, each one folder behind the grounder and tracker protocols."""

from agent.backends.base import Backend, BackendSpec
from agent.backends.registry import (backend_specs, check_backend, check_options, get_spec, load_backend, register, resolve_device,
                                     resolve_spec)
from agent.backends.lite.spec import LITE
from agent.backends.sa2va.spec import SA2VA
from agent.backends.sam3.spec import SAM3

register(LITE)  # first: `auto` prefers the backend that runs anywhere
register(SA2VA)
register(SAM3)  # after SA2VA: with a --model, `auto` still means sa2va

__all__ = ["Backend", "BackendSpec", "backend_specs", "check_backend", "check_options", "get_spec", "load_backend", "register",
           "resolve_device", "resolve_spec"]
