"""The docs' Models and Pretrained weights tables are the registry, counts.json and the shipped manifest.

One rule for both: a table between `<!-- generated table: KIND -->` and
`<!-- end of generated table -->` in README.md or docs/*.md must be what
`python -m resnet_keras.architecture.tables FILE` writes there.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from resnet_keras.architecture import tables
from resnet_keras.architecture.specs import SPECS
from resnet_keras.weights.manifest import shipped_manifest

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.name)
def test_generated_tables_are_up_to_date(path):
    text = path.read_text(encoding="utf-8")
    assert tables.render(text) == text, (
        f"a generated table in {path.name} is stale: run "
        f"`python -m resnet_keras.architecture.tables {path.relative_to(REPO)}`"
    )


def test_every_table_is_shown_somewhere():
    shown = [kind for path in DOCUMENTS for kind in tables.marked(path.read_text(encoding="utf-8"))]
    assert sorted(set(shown)) == sorted(tables.TABLES)


def test_the_tables_cover_every_model_and_every_shipped_tag():
    models = tables.models_table().splitlines()[2:]
    assert [row.split(" | ")[0].strip("|` ") for row in models] == list(SPECS)
    manifest = shipped_manifest()
    weights = tables.weights_table().splitlines()[2:]
    assert len(weights) == sum(len(manifest.tags(m)) for m in manifest.entries)
    row = next(r for r in models if r.startswith("| `resnet50v2` "))
    assert "| 25,613,800 | 23,564,800 | 25,568,360 | 3.482 G | 224 | imagenet | 76.0 / 93.0 (at 299) | tf |" in row


def test_render_fills_only_marked_tables_and_names_an_unknown_kind():
    text = "intro\n<!-- generated table: weights -->\nold\n<!-- end of generated table -->\n| kept |\n"
    rendered = tables.render(text)
    assert rendered.startswith("intro\n<!-- generated table: weights -->\n| model | `weights=` |")
    assert rendered.endswith("<!-- end of generated table -->\n| kept |\n")
    with pytest.raises(ValueError, match="must be one of \\['models', 'weights'\\]. Received: 'zoo'"):
        tables.render("<!-- generated table: zoo -->\n<!-- end of generated table -->")


def test_the_command_rewrites_a_stale_page_once(tmp_path, capsys):
    page = tmp_path / "page.md"
    page.write_text("intro\n<!-- generated table: weights -->\nold\n<!-- end of generated table -->\n")
    assert tables.main([str(page)]) == 0
    assert page.read_text() == tables.render(page.read_text()) and "old" not in page.read_text()
    assert capsys.readouterr().out == f"rewrote weights in {page}\n"
    tables.main([str(page)])  # up to date: not written again, nothing said
    assert capsys.readouterr().out == "" and list(tmp_path.iterdir()) == [page]
