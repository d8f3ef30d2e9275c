"""The training loop: accelerate for devices and mixed precision, resumable, logged and plotted.

`<out>/state/` holds what a resumed run needs (trainable weights, optimizer, scheduler, step);
`<out>/log.jsonl` the losses; `<out>/loss.png` their curves; `<out>/checkpoint/` the final model
in the official Sa2VA layout, LoRA merged. Clip `n` is drawn from a generator seeded with
(seed, n, process), so a resumed run sees the clips an uninterrupted one would have.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from agent.backends.sa2va import checkpoint
from agent.backends.sa2va.export import save_checkpoint
from agent.backends.sa2va.families import family_of
from agent.backends.sa2va.spec import load_sa2va
from agent.errors import UserError
from agent.training.config import DataSource, TrainConfig
from agent.training.data import Mixture, ReferringImages, VideoClips
from agent.training.model import Sa2VAForTraining


@dataclass
class TrainResult:
    out: Path
    checkpoint: Path
    steps: int
    resumed_from: int
    last_losses: dict[str, float]


def data_sources(config: TrainConfig, out: Path) -> Mixture:
    from agent.evaluation.datasets import read_dataset
    from agent.training.synthetic import generate

    sources = []
    for source in config.data:
        if source.format == "synthetic":
            root = out / "data" / f"synthetic-seed{source.seed}-{source.videos}-{'-'.join(source.contrasts)}"
            if not (root / "meta_expressions.json").is_file():
                generate(root.with_name(root.name + ".partial"), source.videos, seed=source.seed, contrasts=source.contrasts)
                shutil.rmtree(root, ignore_errors=True)
                root.with_name(root.name + ".partial").rename(root)
            expressions = read_dataset(root).expressions
        elif source.format == "refcoco":
            sources.append(ReferringImages(Path(source.instances or ""), Path(source.refs or ""), Path(source.images or ""), source.split))
            continue
        else:
            if source.root is None:
                raise UserError(f"training data of format {source.format!r} needs a root folder")
            expressions = read_dataset(source.root, source.format, source.split).expressions
        sources.append(VideoClips(expressions, config.frames, config.keyframes, config.referrals))
    return Mixture(sources)


def initial_checkpoint(config: TrainConfig, out: Path) -> Path:
    if config.model != "tiny":
        return checkpoint.resolve_checkpoint(config.model)
    from agent.training.tiny import build_tiny_sa2va

    folder = out / "init"
    if not (folder / "config.json").is_file():
        build_tiny_sa2va(folder, seed=config.seed)
    return folder


def schedule(config: TrainConfig):
    def factor(step: int) -> float:
        if step < config.warmup:
            return (step + 1) / config.warmup
        progress = (step - config.warmup) / max(1, config.steps - config.warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().cpu().contiguous() for name, p in model.named_parameters() if p.requires_grad}


def save_state(state: Path, model, optimizer, scheduler, step: int) -> None:
    staging = state.with_name(state.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    save_file(_trainable_state(model), staging / "trainable.safetensors")
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, staging / "optimizer.pt")
    (staging / "step.json").write_text(json.dumps({"step": step}))
    shutil.rmtree(state, ignore_errors=True)
    staging.rename(state)


def load_state(state: Path, model, optimizer, scheduler) -> int:
    weights = load_file(state / "trainable.safetensors")
    missing = set(_trainable_state(model)) - set(weights)
    if missing:
        raise UserError(f"{state} does not match this model ({len(missing)} trainable tensors missing); use a new --out")
    model.load_state_dict(weights, strict=False)
    saved = torch.load(state / "optimizer.pt", weights_only=True)
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    return json.loads((state / "step.json").read_text())["step"]


def plot_losses(log: Path, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    for key in ("loss", "lm", "bce", "dice"):
        ax.plot([r["step"] for r in rows], [r[key] for r in rows], label=key)
    ax.set_xlabel("step")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title("training losses")
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def train(config: TrainConfig, progress: bool = True, stop_after: int | None = None) -> TrainResult:
    """Train (or resume) per `config`; `stop_after` ends the run early, as an interruption would."""
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from tqdm import tqdm

    from agent.backends.registry import resolve_device

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config.device)
    # not every SAM 2 module is used on every clip (one-frame clips have no memory)
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    accelerator = Accelerator(cpu=device == "cpu", mixed_precision=config.mixed_precision, kwargs_handlers=[ddp])
    torch.manual_seed(config.seed)
    folder = initial_checkpoint(config, out)
    sa2va_config = checkpoint.read_config(folder)
    # Sa2VA's own inference: training tunes the decoder that tracks from [SEG] (a Sa2VA-i checkpoint's finetuned one)
    backend = load_sa2va(str(folder), str(accelerator.device), dtype="float32", sam2_config=config.sam2_config, inference="sa2va")
    model = Sa2VAForTraining(backend.grounder, backend.tracker, config.trainable, config.loss).train()
    data = data_sources(config, out)
    params = [p for p in model.parameters() if p.requires_grad]
    projector = {id(p) for p in model.projector.parameters()}
    groups = [{"params": [p for p in params if id(p) not in projector]},
              {"params": [p for p in params if id(p) in projector], "lr": config.projector_lr or config.lr}]
    optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule(config))
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    core = accelerator.unwrap_model(model)

    state, log = out / "state", out / "log.jsonl"
    start = load_state(state, core, optimizer, scheduler) if (state / "step.json").is_file() else 0
    if start == 0 and log.exists():
        log.unlink()
    end = config.steps if stop_after is None else min(config.steps, start + stop_after)
    bar = tqdm(range(start, end), initial=start, total=config.steps, desc="training", disable=not progress)
    last: dict[str, float] = {}
    started = time.monotonic()
    for step in bar:
        draw = (config.seed * 1_000_003 + step) * 1024 + accelerator.process_index  # each GPU its own clip
        rng = random.Random(draw)
        torch.manual_seed(draw)
        losses = model(data.sample(rng))
        accelerator.backward(losses["loss"])
        if config.grad_clip:
            accelerator.clip_grad_norm_(params, config.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        last = {k: float(v.detach()) for k, v in losses.items()}
        bar.set_postfix(loss=f"{last['loss']:.3f}")
        if accelerator.is_main_process and ((step + 1) % config.log_every == 0 or step + 1 == end):
            row = {"step": step + 1, **last, "lr": scheduler.get_last_lr()[0], "seconds": round(time.monotonic() - started, 2)}
            with log.open("a") as f:
                f.write(json.dumps(row) + "\n")
        if accelerator.is_main_process and ((step + 1) % config.save_every == 0 or step + 1 == end):
            save_state(state, core, optimizer, scheduler, step + 1)
    bar.close()
    final = out / "checkpoint"
    if accelerator.is_main_process and log.exists():
        plot_losses(log, out / "loss.png")
    if end == config.steps and accelerator.is_main_process:
        grounder = core.grounder
        save_checkpoint(final, sa2va_config, core.merged_vlm(), family_of(sa2va_config), grounder.inputs, core.projector,
                        core.sam2, sam2_yaml=_sam2_yaml(folder, sa2va_config, config), extras=_extras(sa2va_config))
    return TrainResult(out, final, end, start, last)


def _sam2_yaml(folder: Path, sa2va_config: dict, config: TrainConfig) -> Path | None:
    if config.sam2_config:
        return Path(config.sam2_config)
    name = (sa2va_config.get(checkpoint.EXTRAS_KEY) or {}).get("sam2_config")
    # a checkpoint may only name a file inside its own folder (None: the official architecture)
    return checkpoint.file_inside(folder, name, "config.json → rvos.sam2_config") if name else None


def _extras(sa2va_config: dict) -> dict:
    extras = dict(sa2va_config.get(checkpoint.EXTRAS_KEY) or {})
    extras.pop("sam2_config", None)
    return extras
