"""README.md's fenced blocks, found by what they contain (not by line numbers, so other sections can change
around them), and the comparison of a block with the output it documents.

Only what cannot repeat is masked: seconds (`(0/1 secs)`, `in 1 secs`, `(0 secs)`), run directory
timestamps (`-20261124-030453`), and `...`: a line of its own stands for any lines, inside a line for any text.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

MASKS = [  # README text → what it matches in the output
    r"\(\d+/\d+ secs\)",  # epoch line seconds
    r"in \d+ secs",  # train ended in N secs
    r"\(\d+ secs\)",  # test report seconds
    r"\d{8}-\d{6}",  # run directory timestamps
]
MASK = re.compile("|".join(f"(?:{m})" for m in MASKS) + r"|(?P<any>\.\.\.)")


@dataclass
class Block:
    heading: str  # the section it is in
    line: int  # 1-based line of its opening fence
    lang: str
    body: list[str]

    @property
    def name(self) -> str:
        return f"README.md block at line {self.line} (section '{self.heading}', starting {self.body[0]!r})"


def blocks(path: Path = README) -> list[Block]:
    out, heading, fence = [], "", None
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if fence is None:
            if line.startswith("#") and not line.startswith("#!"):
                heading = line.lstrip("#").strip()
            elif line.startswith("```"):
                fence = Block(heading, i, line[3:].strip(), [])
        elif line.startswith("```"):
            out.append(fence)
            fence = None
        else:
            fence.body.append(line)
    return out


def block(anchor: str, lang: str | None = None) -> Block:
    """The one README block containing `anchor` (and of language `lang`, if given)."""
    found = [b for b in blocks() if any(anchor in line for line in b.body) and (lang is None or b.lang == lang)]
    if len(found) != 1:
        pytest.fail(f"README.md: expected one block containing {anchor!r}, found {len(found)}: the test keys on it")
    return found[0]


def line_pattern(line: str) -> str:
    """The regex of one README line: literal text, masked parts as their patterns."""
    out, at = [], 0
    for m in MASK.finditer(line):
        out.append(re.escape(line[at : m.start()]))
        out.append(".*" if m.group("any") else next(p for p in MASKS if re.fullmatch(p, m.group(0))))
        at = m.end()
    return "".join(out) + re.escape(line[at:])


def matches(expected: list[str], actual: list[str]) -> bool:
    parts = [r"(?:.*\n)*?" if line.strip() == "..." else line_pattern(line) + r"\n" for line in expected]
    return re.fullmatch("".join(parts), "".join(a + "\n" for a in actual)) is not None


def check(b: Block, actual: str | list[str], what: str = "") -> None:
    """Fail, with a diff naming the block, unless `actual` is what the block shows."""
    lines = actual.splitlines() if isinstance(actual, str) else actual
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    if not matches(b.body, lines):
        diff = "\n".join(difflib.unified_diff(b.body, lines, "README.md", what or "now", lineterm=""))
        pytest.fail(f"{b.name} no longer shows what the code prints; update README.md:\n{diff}", pytrace=False)
