"""The package as a reader imports it: light to import, every public name where it is documented."""

from __future__ import annotations

import shutil
import subprocess
import sys


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
