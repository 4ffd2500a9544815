"""Run the code on the solution pages (book/solutions/ch*.md, appendix_*.md); its checks pass.

Nothing else executes these pages: the book shows them as written. So, for each page, the
```python blocks run in page order, and a block fails its page when

- it raises (a traceback names the page and its line);
- it calls `rt.exercises.check_*` and that check did not return: each check the block names must
  have passed (a check that fails raises its AssertionError with the hint);
- a ```text block follows it (only blank lines between) and what the block prints differs from
  that text: the page shows the output its code prints, ✓ lines included.

Namespaces: a page is a preamble (the blocks above its first `##` heading: the imports) and one
section per exercise (`##`). The preamble runs once, in an empty namespace; each section then
runs in its own copy of the preamble's namespace, so that each exercise's solution is exactly
what a reader pastes into a fresh notebook after the page's imports, and owes nothing to the
chapter's notebook or to another exercise.

The pages run in `solution_environment()`: the chapters' quick scale (`RESNET_TUTORIAL_SCALE=
quick`), every `rt.fit` capped at 2 optimizer steps (`RESNET_TUTORIAL_MAX_STEPS=2`, as in `make
test-full-path`) and every data set at its first 20 images of each class
(`RESNET_TUTORIAL_MAX_PER_CLASS=20`), so a solution that trains or evaluates runs every line in
seconds; its trained numbers are not checked (such a block has no ```text output after it).
Data come from `$RESNET_TUTORIAL_DATA`, as everywhere in the suite.

A page whose code needs an optional extra (the appendix on Keras and Lightning needs
`resnet_tutorial[frameworks]`) is listed in NEEDS, and skipped, with that reason, where the extra
is not installed (the oldest-torch run).

A block that cannot run on a CPU in CI (an open exercise that trains at full scale on a GPU)
says so in its first line, `# not run in CI: <why, and how long it takes where it runs>`. It is
still compiled, and a page may hold at most MAX_NOT_RUN such blocks. Other fences (```text,
```bash, math) are not run.

`make test` runs this through tests/test_solutions.py (one test per page, and one per block not
run, reported as skipped with its reason), which also unit-tests the parser and the runner on
hand-written pages.

Usage (by hand, with the data that `make test` reads):
    RESNET_TUTORIAL_DATA=../shared/data python .ci/run_solutions.py [book/solutions/ch01.md ...]
(no argument: every page). Exits non-zero when a page fails.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import importlib.util
import io
import os
import random
import re
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from resnet_tutorial import exercises

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = ROOT / "book" / "solutions"
PAGES = [*sorted(SOLUTIONS.glob("ch*.md")), *sorted(SOLUTIONS.glob("appendix_*.md"))]
# the optional modules a page imports, by page: where one is missing, the page is skipped
NEEDS = {"appendix_frameworks.md": ("keras",)}
NOT_RUN = "# not run in CI:"
MAX_NOT_RUN = 2  # per page: the rest must run, or be rewritten so that it can
ENVIRONMENT = {
    "RESNET_TUTORIAL_SCALE": "quick",
    "RESNET_TUTORIAL_MAX_STEPS": "2",
    "RESNET_TUTORIAL_MAX_PER_CLASS": "20",  # what a 2-step fit can use
}
# the cap's own warning, which says that it is on
CAP_WARNING = r"\$RESNET_TUTORIAL_MAX_STEPS=2"


class PageFailure(Exception):
    """A page's code failed; the message says where (page, line, section) and why."""


# --- reading a page ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """One fenced block of a MyST page."""

    language: str  # "python", "text", "bash", "" (no info string)
    source: str
    line: int  # 1-based line of the opening fence
    section: str  # the `##` heading above it; "" above the first one (the preamble)
    output: str | None = None  # for code: the ```text block right after it, if any

    @property
    def not_run(self) -> bool:
        return self.source.lstrip().startswith(NOT_RUN)

    @property
    def not_run_reason(self) -> str:
        """What follows `# not run in CI:` on its first line ("" if nothing, or not marked)."""
        if not self.not_run:
            return ""
        return self.source.lstrip().splitlines()[0].removeprefix(NOT_RUN).strip()


FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


def _language(info: str) -> str:
    """```python → python; MyST directives ```{code-block} python → python."""
    words = info.split()
    if words and words[0].startswith("{") and words[0].endswith("}"):
        words = words[1:]
    return words[0].lower() if words else ""


