"""Checks of the chapter notebooks as stored in the repository.

nbval (make test-notebooks) re-runs each notebook and compares outputs; these tests check what
nbval cannot: that the stored outputs exist, hold no error, came from one top-to-bottom run,
and print nothing machine-specific (memory addresses, absolute paths, timings) outside cells
marked `# NBVAL_IGNORE_OUTPUT`; that every chapter imports `resnet_tutorial`; that its first
code cell installs the package only inside Colab; and that _toc.yml lists exactly the pages
under book/.

Each check is a function from a notebook (the dict of its JSON) to a list of problems. The
checks are unit-tested on small hand-made notebooks below, so this file tests something even
before the first chapter exists.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from nbval.plugin import find_comment_markers, find_metadata_tags

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
REPOSITORY_URL: str = CONFIG["repository"]["url"]


def _load_check_site():
    """.ci/check_site.py, the one parser of _toc.yml (not a package)."""
    spec = importlib.util.spec_from_file_location(
        "check_site", Path(__file__).parent.parent / ".ci" / "check_site.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


check_site = _load_check_site()


def book_sources(book: Path = BOOK) -> list[Path]:
    """The .md and .ipynb files under book/ (not checkpoints, not build output)."""
    skip = {".ipynb_checkpoints", "_build", "__pycache__"}
    return sorted(
        path
        for suffix in ("*.md", "*.ipynb")
        for path in book.rglob(suffix)
        if not skip.intersection(path.relative_to(book).parts)
    )


NOTEBOOKS = [path for path in book_sources() if path.suffix == ".ipynb"]


# --- reading a notebook ------------------------------------------------------------------------


def text(value: str | list[str]) -> str:
    """Notebook JSON stores text as a string or as a list of lines."""
    return "".join(value) if isinstance(value, list) else value


def code_cells(nb: dict) -> list[tuple[int, dict]]:
    """(1-based position among all cells, cell) for each code cell."""
    return [(i, c) for i, c in enumerate(nb["cells"], 1) if c["cell_type"] == "code"]


def executes(cell: dict) -> bool:
    """Whether nbconvert runs the cell: it skips empty ones and those tagged skip-execution."""
    tags = cell.get("metadata", {}).get("tags", [])
    return bool(text(cell["source"]).strip()) and "skip-execution" not in tags


def where(position: int, cell: dict) -> str:
    """`cell 4 (import resnet_tutorial as rt)`: how a message points at a cell."""
    first = next((line for line in text(cell["source"]).splitlines() if line.strip()), "")
    return f"cell {position} ({first.strip()[:60]})"


def output_texts(output: dict) -> list[str]:
    """The text of one output that nbval compares (images are not compared)."""
    if output["output_type"] == "stream":
        return [text(output["text"])]
    if output["output_type"] == "error":
        return [f"{output['ename']}: {output['evalue']}", *output.get("traceback", [])]
    data = output.get("data", {})
    kinds = ("text/plain", "text/html", "text/markdown", "text/latex")
    return [text(data[kind]) for kind in kinds if kind in data]


def nbval_compares_output(cell: dict) -> bool:
    """False for cells nbval does not compare: `# NBVAL_IGNORE_OUTPUT`, NBVAL_SKIP, or tags."""
    markers = dict(find_comment_markers(text(cell["source"])))
    markers.update(find_metadata_tags(cell.get("metadata", {})))
    return markers.get("check", True) and not markers.get("skip", False)


# --- the checks ---------------------------------------------------------------------------------


def check_outputs_stored(nb: dict) -> list[str]:
    """Every cell that runs was run, and the notebook stores its outputs."""
    problems = []
    cells = [(i, c) for i, c in code_cells(nb) if executes(c)]
    if not any(c.get("outputs") for _, c in cells):
        problems.append("no stored outputs: run `make notebooks` and commit the result")
    for i, cell in cells:
        if cell.get("execution_count") is None:
            problems.append(f"{where(i, cell)} was never run (execution_count is null)")
    return problems


def check_no_errors(nb: dict) -> list[str]:
    """No stored error: a chapter shows an expected exception with try/except and print."""
    problems = []
    for i, cell in code_cells(nb):
        for output in cell.get("outputs", []):
            if output["output_type"] == "error":
                problems.append(
                    f"{where(i, cell)} stores an error output {output['ename']}: "
                    f"{output['evalue']} (to show an expected error, catch it and print it)"
                )
            elif output["output_type"] == "stream" and "Traceback (most recent call last)" in text(
                output["text"]
            ):
                problems.append(f"{where(i, cell)} prints a traceback on {output['name']}")
    return problems


def check_execution_order(nb: dict) -> list[str]:
    """Execution counts read 1, 2, 3, … from the top: one clean run, no cell re-run or lost."""
    cells = [(i, c) for i, c in code_cells(nb) if executes(c)]
    for expected, (i, cell) in enumerate(cells, 1):
        count = cell.get("execution_count")
        if count != expected:
            return [
                f"{where(i, cell)} has execution count {count}, expected {expected}: "
                "the outputs are not from one run from the top (run `make notebooks`)"
            ]
    return []


VOLATILE = {
    "a memory address": re.compile(r"\b0x[0-9a-fA-F]{6,}\b"),
    "an absolute path": re.compile(
        r"(?<![\w.~:/])/(?:work|tmp|root|home|Users|content|usr|opt|var|mnt|private|srv)/\S*"
        r"|\b[A-Za-z]:\\\S+"
    ),
    "a timing": re.compile(
        r"\b\d+(?:\.\d+)?\s?(?:s|ms|us|µs|ns|sec|secs|seconds|min|mins|minutes|hours)\b"
        r"|\b\d+(?:\.\d+)?\s?(?:it/s|s/it)"
        r"|\[(?:\d+:)?\d{2}:\d{2}<"
        r"|\b(?:Wall time|CPU times):"
    ),
}


def check_no_volatile_output(nb: dict) -> list[str]:
    """No memory address, absolute path or timing in an output that nbval compares."""
    problems = []
    for i, cell in code_cells(nb):
        if not nbval_compares_output(cell):
            continue
        for output in cell.get("outputs", []):
            for output_text in output_texts(output):
                for kind, pattern in VOLATILE.items():
                    if match := pattern.search(output_text):
                        problems.append(
                            f"{where(i, cell)} prints {kind} {match.group(0)!r}: differs from "
                            "machine to machine; print something stable, or mark the cell "
                            "`# NBVAL_IGNORE_OUTPUT` and assert the claim in the next cell"
                        )
    return problems


_IMPORT = re.compile(r"^\s*(?:import\s+resnet_tutorial\b|from\s+resnet_tutorial\b)", re.MULTILINE)


def check_imports_package(nb: dict) -> list[str]:
    """A chapter uses the companion package, never a copy of its code."""
    if any(_IMPORT.search(text(c["source"])) for _, c in code_cells(nb)):
        return []
    return ["no code cell imports resnet_tutorial (`import resnet_tutorial as rt`)"]


_MAGIC = re.compile(r"^(?P<indent>[ \t]*)(?P<kind>%%|%|!)(?P<body>.*)$")
_COLAB_ONLY_PACKAGES = re.compile(r"^(?:torch|torchvision|torchaudio)(?:\W|$)", re.IGNORECASE)


def _parse_with_magics(source: str) -> tuple[ast.Module, dict[str, tuple[str, str]]]:
    """Parse cell source, each `%pip …`/`!cmd` line becoming a call `_magic_N()`."""
    magics: dict[str, tuple[str, str]] = {}
    lines = []
    for line in source.splitlines():
        match = _MAGIC.match(line)
        if match:
            name = f"_magic_{len(magics)}"
            magics[name] = (match["kind"], match["body"].strip())
            line = f"{match['indent']}{name}()"
        lines.append(line)
    return ast.parse("\n".join(lines)), magics


def _magic_of(statement: ast.stmt, magics: dict[str, tuple[str, str]]) -> tuple[str, str] | None:
    if (
        isinstance(statement, ast.Expr)
        and isinstance(statement.value, ast.Call)
        and isinstance(statement.value.func, ast.Name)
    ):
        return magics.get(statement.value.func.id)
    return None


def _is_colab_test(test: ast.expr) -> bool:
    """`"google.colab" in sys.modules`."""
    return (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Constant)
        and test.left.value == "google.colab"
        and len(test.ops) == 1
        and isinstance(test.ops[0], ast.In)
        and ast.unparse(test.comparators[0]) == "sys.modules"
    )


def _colab_guard_body(statement: ast.stmt, lines: list[str]) -> list[ast.stmt] | str:
    """The statements that run only on Colab, or why `statement` is not a Colab guard."""
    if isinstance(statement, ast.If) and _is_colab_test(statement.test):
        if statement.orelse:
            return 'its `if "google.colab" in sys.modules:` has an else branch'
        return statement.body
    if isinstance(statement, ast.Try) and statement.body:
        first = statement.body[0]
        imports_colab = isinstance(first, ast.Import) and [a.name for a in first.names] == [
            "google.colab"
        ]
        handlers_pass = all(
            h.type is not None
            and ast.unparse(h.type) in ("ImportError", "ModuleNotFoundError")
            and all(isinstance(s, ast.Pass) for s in h.body)
            for h in statement.handlers
        )
        if imports_colab and statement.handlers and handlers_pass and not statement.finalbody:
            return statement.body[1:] + statement.orelse
        return "its try statement is not `try: import google.colab` / `except ImportError: pass`"
    return f"`{lines[statement.lineno - 1].strip()[:60]}` is not a Colab guard"


def _pip_install_problems(body: str, repository_url: str) -> list[str]:
    """Problems with the arguments of one `%pip …` line."""
    try:
        args = shlex.split(body)
    except ValueError as error:
        return [f"cannot read `%pip {body}`: {error}"]
    if not args or args[0] != "install":
        return [f"`%pip {body}` is not a `%pip install`"]
    problems = []
    source = re.compile(rf"git\+{re.escape(repository_url)}(?:\.git)?(?:@[\w.\-/]+)?(?:#\S*)?$")
    if not any(source.search(arg) for arg in args[1:]):
        problems.append(
            f"`%pip {body}` does not install the package from git+{repository_url} "
            "(the repository in _config.yml)"
        )
    for arg in args[1:]:
        if _COLAB_ONLY_PACKAGES.match(arg) or arg in ("-r", "--requirement", "--force-reinstall"):
            problems.append(f"`%pip {body}` passes {arg!r}: it must keep Colab's own torch")
        if arg.startswith("--upgrade-strategy") or arg == "eager":
            problems.append(f"`%pip {body}` upgrades dependencies eagerly: keep Colab's torch")
    return problems


def check_colab_install_cell(nb: dict, repository_url: str = REPOSITORY_URL) -> list[str]:
    """The first code cell installs the package from the repository only inside Colab:

        import sys

        if "google.colab" in sys.modules:  # on Colab only: install the companion package
            %pip install --quiet "resnet_tutorial @ git+<repository url>"

    (`try: import google.colab` / `except ImportError: pass` / `else: %pip …` also passes.)
    Outside Colab it does nothing, so it stores no output.
    """
    cells = code_cells(nb)
    if not cells:
        return ["no code cell: the first code cell must install the package on Colab"]
    i, cell = cells[0]
    name = f"the first code cell, {where(i, cell)}:"
    source = text(cell["source"])
    try:
        module, magics = _parse_with_magics(source)
    except SyntaxError as error:
        return [f"{name} not valid Python: {error}"]

    problems = []
    guards = []
    for statement in module.body:
        if isinstance(statement, ast.Import) and all(a.name == "sys" for a in statement.names):
            continue
        guard = _colab_guard_body(statement, source.splitlines())
        if isinstance(guard, str):
            problems.append(f"{name} runs code outside a Colab guard: {guard}")
        else:
            guards.append(guard)
    if not guards and not problems:
        problems.append(f'{name} no `if "google.colab" in sys.modules:` guard')

    installs = 0
    for statement in (s for body in guards for s in body):
        for node in ast.walk(statement):
            if not isinstance(node, ast.stmt) or (magic := _magic_of(node, magics)) is None:
                continue
            kind, body = magic
            if kind == "%" and body.startswith("pip "):
                installs += 1
                problems += [f"{name} {p}" for p in _pip_install_problems(body[4:], repository_url)]
            elif kind == "!" and re.match(r"(?:python3? -m )?pip3?\b", body):
                problems.append(f"{name} `!{body}`: use `%pip`, which installs into the kernel")
    if guards and installs == 0:
        problems.append(f"{name} a Colab guard without a `%pip install` of the package in it")
    if cell.get("outputs"):
        problems.append(
            f"{name} stored outputs, but outside Colab it prints nothing (saved from Colab?)"
        )
    return problems


def check_kernelspec(nb: dict) -> list[str]:
    """nbval and nbconvert start the kernel the notebook names: it must be the default one."""
    name = nb.get("metadata", {}).get("kernelspec", {}).get("name")
    if name != "python3":
        return [f"kernelspec is {name!r}, not 'python3' (CI has no other kernel)"]
    return []


def only_checks(source: str) -> bool:
    """Whether a code cell only checks: it asserts, and prints, shows and defines nothing."""
    lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
    try:
        tree = ast.parse("\n".join(lines))
    except SyntaxError:
        return False
    nodes = list(ast.walk(tree))
    if not tree.body or not any(isinstance(node, ast.Assert) for node in nodes):
        return False
    defines = (ast.FunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)
    shows = [
        node
        for node in nodes
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in ("print", "display")
    ]
    return (
        not shows
        and not any(isinstance(n, defines) for n in nodes)
        and not isinstance(tree.body[-1], ast.Expr)
    )


def check_asserts_hidden(nb: dict) -> list[str]:
    """A cell that only asserts is CI's plumbing: tagged hide-input, the page shows a fold."""
    problems = []
    for position, cell in code_cells(nb):
        tags = cell.get("metadata", {}).get("tags", [])
        if only_checks(text(cell["source"])) and "hide-input" not in tags:
            problems.append(f"cell {position} only asserts: tag it hide-input")
    return problems


