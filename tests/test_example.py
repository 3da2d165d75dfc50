"""The README's main job: classify the sample photos with a pretrained
ResNet50 whose weights come, on first use, through a user manifest from a
mirror on 127.0.0.1 (the official file format; random weights)."""

from __future__ import annotations

import pytest

from readme_example import classify_the_sample_photos


@pytest.mark.slow  # a subprocess that imports TensorFlow (24 s)
def test_classify_example_fetches_weights_and_prints_top5(official_file, mirror, tmp_path, isolated_env):
    classify_the_sample_photos(official_file, mirror, tmp_path, isolated_env)
