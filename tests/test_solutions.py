"""The code on the solution pages (book/solutions/ch*.md, appendix_*.md) runs; its checks pass.

Nothing else executes these pages: the book shows them as written. So, for each page (one test
per page), the ```python blocks run in page order, and a block fails its page when

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

The chapters' quick scale applies (`RESNET_TUTORIAL_SCALE=quick`), and every `rt.fit` is capped
at 2 optimizer steps (`RESNET_TUTORIAL_MAX_STEPS=2`, as in `make test-full-path`) and every data
set to its first 20 images of each class (`RESNET_TUTORIAL_MAX_PER_CLASS=20`), so a solution
that trains or evaluates runs every line in seconds; its trained numbers are not checked (such a
block has no ```text output after it). Data come from `$RESNET_TUTORIAL_DATA`, as everywhere in the suite.

A page whose code needs an optional extra (the appendix on Keras and Lightning needs
`resnet_tutorial[frameworks]`) is listed in NEEDS, and skipped, with that reason, where the extra
is not installed (the oldest-torch run).

A block that cannot run on a CPU in CI (an open exercise that trains at full scale on a GPU)
says so in its first line, `# not run in CI: <why, and how long it takes where it runs>`. It is
still compiled, it gets its own test that is reported as skipped with that reason (`-ra` lists
them), and a page may hold at most MAX_NOT_RUN such blocks.

Other fences (```text, ```bash, math) are not run. The parser and the runner are unit-tested at
the end of this file, on hand-written pages: each kind of failure above is made to happen once.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import importlib.util
import io
import random
import re
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from resnet_tutorial import exercises

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = ROOT / "book" / "solutions"
PAGES = [*sorted(SOLUTIONS.glob("ch*.md")), *sorted(SOLUTIONS.glob("appendix_*.md"))]
# the optional modules a page imports, by page: where one is missing, the page is skipped
NEEDS = {"appendix_frameworks.md": ("keras",)}
NOT_RUN = "# not run in CI:"
MAX_NOT_RUN = 2  # per page: the rest must run, or be rewritten so that it can


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


def _relative(page: Path) -> str:
    return str(page.relative_to(ROOT)) if page.is_relative_to(ROOT) else str(page)


def _compiled(page: Path, block: Block):
    # padded with newlines, so that a traceback gives the line on the page
    return compile("\n" * block.line + block.source, _relative(page), "exec")


def _run(page: Path, block: Block, namespace: dict, passed: list[str]) -> None:
    where = f"{_relative(page)}, line {block.line} ({block.section or 'preamble'})"
    code = _compiled(page, block)
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
        pytest.fail(f"{where} {problem}", pytrace=False)


@pytest.fixture
def solution_environment(monkeypatch) -> Iterator[list[str]]:
    """The quick scale, 2-step fits, a record of the checks that returned; RNGs left as found."""
    monkeypatch.setenv("RESNET_TUTORIAL_SCALE", "quick")
    monkeypatch.setenv("RESNET_TUTORIAL_MAX_STEPS", "2")
    monkeypatch.setenv("RESNET_TUTORIAL_MAX_PER_CLASS", "20")  # what a 2-step fit can use
    passed: list[str] = []

    def recording(name, check):
        @functools.wraps(check)
        def wrapper(*args, **kwargs):
            result = check(*args, **kwargs)
            passed.append(name)
            return result

        return wrapper

    for name in dir(exercises):
        if name.startswith("check_"):
            monkeypatch.setattr(exercises, name, recording(name, getattr(exercises, name)))
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    yield passed
    random.setstate(states[0])  # rt.seed_everything seeds all three
    np.random.set_state(states[1])
    torch.set_rng_state(states[2])


def run_page(page: Path, passed: list[str]) -> str:
    """Run the page's blocks (see the module's docstring); fail at the first problem."""
    blocks = python_blocks(page)
    assert blocks, f"{_relative(page)} has no ```python block"
    not_run = [b for b in blocks if b.not_run]
    assert len(not_run) <= MAX_NOT_RUN, (
        f"{_relative(page)}: {len(not_run)} blocks are marked {NOT_RUN!r} (lines "
        f"{[b.line for b in not_run]}); at most {MAX_NOT_RUN} per page. Make the others cheap."
    )
    torch.manual_seed(0)
    preamble: dict = {"__name__": "__main__"}
    sections: dict[str, dict] = {}
    for block in blocks:
        if block.not_run:
            continue  # compiled by test_block_not_run_in_ci_compiles
        if block.section == "":
            _run(page, block, preamble, passed)
        else:
            _run(page, block, sections.setdefault(block.section, dict(preamble)), passed)
    return (
        f"{page.name}: {len(blocks) - len(not_run)} blocks run in {len(sections)} sections, "
        f"{len(not_run)} not run"
    )


def _missing(page: Path) -> list[str]:
    return [name for name in NEEDS.get(page.name, ()) if importlib.util.find_spec(name) is None]


@pytest.mark.filterwarnings(r"ignore:\$RESNET_TUTORIAL_MAX_STEPS=2")  # the cap says it is on
@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_solution_page_runs(page: Path, solution_environment: list[str]) -> None:
    if _missing(page):
        pytest.skip(f"{page.name} needs {', '.join(_missing(page))}: resnet_tutorial[frameworks]")
    print(run_page(page, solution_environment))  # shown by pytest -rP


NOT_RUN_BLOCKS = [
    pytest.param(page, block, id=f"{page.name}:{block.line}")
    for page in PAGES
    for block in python_blocks(page)
    if block.not_run
] or [pytest.param(None, None, id="none", marks=pytest.mark.skip(reason="no block is marked"))]


@pytest.mark.parametrize(("page", "block"), NOT_RUN_BLOCKS)
def test_block_not_run_in_ci_compiles(page: Path, block: Block) -> None:
    _compiled(page, block)  # a SyntaxError fails the test
    reason = block.source.lstrip().splitlines()[0].removeprefix(NOT_RUN).strip()
    assert reason, f"{_relative(page)}, line {block.line}: say why after {NOT_RUN!r}"
    pytest.skip(f"{_relative(page)}, line {block.line}: compiles; not run in CI: {reason}")


# --- the parser, on a hand-written page --------------------------------------------------------

PAGE = """\
# Chapter 9 solutions

