"""Backends by name; `auto` takes the first one that can run on this machine."""

from __future__ import annotations

from typing import Any

from agent.backends.base import Backend, BackendSpec
from agent.errors import BackendUnavailable, UserError

_BACKENDS: dict[str, BackendSpec] = {}


def register(spec: BackendSpec) -> BackendSpec:
    _BACKENDS[spec.name] = spec
    return spec


def backend_specs() -> list[BackendSpec]:
    return list(_BACKENDS.values())


def get_spec(name: str) -> BackendSpec:
    try:
        return _BACKENDS[name]
    except KeyError:
        raise UserError(f"unknown backend {name!r}; choose one of: {', '.join(_BACKENDS)} (see `rvos backends`)") from None


def resolve_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu or auto")
    if device != "cpu" and not device.startswith("cuda"):
        raise UserError(f"unknown device {device!r}; use auto, cpu or cuda")
    return device


def load_backend(name: str = "auto", model: str | None = None, device: str = "auto", **options: Any) -> Backend:
    """Load a backend by name (`auto`: the first that can run here)."""
    device = resolve_device(device)
    if name == "auto":
        reasons = []
        for spec in _BACKENDS.values():
            reason = spec.unavailable_reason(model)
            if reason is None:
                return spec.load(model, device, **options)
            reasons.append(f"{spec.name}: {reason}")
        raise BackendUnavailable("no backend can run here (" + "; ".join(reasons) + ")")
    spec = get_spec(name)
    reason = spec.unavailable_reason(model)
    if reason is not None:
        raise BackendUnavailable(f"backend {name} cannot run here: {reason}")
    return spec.load(model, device, **options)
