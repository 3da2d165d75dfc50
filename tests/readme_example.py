"""The README's main job, run as a user runs it: examples/classify.py in a subprocess.

`classify_the_sample_photos` serves an official-format ResNet50 file from the
loopback mirror through a user manifest (RESNET_KERAS_MANIFEST), runs the
example on the sample photos under the current KERAS_BACKEND, and checks the
top 5 of each photo and that the weights were fetched once into the cache.
Used by tests/test_example.py (TensorFlow) and tests/backends (JAX, PyTorch).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import official_format
from conftest import write_manifest

ROOT = Path(__file__).parents[1]


def classify_the_sample_photos(official_file, mirror, tmp_path: Path, cache: Path) -> None:
    path = official_file("resnet50", include_top=True)
    url = mirror.add(path.name, path.read_bytes())
    manifest = write_manifest(tmp_path / "mirror.json", "resnet50", {"top": (path.name, [url], "md5:" + official_format.md5(path))})
    photos = sorted(str(p) for p in (ROOT / "examples" / "images").glob("*.jpg"))
    env = dict(os.environ, RESNET_KERAS_MANIFEST=str(manifest))
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "classify.py"), *photos],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for photo in photos:
        block = lines[lines.index(photo) + 1 : lines.index(photo) + 6]
        assert [line.split(".")[0].strip() for line in block] == ["1", "2", "3", "4", "5"]
    assert (cache / path.name).is_file() and mirror.count(path.name) == 1
