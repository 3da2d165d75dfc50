"""The docs' Models and Pretrained weights tables, generated from the registry and the shipped manifest.

A Markdown file holds a generated table between two markers:

    <!-- generated table: models -->
    | model | builder | ... |
    <!-- end of generated table -->

`python -m resnet_keras.architecture.tables README.md docs/*.md` rewrites
every marked table from `SPECS`, the registered builders, counts.json and
the shipped manifest; tests/test_tables.py fails while a file differs.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from . import counts
from .catalog import ENTRIES
from .specs import SPECS
from ..files import rewrite_text
from ..weights.manifest.records import IMAGENET_TAG

_TABLE = re.compile(
    r"(<!-- generated table: (?P<kind>[a-z]+) -->\n)(?P<body>.*?)(<!-- end of generated table -->)",
    re.DOTALL,
)


def _row(cells) -> str:
    return "| " + " | ".join(map(str, cells)) + " |"


def _table(header: list[str], rows: list[list]) -> str:
    rule = "|" + "---|" * len(header)
    return "\n".join([_row(header), rule, *map(_row, rows)]) + "\n"


def _shipped():
    from ..weights.manifest import shipped_manifest

    return shipped_manifest()


def _accuracy(key: str, manifest) -> str:
    """Top-1 / top-5 of the default weights, with what qualifies them."""
    tags = manifest.tags(key)
    if not tags:
        return "-"
    entry = manifest.entry(key, IMAGENET_TAG)  # the default weights
    notes = ["torchvision"] if entry.source.startswith("torchvision") else []
    if len(tags) > 1:
        notes.append(entry.tag.rsplit("_", 1)[-1].upper())  # "V2" of torchvision_imagenet1k_v2
    if entry.metrics.get("eval_size", SPECS[key].default_size) != SPECS[key].default_size:
        notes.append(f"at {entry.metrics['eval_size']}")
    text = f"{entry.metrics['top1']} / {entry.metrics['top5']}"
    return text + (f" ({', '.join(notes)})" if notes else "")


def models_table() -> str:
    """Every registered model, in the order of `SPECS`."""
    manifest = _shipped()
    rows = []
    for key in SPECS:
        counted, spec = counts.of(key), SPECS[key]
        rows.append([
            f"`{key}`", f"`{ENTRIES[key].builder}`", f"{counted.params:,}", f"{counted.params_notop:,}",
            f"{counted.trainable_params:,}", counts.format_macs(counted.macs), spec.default_size,
            ", ".join(manifest.tags(key)) or "none", _accuracy(key, manifest), spec.preprocessing or "-",
        ])
    header = ["model", "builder", "params (top)", "params (notop)", "trainable", "MACs", "input",
              "weights", "ImageNet top-1 / top-5 (default weights)", "preprocessing"]
    return _table(header, rows)


def weights_table() -> str:
    """Every tag of the shipped manifest, as `weights=` names it; shallow models first."""
    manifest = _shipped()
    rows = []
    for model in sorted(manifest.entries, key=lambda m: (sum(SPECS[m].depths), m)):
        for tag, entry in manifest.entries[model].items():
            selects = tag != IMAGENET_TAG and manifest.entry(model, IMAGENET_TAG) is entry
            selected_by = [tag] + ([IMAGENET_TAG] if selects else [])
            metrics = entry.metrics
            evaluated = (
                f"resize {entry.resize_size}, crop {entry.input_size}" if entry.resize_size
                else str(metrics["eval_size"])
            )
            kinds = sorted({f.hash_kind + (" (weaker)" if f.weak_hash else "") for f in entry.files.values()})
            rows.append([
                f"`{model}`", ", ".join(f'`"{name}"`' for name in reversed(selected_by)), entry.source,
                f"{metrics['top1']} / {metrics['top5']}", evaluated, entry.preprocessing, ", ".join(kinds),
            ])
    header = ["model", "`weights=`", "source", "top-1 / top-5", "evaluated at", "preprocessing", "hash kind"]
    return _table(header, rows)


TABLES = {"models": models_table, "weights": weights_table}


def render(text: str) -> str:
    """`text` with every marked table generated afresh."""

    def fill(match: re.Match) -> str:
        kind = match.group("kind")
        if kind not in TABLES:
            raise ValueError(f"A generated table must be one of {sorted(TABLES)}. Received: {kind!r}")
        return match.group(1) + TABLES[kind]() + match.group(4)

    return _TABLE.sub(fill, text)


def marked(text: str) -> list[str]:
    """The kinds of the tables marked in `text`, in order."""
    return [m.group("kind") for m in _TABLE.finditer(text)]


def main(argv: list[str] | None = None) -> int:
    for name in sys.argv[1:] if argv is None else argv:
        if rewrite_text(name, render):
            print(f"rewrote {', '.join(marked(Path(name).read_text(encoding='utf-8')))} in {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
