"""VLM families inside Sa2VA checkpoints, each mapped onto transformers' own classes.

A family (`matches`, `inputs`, `model_and_options`) says which `config.json` it reads, builds
the input builder, and gives transformers' model class with its `from_pretrained` options.
"""

from __future__ import annotations

from agent.backends.sa2va.internvl import INTERNVL
from agent.backends.sa2va.qwen_vl import QWEN2_5_VL, QWEN3_VL
from agent.errors import UserError

FAMILIES = (QWEN2_5_VL, QWEN3_VL, INTERNVL)


def family_of(config: dict):
    for family in FAMILIES:
        if family.matches(config):
            return family
    kind = (config.get("text_config") or config.get("llm_config") or {}).get("model_type") or "unknown"
    raise UserError(
        f"this Sa2VA checkpoint's language model ({kind}) is not supported; "
        f"supported families: {', '.join(f.name for f in FAMILIES)}"
    )
