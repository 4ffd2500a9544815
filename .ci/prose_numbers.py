"""List the measured-looking numbers in the chapters' prose that are not glued from an output.

Every measured number on a page must come from the code beside it (myst-nb `glue`) or from the
paper it quotes. This reads the markdown cells of each notebook in _toc.yml (never code cells or
outputs) and finds a number with a unit: %, s, ms, min, h (and seconds, minutes, hours), img/s,
GMAC, MMAC, GFLOPs, parameters (also "11.7M parameters"), points, pt, and a ratio with a
decimal part ("1.6×", "×1.6"; an integer next to × is a size, 3×3 or 32 × 32, not a measurement).

Not prose, so never read: fenced code, the options of a directive (`:width: 80%`), math
($...$, $$...$$), code spans, every role but {cite} ({glue:text}, {eq}, {ref}, ...), URLs and
HTML tags. A number is fine when its sentence cites a paper ({cite:p} or {cite:t}: a quoted
number stays literal, next to its source), or when it matches a phrase of `DEFINITIONAL`: the
recipe's constants, which the text defines rather than measures. Everything else is a finding.

The check starts as a ratchet: .ci/prose_numbers.json holds each chapter's count, which may
only fall (tests/test_prose_numbers.py), until every chapter is at zero.

Usage:  python .ci/prose_numbers.py            the findings per chapter, and the counts
        python .ci/prose_numbers.py --update   lower the counts in .ci/prose_numbers.json
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import check_site  # .ci/check_site.py, the one parser of _toc.yml: a sibling script
import yaml

ROOT = Path(__file__).resolve().parent.parent
RATCHET = Path(__file__).resolve().with_suffix(".json")

# Phrases that define a number rather than report one, each with its reason. A phrase is matched
# in full (case-insensitive), so "chance is 10 %" is allowed and "10 %" alone is not. The
# recipe's lengths ("391 steps", "164 epochs", "batch 128", "64,000 iterations") carry no unit
# below, so they need no entry: they are settings, and the check never reads them as results.
DEFINITIONAL = {
    r"chance\W{0,4}(?:is |of |level )?10 ?%|10 ?% \(chance\)": "ten balanced classes",
    r"90 ?%(?: error)? (?:of|for) guessing|chance is 90 ?% error": "ten balanced classes",
    r"(?:at )?50 ?% and (?:at )?75 ?%": "the paper's step schedule: lr / 10 at 50 % and 75 %",
    r"peak after 30 ?% of the run": "one-cycle's warm-up fraction, a setting of the fast recipe",
    r"(?:about|at most) 15 minutes": "the fast recipe's budget on a 2-core CPU, its goal",
    r"30 s timing|timed for 30 s": "how long the command line times the paper recipe",
    r"the other 75 ?%": "a stride-2 1×1 convolution reads one pixel in four by construction",
    r"2 parameters per channel": "BatchNorm's γ and β",
    r"y axis stops at 30 ?%": "where a figure's axis ends: a plotting choice",
    r"confidence towards 100 ?%": "a limit, not a measurement",
}

# A short unit (s, h, ...) must follow a space ("67 s", not "3×3s"); a long one may touch the
# number ("12.64%"). A ratio counts only with a decimal part: 3×3 and 4× (64, ...) are sizes.
SHORT_UNIT = r"s|ms|h|min|pt"
LONG_UNIT = (
    r"%|img/s|[GM]MACs?|[GM]FLOPs|(?:[kM]|million|thousand)?\s?(?:parameters|params)"
    r"|(?:percentage )?points?|seconds?|minutes?|hours?"
)
NUMBER = r"(?<![\w.,×])(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
SPACE = r"[ \u00a0\u2009\u202f-]"  # a space, a no-break or thin space, a hyphen ("4-h run")
MEASURED = re.compile(
    rf"{NUMBER}(?:{SPACE}(?:{SHORT_UNIT})|{SPACE}?(?:{LONG_UNIT}))(?![\w/])"
    rf"|(?<![\w.,×])\d+\.\d+{SPACE}?(?:[×x]|times)(?![\w.])"  # a ratio: 1.6× faster
    rf"|(?<![\w.])×{SPACE}?\d+\.\d+(?![\w.])",  # ×1.6
    re.IGNORECASE,
)

FENCE = re.compile(r"^\s*(`{3,}|~{3,}|:{3,})\s*(\{[\w:-]+\}|[\w+-]*)")
# Directives whose body is prose; every other fenced block (code, math, ...) is skipped.
PROSE_DIRECTIVES = {
    "{note}", "{tip}", "{hint}", "{important}", "{warning}", "{caution}", "{attention}",
    "{danger}", "{error}", "{seealso}", "{admonition}", "{margin}", "{sidebar}", "{dropdown}",
    "{epigraph}", "{figure}", "{table}",
}  # fmt: skip
OPTION = re.compile(r"^\s*:[\w-]+:")  # :label: ..., :width: 80%
DISPLAY_MATH = re.compile(r"\$\$.*?\$\$", re.DOTALL)
# Kept: a citation (group 1). Replaced by "…": inline math, every other role ({glue:text}`x`,
# {eq}`y`), code spans, HTML comments and tags, link targets and URLs.
INLINE = re.compile(
    r"(\{cite(?::\w+)?\}`[^`]*`)|\$[^$]+\$|\{[\w:-]+\}`[^`]*`|`[^`]+`"
    r"|<!--.*?-->|<[^>]+>|\]\([^)]*\)|https?://\S+"
)
CITE = re.compile(r"\{cite(?::\w+)?\}`")
# A sentence ends at . ! ? before a capital, a quote, markup or "…" (what was code or math), but
# not after an abbreviation ("Sec. 4.2", "e.g. the", "Eq. {eq}`x`").
ABBREVIATIONS = ("Eq", "Eqs", "Fig", "Figs", "Sec", "Secs", "e.g", "i.e", "cf", "vs", "al")
SENTENCE_END = re.compile(
    r"(?<=[.!?])"
    + "".join(rf"(?<!\b{re.escape(word)}\.)" for word in ABBREVIATIONS)
    + r"[\"')]*\s+(?=[A-Z\"'({*_\[…])"
)
BLOCK_START = re.compile(r"^\s*(?:[-*+]\s|\d+\.\s|#|\||\(\S+\)=)")  # lists, headings, tables


@dataclass(frozen=True)
class Finding:
    notebook: str
    cell: int
    excerpt: str

    def __str__(self) -> str:
        return f'{self.notebook} cell {self.cell}: "{self.excerpt}"'


def chapters(root: Path = ROOT) -> list[Path]:
    """The notebooks of _toc.yml, in reading order."""
    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
    paths = (check_site.source_of(name, root) for name in check_site.toc_pages(toc))
    return [path for path in paths if path is not None and path.suffix == ".ipynb"]


def prose_lines(markdown: str) -> list[str]:
    """The lines of a markdown cell that are prose: no fenced code, no directive options."""
    kept, fences = [], []  # fences: the open fences, innermost last, as (marker, is prose)
    for line in markdown.splitlines():
        opening = FENCE.match(line)
        if fences and line.strip() == fences[-1][0]:
            fences.pop()
        elif opening and (not fences or fences[-1][1]):
            marker, info = opening.groups()
            fences.append((marker, info in PROSE_DIRECTIVES))
        elif not fences or (fences[-1][1] and not OPTION.match(line)):
            kept.append(line)
    return kept


def sentences(markdown: str) -> list[str]:
    """The sentences of a markdown cell's prose, with math, code and roles but {cite} as '…'."""
    text = DISPLAY_MATH.sub("…", "\n".join(prose_lines(markdown)))
    blocks, block = [], []  # paragraphs, list items, headings and table rows
    for line in text.splitlines():
        if not line.strip() or BLOCK_START.match(line):
            blocks.append(" ".join(block))
            block = []
        block.append(line.strip())
    blocks.append(" ".join(block))
    found = []
    for block in blocks:
        block = INLINE.sub(lambda m: m[1] or "…", block)
        found += [s.strip() for s in SENTENCE_END.split(block) if s.strip()]
    return found


