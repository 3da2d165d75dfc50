"""docs/cli.md's reference is what the parser defines now (`python -m resnet_keras.cli.reference docs/cli.md`)."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from markdown_docs import REPO, anchors
from resnet_keras.cli import build_parser, reference
from resnet_keras.cli.registry import COMMANDS

PAGE = REPO / "docs" / "cli.md"


def test_the_page_holds_the_reference_the_parser_writes():
    text = PAGE.read_text(encoding="utf-8")
    assert reference.render(text) == text, (
        "docs/cli.md's reference is stale: run `python -m resnet_keras.cli.reference docs/cli.md`"
    )


def test_every_command_and_option_is_in_the_reference():
    written = reference.reference()
    assert [f"### `resnet-keras {name}`" in written for name in COMMANDS] == [True] * len(COMMANDS)
    assert {f"resnet-keras-{name}" for name in COMMANDS} <= anchors(PAGE)  # the links to each command land
    for name, sub in next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices.items():
        for action in sub._actions:
            if action.dest not in ("help", "verbose"):
                assert f"`{reference.invocation(action).replace('|', chr(92) + '|')}`" in written, (name, action.dest)


def test_a_new_option_makes_the_page_stale():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["info"]
    sub.add_argument("--depth", metavar="N", help="how deep | *really* <deep>")
    written = reference.reference(parser)
    assert "| `--depth N` | how deep \\| \\*really\\* &lt;deep&gt; |" in written
    assert written != reference.reference()


def test_render_keeps_the_written_part_and_needs_its_begin_line():
    rendered = reference.render("# Command line\n\nby hand\n" + reference.BEGIN + "\nold reference\n")
    assert rendered.startswith("# Command line\n\nby hand\n" + reference.BEGIN + "\n\n## Reference\n")
    assert "old reference" not in rendered
    with pytest.raises(ValueError, match="must hold the line .* Received: no such line"):
        reference.render("# no begin line\n")


def test_the_command_prints_the_reference_and_imports_no_keras():
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from resnet_keras.cli import reference; reference.main([]); "
         "assert 'keras' not in sys.modules and 'tensorflow' not in sys.modules, 'Keras was imported'"],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == reference.reference()
