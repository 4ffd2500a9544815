"""The notebook linter (.ci/lint_notebooks.py) on the chapter notebooks as stored, and on
small hand-made notebooks.

One test per notebook runs every check of the linter on it (`test_notebook`), and one checks
that _toc.yml lists exactly the pages under book/. The checks themselves are unit-tested below
on hand-made notebooks, each made to fail once, so this file tests something even before the
first chapter exists.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from support import ci

lint = ci.load("lint_notebooks")
ROOT = lint.ROOT


# --- the real notebooks and the real toc ---------------------------------------------------------


@pytest.mark.parametrize(
    "path", lint.NOTEBOOKS, ids=[p.relative_to(ROOT).as_posix() for p in lint.NOTEBOOKS]
)
def test_notebook(path: Path) -> None:
    nb = json.loads(path.read_text(encoding="utf-8"))
    problems = lint.lint(nb)
    assert not problems, f"{path.relative_to(ROOT)}:\n  " + "\n  ".join(problems)


def test_toc_lists_exactly_the_pages_under_book() -> None:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    problems = lint.check_toc_agrees(toc)
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


@pytest.mark.parametrize("check", lint.CHECKS, ids=lambda c: c.__name__)
def test_a_good_notebook_passes(check: Callable[[dict], list[str]]) -> None:
    nb = good_notebook()
    assert (check(nb, URL) if check is lint.check_colab_install_cell else check(nb)) == []


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
    problems = lint.check_asserts_hidden(nb)
    assert problems == ([] if not hidden else ["cell 1 only asserts: tag it hide-input"])
    nb = notebook(code(source, count=1, tags=("hide-input",)))
    assert lint.check_asserts_hidden(nb) == []


def test_outputs_stored_rejects_a_notebook_without_outputs() -> None:
    nb = notebook(code(COLAB_CELL), code("import resnet_tutorial"), code("print(1)"))
    problems = lint.check_outputs_stored(nb)
    assert "no stored outputs" in problems[0]
    assert len(problems) == 4  # and each of the three cells was never run


def test_outputs_stored_rejects_a_cell_never_run() -> None:
    nb = good_notebook()
    nb["cells"][2]["execution_count"] = None
    one_problem(lint.check_outputs_stored(nb), "cell 3 (import resnet_tutorial as rt)", "never run")


def test_outputs_stored_ignores_cells_tagged_skip_execution() -> None:
    nb = good_notebook()
    nb["cells"].append(code("train_for_a_day()", tags=("skip-execution",)))
    assert lint.check_outputs_stored(nb) == []


def test_no_errors_rejects_an_error_output() -> None:
    nb = good_notebook()
    error = {"output_type": "error", "ename": "ValueError", "evalue": "depth=21", "traceback": []}
    nb["cells"][4]["outputs"].append(error)
    one_problem(lint.check_no_errors(nb), "cell 5", "error output ValueError: depth=21")


def test_no_errors_rejects_a_printed_traceback() -> None:
    nb = good_notebook()
    nb["cells"][4]["outputs"].append(stream("Traceback (most recent call last):\n", "stderr"))
    one_problem(lint.check_no_errors(nb), "prints a traceback on stderr")


@pytest.mark.parametrize(
    "counts", [(1, 2, 4, 3, 5, 6), (2, 3, 4, 5, 6, 7), (1, 2, 3, None, 5, 6), (1, 2, 3, 4, 5, 5)]
)
def test_execution_order_rejects_counts_out_of_order(counts: tuple) -> None:
    nb = good_notebook()
    run_cells = [c for c in nb["cells"] if c["cell_type"] == "code" and lint.executes(c)]
    for cell, count in zip(run_cells, counts, strict=True):
        cell["execution_count"] = count
    one_problem(lint.check_execution_order(nb), "expected", "one run from the top")


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
    one_problem(
        lint.check_no_volatile_output(nb), "cell 5", f"prints {kind}", "NBVAL_IGNORE_OUTPUT"
    )


def test_volatile_output_is_rejected_in_a_result_and_in_html() -> None:
    nb = good_notebook()
    nb["cells"][7]["outputs"] = [result("<Figure at 0x7f00deadbeef>", 6)]
    nb["cells"][7]["outputs"][0]["data"]["text/html"] = "<p>saved to /home/me/run.pt</p>"
    problems = lint.check_no_volatile_output(nb)
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
    assert lint.check_no_volatile_output(nb) == []


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
    assert lint.check_no_volatile_output(nb) == []


def test_a_marker_nbval_does_not_recognise_does_not_hide_output() -> None:
    nb = good_notebook()
    nb["cells"][4] = code("# NBVAL_IGNORE_OUTPUT: timings\nfit(model)", stream("12.3 s\n"), count=3)
    one_problem(lint.check_no_volatile_output(nb), "prints a timing")


@pytest.mark.parametrize(
    "source", ["import torch", "# import resnet_tutorial as rt", 'print("import resnet_tutorial")']
)
def test_imports_package_rejects_a_notebook_that_does_not_import_it(source: str) -> None:
    nb = good_notebook()
    nb["cells"][2] = code(source, count=2)
    one_problem(lint.check_imports_package(nb), "no code cell imports resnet_tutorial")


@pytest.mark.parametrize(
    "source", ["from resnet_tutorial import plot", "import torch\nimport resnet_tutorial"]
)
def test_imports_package_accepts_other_import_forms(source: str) -> None:
    nb = good_notebook()
    nb["cells"][2] = code(source, count=2)
    assert lint.check_imports_package(nb) == []


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
    assert lint.check_colab_install_cell(with_first_cell(source), URL) == []


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
    problems = lint.check_colab_install_cell(with_first_cell(source), URL)
    assert problems, source
    assert any(phrase in p for p in problems), problems
    assert all(p.startswith("the first code cell, cell 2 (") for p in problems), problems


def test_colab_cell_rejects_stored_outputs() -> None:
    nb = with_first_cell(COLAB_CELL, stream("Successfully installed resnet_tutorial-0.1.0\n"))
    one_problem(lint.check_colab_install_cell(nb, URL), "stored outputs", "saved from Colab")


def test_colab_cell_must_be_the_first_code_cell() -> None:
    nb = good_notebook()
    nb["cells"][1], nb["cells"][2] = nb["cells"][2], nb["cells"][1]
    one_problem(
        lint.check_colab_install_cell(nb, URL),
        "the first code cell, cell 2 (import resnet_tutorial as rt):",
        "outside a Colab guard",
    )
    assert lint.check_colab_install_cell(notebook(markdown("# Only prose")), URL) == [
        "no code cell: the first code cell must install the package on Colab"
    ]


def test_kernelspec_must_be_python3() -> None:
    nb = good_notebook()
    nb["metadata"]["kernelspec"]["name"] = "venv-resnet"
    one_problem(lint.check_kernelspec(nb), "'venv-resnet'")


def test_the_repository_url_is_a_github_repository() -> None:
    # the install cell and the launch buttons both use it
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", lint.REPOSITORY_URL)


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
    assert lint.check_toc_agrees(TOC, tmp_path, tmp_path / "book") == []


def test_toc_check_rejects_a_page_missing_from_the_toc(tmp_path: Path) -> None:
    write_book(tmp_path, [*PAGES, "book/ch02_shortcuts.ipynb"])
    one_problem(
        lint.check_toc_agrees(TOC, tmp_path, tmp_path / "book"),
        "book/ch02_shortcuts.ipynb is not in _toc.yml",
    )


def test_toc_check_rejects_an_entry_without_a_file(tmp_path: Path) -> None:
    write_book(tmp_path, [p for p in PAGES if p != "book/solutions/ch01.md"])
    one_problem(
        lint.check_toc_agrees(TOC, tmp_path, tmp_path / "book"),
        "lists book/solutions/ch01, but there is no",
    )


def test_toc_check_rejects_a_page_listed_twice(tmp_path: Path) -> None:
    write_book(tmp_path, PAGES)
    toc = {
        **TOC,
        "parts": [*TOC["parts"], {"caption": "Again", "chapters": [{"file": "book/intro"}]}],
    }
    one_problem(lint.check_toc_agrees(toc, tmp_path, tmp_path / "book"), "more than once")


def test_main_lints_the_notebooks_it_is_given_and_fails_on_a_problem(tmp_path, capsys) -> None:
    good, bad = tmp_path / "good.ipynb", tmp_path / "bad.ipynb"
    nb = with_first_cell(COLAB_CELL.replace(URL, lint.REPOSITORY_URL))  # main checks the real URL
    good.write_text(json.dumps(nb), encoding="utf-8")
    nb["metadata"]["kernelspec"]["name"] = "venv-resnet"
    bad.write_text(json.dumps(nb), encoding="utf-8")
    assert lint.main([str(good)]) == 0
    assert capsys.readouterr().out == f"{good}: ok\n"
    assert lint.main([str(good), str(bad)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{good}: ok",
        f"{bad}: 1 problem(s)",
        "  kernelspec is 'venv-resnet', not 'python3' (CI has no other kernel)",
    ]


def test_markdown_comment_rejects_a_line_that_myst_would_drop() -> None:
    nb = notebook(markdown("The best epoch, 12.16\n% at epoch 89, is chosen on the test set."))
    one_problem(lint.check_no_markdown_comment(nb), "markdown cell 1", "% at epoch", "reflow")


def test_markdown_comment_leaves_percent_signs_in_code_and_math_alone() -> None:
    source = "It ends at 12 %.\n```python\n% not markdown\n```\n$$\n% a LaTeX comment\nx\n$$"
    assert lint.check_no_markdown_comment(notebook(markdown(source))) == []
