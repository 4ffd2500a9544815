"""The exercise checks as a whole: what the book calls, the report, the random state.

Each chapter's checks are tested against right and wrong learner code in
`tests/test_exercises_chNN.py`; this module tests what they share.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import torch
from support.exercise_helpers import MyBasicBlock, fails

import resnet_tutorial as rt
from resnet_tutorial import exercises

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "resnet_tutorial" / "exercises"


def book_sources() -> dict[str, str]:
    """The code of every notebook and the text of every solutions page, by file name."""
    sources = {}
    for path in sorted((ROOT / "book").glob("*.ipynb")):  # the chapters and the appendix
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        sources[path.name] = "\n".join("".join(c["source"]) for c in cells)
    for path in sorted((ROOT / "book" / "solutions").glob("*.md")):
        sources[f"solutions/{path.name}"] = path.read_text(encoding="utf-8")
    return sources


def test_every_check_that_the_book_calls_is_in_rt_exercises():
    called = {
        (name, match)
        for name, source in book_sources().items()
        for match in re.findall(r"exercises\.(\w+)\(", source)
    }
    assert len({match for _, match in called}) >= 10, called  # the book calls the checks
    missing = sorted((name, match) for name, match in called if not hasattr(exercises, match))
    assert not missing, missing
    assert callable(rt.exercises.check_residual)


def test_the_package_exports_each_chapters_checks():
    defined = {}
    for path in sorted([*PACKAGE.glob("ch*.py"), *PACKAGE.glob("appendix_*.py")]):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("check_"):
                assert node.name not in defined, f"{node.name} in {path.name} and {defined}"
                defined[node.name] = path.stem
    assert sorted(exercises.__all__) == sorted(defined)
    for name, module in defined.items():
        assert getattr(exercises, name).__module__ == f"resnet_tutorial.exercises.{module}"


def test_the_checks_use_only_blocks_models_measure_and_util():
    """CONTRIBUTING.md: `exercises` uses `blocks`, `models` and `measure`, and the appendix's
    check `frameworks`; no matplotlib, and Keras only inside a function (an optional extra)."""
    allowed = {"blocks", "models", "measure", "_util"}
    for path in sorted(PACKAGE.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        uses = allowed | {"frameworks"} if path.stem == "appendix_frameworks" else allowed
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 2:  # from ..x import y
                assert (node.module or "").split(".")[0] in uses, (
                    f"{path.name} imports ..{node.module}"
                )
            assert not any(n.split(".")[0] == "matplotlib" for n in _imported(node)), path.name
        for node in tree.body:  # what `import resnet_tutorial.exercises` runs
            optional = {"keras", "pytorch_lightning", "lightning", "torchmetrics"}
            assert not any(n.split(".")[0] in optional for n in _imported(node)), path.name


def _imported(node: ast.AST) -> list[str]:
    """The modules that an import statement names (none for any other node)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        return [node.module or ""]
    return []


def test_checks_keep_the_random_state(capsys):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    exercises.check_basic_block(MyBasicBlock)
    exercises.check_shortcut(rt.ZeroPadShortcut)
    assert torch.equal(torch.rand(3), expected)
    capsys.readouterr()


def test_a_failure_names_the_problem_then_gives_a_hint():
    class NoReluAfterAddition(MyBasicBlock):
        def forward(self, x):
            return self.residual(x) + self.identity(x)

    message = fails(exercises.check_basic_block, NoReluAfterAddition, says=["NoReluAfterAddition"])
    problem, hint = message.split("\nHint: ")
    assert "\n" not in problem and hint.endswith(".")
