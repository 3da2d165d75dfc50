"""Regenerate tests/golden/fingerprints.json from keras.applications.

The golden file is the contract that makes official weight files load:
for each variant, every weighted layer in order with its weight shapes.
Run `python tests/make_golden.py` only when keras itself changes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

GOLDEN = Path(__file__).parent / "golden" / "fingerprints.json"


def fingerprint(model) -> list:
    """[(layer name, [weight shapes...]), ...] for every weighted layer."""
    return [
        [layer.name, [list(w.shape) for w in layer.weights]]
        for layer in model.layers
        if layer.weights
    ]


def main() -> None:
    from keras_builders import KERAS_BUILDERS

    golden = {
        key: fingerprint(builder(weights=None, include_top=True))
        for key, builder in KERAS_BUILDERS.items()
    }
    lines = ["{"]
    for i, (key, layers) in enumerate(golden.items()):
        lines.append(f"  {json.dumps(key)}: [")
        lines += [f"    {json.dumps(entry)}," for entry in layers]
        lines[-1] = lines[-1].rstrip(",")
        lines.append("  ]" + ("," if i < len(golden) - 1 else ""))
    lines.append("}")
    GOLDEN.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
