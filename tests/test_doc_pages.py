"""The README introduces and links; the pages of docs/ specify: every link lands, every page is reached."""

from __future__ import annotations

from pathlib import Path

import pytest

from markdown_docs import README, anchors, documents, links, name

# Issue 20: an introduction, not a specification.
README_MAX_LINES = 250


def target(page: Path, link: str) -> tuple[Path, str]:
    """(the file a link points at, its #fragment or '')."""
    path, _, fragment = link.partition("#")
    return (page if not path else (page.parent / path).resolve()), fragment


def test_the_readme_is_an_introduction():
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move the details to a page of docs/"


@pytest.mark.parametrize("page", documents(), ids=name)
def test_every_link_lands(page):
    broken = []
    for link in links(page):
        path, fragment = target(page, link)
        if not path.exists():
            broken.append(f"{link}: no such file")
        elif fragment and path.suffix == ".md" and fragment not in anchors(path):
            broken.append(f"{link}: no heading #{fragment} in {path.name}")
    assert not broken, f"{name(page)}: " + "; ".join(broken)


def test_every_page_is_reached_from_the_readme():
    reached, todo = set(), [README.resolve()]
    while todo:
        page = todo.pop()
        if page in reached or page.suffix != ".md" or not page.exists():
            continue
        reached.add(page)
        todo += [target(page, link)[0] for link in links(page)]
    unreached = [name(p) for p in documents() if p.resolve() not in reached]
    assert not unreached, f"no link leads to {unreached} from README.md"