CHECKS: list[Callable[[dict], list[str]]] = [
    check_outputs_stored,
    check_no_errors,
    check_execution_order,
    check_no_volatile_output,
    check_imports_package,
    check_colab_install_cell,
    check_kernelspec,
    check_asserts_hidden,
]


def check_toc_agrees(toc: dict, root: Path = ROOT, book: Path = BOOK) -> list[str]:
    """Every toc entry has its file, and every page under book/ is in the toc, once."""
    problems = []
    entries = check_site.toc_pages(toc)
    for docname in sorted({d for d in entries if entries.count(d) > 1}):
        problems.append(f"_toc.yml lists {docname} more than once")
    for docname in entries:
        sources = [root / f"{docname}{s}" for s in (".md", ".ipynb")]
        found = [p for p in sources if p.is_file()]
        if not found:
            problems.append(f"_toc.yml lists {docname}, but there is no {docname}.md or .ipynb")
        elif len(found) > 1:
            problems.append(f"{docname} exists as both .md and .ipynb")
    listed = set(entries)
    for path in book_sources(book):
        docname = path.relative_to(root).with_suffix("").as_posix()
        if docname not in listed:
            problems.append(
                f"{path.relative_to(root)} is not in _toc.yml, so the book leaves it out "
                "(add a `- file:` line for it)"
            )
    return problems


