"""Score a checkpoint on generated held-out videos: J&F (via `rvos eval`'s runner) and pair choices."""

from __future__ import annotations

from pathlib import Path

from agent.training.synthetic import pair_choices


def score_checkpoint(checkpoint: Path, root: Path, out: Path, answer: str = "Sure, [SEG].", keyframes: int = 5) -> dict:
    """{"JF": overall J&F, "by_category": J&F per contrast, "pair_choice": right-object fractions}.
    `keyframes`: frames the VLM sees and SAM 2 is prompted on (the rest are tracked from memory)."""
    from agent.backends.sa2va.spec import load_sa2va
    from agent.evaluation.runner import EvalJob, run_evaluation

    backend = load_sa2va(str(checkpoint), "cpu", answer=answer, keyframes=keyframes)
    job = EvalJob(str(root), "generic", None, "sa2va", str(out), model=str(checkpoint), mode="direct")  # the answer is forced
    report = run_evaluation(job, backend=backend, progress=False)
    return {
        "JF": report["overall"]["JF"],
        "by_category": {k: v["JF"] for k, v in report.get("by_category", {}).items()},
        "pair_choice": pair_choices(root, Path(out) / "predictions"),
    }
