"""Backends by name; `auto` takes the first one that can run on this machine.

Everything that can be checked without loading a model is checked here first: the backend can run,
the device exists and the backend runs on it, and the backend honours every option it is given
(each spec declares the options it takes; an option it would ignore is refused, not dropped).
"""

from __future__ import annotations

from typing import Any

from agent.backends.base import Backend, BackendSpec
from agent.errors import BackendUnavailable, UserError

_BACKENDS: dict[str, BackendSpec] = {}
DEVICE_KINDS = ("cpu", "cuda")


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


def resolve_spec(name: str = "auto", model: str | None = None, device: str = "auto") -> BackendSpec:
    """The backend `name` stands for (`auto`: the first that can run here, on `device` when one is named),
    refused when it cannot run."""
    if name == "auto":
        reasons = []
        kind = device.partition(":")[0]
        for spec in _BACKENDS.values():
            devices = tuple(getattr(spec, "devices", DEVICE_KINDS))
            reason = spec.unavailable_reason(model) if device == "auto" or kind not in DEVICE_KINDS or kind in devices \
                else f"runs on {' or '.join(devices)} only, not {device}"
            if reason is None:
                return spec
            reasons.append(f"{spec.name}: {reason}")
        raise BackendUnavailable("no backend can run here (" + "; ".join(reasons) + ")")
    spec = get_spec(name)
    reason = spec.unavailable_reason(model)
    if reason is not None:
        raise BackendUnavailable(f"backend {name} cannot run here: {reason}")
    return spec


def resolve_device(device: str = "auto", kinds: tuple[str, ...] = DEVICE_KINDS) -> str:
    """`auto`: a CUDA GPU when one is visible and `kinds` allows it, else the CPU; otherwise `device`
    itself once it is known to exist (`cuda:N`: that GPU)."""
    import torch

    if device == "auto":
        return "cuda" if "cuda" in kinds and torch.cuda.is_available() else "cpu"
    kind, colon, index = device.partition(":")
    if kind not in DEVICE_KINDS or (colon and (kind != "cuda" or not index.isdigit())):
        raise UserError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {device} was asked for but no CUDA GPU is visible; use --device cpu or auto")
        count = torch.cuda.device_count()
        if colon and int(index) >= count:
            raise UserError(f"--device {device}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}; pick one of them")
    return device


def _flag(option: str) -> str:
    return "--" + option.replace("_", "-")


def check_options(spec: BackendSpec, device: str = "auto", *, auto: bool = False, **options: Any) -> str:
    """Refuse, before anything loads, an option `spec` does not honour, a device it does not run on or one this
    machine lacks, and a keyframe count below 1; the device to load on. An option set to None or False is not given;
    `auto`: `--backend auto` chose `spec` (the message says so)."""
    chosen = f" (--backend auto chose {spec.name}, the first backend that can run here)" if auto else ""
    given = sorted(name for name, value in options.items() if value is not None and value is not False)
    ignored = [name for name in given if not _honoured(spec, name)]
    if ignored:
        others = [other.name for other in _BACKENDS.values() if other is not spec and all(_honoured(other, name) for name in ignored)]
        instead = f" or use --backend {others[0]}" if others else ""
        raise UserError(f"the {spec.name} backend takes no {', '.join(map(_flag, ignored))} (it would have no effect); "
                        f"drop {'it' if len(ignored) == 1 else 'them'}{instead}{chosen}")
    kind, devices = device.partition(":")[0], tuple(getattr(spec, "devices", DEVICE_KINDS))
    if device != "auto" and kind in DEVICE_KINDS and kind not in devices:
        raise UserError(f"the {spec.name} backend runs on {' or '.join(devices)} only; drop --device {device} "
                        f"or use --device {devices[0]}{chosen}")
    keyframes = options.get("keyframes")
    if keyframes is not None and (isinstance(keyframes, bool) or not isinstance(keyframes, int) or keyframes < 1):
        raise UserError(f"--keyframes must be a whole number of at least 1 (the frames the grounder sees), not {keyframes!r}")
    return resolve_device(device, devices)


def _honoured(spec: BackendSpec, option: str) -> bool:
    """Whether `spec` takes `option`; a spec that declares no options is given whatever it is passed."""
    declared = getattr(spec, "options", None)
    return declared is None or option in declared


def check_backend(name: str = "auto", model: str | None = None, device: str = "auto", **options: Any) -> tuple[BackendSpec, str]:
    """The spec `name` stands for and the device to load on, once every check that needs no model has passed."""
    spec = resolve_spec(name, model, device)
    return spec, check_options(spec, device, auto=name == "auto", **options)


def load_backend(name: str = "auto", model: str | None = None, device: str = "auto", **options: Any) -> Backend:
    """Load a backend by name (`auto`: the first that can run here), after every check that needs no model."""
    spec, device = check_backend(name, model, device, **options)
    backend = spec.load(model, device, **options)
    backend.options = {k: v for k, v in options.items() if v is not None}
    return backend
