"""Shared helpers of the benchmarks: timing by median of repeats, a printed table, a JSON file."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"
# The machine's load when the benchmark started (`parse_args`): 1-minute average of runnable
# processes, as `uptime` shows it. On an idle machine it is near 0; a number near the cores'
# count means the timings shared the machine.
_LOAD_AT_START: float | None = None


def sync(device: torch.device | str = "cpu") -> None:
    """Wait for queued CUDA work, so that a timer measures it."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def median_seconds(
    fn: Callable[[], object],
    *,
    repeats: int = 5,
    warmup: int = 1,
    device: torch.device | str = "cpu",
) -> float:
    """Median wall time of `fn()` over `repeats` runs, after `warmup` untimed runs."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_median_seconds(
    fns: dict[str, Callable[[], object]],
    *,
    repeats: int = 5,
    warmup: int = 1,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """`median_seconds` of several functions, timed in turns (`interleaved_seconds`)."""
    times = interleaved_seconds(fns, repeats=repeats, warmup=warmup, device=device)
    return {name: statistics.median(t) for name, t in times.items()}


def interleaved_seconds(
    fns: dict[str, Callable[[], object]],
    *,
    repeats: int = 5,
    warmup: int = 1,
    device: torch.device | str = "cpu",
) -> dict[str, list[float]]:
    """Wall times of several functions over `repeats` rounds, timed in turns (a, b, b, a, ...).

    Taking turns spreads slow drift of the machine (other load, clock speed, heat) over all of
    them alike, and reversing the order every other round cancels any advantage of going first,
    so that their ratio stays fair; round i's times of two functions make a pair.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    sync(device)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for i in range(repeats):
        for name, fn in list(fns.items())[:: -1 if i % 2 else 1]:
            start = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return times


def load_cifar10(per_class: int | None, test_per_class: int | None):
    """CIFAR-10's train and test splits (the first images of each class), with a line that says
    how many, how fast and from where."""
    from resnet_tutorial import data

    start = time.perf_counter()
    train = data.cifar10("train", per_class=per_class)
    test = data.cifar10("test", per_class=test_per_class)
    print(f"CIFAR-10: {len(train):,} train and {len(test):,} test images, loaded in "
          f"{time.perf_counter() - start:.1f} s from {train.short_source}")  # fmt: skip
    return train, test


def parse_args(description: str | None) -> argparse.Namespace:
    """The options every benchmark takes: `--quick` (a smoke test of seconds) and `--out`; notes
    the machine's load at the start, for the JSON file."""
    global _LOAD_AT_START
    _LOAD_AT_START = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes, one repeat: a smoke test of seconds"
    )
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help="folder for the JSON file (benchmarks/results)"
    )
    return parser.parse_args()


def print_table(title: str, rows: list[dict[str, object]]) -> None:
    """Print rows (dicts with the same keys) as an aligned Markdown table."""
    keys = list(rows[0])
    cells = [[_fmt(row[k]) for k in keys] for row in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    print(f"\n### {title}\n")
    print("| " + " | ".join(k.ljust(w) for k, w in zip(keys, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for c in cells:
        print("| " + " | ".join(v.ljust(w) for v, w in zip(c, widths)) + " |")


def write_json(
    name: str, rows: list[dict[str, object]], *, directory: Path = RESULTS, **extra: object
) -> Path:
    """Write the rows and the machine they were measured on to <directory>/<name>.json.

    `directory` defaults to benchmarks/results.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    machine = {
        "device_name": cpu_name(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_threads": torch.get_num_threads(),
        "cpu_cores": os.cpu_count(),
        "load_average_at_start": _LOAD_AT_START,
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }
    path.write_text(json.dumps({"machine": machine, "rows": rows, **extra}, indent=2) + "\n")
    root = RESULTS.parent.parent
    print(f"\nwrote {path.relative_to(root) if path.is_relative_to(root) else path}")
    return path


def cpu_name() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)
