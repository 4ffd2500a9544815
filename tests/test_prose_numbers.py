"""The check that every measured number in the chapters' prose is glued (.ci/prose_numbers.py).

The chapters are held to the ratchet (.ci/prose_numbers.json): a chapter's count of unglued
numbers may only fall, and a new chapter starts at zero. The finder itself is tested below on
small markdown strings written by hand, each with the answer a reader would give.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import ci

prose = ci.load("prose_numbers")
CHAPTERS = prose.chapters()
RATCHET = prose.load_ratchet()


def name(path: Path) -> str:
    return path.relative_to(prose.ROOT).as_posix()


# --- the chapters against the ratchet -----------------------------------------------------------


@pytest.mark.parametrize("path", CHAPTERS, ids=[name(p) for p in CHAPTERS])
def test_chapter_has_no_more_unglued_numbers_than_the_ratchet(path: Path) -> None:
    assert name(path) in RATCHET, (
        f"{name(path)} is not in .ci/prose_numbers.json: a new chapter starts at zero unglued "
        "numbers; glue them, then run `python .ci/prose_numbers.py --update`"
    )
    found = prose.findings(path)
    assert len(found) <= RATCHET[name(path)], (
        f"{name(path)} has {len(found)} unglued numbers in its prose, the ratchet allows "
        f"{RATCHET[name(path)]}; glue the new ones ({{glue:text}}) or cite their source:\n  "
        + "\n  ".join(map(str, found))
    )


# A chapter over the limit, with the count it may not exceed until it is rewritten (none now).
LONGER: dict[str, int] = {}


@pytest.mark.parametrize("path", CHAPTERS, ids=[name(p) for p in CHAPTERS])
def test_chapter_prose_stays_within_the_word_limit(path: Path) -> None:
    limit = LONGER.get(name(path), prose.MAX_WORDS)
    assert prose.words(path) <= limit, (
        f"{name(path)} has {prose.words(path):,} words of prose, more than {limit:,}: cut, or move "
        "what a reader needs only sometimes into a collapsed note"
    )


def test_words_count_prose_and_count_a_formula_or_a_glued_number_as_one(tmp_path: Path) -> None:
    cells = [
        {"cell_type": "markdown", "source": ["# Two words\n", "It ends at {glue:text}`e:.2f` %."]},
        {"cell_type": "code", "source": ["print('five words in a cell')"], "outputs": []},
        {"cell_type": "markdown", "source": ["Here $y = F(x) + x$ holds.\n```python\nx = 1\n```"]},
        {"cell_type": "markdown", "source": ["```{note}\n:class: dropdown\nA he's note.\n```"]},
    ]
    path = tmp_path / "ch09.ipynb"
    path.write_text(json.dumps({"cells": cells}), encoding="utf-8")
    # "Two words" 2, "It ends at … %." 4, "Here … holds." 3, "A he's note." 3
    assert prose.words(path) == 12


def test_the_book_has_chapters() -> None:
    assert "book/ch01_residual_learning.ipynb" in map(name, CHAPTERS)


# --- the finder on hand-written markdown ----------------------------------------------------------


def numbers(markdown: str) -> list[str]:
    """The numbers found, as the bold part of each excerpt."""
    return [finding.excerpt.split("**")[1] for finding in prose.find(markdown)]


def test_a_bare_percentage_is_found() -> None:
    assert numbers("The run ends at 12.64 % test error.") == ["12.64 %"]
    assert numbers("The run ends at 12.64% test error.") == ["12.64%"]


@pytest.mark.parametrize(
    "markdown, number",
    [
        ("The median epoch took 67 s.", "67 s"),
        ("The slowest epoch took 36 min.", "36 min"),
        ("The slowest epoch took 36 minutes.", "36 minutes"),
        ("The JSON records 5.8 h of training.", "5.8 h"),
        ("It trains at 2,310 img/s on the GPU.", "2,310 img/s"),
        ("ResNet-50 costs 4.089 GMAC at 224×224.", "4.089 GMAC"),
        ("The block costs 231 MMAC.", "231 MMAC"),
        ("torchvision lists 3.66 GFLOPs.", "3.66 GFLOPs"),
        ("The three have 25,557,032 parameters.", "25,557,032 parameters"),
        ("A network of 0.27M parameters.", "0.27M parameters"),
        ("It is 3.89 points above the paper.", "3.89 points"),
        ("It gains 0.5 pt of accuracy.", "0.5 pt"),
        ("bf16 is 1.6× faster here.", "1.6×"),
    ],
)
def test_each_unit_is_found(markdown: str, number: str) -> None:
    assert numbers(markdown) == [number]


@pytest.mark.parametrize(
    "markdown",
    [
        "The run ends at {glue:text}`fast_error:.2%` test error.",
        "The run ends at {glue:text}`fast_error:.2f` % test error.",
        "{cite:t}`he2016deep` report 8.75 % for ResNet-20.",
        "ResNet-110 reaches 6.43 % (Table 6) {cite:p}`he2016deep`.",
        "An epoch of 50,000 images is 391 steps of batch 128, and the run is 164 epochs.",
        "The rate is divided by 10 at 50 % and 75 % of the iterations.",
        "With ten classes, chance is 10 % accuracy.",
        "We train with 3 seeds and 10 labels per class.",
        "Its first layer is a 3×3 convolution on 32 × 32 images, four times (4×) wider.",
        "The option `--threshold 12 %` sets it.",
        "The loss is $\\ell = 12.5\\,\\%$ here.",
        "$$\nt = 5 s\n$$",
        "```python\nerror = 12.64 %  # 5 s\n```",
        "```{figure} plot.png\n:width: 80%\n```",
        "See [the run](https://example.org/?error=12%) for more.",
        "See https://example.org/?error=12% for more.",
    ],
)
def test_not_found(markdown: str) -> None:
    assert numbers(markdown) == []


def test_the_allow_list_matches_a_phrase_not_a_number() -> None:
    assert numbers("Cat gets 10 % of the predictions.") == ["10 %"]
    assert numbers("It took 391 s.") == ["391 s"]


def test_prose_inside_a_note_is_read_but_code_inside_it_is_not() -> None:
    markdown = "````{note}\n:class: dropdown\nIt took 5 s.\n```python\nx = 7 %\n```\n````"
    assert numbers(markdown) == ["5 s"]


def test_a_citation_covers_its_own_sentence_only() -> None:
    markdown = "Ours ends at 12.64 %. {cite:t}`he2016deep` report 8.75 % for ResNet-20."
    assert numbers(markdown) == ["12.64 %"]
    markdown = "Ours ends at 12.64 %. `rt.fit` takes the steps of {cite:t}`he2016deep`."
    assert numbers(markdown) == ["12.64 %"]
    markdown = "- Ours ends at 12.64 %\n- the paper's at 8.75 % {cite:p}`he2016deep`"
    assert numbers(markdown) == ["12.64 %"]


def test_an_abbreviation_does_not_end_the_sentence() -> None:
    assert numbers("As in Sec. 4.2 of {cite:t}`he2016deep`, it ends at 8.75 %.") == []
    assert numbers("Eq. {eq}`eq-step` of {cite:t}`he2016deep` gives 6.43 %.") == []


def test_findings_name_the_notebook_and_the_cell(tmp_path: Path) -> None:
    cells = [
        {"cell_type": "markdown", "source": ["# A chapter\n", "With 3 seeds."]},
        {"cell_type": "code", "source": ["error = 0.12  # 12 %"], "outputs": []},
        {"cell_type": "markdown", "source": ["It took 5 s."]},
    ]
    path = tmp_path / "ch09.ipynb"
    path.write_text(json.dumps({"cells": cells}), encoding="utf-8")
    assert list(map(str, prose.findings(path))) == ['ch09.ipynb cell 2: "It took **5 s**."']


def test_chapters_are_the_notebooks_of_the_toc(tmp_path: Path) -> None:
    for page in ("intro.md", "ch01.ipynb", "ch02.md", "ch03.ipynb", "stray.ipynb"):
        (tmp_path / page).write_text("{}", encoding="utf-8")
    toc = "root: intro\nparts:\n  - chapters:\n      - file: ch03\n      - file: ch02\n"
    (tmp_path / "_toc.yml").write_text(toc + "      - file: ch01.ipynb\n", encoding="utf-8")
    assert prose.chapters(tmp_path) == [tmp_path / "ch03.ipynb", tmp_path / "ch01.ipynb"]


# --- the ratchet's update -------------------------------------------------------------------------


def test_update_lowers_counts_and_refuses_to_raise_them(tmp_path: Path) -> None:
    ratchet = tmp_path / "ratchet.json"
    assert prose.update({"a.ipynb": 5, "b.ipynb": 2}, ratchet) == []  # the first one sets them
    assert prose.update({"a.ipynb": 3, "b.ipynb": 2, "new.ipynb": 0}, ratchet) == []
    assert prose.load_ratchet(ratchet) == {"a.ipynb": 3, "b.ipynb": 2, "new.ipynb": 0}

    refused = prose.update({"a.ipynb": 4, "b.ipynb": 1, "new.ipynb": 0, "late.ipynb": 1}, ratchet)
    assert len(refused) == 2
    assert "a.ipynb: 4 findings, the ratchet allows 3" in refused[0]
    assert "late.ipynb: 1 findings, the ratchet allows 0" in refused[1]
    assert all("glue" in message for message in refused)
    assert prose.load_ratchet(ratchet) == {"a.ipynb": 3, "b.ipynb": 2, "new.ipynb": 0}
