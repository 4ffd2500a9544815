"""Lint the chapter notebooks as stored in the repository, and check _toc.yml against book/.

nbval (make test-notebooks) re-runs each notebook and compares outputs; this checks what nbval
cannot: that the stored outputs exist, hold no error, came from one top-to-bottom run, and print
nothing machine-specific (memory addresses, absolute paths, timings) outside cells marked
`# NBVAL_IGNORE_OUTPUT`; that every chapter imports `resnet_tutorial`; that its first code cell
installs the package only inside Colab; that a cell that only asserts is tagged hide-input; and
that _toc.yml lists exactly the pages under book/.

Each check is a function from a notebook (the dict of its JSON) to a list of problems (`CHECKS`;
`lint` runs them all). `make test` runs them through tests/test_notebooks.py, one test per
notebook, which also unit-tests each check on small hand-made notebooks.

Usage (by hand):  python .ci/lint_notebooks.py [book/ch01_residual_learning.ipynb ...]
(no argument: every notebook under book/, and _toc.yml). Exits non-zero on any problem.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

import check_site  # .ci/check_site.py, the one parser of _toc.yml: a sibling script
import yaml
from nbval.plugin import find_comment_markers, find_metadata_tags

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
REPOSITORY_URL: str = CONFIG["repository"]["url"]


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


def check_no_markdown_comment(nb: dict) -> list[str]:
    """MyST reads a markdown line that starts with % as a comment and drops it from the page: a
    reflowed sentence that puts "% at epoch ..." at a line's start loses its words silently."""
    problems = []
    for position, cell in enumerate(nb["cells"], 1):
        if cell["cell_type"] != "markdown":
            continue
        fenced = math = False
        for line in text(cell["source"]).splitlines():
            stripped = line.lstrip()
            if stripped.startswith(("```", "~~~")):
                fenced = not fenced
            elif stripped.startswith("$$"):
                math = not math if stripped.count("$$") == 1 else math
            elif stripped.startswith("%") and not (fenced or math):
                problems.append(f"markdown cell {position}: {line[:40]!r} starts with %, which "
                                "MyST drops as a comment: reflow the line")  # fmt: skip
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
    check_no_markdown_comment,
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


def lint(nb: dict) -> list[str]:
    """The problems that all of `CHECKS` find in one notebook."""
    return [problem for check in CHECKS for problem in check(nb)]


def main(paths: list[str]) -> int:
    """Lint the notebooks named (all of book/'s and _toc.yml if none); 1 if any has a problem."""
    notebooks = [Path(path).resolve() for path in paths] or NOTEBOOKS
    failed = 0
    for path in notebooks:
        problems = lint(json.loads(path.read_text(encoding="utf-8")))
        name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        print(f"{name}: {'ok' if not problems else f'{len(problems)} problem(s)'}")
        for problem in problems:
            print(f"  {problem}")
        failed += bool(problems)
    if not paths:
        toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
        problems = check_toc_agrees(toc)
        print(f"_toc.yml: {'ok' if not problems else f'{len(problems)} problem(s)'}")
        for problem in problems:
            print(f"  {problem}")
        failed += bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
