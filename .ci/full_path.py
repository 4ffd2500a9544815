"""Run every chapter's full-scale branch (what a Colab GPU runs) on the CPU, capped to seconds.

`make test-full-path` runs this with RESNET_TUTORIAL_SCALE=full, RESNET_TUTORIAL_MAX_STEPS and
RESNET_TUTORIAL_MAX_PER_CLASS set, so that every `fit` takes a couple of optimizer steps and every
data set keeps a few images per class. Outputs are not compared (the stored ones are the quick
scale's) and claims about trained results cannot hold after two steps, so an AssertionError is
expected; any other error fails. The executed notebooks are written to _build/full-path/.

Usage: python .ci/full_path.py book/ch01_residual_learning.ipynb [...]
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
from nbclient import NotebookClient

OUT = Path("_build/full-path")
TIMEOUT = 300  # seconds per cell


def run(path: Path) -> tuple[Path, list[str], float]:
    """Execute one notebook in book/ (its working folder) with errors allowed; its errors."""
    start = time.perf_counter()
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=TIMEOUT, allow_errors=True,
                            resources={"metadata": {"path": str(path.parent)}})  # fmt: skip
    client.execute()
    nbformat.write(notebook, OUT / path.name)
    failures, asserts = [], 0
    for index, cell in enumerate(notebook.cells):
        for output in cell.get("outputs", []):
            if output.get("output_type") != "error":
                continue
            if output["ename"] == "AssertionError":
                asserts += 1
            else:
                failures.append(f"{path.name} cell {index}: {output['ename']}: {output['evalue']}")
    seconds = time.perf_counter() - start
    print(f"{path.name}: {seconds:.0f} s, {asserts} failed assert(s) (expected), "
          f"{len(failures)} other error(s)", flush=True)  # fmt: skip
    return path, failures, seconds


def main(paths: list[str]) -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(run, map(Path, paths)))
    failures = [failure for _, found, _ in results for failure in found]
    for failure in failures:
        print("FAILED", failure)
    print(f"full path: {len(results)} notebooks, {len(failures)} error(s) other than assertions; "
          f"executed copies in {OUT}/")  # fmt: skip
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
