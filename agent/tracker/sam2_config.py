"""SAM 2 yamls (the `sam2` package's format), read and checked before anything is built from them.

hydra's `instantiate` imports and calls whatever a `_target_` names, at every depth, so a yaml is code:
one that comes with a checkpoint could copy a file of the checkpoint anywhere (`shutil.copyfile`) or
unpickle one (`numpy.load`). Refusing `trust_remote_code` means refusing that too. So every yaml this
project builds, a checkpoint's or a user's own `--sam2-config`, passes `checked_node` first:

- every `_target_` (in dicts, lists, `_args_`, `_partial_` nodes alike) is one of SAM 2's model
  components that the official and our configs use, or ours;
- no interpolation calls a resolver (`${oc.env:…}`, or ones other installed packages register, such as
  sam2's training `get_method`); plain references to other nodes (`${model.image_size}`) are kept;
- no `weights_path`: Hiera would `torch.load` that file; weights come from the checkpoint's safetensors.

A user's own yaml is checked the same way: it only ever describes an architecture, so any other target
is a mistake or a file they were handed, and refusing costs nothing.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from agent.errors import UserError

# SAM 2's model components as the package's configs (configs/sam2*/*.yaml) and ours name them.
ALLOWED_TARGETS = frozenset({
    "sam2.modeling.sam2_base.SAM2Base",
    "sam2.modeling.backbones.image_encoder.ImageEncoder",
    "sam2.modeling.backbones.image_encoder.FpnNeck",
    "sam2.modeling.backbones.hieradet.Hiera",
    "sam2.modeling.position_encoding.PositionEmbeddingSine",
    "sam2.modeling.memory_attention.MemoryAttention",
    "sam2.modeling.memory_attention.MemoryAttentionLayer",
    "sam2.modeling.sam.transformer.RoPEAttention",
    "sam2.modeling.memory_encoder.MemoryEncoder",
    "sam2.modeling.memory_encoder.MaskDownSampler",
    "sam2.modeling.memory_encoder.Fuser",
    "sam2.modeling.memory_encoder.CXBlock",
    "agent.tracker.sam2_language.LanguagePromptedSAM2",
    "agent.tracker.memory_attention.MemoryCrossAttention",
})
FORBIDDEN_KEYS = ("weights_path",)  # must be absent or null
ONLY_SAM2 = "a SAM 2 config may name only SAM 2's model classes"
NO_RESOLVERS = "a SAM 2 config may refer to its own nodes, ${model.x}, but call no resolver"

# What official Sa2VA checkpoints use: the package's Hiera-L config with dynamic multimask.
OFFICIAL_SAM2_CONFIG = "configs/sam2/sam2_hiera_l.yaml"
OFFICIAL_SAM2_OVERRIDES = {
    "sam_mask_decoder_extra_args": {
        "dynamic_multimask_via_stability": True,
        "dynamic_multimask_stability_delta": 0.05,
        "dynamic_multimask_stability_thresh": 0.98,
    },
    "image_size": 1024,
}

_NODE_REFERENCE = re.compile(r"\$\{[\w.\-\[\]]+\}")  # ${a.b}, ${..x}, ${a[0]}: no resolver, no nesting


def _where(path: list[str]) -> str:
    return ".".join(path) or "the top level"


def _refusal(source: str, detail: str, rule: str) -> UserError:
    return UserError(f"{source} {detail}; refusing to build it ({rule})")



def _walk(tree: Any, path: list[str]):
    """(path, key, value) for every dict entry, at every depth, lists included."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield path, key, value
            yield from _walk(value, [*path, str(key)])
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            yield from _walk(value, [*path, f"[{i}]"])


def check_tree(tree: Any, source: str, root: str = "model") -> None:
    """Refuse (UserError) a plain (resolved) config tree that names code outside the allow-list."""
    for path, key, value in _walk(tree, [root]):
        where = _where([*path, str(key)])
        if key == "_target_" and (not isinstance(value, str) or value not in ALLOWED_TARGETS):
            raise _refusal(source, f"names code outside the allow-list (_target_: {value} at {_where(path)})", ONLY_SAM2)
        if key in FORBIDDEN_KEYS and value is not None:
            raise _refusal(source, f"asks to load a file ({key}: {value} at {where})", "weights come from the checkpoint's safetensors")
        if isinstance(value, str) and "${" in value:
            raise _refusal(source, f"has an interpolation left after resolving ({value!r} at {where})", NO_RESOLVERS)


def _check_interpolations(tree: Any, source: str) -> None:
    for path, key, value in _walk(tree, ["model"]):
        if isinstance(value, str) and "${" in _NODE_REFERENCE.sub("", value):
            raise _refusal(source, f"uses a resolver or nested interpolation ({value!r} at {_where([*path, str(key)])})", NO_RESOLVERS)


def checked_node(node: DictConfig, source: str) -> DictConfig:
    """A fresh, fully resolved copy of `node` once it passes every check above."""
    try:
        _check_interpolations(OmegaConf.to_container(node, resolve=False), source)
        tree = OmegaConf.to_container(node, resolve=True)
    except OmegaConfBaseException as exc:
        raise UserError(f"{source} cannot be read as a SAM 2 config ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    check_tree(tree, source)
    return OmegaConf.create(tree)


def load_sam2_config(config: str | Path | None, source: str | None = None) -> DictConfig:
    """The checked `model` node of a sam2-format yaml; None means the official Sa2VA architecture.
    `source` names the file in refusals (default: "the SAM 2 config PATH")."""
    if config is None:
        path = resources.files("sam2") / OFFICIAL_SAM2_CONFIG
        node = OmegaConf.merge(OmegaConf.load(str(path)).model, OFFICIAL_SAM2_OVERRIDES)
        return checked_node(node, f"the sam2 package's {OFFICIAL_SAM2_CONFIG}")
    source = source or f"the SAM 2 config {config}"
    if not Path(config).is_file():
        raise UserError(f"{source} does not exist (or is not a file); give a SAM 2 yaml in the sam2 package's format")
    try:
        loaded = OmegaConf.load(str(config))  # yaml's safe loader: no python tags
    except Exception as exc:  # yaml syntax, or not a mapping
        raise UserError(f"{source} is not a readable yaml ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})") from None
    if not isinstance(loaded, DictConfig) or not isinstance(loaded.get("model"), DictConfig):
        raise UserError(f"{source} has no `model:` section; give a SAM 2 yaml in the sam2 package's format")
    return checked_node(loaded.model, source)


def instantiate_checked(node: DictConfig, source: str) -> Any:
    """hydra's recursive `instantiate`, only after `node` passes the checks (again: callers may edit it)."""
    from hydra.utils import instantiate

    return instantiate(checked_node(node, source), _recursive_=True)
