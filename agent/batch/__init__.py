"""`rvos batch`: many videos, each through `rvos segment`'s one path, resumably, locally or on a Ray cluster.

The input is a folder (each video file or frame folder in it is one item, all asked the same question) or a
manifest, JSONL or CSV, one item a line. The whole input is checked before any model loads; a video that is
missing or will not decode is no input error: it fails its own item when its turn comes, and the rest go on.

Output: `DIR/<item>/` is exactly what `rvos segment` writes for that item (its writer moves a finished folder
into place, so a folder with a whole result.json is a finished item and a re-run skips it), and `DIR/batch.json`
says what was done, skipped and failed (with the error), rewritten after every item.
"""

from __future__ import annotations

from agent.batch.manifest import PROMPT_FIELDS, SUMMARY_FILE, BatchItem, read_items
from agent.batch.run import print_summary, run_batch
from agent.batch.work import BatchJob, is_finished, run_item

__all__ = ["SUMMARY_FILE", "BatchItem", "BatchJob", "add_batch_command", "is_finished", "print_summary", "read_items",
           "run_batch", "run_item"]


def add_batch_command(sub, add_backend_options) -> None:
    """`rvos batch`'s options (the command line lives in agent/cli.py; this keeps it short)."""
    batch = sub.add_parser("batch", help="segment many videos: a folder of clips or a JSONL/CSV manifest (resumable, local or on Ray)")
    batch.add_argument("input", help="a folder (each video file or frame folder in it is one item) or a manifest: .jsonl "
                                     "(video, instruction, mask, box, point per line) or .csv with a header video,instruction[,mask,box,point]")
    batch.add_argument("instruction", nargs="?", help="with a folder: what to segment in every video (a manifest gives each line its own)")
    batch.add_argument("--out", required=True, help="output folder: one `rvos segment` folder per item and batch.json (re-run to resume)")
    for kind, syntax in PROMPT_FIELDS.items():
        batch.add_argument(f"--{kind}", action="append", default=[], metavar=syntax, help=f"with a folder: as `rvos segment --{kind}`, for every video")
    add_backend_options(batch)
    batch.add_argument("--answer", help="force the model's answer (teacher forcing)")
    batch.add_argument("--no-overlay", action="store_true", help="do not write overlay.mp4")
    batch.add_argument("--ray", nargs="?", const="auto", metavar="auto|ADDRESS",
                       help="spread the videos over a Ray cluster (auto, the default: a running one, else one started here)")
    batch.add_argument("--workers", type=int, help="Ray workers, one backend each (default: one per GPU, else 2)")
    batch.add_argument("--debug", action="store_true", help="show tracebacks")
