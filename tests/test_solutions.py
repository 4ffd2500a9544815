"""The solutions runner (.ci/run_solutions.py) on the book's solution pages, and on pages
written by hand.

One test per page (book/solutions/ch*.md, appendix_*.md) runs its code as the runner's docstring
says: each ```python block runs, each `rt.exercises.check_*` it calls returns, and what it
prints is the ```text block shown after it. A page that needs an optional extra (NEEDS) is
skipped where the extra is missing. A block marked `# not run in CI: <why>` gets a test of its
own that compiles it and is reported as skipped with that reason (`-ra` lists them).

The parser and the runner are unit-tested at the end of this file, on hand-written pages: each
kind of failure is made to happen once.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from support import ci

from resnet_tutorial import exercises

solutions = ci.load("run_solutions")


@pytest.fixture
def solution_environment() -> Iterator[list[str]]:
    """The runner's environment (quick scale, 2-step fits, 20 images a class), and the record
    of the checks that returned; all restored after the test."""
    with solutions.solution_environment() as passed:
        yield passed


@pytest.mark.filterwarnings(f"ignore:{solutions.CAP_WARNING}")  # the cap says it is on
@pytest.mark.parametrize("page", solutions.PAGES, ids=lambda page: page.name)
def test_solution_page_runs(page: Path, solution_environment: list[str]) -> None:
    if missing := solutions.missing_modules(page):
        pytest.skip(f"{page.name} needs {', '.join(missing)}: resnet_tutorial[frameworks]")
    try:
        print(solutions.run_page(page, solution_environment))  # shown by pytest -rP
    except solutions.PageFailure as failure:
        pytest.fail(str(failure), pytrace=False)


NOT_RUN_BLOCKS = [
    pytest.param(page, block, id=f"{page.name}:{block.line}")
    for page in solutions.PAGES
    for block in solutions.python_blocks(page)
    if block.not_run
] or [pytest.param(None, None, id="none", marks=pytest.mark.skip(reason="no block is marked"))]


@pytest.mark.parametrize(("page", "block"), NOT_RUN_BLOCKS)
def test_block_not_run_in_ci_compiles(page: Path, block) -> None:
    try:
        reason = solutions.check_not_run(page, block)  # a SyntaxError fails the test
    except solutions.PageFailure as failure:
        pytest.fail(str(failure), pytrace=False)
    where = f"{solutions.relative(page)}, line {block.line}"
    pytest.skip(f"{where}: compiles; not run in CI: {reason}")


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
    blocks = solutions.fenced_blocks(PAGE)
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
    assert solutions.checks_called(source) == {"check_residual", "check_stage", "check_shortcut"}


def test_same_output_ignores_only_trailing_whitespace() -> None:
    assert solutions.same_output("✓ done  \n\n", "✓ done\n")
    assert not solutions.same_output("✓ done\n", "✓ done, 12 parameters\n")
    assert not solutions.same_output("", "✓ done\n")


def test_the_pages_are_found() -> None:
    assert [page.name for page in solutions.PAGES][:4] == [
        "ch01.md",
        "ch02.md",
        "ch03.md",
        "ch04.md",
    ]
    assert "appendix_frameworks.md" in [page.name for page in solutions.PAGES]
    assert set(solutions.NEEDS) <= {page.name for page in solutions.PAGES}


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
    assert solutions.run_page(write(tmp_path, GOOD), solution_environment) == (
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
    with pytest.raises(solutions.PageFailure, match=f"(?s)ch09.md, line .*{message}"):
        solutions.run_page(write(tmp_path, GOOD.replace(old, new)), solution_environment)


def test_run_page_rejects_a_page_without_code_or_with_too_many_blocks_not_run(
    tmp_path, solution_environment
):
    with pytest.raises(solutions.PageFailure, match="ch09.md has no ```python block"):
        solutions.run_page(write(tmp_path, "# Prose only\n\n```text\n42\n```\n"), [])
    gpu = "```python\n# not run in CI: needs a GPU\ntrain()\n```\n\n"
    too_many = r"3 blocks are marked .*\(lines \[1, 6, 11\]\); at most 2"
    with pytest.raises(solutions.PageFailure, match=too_many):
        solutions.run_page(write(tmp_path, gpu * 3), solution_environment)


def test_a_block_not_run_must_compile_and_say_why(tmp_path):
    page = write(tmp_path, GOOD)
    (gpu,) = [block for block in solutions.python_blocks(page) if block.not_run]
    assert solutions.check_not_run(page, gpu) == "needs a GPU (about 1 min on a T4)"
    silent = solutions.Block("python", "# not run in CI:\ntrain()\n", 30, "Exercise 3")
    with pytest.raises(solutions.PageFailure, match=r"ch09.md, line 30: say why after"):
        solutions.check_not_run(page, silent)
    broken = solutions.Block("python", "# not run in CI: a GPU\ntrain(\n", 30, "Exercise 3")
    with pytest.raises(SyntaxError) as error:
        solutions.check_not_run(page, broken)
    assert error.value.filename.endswith("ch09.md") and error.value.lineno == 32


def test_solution_environment_sets_the_caps_and_restores_what_it_changed(monkeypatch):
    monkeypatch.setenv("RESNET_TUTORIAL_SCALE", "full")
    monkeypatch.delenv("RESNET_TUTORIAL_MAX_STEPS", raising=False)
    check = exercises.check_residual
    torch.manual_seed(5)
    expected = torch.rand(2)
    torch.manual_seed(5)
    with solutions.solution_environment() as passed:
        assert [os.environ.get(f"RESNET_TUTORIAL_{name}") for name in
                ("SCALE", "MAX_STEPS", "MAX_PER_CLASS")] == ["quick", "2", "20"]  # fmt: skip
        exercises.check_residual(lambda x, f: f(x) + x)
        assert passed == ["check_residual"]
        torch.rand(7)  # what a page draws does not move the caller's random state
    assert os.environ["RESNET_TUTORIAL_SCALE"] == "full"
    assert "RESNET_TUTORIAL_MAX_STEPS" not in os.environ
    assert exercises.check_residual is check
    assert torch.equal(torch.rand(2), expected)


def test_main_runs_the_pages_it_is_given_and_fails_on_a_failing_one(tmp_path, capsys):
    page = write(tmp_path, GOOD)
    assert solutions.main([str(page)]) == 0
    out = capsys.readouterr().out
    assert "ch09.md: 3 blocks run in 2 sections, 1 not run\n" in out
    assert "line 21 not run: needs a GPU" in out and "1 pages, 0 failed" in out
    assert solutions.main([str(write(tmp_path, GOOD.replace("42\n```", "41\n```")))]) == 1
    assert "FAILED " in capsys.readouterr().out
