"""The tools in .ci/ (scripts, not a package), for the tests that run them on the book.

`load("lint_notebooks")` imports `.ci/lint_notebooks.py` as the module `lint_notebooks`, with
.ci/ on `sys.path` while it runs, so that a tool imports its siblings (`import check_site`) as
it does when run by hand (`python .ci/lint_notebooks.py`).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

CI = Path(__file__).resolve().parent.parent.parent / ".ci"


def load(name: str) -> ModuleType:
    """`.ci/<name>.py`, imported once per process under the module name `name`."""
    path = CI / f"{name}.py"
    loaded = sys.modules.get(name)
    if loaded is not None and Path(getattr(loaded, "__file__", "")).resolve() == path:
        return loaded
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    sys.path.insert(0, str(CI))
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    finally:
        sys.path.remove(str(CI))
    return module
