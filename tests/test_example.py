"""The README's main job: classify the sample photos with a pretrained
ResNet50 whose weights come, on first use, through a user manifest from a
mirror on 127.0.0.1 (the official file format; random weights)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import official_format
from conftest import write_manifest

ROOT = Path(__file__).parents[1]


@pytest.mark.slow  # a subprocess that imports TensorFlow (24 s)
def test_classify_example_fetches_weights_and_prints_top5(official_file, mirror, tmp_path, isolated_env):
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
    assert (isolated_env / path.name).is_file() and mirror.count(path.name) == 1