# --- the real notebooks and the real toc ---------------------------------------------------------


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.relative_to(ROOT).as_posix() for p in NOTEBOOKS])
def test_notebook(path: Path) -> None:
    nb = json.loads(path.read_text(encoding="utf-8"))
    problems = [problem for check in CHECKS for problem in check(nb)]
    assert not problems, f"{path.relative_to(ROOT)}:\n  " + "\n  ".join(problems)


def test_toc_lists_exactly_the_pages_under_book() -> None:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    problems = check_toc_agrees(toc)
    assert not problems, "\n".join(problems)


# --- the checks, tested on hand-made notebooks ----------------------------------------------------

URL = "https://github.com/example-org/example-repo"
COLAB_CELL = (
    "import sys\n"
    "\n"
    'if "google.colab" in sys.modules:  # on Colab only: install the companion package\n'
    f'    %pip install --quiet "resnet_tutorial @ git+{URL}@main"\n'
)


def code(source: str, *outputs: dict, count: int | None = None, tags: tuple = ()) -> dict:
    return {
        "cell_type": "code",
        "source": source.splitlines(keepends=True),
        "outputs": list(outputs),
        "execution_count": count,
        "metadata": {"tags": list(tags)} if tags else {},
    }


def markdown(source: str) -> dict:
    return {"cell_type": "markdown", "source": source, "metadata": {}}