def fenced_blocks(markdown: str) -> list[Block]:
    """The page's fenced blocks in order, each with its section and, for code, its output.

    CommonMark fences: three or more backticks or tildes, closed by at least as many of the
    same character; a longer fence may hold shorter ones as text. A ```text block counts as
    the output of the block before it when only blank lines stand between them.
    """
    blocks: list[Block] = []
    ends: list[int] = []  # the line of each block's closing fence
    lines = markdown.splitlines()
    section, i = "", 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None or (opening["fence"][0] == "`" and "`" in opening["info"]):
            if lines[i].startswith("## "):
                section = lines[i][3:].strip()
            i += 1
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        closing = re.compile(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        body, j = [], i + 1
        while j < len(lines) and not closing.match(lines[j]):
            body.append(re.sub(rf"^ {{0,{indent}}}", "", lines[j]))
            j += 1
        source = "\n".join(body) + "\n" if body else ""
        blocks.append(Block(_language(opening["info"]), source, i + 1, section))
        ends.append(j)
        i = j + 1
    for k in range(len(blocks) - 1):
        code, after = blocks[k], blocks[k + 1]
        between = lines[ends[k] + 1 : after.line - 1]
        if code.language != "text" and after.language == "text" and not "".join(between).strip():
            blocks[k] = Block(code.language, code.source, code.line, code.section, after.source)
    return blocks


def python_blocks(page: Path) -> list[Block]:
    return [b for b in fenced_blocks(page.read_text(encoding="utf-8")) if b.language == "python"]


def checks_called(source: str) -> set[str]:
    """The names of the `….exercises.check_*` functions that a block calls."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr.startswith("check_")
            and ast.unparse(node.func.value).split(".")[-1] == "exercises"
        ):
            names.add(node.func.attr)
    return names


def same_output(printed: str, shown: str) -> bool:
    """Equal up to trailing spaces and trailing blank lines."""

    def lines(text: str) -> list[str]:
        return [line.rstrip() for line in text.rstrip().splitlines()]

    return lines(printed) == lines(shown)


# --- running a page ----------------------------------------------------------------------------


def relative(page: Path) -> str:
    return str(page.relative_to(ROOT)) if page.is_relative_to(ROOT) else str(page)


def compiled(page: Path, block: Block):
    """The block's code; a SyntaxError names the page and its line."""
    # padded with newlines, so that a traceback gives the line on the page
    return compile("\n" * block.line + block.source, relative(page), "exec")


def _run(page: Path, block: Block, namespace: dict, passed: list[str]) -> None:
    where = f"{relative(page)}, line {block.line} ({block.section or 'preamble'})"
    code = compiled(page, block)
    printed = io.StringIO()
    passed.clear()
    problem = None
    try:
        with contextlib.redirect_stdout(printed):
            exec(code, namespace)
    except Exception as error:  # the page's frames only, not this function's
        frames = error.with_traceback(error.__traceback__.tb_next)
        problem = "raised:\n" + "".join(traceback.format_exception(frames))
    missing = sorted(checks_called(block.source) - set(passed))
    shown = block.output
    if problem is None and missing:
        problem = f"calls {', '.join(missing)}, which did not return"
    elif problem is None and shown is not None and not same_output(printed.getvalue(), shown):
        problem = (
            "prints something else than the ```text block after it shows.\n"
            f"--- printed:\n{printed.getvalue()}--- shown on the page:\n{shown}"
        )
    if problem is not None:
        raise PageFailure(f"{where} {problem}")


def _recording(name: str, check: Callable, passed: list[str]) -> Callable:
    """`check`, which also appends `name` to `passed` when it returns."""

    @functools.wraps(check)
    def wrapper(*args, **kwargs):
        result = check(*args, **kwargs)
        passed.append(name)
        return result

    return wrapper


@contextlib.contextmanager
def solution_environment() -> Iterator[list[str]]:
    """ENVIRONMENT's variables set, and a record of the `rt.exercises` checks that returned;
    the variables, the checks and the random states (which rt.seed_everything seeds) are
    restored on leaving."""
    saved = {name: os.environ.get(name) for name in ENVIRONMENT}
    checks = {
        name: getattr(exercises, name) for name in dir(exercises) if name.startswith("check_")
    }
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    passed: list[str] = []
    os.environ.update(ENVIRONMENT)
    for name, check in checks.items():
        setattr(exercises, name, _recording(name, check, passed))
    try:
        yield passed
    finally:
        for name, check in checks.items():
            setattr(exercises, name, check)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])


def run_page(page: Path, passed: list[str]) -> str:
    """Run the page's blocks (see the module's docstring); raise PageFailure at the first problem.

    `passed` is the record of `solution_environment()`. Returns a one-line summary.
    """
    blocks = python_blocks(page)
    if not blocks:
        raise PageFailure(f"{relative(page)} has no ```python block")
    not_run = [b for b in blocks if b.not_run]
    if len(not_run) > MAX_NOT_RUN:
        raise PageFailure(
            f"{relative(page)}: {len(not_run)} blocks are marked {NOT_RUN!r} (lines "
            f"{[b.line for b in not_run]}); at most {MAX_NOT_RUN} per page. Make the others cheap."
        )
    torch.manual_seed(0)
    preamble: dict = {"__name__": "__main__"}
    sections: dict[str, dict] = {}
    for block in blocks:
        if block.not_run:
            continue  # compiled by check_not_run
        if block.section == "":
            _run(page, block, preamble, passed)
        else:
            _run(page, block, sections.setdefault(block.section, dict(preamble)), passed)
    return (
        f"{page.name}: {len(blocks) - len(not_run)} blocks run in {len(sections)} sections, "
        f"{len(not_run)} not run"
    )


def check_not_run(page: Path, block: Block) -> str:
    """A block marked not run compiles and says why it is not run; returns the reason."""
    compiled(page, block)  # a SyntaxError names the page and the line
    if not block.not_run_reason:
        raise PageFailure(f"{relative(page)}, line {block.line}: say why after {NOT_RUN!r}")
    return block.not_run_reason


def missing_modules(page: Path) -> list[str]:
    """The optional modules (NEEDS) that the page imports and this Python lacks."""
    return [name for name in NEEDS.get(page.name, ()) if importlib.util.find_spec(name) is None]


def main(paths: list[str]) -> int:
    """Run the pages named (every page if none); 1 if any fails."""
    pages = [Path(path).resolve() for path in paths] or PAGES
    failed = 0
    for page in pages:
        if missing := missing_modules(page):
            print(f"{page.name}: skipped, needs {', '.join(missing)} (resnet_tutorial[frameworks])")
            continue
        try:
            with solution_environment() as passed, warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=CAP_WARNING)
                print(run_page(page, passed), flush=True)
            for block in python_blocks(page):
                if block.not_run:
                    print(f"  line {block.line} not run: {check_not_run(page, block)}")
        except (PageFailure, SyntaxError) as failure:
            print(f"FAILED {failure}", flush=True)
            failed += 1
    print(f"solutions: {len(pages)} pages, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
