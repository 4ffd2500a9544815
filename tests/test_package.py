"""The package as a reader imports it: light to import, every public name where it is documented."""

from __future__ import annotations

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
