"""The README's classify example (tests/readme_example.py) on JAX and PyTorch.

examples/classify.py runs in a subprocess that inherits KERAS_BACKEND: it
fetches an official-format ResNet50 file from a loopback mirror, loads it,
preprocesses the sample photos and decodes the top 5.
"""

from __future__ import annotations

import keras
import pytest

from readme_example import classify_the_sample_photos

pytestmark = pytest.mark.backend


@pytest.mark.skipif(
    keras.backend.backend() == "tensorflow",
    reason="tests/test_example.py runs it in the default (TensorFlow) run",
)
def test_readme_classify_example_on_this_backend(official_file, mirror, tmp_path, isolated_env):
    classify_the_sample_photos(official_file, mirror, tmp_path, isolated_env)
