"""Open every page of the built book in headless Chromium and check what a reader would see.

Usage (after `jupyter-book build .`):  python .ci/check_site.py _build/html

The pages are those of `_toc.yml`. Each one is served from localhost and must: load with a
<title> that contains its heading; decode every image; where its source has math, typeset every
formula with MathJax, without a MathJax error (merror) or undefined macro; link only to local
pages and anchors that exist; and log no console error. The MathJax CDN is answered from the
pinned copy of MathJax 3 that requirements.txt installs (django-static-mathjax), so that the
check proves the math typesets although CI has no internet; the published site keeps its CDN.
Other requests that leave localhost are answered as "offline"; they are listed, not failed. A
full-page screenshot of each page goes to _build/screenshots/. Exits non-zero, with the reasons,
when any page fails.
"""

from __future__ import annotations

import argparse
import functools
import html.parser
import http.server
import json
import os
import re
import shutil
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}
# Where Jupyter Book's pages load MathJax 3 from; answered from the local copy.
MATHJAX_CDN = "https://cdn.jsdelivr.net/npm/mathjax@3/es5/"
MATHJAX_TIMEOUT_MS = 60_000


def local_mathjax() -> Path:
    """The es5/ folder of the pinned MathJax 3 (the `mathjax` package of django-static-mathjax)."""
    import importlib.util

    spec = importlib.util.find_spec("mathjax")  # a namespace package: static files only
    places = list(spec.submodule_search_locations or []) if spec else []
    folder = Path(places[0]) / "static" / "mathjax" / "es5" if places else None
    if folder is None or not (folder / "tex-mml-chtml.js").is_file():
        sys.exit("check_site: no local MathJax 3; install requirements.txt (django-static-mathjax)")
    return folder


def mathjax_file(url: str, folder: Path) -> Path | None:
    """The local file for a MathJax CDN URL (None for other URLs or files the copy lacks)."""
    if not url.startswith(MATHJAX_CDN):
        return None
    relative = unquote(urlsplit(url).path)[len(urlsplit(MATHJAX_CDN).path) :]
    path = (folder / relative).resolve()
    return path if path.is_file() and folder.resolve() in path.parents else None


# --- pure helpers (unit-tested in tests/test_book_config.py) ---------------------------------


def toc_pages(toc: dict) -> list[str]:
    """The documents of a jb-book `_toc.yml`, root first, in reading order (no suffix)."""

    def walk(entries: list[dict]) -> Iterator[str]:
        for entry in entries:
            if "file" in entry:
                yield strip_suffix(entry["file"])
            for key in ("parts", "chapters", "sections"):
                yield from walk(entry.get(key, []))

    return [strip_suffix(toc["root"]), *walk([toc])]


def strip_suffix(docname: str) -> str:
    """`book/intro.md` -> `book/intro`: the toc may name a file with or without its suffix."""
    return re.sub(r"\.(md|ipynb)$", "", docname)


def source_of(docname: str, root: Path = ROOT) -> Path | None:
    """The .md or .ipynb file a page is built from."""
    for suffix in (".md", ".ipynb"):
        path = root / f"{docname}{suffix}"
        if path.is_file():
            return path
    return None


_FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
_INLINE_CODE = re.compile(r"`[^`\n]+`")
# dollarmath's rule: no space just inside the dollars ("costs $5 and $10" is not math)
_MATH = re.compile(
    r"\$\$|\$[^\s$](?:[^$\n]*[^\s$])?\$|\{math\}|\\begin\{(?:equation|align|gather|multline)"
)


def markdown_has_math(text: str) -> bool:
    """Whether MyST markdown holds $…$, $$…$$, a {math} role/directive or an amsmath block."""
    if "{math}" in text:  # the directive is itself a fence: look before removing fences
        return True
    text = _INLINE_CODE.sub("", _FENCE.sub("", text))
    return bool(_MATH.search(text))


