#!/usr/bin/env bash
# Every benchmark, one after another (never in parallel: they share the CPU), results in benchmarks/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
$PY benchmarks/lite_fps.py
$PY benchmarks/sam2_vs_stock.py --frames 16
$PY benchmarks/sa2va_3obj.py --frames 4
$PY benchmarks/memory_growth.py
$PY benchmarks/train_synthetic.py --steps 3000
$PY benchmarks/tiny_sam2_selection.py --steps 5000