```python
import math
```

## Exercise 1: one

Some prose with `inline code` and a ```` ``` ```` in it.

```python
print(math.pi > 3)
```

```text
True
```

````markdown
```python
not_a_block()
```
````

## Exercise 2: two

```python
# not run in CI: needs a GPU (about 1 min on a T4)
train_for_an_hour()
```

Prose between, so the next text is not its output.

```text
loss 0.1
```

```bash
python -m resnet_tutorial --epochs 1
```

  ~~~{code-block} Python
  x = 1
  ~~~
"""


def test_fenced_blocks_reads_a_hand_written_page() -> None:
    blocks = fenced_blocks(PAGE)
    assert [(b.language, b.line, b.section) for b in blocks] == [
        ("python", 3, ""),
        ("python", 11, "Exercise 1: one"),
        ("text", 15, "Exercise 1: one"),
        ("markdown", 19, "Exercise 1: one"),
        ("python", 27, "Exercise 2: two"),
        ("text", 34, "Exercise 2: two"),
        ("bash", 38, "Exercise 2: two"),
        ("python", 42, "Exercise 2: two"),
    ]
    preamble, first, _, nested, gpu, _, _, indented = blocks
    assert preamble.source == "import math\n" and preamble.output is None
    assert first.source == "print(math.pi > 3)\n" and first.output == "True\n"
    assert nested.source == "```python\nnot_a_block()\n```\n"  # a longer fence holds it as text
    assert gpu.not_run and gpu.output is None  # prose stands between it and the text
    assert not first.not_run
    assert indented.source == "x = 1\n"  # the fence's indentation is removed


def test_checks_called_finds_only_the_exercise_checks() -> None:
    source = (
        "rt.exercises.check_residual(Residual)\n"
        "resnet_tutorial.exercises.check_stage(make_stage)\n"
        "for f in fs:\n    exercises.check_shortcut(f)\n"
        "check_other(x)\nrt.check_thing(y)\n"
    )
    assert checks_called(source) == {"check_residual", "check_stage", "check_shortcut"}


def test_same_output_ignores_only_trailing_whitespace() -> None:
    assert same_output("✓ done  \n\n", "✓ done\n")
    assert not same_output("✓ done\n", "✓ done, 12 parameters\n")
    assert not same_output("", "✓ done\n")


def test_the_pages_are_found() -> None:
    assert [page.name for page in PAGES][:4] == ["ch01.md", "ch02.md", "ch03.md", "ch04.md"]
    assert "appendix_frameworks.md" in [page.name for page in PAGES]
    assert set(NEEDS) <= {page.name for page in PAGES}


# --- the runner, on hand-written pages ---------------------------------------------------------

GOOD = """\
```python
import resnet_tutorial as rt
```

## Exercise 1

```python
class Residual(rt.nn.Module if hasattr(rt, "nn") else object):
    pass

answer = 6 * 7
print(answer)
```

```text
42
```

## Exercise 2

```python
# not run in CI: needs a GPU (about 1 min on a T4)
undefined_on_a_cpu()
```

```python
assert "answer" not in globals(), "sections share nothing but the preamble"
print(rt.__name__)
```
"""


def write(tmp_path: Path, text: str) -> Path:
    page = tmp_path / "ch09.md"
    page.write_text(text, encoding="utf-8")
    return page


def test_run_page_runs_each_section_after_the_preamble_only(tmp_path, solution_environment):
    assert run_page(write(tmp_path, GOOD), solution_environment) == (
        "ch09.md: 3 blocks run in 2 sections, 1 not run"
    )


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("42\n```", "41\n```", "prints something else than the ```text block"),
        ("print(rt.__name__)", "print(answer)", "NameError: name 'answer' is not defined"),
        (
            "answer = 6 * 7",
            "from torch import nn\nrt.exercises.check_residual(nn.Identity)\nanswer = 42",
            "AssertionError: .*Hint:",
        ),
        (
            "answer = 6 * 7",
            "if 6 * 7 == 41:\n    rt.exercises.check_residual(None)\nanswer = 42",
            "calls check_residual, which did not return",
        ),
    ],
    ids=["output", "isolation", "failing check", "check not reached"],
)
def test_run_page_fails_on_each_problem(tmp_path, solution_environment, old, new, message):
    assert GOOD.count(old) == 1
    with pytest.raises(pytest.fail.Exception, match=f"(?s)ch09.md, line .*{message}"):
        run_page(write(tmp_path, GOOD.replace(old, new)), solution_environment)
