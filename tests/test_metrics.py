"""Metrics against the official DAVIS 2017 toolkit's values for real predictions."""

import csv
import json

import numpy as np
import pytest

from agent.cli import main
from agent.evaluation.metrics import boundary_radius, contour_accuracy, region_similarity, temporal_iou
from agent.evaluation.scoring import FrameScorer, score_folders


def official(refdavis):
    with open(refdavis / "osvos_reference_metrics.csv") as f:
        return {row["sequence"]: row for row in csv.DictReader(f)}


@pytest.mark.parametrize("skip,suffix", [(False, "all"), (True, "inner")])
def test_reproduces_the_official_toolkit(refdavis, skip, suffix):
    report = score_folders(refdavis, refdavis / "osvos_predictions", skip_first_last=skip)
    rows = official(refdavis)
    assert sorted(report["videos"]) == sorted(rows)
    for video, row in rows.items():
        got = report["videos"][video]["1"]
        assert got["J"] == pytest.approx(float(row[f"J_{suffix}"]), abs=1e-4)
        assert got["F"] == pytest.approx(float(row[f"F_{suffix}"]), abs=1e-4)
        assert got["frames"] == int(row["frames"]) - (2 if skip else 0)
    assert report["protocol"] == ("skip-first-last" if skip else "all-frames")
    j = np.mean([float(r[f"J_{suffix}"]) for r in rows.values()])
    f = np.mean([float(r[f"F_{suffix}"]) for r in rows.values()])
    assert report["overall"]["JF"] == pytest.approx((j + f) / 2, abs=1e-4)


def test_rvos_score_command(refdavis, tmp_path, capsys):
    out = tmp_path / "report.json"
    assert main(["score", str(refdavis), str(refdavis / "osvos_predictions"), "--out", str(out), "--skip-first-last"]) == 0
    report = json.loads(out.read_text())
    assert report["protocol"] == "skip-first-last"
    assert report["videos"]["libby"]["1"]["J"] == pytest.approx(0.623027, abs=1e-4)
    assert "J&F" in capsys.readouterr().out


def test_missing_prediction_frames_are_empty(refdavis, tmp_path):
    pred = tmp_path / "pred"
    (pred / "blackswan").mkdir(parents=True)  # no frames at all
    report = score_folders(refdavis, pred)
    assert report["videos"]["blackswan"]["1"]["J"] == 0 and report["videos"]["blackswan"]["1"]["F"] == 0


def test_edge_cases():
    empty, square = np.zeros((48, 64), bool), np.zeros((48, 64), bool)
    square[10:30, 10:30] = True
    assert region_similarity(empty, empty) == 1 and contour_accuracy(empty, empty) == 1
    assert region_similarity(square, empty) == 0 and contour_accuracy(square, empty) == 0
    assert contour_accuracy(empty, square) == 0
    assert region_similarity(square, square) == 1 and contour_accuracy(square, square) == 1
    assert boundary_radius((480, 854)) == 8 and boundary_radius((48, 64)) == 1
    one_off, two_off = np.roll(square, 1, axis=1), np.roll(square, 2, axis=1)
    assert region_similarity(two_off, square) == pytest.approx(18 * 20 / (22 * 20))
    assert contour_accuracy(one_off, square) == 1  # within the 1-pixel tolerance
    assert 0.3 < contour_accuracy(two_off, square) < 1  # the vertical edges now miss
    assert temporal_iou([1, 1, 0, 0], [0, 1, 1, 0]) == pytest.approx(1 / 3)


def test_revos_robustness_and_long_rvos_viou():
    gt = np.zeros((10, 10), bool)
    gt[:5] = True
    foreground = np.zeros((10, 10), bool)
    foreground[:8] = True
    pred = np.zeros((10, 10), bool)
    pred[3:7] = True  # 20 pixels outside the target, 80 foreground pixels
    scorer = FrameScorer()
    scorer.add(0, pred, gt, foreground)
    scorer.add(1, np.zeros_like(gt), np.zeros_like(gt), foreground)  # absent and not predicted
    result = scorer.result()
    assert result["R"] == pytest.approx(((1 - 20 / 80) + 1) / 2, abs=1e-6)
    assert result["tIoU"] == 1.0
    assert result["vIoU"] == pytest.approx(20 / 70)  # J of the one frame where either sees it
