"""The package as a reader imports it: light to import, every public name where it is documented."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path


def test_import_does_not_load_matplotlib_until_a_figure_is_asked_for():
    code = (
        "import sys, resnet_tutorial as rt\n"
        "print('matplotlib' in sys.modules)\n"
        "rt.plot.style\n"
        "print('matplotlib' in sys.modules, 'plot' in dir(rt), 'exercises' in dir(rt))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True", "True", "True"]


def test_unknown_attribute_raises_attribute_error():
    import pytest

    import resnet_tutorial as rt

    with pytest.raises(AttributeError, match="has no attribute 'plots'"):
        rt.plots  # noqa: B018


KEEP = {"pyproject.toml", "README.md", "LICENSE", "resnet_tutorial"}


def test_the_wheel_holds_every_subpackage(tmp_path):
    # A non-editable install (Colab's `pip install git+…`) gets only what the wheel holds.
    import zipfile
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    copy = tmp_path / "source"  # built from a copy: setuptools leaves build/ beside its input
    shutil.copytree(
        root, copy, ignore=lambda d, names: [n for n in names if n not in KEEP and Path(d) == root]
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(copy)],
        check=True, capture_output=True,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("resnet_tutorial-*.whl")
    packaged = {Path(n).parent for n in zipfile.ZipFile(wheel).namelist() if n.endswith(".py")}
    source = {p.parent.relative_to(root) for p in (root / "resnet_tutorial").rglob("__init__.py")}
    assert source <= packaged, sorted(map(str, source - packaged))


# --- the package's structure: imports go one way ----------------------------------------------

PACKAGE = Path(__file__).resolve().parent.parent / "resnet_tutorial"


def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its __init__.py)."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, str]]:
    """(module imported, name imported) for every import of the package's own code in the file,
    wherever it stands: module level, functions, `if TYPE_CHECKING:`, `if __name__ == ...`."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, "") for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            module = ".".join(base + [node.module or ""]).rstrip(".") if node.level else node.module
            for alias in node.names:
                submodule = f"{module}.{alias.name}"
                found.append((submodule, "") if submodule in modules else (module, alias.name))
    return [(module, what) for module, what in found if module in modules and module != name]


def _import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {n: {m for m, _ in _imports(n, p, modules)} for n, p in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import circle, each once (started from its smallest name)."""
    found = []
    for start in graph:
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for target in graph[node]:
                if target == start:
                    found.append([*path, start])
                elif target > start and target not in path:
                    stack.append((target, [*path, target]))
    return found


def test_the_cycle_finder_finds_a_cycle_through_three_modules():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert _cycles(graph) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_the_import_parser_reads_relative_and_guarded_imports(tmp_path):
    source = (
        "from typing import TYPE_CHECKING\nfrom . import blocks\nfrom .data import cifar10\n"
        "if TYPE_CHECKING:\n    from resnet_tutorial.config import TrainConfig\n"
        "def f():\n    from ..exercises import _common\n"
    )
    modules = dict.fromkeys(
        ["resnet_tutorial.blocks", "resnet_tutorial.data", "resnet_tutorial.config",
         "resnet_tutorial.exercises._common"]
    )  # fmt: skip
    (tmp_path / "x.py").write_text(source)
    assert sorted(_imports("resnet_tutorial.plot.x", tmp_path / "x.py", modules)) == [
        ("resnet_tutorial.config", "TrainConfig"),
        ("resnet_tutorial.exercises._common", ""),
    ]  # fmt: skip  (`.data` and `. blocks` are plot's own: no such modules)
    assert sorted(_imports("resnet_tutorial.x", tmp_path / "x.py", modules)) == [
        ("resnet_tutorial.blocks", ""), ("resnet_tutorial.config", "TrainConfig"),
        ("resnet_tutorial.data", "cifar10"),
    ]  # fmt: skip


def test_no_module_imports_one_that_imports_it_back():
    graph = _import_graph()
    assert len(graph) > 30 and "resnet_tutorial.models" in graph["resnet_tutorial"]
    assert _cycles(graph) == []


def test_no_module_imports_another_modules_private_names():
    modules = _modules()
    private = [
        f"{name} imports {what} from {module}"
        for name, path in modules.items()
        for module, what in _imports(name, path, modules)
        if what.startswith("_")
    ]
    assert private == []


def test_no_module_shares_its_name_with_a_public_function():
    import importlib
    import inspect

    clashes = []
    for name in _modules():
        package, _, leaf = name.rpartition(".")
        if package and not leaf.startswith("_"):
            attribute = getattr(importlib.import_module(package), leaf, None)
            if inspect.isfunction(attribute):
                clashes.append(name)
    assert clashes == []
