"""The book's configuration and the pure helpers of .ci/check_site.py.

Fast checks that need neither a build nor a browser: `make test-site` does the real thing.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pybtex.database
import pytest
import yaml
from sphinx.util.matching import get_matching_files

ROOT = Path(__file__).resolve().parent.parent
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))


def _load_check_site():
    """.ci/check_site.py (not a package)."""
    path = Path(__file__).parent.parent / ".ci" / "check_site.py"
    spec = importlib.util.spec_from_file_location("check_site", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


check_site = _load_check_site()


# --- _config.yml ---------------------------------------------------------------------------------


def test_the_book_shows_stored_outputs_and_builds_only_the_toc() -> None:
    assert CONFIG["execute"]["execute_notebooks"] == "off"  # nbval checks the stored outputs
    assert CONFIG["only_build_toc_files"] is True


def test_the_build_fetches_nothing_from_the_internet() -> None:
    extensions = CONFIG["sphinx"]["config"]["extensions"]
    assert "sphinx.ext.intersphinx" not in extensions
    assert not CONFIG["sphinx"]["config"].get("intersphinx_mapping")


def sphinx_sources(root: Path) -> list[str]:
    """The .md and .ipynb files Sphinx finds under `root`, walking as Sphinx does."""
    found = get_matching_files(root, exclude_patterns=CONFIG["exclude_patterns"])
    return [path for path in found if path.endswith((".md", ".ipynb"))]


def test_sphinx_reads_no_markdown_or_notebook_outside_book() -> None:
    """Sphinx walks the whole repository root: all that is not the book must be excluded."""
    outside = [path for path in sphinx_sources(ROOT) if not path.startswith("book/")]
    assert outside == []


@pytest.mark.parametrize(
    "path",
    [
        "README.md",
        ".github/workflows/README.md",
        ".venv/lib/python3.11/site-packages/x/README.md",
        "venv/README.md",
        "tests/fixtures/a.ipynb",
        "benchmarks/README.md",
        "resnet_tutorial/notes.md",
        "book/.ipynb_checkpoints/ch01_residual_learning-checkpoint.ipynb",
        "_build/html/_sources/book/intro.md",
        "data/cifar10/README.md",
        "resnet_tutorial.egg-info/README.md",
    ],
)
def test_exclude_patterns_cover(tmp_path: Path, path: str) -> None:
    for name in (path, "book/intro.md"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("# x\n")
    assert sphinx_sources(tmp_path) == ["book/intro.md"]


def test_launch_buttons_and_repository() -> None:
    assert CONFIG["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", CONFIG["repository"]["url"])
    assert CONFIG["repository"]["branch"] == "main"
    assert CONFIG["repository"]["path_to_book"] == ""  # the root, so links have no "./"


# --- references.bib ------------------------------------------------------------------------------

BIB = pybtex.database.parse_file(str(ROOT / CONFIG["bibtex_bibfiles"][0]))
CITE = re.compile(r"\{cite(?::\w+)?\}`([^`]+)`")


def test_every_citation_in_the_book_is_in_references_bib() -> None:
    cited = set()
    for path in (ROOT / "book").rglob("*"):
        if path.suffix in (".md", ".ipynb") and ".ipynb_checkpoints" not in path.parts:
            for keys in CITE.findall(path.read_text(encoding="utf-8")):
                cited.update(key.strip() for key in keys.split(","))
    assert cited, "the book cites nothing"
    assert sorted(cited - set(BIB.entries)) == []


def test_same_authors_and_year_are_told_apart_by_a_letter() -> None:
    # The author-year labels would print "He et al., 2016" for two papers: APA's 2016a, 2016b.
    groups: dict[tuple[str, str], list[str]] = {}
    for entry in BIB.entries.values():
        first = str(entry.persons["author"][0].last_names[0])
        groups.setdefault((first, entry.fields["year"][:4]), []).append(entry.fields["year"])
    for (author, year), years in groups.items():
        if len(years) == 1:
            assert years == [year], f"{author} {year}: a letter with nothing to tell apart"
        else:
            assert sorted(years) == [year + "abcdefgh"[i] for i in range(len(years))], author


@pytest.mark.parametrize("key", sorted(BIB.entries))
def test_bib_entry_is_complete(key: str) -> None:
    entry = BIB.entries[key]
    assert entry.persons.get("author"), f"{key} has no author"
    for field in ("title", "year"):
        assert entry.fields.get(field), f"{key} has no {field}"
    assert re.fullmatch(r"(19|20)\d\d[a-z]?", entry.fields["year"])
    if entry.type == "inproceedings":
        assert entry.fields.get("booktitle"), f"{key} has no booktitle"
    assert {"doi", "url", "eprint"} & set(entry.fields), f"{key}: give a doi, url or eprint"


# --- check_site's helpers ------------------------------------------------------------------------

NESTED_TOC = {
    "format": "jb-book",
    "root": "book/intro",
    "parts": [
        {
            "caption": "Chapters",
            "chapters": [
                {"file": "book/ch01_residual_learning.ipynb"},
                {"file": "book/ch02_shortcuts"},
            ],
        },
        {
            "caption": "Solutions",
            "chapters": [
                {"file": "book/solutions/index", "sections": [{"file": "book/solutions/ch01.md"}]}
            ],
        },
        {"caption": "Appendix", "chapters": [{"url": "https://example.org", "title": "Link"}]},
    ],
}


def test_toc_pages_lists_root_then_every_file_in_reading_order() -> None:
    assert check_site.toc_pages(NESTED_TOC) == [
        "book/intro",
        "book/ch01_residual_learning",
        "book/ch02_shortcuts",
        "book/solutions/index",
        "book/solutions/ch01",
    ]


def test_toc_pages_of_the_real_toc_start_at_the_introduction() -> None:
    pages = check_site.toc_pages(TOC)
    assert pages[0] == "book/intro"
    assert "book/bibliography" in pages and "book/solutions/index" in pages


ORIGIN = "http://127.0.0.1:8765"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    (tmp_path / "book" / "solutions").mkdir(parents=True)
    (tmp_path / "index.html").write_text("<html></html>")
    (tmp_path / "book" / "intro.html").write_text('<h1 id="top">Intro</h1><a name="old"></a>')
    (tmp_path / "book" / "solutions" / "index.html").write_text("<h1>Solutions</h1>")
    (tmp_path / "book" / "my page.html").write_text('<p id="é-1">x</p>')
    return tmp_path


@pytest.mark.parametrize(
    ("href", "file", "fragment"),
    [
        (f"{ORIGIN}/book/intro.html", "book/intro.html", ""),
        (f"{ORIGIN}/book/intro.html#top", "book/intro.html", "top"),
        (f"{ORIGIN}/book/solutions/", "book/solutions/index.html", ""),
        (f"{ORIGIN}/book/solutions", "book/solutions/index.html", ""),
        (f"{ORIGIN}/", "index.html", ""),
        (f"{ORIGIN}/book/my%20page.html#%C3%A9-1", "book/my page.html", "é-1"),
        (f"{ORIGIN}/book/intro.html?highlight=x#top", "book/intro.html", "top"),
    ],
)
def test_resolve_link_maps_a_local_url_to_its_file(
    site: Path, href: str, file: str, fragment: str
) -> None:
    assert check_site.resolve_link(href, site, ORIGIN) == (site / file, fragment)


@pytest.mark.parametrize(
    "href",
    [
        "https://github.com/resnet-built-and-tested/resnet-built-and-tested",
        "http://127.0.0.1:9999/book/intro.html",  # another server
        "mailto:someone@example.org",
        "javascript:void(0)",
    ],
)
def test_resolve_link_leaves_other_sites_alone(site: Path, href: str) -> None:
    assert check_site.resolve_link(href, site, ORIGIN) is None


@pytest.mark.parametrize(
    ("href", "problem"),
    [
        (f"{ORIGIN}/book/intro.html", None),
        (f"{ORIGIN}/book/intro.html#top", None),
        (f"{ORIGIN}/book/intro.html#old", None),  # <a name=…> is an anchor too
        (f"{ORIGIN}/book/missing.html", "broken link"),
        (f"{ORIGIN}/book/intro.html#nowhere", "broken anchor"),
        (f"{ORIGIN}/book/solutions/index.html#live", None),  # this page: ids from its live DOM
        ("https://example.org/#anything", None),  # not followed
    ],
)
def test_check_link(site: Path, href: str, problem: str | None) -> None:
    page = f"{ORIGIN}/book/solutions/index.html"
    found = check_site.check_link(href, page, {"live"}, site, ORIGIN)
    assert (found is None) if problem is None else (problem in found)


def test_html_ids_reads_ids_and_anchor_names() -> None:
    html = '<div id="a"><a name="b" href="#c">x</a><span id="">y</span><p name="d"></p></div>'
    assert check_site.html_ids(html) == {"a", "b"}


@pytest.mark.parametrize(
    ("markdown", "has_math"),
    [
        ("the block computes $y = F(x) + x$.", True),
        ("$$\na^2 + b^2\n$$", True),
        ("```{math}\ne = mc^2\n```", True),
        ("a role {math}`x^2`", True),
        ("\\begin{equation}\nx\n\\end{equation}", True),
        ("no math here", False),
        ("it costs $5 and $10", False),
        ("```bash\necho $HOME $PATH\n```", False),
        ("run `echo $HOME$` in a shell", False),
    ],
)
def test_markdown_has_math(markdown: str, has_math: bool) -> None:
    assert check_site.markdown_has_math(markdown) is has_math


def test_source_has_math_reads_only_markdown_cells_of_a_notebook(tmp_path: Path) -> None:
    import json

    def notebook(markdown: str, code: str) -> Path:
        path = tmp_path / "nb.ipynb"
        cells = [
            {"cell_type": "markdown", "source": [markdown], "metadata": {}},
            {"cell_type": "code", "source": code, "metadata": {}, "outputs": []},
        ]
        path.write_text(json.dumps({"cells": cells}))
        return path

    assert check_site.source_has_math(notebook("Eq. $y = F(x) + x$", "x = 1"))
    assert not check_site.source_has_math(notebook("No math", 'print("$a$")'))


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("http://127.0.0.1:8000/book/intro.html", True),
        ("http://localhost:8000/x.js", True),
        ("data:image/png;base64,AAAA", True),
        ("https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js", False),
        ("https://colab.research.google.com/github/x/y", False),
    ],
)
def test_is_local(url: str, local: bool) -> None:
    assert check_site.is_local(url) is local


def test_screenshot_path_mirrors_the_page(tmp_path: Path) -> None:
    path = check_site.screenshot_path("book/solutions/index", tmp_path)
    assert path == tmp_path / "book" / "solutions" / "index.png"


def test_the_mathjax_cdn_is_answered_from_the_pinned_local_copy():
    folder = check_site.local_mathjax()
    cdn = check_site.MATHJAX_CDN
    assert (
        check_site.mathjax_file(cdn + "tex-mml-chtml.js", folder)
        == (folder / "tex-mml-chtml.js").resolve()
    )
    font = "output/chtml/fonts/woff-v2/MathJax_Main-Regular.woff"
    assert check_site.mathjax_file(cdn + font, folder) == (folder / font).resolve()
    assert check_site.mathjax_file(cdn + "../../../../etc/passwd", folder) is None
    assert check_site.mathjax_file(cdn + "no-such-file.js", folder) is None
    assert check_site.mathjax_file("https://example.org/tex-mml-chtml.js", folder) is None


@pytest.mark.slow
def test_the_browser_check_fails_math_that_does_not_typeset(tmp_path):
    # Three pages with MathJax from the CDN (answered by the pinned copy): one good, one with a
    # TeX error (merror), one with an undefined macro (drawn in red, not an merror).
    from playwright.sync_api import sync_playwright

    site, root = tmp_path / "site", tmp_path / "root"
    site.mkdir()
    root.mkdir()
    formulas = {"good": r"\frac{a}{b}", "merror": "x^2^3", "undefined": r"\nosuchmacro{a}"}
    for name, formula in formulas.items():
        (site / f"{name}.html").write_text(
            f"<html><head><title>{name}</title><script defer src='{check_site.MATHJAX_CDN}"
            f"tex-mml-chtml.js'></script></head><body><h1>{name}</h1>"
            f"<div class='math'>\\[ {formula} \\]</div></body></html>"
        )
        (root / f"{name}.md").write_text(f"# {name}\n\n$${formula}$$\n")
    server = check_site.serve(site)
    origin = f"http://127.0.0.1:{server.server_address[1]}"
    problems = {}
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=check_site.find_chromium(None), args=check_site.CHROMIUM_ARGS
            )
            for name in formulas:
                page = browser.new_context().new_page()
                result = check_site.check_page(
                    page, name, origin, site, tmp_path / "shots", root, check_site.local_mathjax()
                )
                problems[name] = result.problems
            browser.close()
    finally:
        server.shutdown()
    assert problems["good"] == []
    assert problems["merror"] == [
        "MathJax error (merror): 'Double exponent: use braces to clarify'"
    ]
    assert problems["undefined"] == [
        "MathJax error (merror): 'undefined control sequence \\\\nosuchmacro'"
    ]
