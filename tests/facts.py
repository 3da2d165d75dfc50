"""Published figures (data/facts.json, each table with its source) for the tests.

    table("official_md5", "top", "notop")  -> {model: (top md5, notop md5)}
    table("cifar_paper")                    -> {model: value}
"""

from __future__ import annotations

import json
from pathlib import Path

FACTS = json.loads((Path(__file__).parent / "data" / "facts.json").read_text())


def table(name: str, *columns: str) -> dict:
    rows = FACTS[name]["models"]
    if not columns:
        return dict(rows)
    return {model: tuple(row[c] for c in columns) for model, row in rows.items()}
