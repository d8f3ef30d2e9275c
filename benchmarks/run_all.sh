#!/usr/bin/env bash
# Every benchmark, one after another (never in parallel: they share the CPU), results in benchmarks/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
$PY benchmarks/lite_fps.py
$PY benchmarks/sam2_vs_stock.py --frames 16
$PY benchmarks/sa2va_3obj.py --frames 4
$PY benchmarks/sa2vai_3obj.py --frames 6 --keyframes 3
$PY benchmarks/memory_growth.py
$PY benchmarks/train_synthetic.py --steps 6000
$PY benchmarks/train_synthetic.py --steps 6000 --contrasts colour shape size
$PY benchmarks/tiny_sam2_selection.py --steps 5000
$PY benchmarks/tiny_sam2_selection.py --pair --foreground-steps 0 --steps 1500
$PY benchmarks/tiny_sam2_selection.py --contrasts colour --foreground-steps 0 --steps 1500
$PY benchmarks/tiny_sam2_selection.py --pair --contrasts colour --foreground-steps 0 --steps 1500
$PY benchmarks/correction_time.py
$PY benchmarks/serve_load.py --clients 1 2 4