def measured_numbers(sentence: str) -> list[re.Match[str]]:
    """The numbers with a unit in one sentence that are neither cited nor definitional."""
    if CITE.search(sentence):
        return []
    for phrase in DEFINITIONAL:  # blanked out, so that the positions stay those of `sentence`
        sentence = re.sub(phrase, lambda m: "~" * len(m[0]), sentence, flags=re.IGNORECASE)
    return list(MEASURED.finditer(sentence))


def excerpt(sentence: str, match: re.Match[str], width: int = 50) -> str:
    """The sentence around the number, which is in **bold**."""
    start, end = max(match.start() - width, 0), min(match.end() + width, len(sentence))
    return "".join([
        "…" if start else "",
        sentence[start : match.start()],
        f"**{match[0]}**",
        sentence[match.end() : end],
        "…" if end < len(sentence) else "",
    ])  # fmt: skip


def find(markdown: str, notebook: str = "", cell: int = 0) -> list[Finding]:
    """The findings in one markdown cell: one per number."""
    return [
        Finding(notebook, cell, excerpt(sentence, match))
        for sentence in sentences(markdown)
        for match in measured_numbers(sentence)
    ]


def findings(path: Path) -> list[Finding]:
    """The findings in every markdown cell of a notebook (cells counted from 0, code cells too)."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    name = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name
    return [
        finding
        for index, cell in enumerate(nb["cells"])
        if cell["cell_type"] == "markdown"
        for finding in find("".join(cell["source"]), name, index)
    ]


WORD = re.compile(r"[\w…]+(?:['’.\-][\w…]+)*")
MAX_WORDS = 5000  # of prose a chapter; code, outputs, math and directive options not counted


def words(path: Path) -> int:
    """The words of a notebook's prose: its markdown cells' sentences, each math formula, code
    span or role ({glue:text}, {ref}, ...) counted as one word; fenced code and options none."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    return sum(
        len(WORD.findall(sentence))
        for cell in nb["cells"]
        if cell["cell_type"] == "markdown"
        for sentence in sentences("".join(cell["source"]))
    )


def load_ratchet(path: Path = RATCHET) -> dict[str, int]:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def update(counts: dict[str, int], path: Path = RATCHET) -> list[str]:
    """Write today's counts; refuse (and write nothing) where a count would rise."""
    old = load_ratchet(path)
    allowed = {name: old.get(name, 0) for name in counts} if old else counts  # new chapters: 0
    raised = [
        f"{name}: {counts[name]} findings, the ratchet allows {allowed[name]}: glue the new "
        "numbers ({glue:text}) from the outputs instead of raising the count"
        for name in counts
        if counts[name] > allowed[name]
    ]
    if not raised:
        path.write_text(json.dumps(counts, indent=2) + "\n", encoding="utf-8")
    return raised


def main(argv: list[str]) -> int:
    counts = {}
    for path in chapters():
        found = findings(path)
        counts[path.relative_to(ROOT).as_posix()] = len(found)
        print(f"{path.relative_to(ROOT)}: {len(found)} unglued number(s), {words(path):,} words")
        for finding in found:
            print(f"  {finding}")
    print(json.dumps(counts, indent=2))
    if "--update" in argv:
        refused = update(counts)
        print("\n".join(refused) or f"wrote {RATCHET.relative_to(ROOT)}")
        return 1 if refused else 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
