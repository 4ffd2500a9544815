"""Smoke tests of the benchmarks: each script runs in quick mode and writes its JSON rows.

They run on the CPU with one thread (a quick run measures nothing; it only has to finish), in a
subprocess, as `make bench` runs them, writing to a temporary folder instead of
benchmarks/results. The CIFAR-10 images come from $RESNET_TUTORIAL_DATA.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"

# script -> (JSON name, the identifying columns of every row it must write, in order)
EXPECTED = {
    "bench_fit.py": (
        "fit", [{"loop": "bare SGD loop"}, {"loop": "fit"}, {"loop": "fit, bf16 autocast"}]
    ),
    "bench_models.py": ("models", [
        {"model": "ResNet-50", "implementation": "torchvision"},
        {"model": "ResNet-50", "implementation": "resnet_tutorial"},
        {"model": "CIFAR ResNet-20", "implementation": "hand-written"},
        {"model": "CIFAR ResNet-20", "implementation": "resnet_tutorial"},
    ]),
    "bench_recipes.py": (
        "recipes", [{"recipe": "paper recipe (auto)"}, {"recipe": "fast recipe (bf16)"}]
    ),
    "bench_loader.py": ("loader", [
        {"pipeline": "DataLoader, 2 workers (torchvision transforms)"},
        {"pipeline": "DeviceLoader on cpu"},
    ]),
}  # fmt: skip


def test_every_benchmark_has_a_smoke_test():
    scripts = {p.name for p in BENCHMARKS.glob("bench_*.py")}
    assert sorted(scripts) == sorted(EXPECTED)


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_quick_run_writes_its_rows(script, tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(BENCHMARKS / script), "--quick", "--out", str(tmp_path)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{script} --quick failed:\n{done.stdout}\n{done.stderr}"
    name, expected = EXPECTED[script]
    result = json.loads((tmp_path / f"{name}.json").read_text())
    rows = result["rows"]
    assert [{key: row[key] for key in want} for row, want in zip(rows, expected)] == expected
    assert len(rows) == len(expected)
    for row in rows:
        assert row["images/s"] > 0 and row["ratio"] > 0
    assert rows[0]["ratio"] == 1.0  # the baseline comes first
    assert result["quick"] is True and result["machine"]["cuda"] is None
    assert result["machine"]["device_name"] and result["machine"]["cpu_cores"] == os.cpu_count()
    assert result["machine"]["load_average_at_start"] >= 0
    for row in rows:
        if "ratio min" in row:  # the spread of the rounds' pairs holds the ratio of the medians
            assert row["ratio min"] <= row["ratio"] <= row["ratio max"]
    assert "images/s" in done.stdout  # the table was printed
