"""Readers for the benchmarks people download, plus the generic layout."""

from __future__ import annotations

from pathlib import Path

from agent.errors import UserError
from agent.evaluation.datasets.base import Dataset, Expression
from agent.evaluation.datasets.palette import read_generic, read_long_rvos, read_ref_davis17, read_ref_youtube_vos
from agent.evaluation.datasets.rle import read_mevis, read_mevis_v2, read_revos

READERS = {
    "generic": read_generic,
    "ref-youtube-vos": read_ref_youtube_vos,
    "ref-davis17": read_ref_davis17,
    "mevis": read_mevis,
    "mevis-v2": read_mevis_v2,
    "revos": read_revos,
    "long-rvos": read_long_rvos,
}


def read_dataset(root: Path | str, name: str = "generic", split: str | None = None) -> Dataset:
    if name not in READERS:
        raise UserError(f"unknown dataset {name!r}; choose one of {', '.join(READERS)}")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UserError(f"dataset root {root} is not a folder; give the folder you downloaded")
    dataset = READERS[name](root, split)
    if not dataset.expressions:
        raise UserError(f"no expressions found in {root} as {name}{f' ({split})' if split else ''}; check --dataset and --split")
    return dataset


__all__ = ["Dataset", "Expression", "READERS", "read_dataset"]