def stream(content: str, name: str = "stdout") -> dict:
    return {"output_type": "stream", "name": name, "text": content}


def result(plain: str, count: int) -> dict:
    return {
        "output_type": "execute_result",
        "execution_count": count,
        "data": {"text/plain": plain},
        "metadata": {},
    }


def notebook(*cells: dict) -> dict:
    return {
        "cells": list(cells),
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def good_notebook() -> dict:
    return notebook(
        markdown("# Residual learning\n\nThe block computes $y = F(x) + x$."),
        code(COLAB_CELL, count=1),
        code("import resnet_tutorial as rt", count=2),
        code("", count=None),  # an empty cell is not run
        code(
            'print("accuracy 91.73 %, 269,722 parameters")', stream("accuracy 91.73 %\n"), count=3
        ),
        code("# NBVAL_IGNORE_OUTPUT\nfit(model)", stream("epoch 1 took 12.3 s\n"), count=4),
        code("assert history.test_error[-1] < 0.5", count=5, tags=("hide-input",)),
        code("(2 + 2) * 0x10", result("64", 6), count=6),
    )


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_a_good_notebook_passes(check: Callable[[dict], list[str]]) -> None:
    nb = good_notebook()
    assert (check(nb, URL) if check is check_colab_install_cell else check(nb)) == []


def one_problem(problems: list[str], *phrases: str) -> None:
    """Exactly one problem, and its message says each of `phrases`."""
    assert len(problems) == 1, problems
    for phrase in phrases:
        assert phrase in problems[0], problems[0]


@pytest.mark.parametrize(
    ("source", "hidden"),
    [
        ("assert x > 0", True),
        ("gap = a - b\nfor k in ks:\n    assert gap[k] > 0.1, k", True),
        ("assert x > 0\nprint('ok')", False),  # it shows something
        ("assert x > 0\nfig", False),  # it displays a value
        ("def f(x):\n    assert x\n    return x", False),  # it defines something
        ("x = 1", False),  # no assert
    ],
)
def test_asserts_hidden_asks_a_hide_input_tag_only_of_cells_that_only_check(
    source: str, hidden: bool
) -> None:
    nb = notebook(code(source, count=1))
    problems = check_asserts_hidden(nb)
    assert problems == ([] if not hidden else ["cell 1 only asserts: tag it hide-input"])
    nb = notebook(code(source, count=1, tags=("hide-input",)))
    assert check_asserts_hidden(nb) == []


def test_outputs_stored_rejects_a_notebook_without_outputs() -> None:
    nb = notebook(code(COLAB_CELL), code("import resnet_tutorial"), code("print(1)"))
    problems = check_outputs_stored(nb)
    assert "no stored outputs" in problems[0]
    assert len(problems) == 4  # and each of the three cells was never run


def test_outputs_stored_rejects_a_cell_never_run() -> None:
    nb = good_notebook()
    nb["cells"][2]["execution_count"] = None
    one_problem(check_outputs_stored(nb), "cell 3 (import resnet_tutorial as rt)", "never run")


def test_outputs_stored_ignores_cells_tagged_skip_execution() -> None:
    nb = good_notebook()
    nb["cells"].append(code("train_for_a_day()", tags=("skip-execution",)))
    assert check_outputs_stored(nb) == []


def test_no_errors_rejects_an_error_output() -> None:
    nb = good_notebook()
    error = {"output_type": "error", "ename": "ValueError", "evalue": "depth=21", "traceback": []}
    nb["cells"][4]["outputs"].append(error)
    one_problem(check_no_errors(nb), "cell 5", "error output ValueError: depth=21")


def test_no_errors_rejects_a_printed_traceback() -> None:
    nb = good_notebook()
    nb["cells"][4]["outputs"].append(stream("Traceback (most recent call last):\n", "stderr"))
    one_problem(check_no_errors(nb), "prints a traceback on stderr")


@pytest.mark.parametrize(
    "counts", [(1, 2, 4, 3, 5, 6), (2, 3, 4, 5, 6, 7), (1, 2, 3, None, 5, 6), (1, 2, 3, 4, 5, 5)]
)
def test_execution_order_rejects_counts_out_of_order(counts: tuple) -> None:
    nb = good_notebook()
    run_cells = [c for c in nb["cells"] if c["cell_type"] == "code" and executes(c)]
    for cell, count in zip(run_cells, counts, strict=True):
        cell["execution_count"] = count
    one_problem(check_execution_order(nb), "expected", "one run from the top")


@pytest.mark.parametrize(
    ("printed", "kind"),
    [
        ("<matplotlib.lines.Line2D at 0x7f3a2c1b9d30>", "a memory address"),
        ("Files already downloaded: /root/.cache/resnet_tutorial/cifar10", "an absolute path"),
        (
            "/tmp/venv/lib/python3.11/site-packages/torch/nn/modules/conv.py:456: UserWarning",
            "an absolute path",
        ),
        ("reading C:\\Users\\me\\data", "an absolute path"),
        ("epoch 1 took 12.3 s", "a timing"),
        ("forward pass: 350ms", "a timing"),
        ("100%|██████████| 10/10 [00:02<00:00,  4.10it/s]", "a timing"),
        ("Wall time: 1.2 s", "a timing"),
    ],
)
def test_volatile_output_is_rejected_in_a_compared_cell(printed: str, kind: str) -> None:
    nb = good_notebook()
    nb["cells"][4]["outputs"] = [stream(printed + "\n")]
    one_problem(check_no_volatile_output(nb), "cell 5", f"prints {kind}", "NBVAL_IGNORE_OUTPUT")


def test_volatile_output_is_rejected_in_a_result_and_in_html() -> None:
    nb = good_notebook()
    nb["cells"][7]["outputs"] = [result("<Figure at 0x7f00deadbeef>", 6)]
    nb["cells"][7]["outputs"][0]["data"]["text/html"] = "<p>saved to /home/me/run.pt</p>"
    problems = check_no_volatile_output(nb)
    assert [p.split(" prints ")[1].split(" '")[0] for p in problems] == [
        "a memory address",
        "an absolute path",
    ]


@pytest.mark.parametrize(
    "stable",
    [
        "test accuracy 91.73 % (paper: 91.25 %)",
        "torch.Size([128, 64, 32, 32]) 269,722 parameters, 0.041 GMAC",
        "downloaded from https://github.com/akamaster/pytorch_resnet_cifar10/raw/master/x.th",
        "relative path book/figures/curve.png, 3 stages, 16 channels",
    ],
)
def test_stable_output_is_accepted(stable: str) -> None:
    nb = good_notebook()
    nb["cells"][4]["outputs"] = [stream(stable + "\n")]
    assert check_no_volatile_output(nb) == []


@pytest.mark.parametrize(
    ("source", "tags"),
    [
        ("# NBVAL_IGNORE_OUTPUT\nfit(model)", ()),
        ("fit(model)  # noisy\n#  NBVAL_IGNORE_OUTPUT  ", ()),
        ("fit(model)", ("nbval-ignore-output",)),
        ("# NBVAL_SKIP\nfit(model)", ()),
    ],
)
def test_volatile_output_is_allowed_where_nbval_does_not_compare(source: str, tags: tuple) -> None:
    nb = good_notebook()
    nb["cells"][4] = code(source, stream("took 12.3 s at 0x7f3a2c1b9d30\n"), count=3, tags=tags)
    assert check_no_volatile_output(nb) == []


def test_a_marker_nbval_does_not_recognise_does_not_hide_output() -> None:
    nb = good_notebook()
    nb["cells"][4] = code("# NBVAL_IGNORE_OUTPUT: timings\nfit(model)", stream("12.3 s\n"), count=3)
    one_problem(check_no_volatile_output(nb), "prints a timing")


@pytest.mark.parametrize(
    "source", ["import torch", "# import resnet_tutorial as rt", 'print("import resnet_tutorial")']
)
def test_imports_package_rejects_a_notebook_that_does_not_import_it(source: str) -> None:
    nb = good_notebook()
    nb["cells"][2] = code(source, count=2)
    one_problem(check_imports_package(nb), "no code cell imports resnet_tutorial")


@pytest.mark.parametrize(
    "source", ["from resnet_tutorial import plot", "import torch\nimport resnet_tutorial"]
)
def test_imports_package_accepts_other_import_forms(source: str) -> None:
    nb = good_notebook()
    nb["cells"][2] = code(source, count=2)
    assert check_imports_package(nb) == []


GUARD = "import sys\nif 'google.colab' in sys.modules:\n    "


def with_first_cell(source: str, *outputs: dict) -> dict:
    nb = good_notebook()
    nb["cells"][1] = code(source, *outputs, count=1)
    return nb


def test_colab_cell_accepts_the_try_import_form() -> None:
    source = (
        "try:\n"
        "    import google.colab\n"
        "except ImportError:\n"
        "    pass\n"
        "else:\n"
        f"    %pip install -q git+{URL}\n"
    )
    assert check_colab_install_cell(with_first_cell(source), URL) == []


@pytest.mark.parametrize(
    ("source", "phrase"),
    [
        (f"%pip install git+{URL}", "outside a Colab guard"),
        (
            f"import torch\n{GUARD}%pip install git+{URL}",
            "outside a Colab guard",
        ),
        (
            f"import sys\nif 'google.colab' in sys.modules:\n    %pip install git+{URL}\n"
            "else:\n    print('not on Colab')",
            "else branch",
        ),
        (
            f"import sys\nif 'colab' in sys.modules:\n    %pip install git+{URL}",
            "is not a Colab guard",
        ),
        (
            "import sys\nif 'google.colab' in sys.modules:\n    print('hi')",
            "without a `%pip install`",
        ),
        (
            f"import sys\nif 'google.colab' in sys.modules:\n    !pip install git+{URL}",
            "use `%pip`",
        ),
        (
            "import sys\nif 'google.colab' in sys.modules:\n"
            "    %pip install git+https://github.com/someone/else",
            f"does not install the package from git+{URL}",
        ),
        (
            f"import sys\nif 'google.colab' in sys.modules:\n    %pip install torch==2.1 git+{URL}",
            "keep Colab's own torch",
        ),
        (
            f"{GUARD}%pip install -r requirements.txt git+{URL}",
            "keep Colab's own torch",
        ),
        (
            f"try:\n    import google.colab\nexcept ImportError:\n    %pip install git+{URL}",
            "try statement",
        ),
        ("import resnet_tutorial as rt", "outside a Colab guard"),
        ("import sys", 'no `if "google.colab" in sys.modules:` guard'),
        ("import sys\nif True\n", "not valid Python"),
    ],
)
def test_colab_cell_rejects_other_shapes(source: str, phrase: str) -> None:
    problems = check_colab_install_cell(with_first_cell(source), URL)
    assert problems, source
    assert any(phrase in p for p in problems), problems
    assert all(p.startswith("the first code cell, cell 2 (") for p in problems), problems


def test_colab_cell_rejects_stored_outputs() -> None:
    nb = with_first_cell(COLAB_CELL, stream("Successfully installed resnet_tutorial-0.1.0\n"))
    one_problem(check_colab_install_cell(nb, URL), "stored outputs", "saved from Colab")


def test_colab_cell_must_be_the_first_code_cell() -> None:
    nb = good_notebook()
    nb["cells"][1], nb["cells"][2] = nb["cells"][2], nb["cells"][1]
    assert check_colab_install_cell(nb, URL)
    assert check_colab_install_cell(notebook(markdown("# Only prose")), URL) == [
        "no code cell: the first code cell must install the package on Colab"
    ]


def test_kernelspec_must_be_python3() -> None:
    nb = good_notebook()
    nb["metadata"]["kernelspec"]["name"] = "venv-resnet"
    one_problem(check_kernelspec(nb), "'venv-resnet'")


def test_the_repository_url_is_a_github_repository() -> None:
    # the install cell and the launch buttons both use it
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", REPOSITORY_URL)


def write_book(root: Path, files: list[str]) -> None:
    for name in files:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("# A page\n", encoding="utf-8")


TOC = {
    "format": "jb-book",
    "root": "book/intro",
    "parts": [
        {"caption": "Chapters", "chapters": [{"file": "book/ch01_residual_learning"}]},
        {
            "caption": "Appendix",
            "chapters": [
                {"file": "book/solutions/index", "sections": [{"file": "book/solutions/ch01"}]}
            ],
        },
    ],
}
PAGES = [
    "book/intro.md",
    "book/ch01_residual_learning.ipynb",
    "book/solutions/index.md",
    "book/solutions/ch01.md",
]


def test_toc_check_accepts_a_book_that_matches(tmp_path: Path) -> None:
    write_book(
        tmp_path, [*PAGES, "book/.ipynb_checkpoints/ch01_residual_learning-checkpoint.ipynb"]
    )
    assert check_toc_agrees(TOC, tmp_path, tmp_path / "book") == []


def test_toc_check_rejects_a_page_missing_from_the_toc(tmp_path: Path) -> None:
    write_book(tmp_path, [*PAGES, "book/ch02_shortcuts.ipynb"])
    one_problem(
        check_toc_agrees(TOC, tmp_path, tmp_path / "book"),
        "book/ch02_shortcuts.ipynb is not in _toc.yml",
    )


def test_toc_check_rejects_an_entry_without_a_file(tmp_path: Path) -> None:
    write_book(tmp_path, [p for p in PAGES if p != "book/solutions/ch01.md"])
    one_problem(
        check_toc_agrees(TOC, tmp_path, tmp_path / "book"),
        "lists book/solutions/ch01, but there is no",
    )


def test_toc_check_rejects_a_page_listed_twice(tmp_path: Path) -> None:
    write_book(tmp_path, PAGES)
    toc = {
        **TOC,
        "parts": [*TOC["parts"], {"caption": "Again", "chapters": [{"file": "book/intro"}]}],
    }
    one_problem(check_toc_agrees(toc, tmp_path, tmp_path / "book"), "more than once")