def source_has_math(path: Path) -> bool:
    """Math in a page's source: a markdown file, or the markdown cells of a notebook."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".ipynb":
        cells = json.loads(text)["cells"]
        text = "\n\n".join(
            "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
            for c in cells
            if c["cell_type"] == "markdown"
        )
    return markdown_has_math(text)


def resolve_link(href: str, site: Path, origin: str) -> tuple[Path, str] | None:
    """The local file and #fragment that an absolute link points to; None for other sites.

    `href` is absolute (the browser's `a.href`); `origin` is the served site's scheme://host:port.
    """
    parts = urlsplit(href)
    if parts.scheme not in ("http", "https") or f"{parts.scheme}://{parts.netloc}" != origin:
        return None
    relative = unquote(parts.path).lstrip("/")
    target = site / relative
    if relative == "" or relative.endswith("/") or target.is_dir():
        target = target / "index.html"
    return target, unquote(parts.fragment)


class _IdCollector(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value and (name == "id" or (tag == "a" and name == "name")):
                self.ids.add(value)


def html_ids(text: str) -> set[str]:
    """The anchors of an HTML document: its id attributes and <a name=…>."""
    parser = _IdCollector()
    parser.feed(text)
    return parser.ids


def is_local(url: str) -> bool:
    """Whether a request stays on this machine (data: and blob: URLs count as local)."""
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "about"):
        return True
    return parts.hostname in LOCAL_HOSTS or (parts.hostname or "").startswith("127.")


def screenshot_path(docname: str, directory: Path) -> Path:
    """`book/solutions/index` -> <directory>/book/solutions/index.png."""
    return directory / f"{docname}.png"


# --- the browser ------------------------------------------------------------------------------


@dataclass
class PageResult:
    docname: str
    problems: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib's name
        pass


def serve(site: Path) -> http.server.ThreadingHTTPServer:
    """A static file server for `site` on a free localhost port, in a daemon thread."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def find_chromium(explicit: str | None) -> str:
    """The Chromium to drive: --chromium, $CHROMIUM, /usr/bin/chromium, or one on the PATH."""
    candidates = [explicit, os.environ.get("CHROMIUM"), "/usr/bin/chromium"]
    candidates += [shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return candidate
    sys.exit(
        "check_site: no Chromium found; install it (Debian: apt-get install chromium) "
        "or point $CHROMIUM at one"
    )


_PAGE_FACTS_JS = """
async () => {
  const imgs = Array.from(document.images);
  for (const img of imgs) { img.loading = "eager"; }
  await Promise.all(imgs.map(img => img.decode().catch(() => null)));
  const h1 = document.querySelector("article h1, main h1, h1");
  let heading = null;
  if (h1) {
    const copy = h1.cloneNode(true);
    copy.querySelectorAll(".headerlink").forEach(a => a.remove());
    heading = copy.textContent.replace(/\\s+/g, " ").trim();
  }
  const math = Array.from(document.querySelectorAll("span.math, div.math"));
  return {
    heading,
    images: imgs.map(img => ({src: img.currentSrc || img.src,
                              ok: img.complete && img.naturalWidth > 0})),
    math: math.length,
    mathRendered: document.querySelectorAll("mjx-container").length,
    mathUntypeset: math.filter(m => !m.querySelector("mjx-container")).map(
      m => m.textContent.trim().slice(0, 80)),
    mathErrors: Array.from(document.querySelectorAll("mjx-merror")).map(
      e => e.getAttribute("data-mjx-error") || e.textContent.trim().slice(0, 80)).concat(
      // an undefined macro is not an merror: MathJax's noundefined draws its name in red
      Array.from(document.querySelectorAll('mjx-assistive-mml mtext[mathcolor="red"]'))
        .map(e => e.textContent).filter(t => t.startsWith("\\\\"))
        .map(t => `undefined control sequence ${t}`)),
    mathjaxScript: !!document.querySelector('script[src*="mathjax" i]'),
    links: Array.from(document.querySelectorAll("a[href]")).map(a => a.href),
    ids: Array.from(document.querySelectorAll("[id]")).map(e => e.id),
  };
}
"""


def check_page(
    page, docname: str, origin: str, site: Path, shots: Path, root: Path, mathjax: Path
) -> PageResult:
    """Load one page in `page` (a fresh Playwright page) and collect its problems."""
    result = PageResult(docname)
    console: list[tuple[str, str]] = []  # (text, url of the message's source)

    def on_route(route) -> None:
        url = route.request.url
        if is_local(url):
            route.continue_()
        elif (local := mathjax_file(url, mathjax)) is not None:
            route.fulfill(path=str(local))
        else:  # no internet in CI: answer every outside request as offline, at once
            result.ignored.append(f"offline: {route.request.url}")
            route.abort("internetdisconnected")

    page.route("**/*", on_route)
    page.on("console", lambda m: m.type == "error" and console.append((m.text, m.location["url"])))
    page.on("pageerror", lambda e: result.problems.append(f"uncaught JavaScript error: {e}"))
    page.on(
        "requestfailed",
        lambda r: is_local(r.url) and result.problems.append(f"request failed: {r.url}"),
    )
    page.on(
        "response",
        lambda r: (
            is_local(r.url)
            and r.status >= 400
            and result.problems.append(f"HTTP {r.status}: {r.url}")
        ),
    )

    url = f"{origin}/{docname}.html"
    response = page.goto(url, wait_until="load")
    if response is None or not response.ok:
        status = response.status if response else "no response"
        result.problems.append(f"page did not load ({status}): {url}")
        return result
    source = source_of(docname, root)
    has_math = source is not None and source_has_math(source)
    if has_math:  # wait until MathJax has typeset the page (its startup promise resolves)
        try:
            page.wait_for_function(
                "() => window.MathJax && MathJax.startup && MathJax.startup.promise",
                timeout=MATHJAX_TIMEOUT_MS,
            )
            page.evaluate("() => MathJax.startup.promise")
        except Exception as error:  # Playwright's TimeoutError, or MathJax failing to start
            result.problems.append(f"MathJax did not start: {str(error).splitlines()[0]}")
    facts = page.evaluate(_PAGE_FACTS_JS)

    title = page.title()
    if not facts["heading"]:
        result.problems.append("page has no <h1> heading")
    elif facts["heading"] not in title:
        result.problems.append(
            f"<title> {title!r} does not contain the heading {facts['heading']!r}"
        )

    for image in facts["images"]:
        if not image["ok"]:
            result.problems.append(f"image not decoded: {image['src']}")

    if has_math:
        if facts["math"] == 0:
            result.problems.append("the source has math but the page has no span.math/div.math")
        if not facts["mathjaxScript"]:
            result.problems.append("the page has math but does not load MathJax")
        for text in facts["mathUntypeset"][:5]:
            result.problems.append(f"math not typeset by MathJax: {text!r}")
        for text in facts["mathErrors"][:5]:
            result.problems.append(f"MathJax error (merror): {text!r}")

    own_ids = set(facts["ids"])
    local_links = [href for href in facts["links"] if resolve_link(href, site, origin)]
    for href in local_links:
        if problem := check_link(href, url, own_ids, site, origin):
            result.problems.append(problem)

    for text, source_url in console:
        if source_url and not is_local(source_url):
            result.ignored.append(f"console: {text}")
        else:
            result.problems.append(f"console error: {text}")

    target = screenshot_path(docname, shots)
    target.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target), full_page=True)
    result.notes.append(
        f"{len(facts['images'])} images, {facts['math']} math ({facts['mathRendered']} typeset), "
        f"{len(local_links)} local links"
    )
    return result


