"""README.md and docs/*.md as the tests read them: fenced blocks, their markers, links.

A block that cannot run says why on the line before its fence:
`<!-- readme-test: skip (reason) -->`; a heavy one is marked
`<!-- readme-test: slow -->` (the marker keeps its name on every page).
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from functools import lru_cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
MARKER = re.compile(r"^<!-- readme-test: (skip|slow)(?: \((.+)\))? -->$")


def documents() -> list[Path]:
    """The README, then every page of docs/, in name order."""
    return [README, *sorted((REPO / "docs").glob("*.md"))]


def name(path: Path) -> str:
    """How tests name a page: 'README.md', 'docs/weights.md'."""
    return path.relative_to(REPO).as_posix()


@dataclasses.dataclass(frozen=True)
class Block:
    doc: str  # name(page)
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    marker: str | None  # "skip", "slow" or None
    reason: str | None

    @property
    def id(self) -> str:
        first = next((s for s in self.text.splitlines() if s.strip()), "")
        return f"{self.doc}:L{self.line}-{self.lang or 'text'}-{re.sub(r'[^A-Za-z0-9]+', '_', first)[:30]}"

    @property
    def where(self) -> str:
        return f"{self.doc} line {self.line}"


def blocks_of(path: Path) -> list[Block]:
    blocks, lines = [], path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        fence = re.match(r"^```(\w*)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        previous = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        marker = MARKER.match(previous.strip())
        blocks.append(Block(
            doc=name(path), line=i + 1, lang=fence.group(1), text="\n".join(lines[i + 1:end]) + "\n",
            marker=marker.group(1) if marker else None, reason=marker.group(2) if marker else None,
        ))
        i = end + 1
    return blocks


@lru_cache(maxsize=None)
def all_blocks() -> tuple[Block, ...]:
    return tuple(block for path in documents() for block in blocks_of(path))


def is_transcript(block: Block) -> bool:
    """`$ command` lines, each followed by what it prints."""
    return any(line.startswith("$ ") for line in block.text.splitlines())


def commands(block: Block) -> list[tuple[list[str], list[str] | None]]:
    """[(argv with env assignments first, expected output lines or None)].

    In a transcript (`$ ` lines) the lines up to the next `$ ` are the
    expected output; otherwise every non-comment line is a command.
    """
    transcript = is_transcript(block)
    out = []
    for line in block.text.replace("\\\n", " ").splitlines():  # a trailing backslash continues the line
        if transcript:
            if line.startswith("$ "):
                out.append((shlex.split(line[2:]), []))
            elif out:
                out[-1][1].append(line)
        elif line.strip() and not line.lstrip().startswith("#"):
            out.append((shlex.split(line, comments=True), None))
    for _, expected in out:
        while expected and not expected[-1].strip():
            expected.pop()
    return out


def kind(block: Block) -> str:
    if block.lang == "python":
        return "python"
    if block.lang == "json":
        return "manifest"
    if block.lang in ("bash", "sh", "") and commands(block):
        return "commands"
    return "unknown"


# --- links and headings, as GitHub renders them --------------------------------

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6} +(.+?) *#*$")


def prose(path: Path) -> str:
    """The page without its fenced blocks (a `[x](y)` in code is no link)."""
    return re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)


def anchor(heading: str) -> str:
    """GitHub's id for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    for line in prose(path).splitlines():
        heading = HEADING.match(line)
        if heading:
            slug = anchor(heading.group(1))
            seen[slug] = seen.get(slug, -1) + 1
    return {slug if n == 0 else f"{slug}-{n}" for slug, count in seen.items() for n in range(count + 1)}


def links(path: Path) -> list[str]:
    """Every link target of the page that stays in this repository ('', a file, '#anchor')."""
    return [target for target in LINK.findall(prose(path)) if not re.match(r"^[a-z]+:", target)]