@functools.cache
def _ids_of(path: Path) -> frozenset[str]:
    return frozenset(html_ids(path.read_text(encoding="utf-8", errors="replace")))


def check_link(href: str, page_url: str, own_ids: set[str], site: Path, origin: str) -> str | None:
    """What is wrong with a link of the page at `page_url` (ids `own_ids`); None if nothing.

    Links to other sites are not followed (no internet in CI) and count as fine.
    """
    resolved = resolve_link(href, site, origin)
    if resolved is None:
        return None
    target, fragment = resolved
    if not target.is_file():
        return f"broken link: {href} (no file {target.relative_to(site)})"
    if not fragment:
        return None
    same_page = href.split("#", 1)[0] == page_url.split("#", 1)[0]
    ids = own_ids if same_page else _ids_of(target)
    if fragment not in ids:
        return f"broken anchor: {href} (no id {fragment!r} in {target.relative_to(site)})"
    return None


def run(site: Path, toc_file: Path, shots: Path, chromium: str, root: Path) -> int:
    from playwright.sync_api import sync_playwright

    docnames = toc_pages(yaml.safe_load(toc_file.read_text(encoding="utf-8")))
    missing = [d for d in ["index", *docnames] if not (site / f"{d}.html").is_file()]
    if missing:
        print(f"check_site: not built: {', '.join(missing)} (run jupyter-book build . first)")
        return 1

    mathjax = local_mathjax()
    server = serve(site)
    origin = f"http://127.0.0.1:{server.server_address[1]}"
    results: list[PageResult] = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            print(f"check_site: Chromium {browser.version} via Playwright, {len(docnames)} pages")
            for docname in docnames:
                context = browser.new_context(viewport={"width": 1280, "height": 900})
                try:
                    results.append(
                        check_page(context.new_page(), docname, origin, site, shots, root, mathjax)
                    )
                except Exception as error:  # a crash on one page is that page's failure
                    results.append(PageResult(docname, [f"could not check: {error}"]))
                finally:
                    context.close()
            browser.close()
    finally:
        server.shutdown()

    for result in results:
        status = "FAIL" if result.problems else "ok  "
        extra = f"; {len(result.ignored)} offline requests ignored" if result.ignored else ""
        print(f"{status} {result.docname}: {', '.join(result.notes)}{extra}")
        for problem in result.problems:
            print(f"     - {problem}")
    ignored = sorted({item for r in results for item in r.ignored})
    if ignored:
        print("ignored (outside localhost, no internet here):")
        for item in ignored:
            print(f"     {item}")
    failed = sum(bool(r.problems) for r in results)
    print(f"screenshots: {shots}")
    print(f"check_site: {len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("site", type=Path, help="the built HTML, e.g. _build/html")
    parser.add_argument("--toc", type=Path, default=ROOT / "_toc.yml")
    parser.add_argument("--screenshots", type=Path, help="default: <site>/../screenshots")
    parser.add_argument("--chromium", help="Chromium executable (default: $CHROMIUM, PATH)")
    args = parser.parse_args(argv)
    site = args.site.resolve()
    shots = (args.screenshots or site.parent / "screenshots").resolve()
    return run(site, args.toc, shots, find_chromium(args.chromium), args.toc.resolve().parent)


if __name__ == "__main__":
    sys.exit(main())
