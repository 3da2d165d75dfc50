"""The command line run in-process, and what the CLI tests share.

`run(capsys, *argv)` runs `resnet-keras` in this process; `assert_one_line_error`
holds the error contract (exit 1, nothing on stdout, one `resnet-keras: error:`
line). Fixtures (conftest imports them, so every test may take them): `resnet20_files`, seeded
ResNet-20 weights with and without the top; `image_dir`, a folder of odd
images. `keras_outputs` is what the Keras model itself computes on files.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import official_format
import resnet_keras
from resnet_keras import cli

REPO = Path(__file__).resolve().parents[1]
PHOTOS = sorted(str(p) for p in (REPO / "examples" / "images").glob("*.jpg"))


def run(capsys, *argv):
    status = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_line_error(status, out, err, phrase):
    errors = [line for line in err.splitlines() if line.startswith("resnet-keras: error: ")]
    assert status == 1 and out == "", (status, out, err)
    assert len(errors) == 1 and phrase in errors[0], err


def cli_env(**extra) -> dict:
    return dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3", **extra)


def parse_classify(stdout: str) -> dict[str, list[tuple[str, float]]]:
    """{path: [(label, score), ...]} from classify's output."""
    result, path = {}, None
    for line in stdout.splitlines():
        if line.startswith("  "):
            rank, label, score = line.split()
            assert rank == f"{len(result[path]) + 1}."
            result[path].append((label, float(score)))
        else:
            path = line
            result[path] = []
    return result


# --------------------------------------------------------------------------
# Fixtures: a seeded ResNet-20 (top and notop files), a folder of odd images


@pytest.fixture(scope="session")
def resnet20_files(tmp_path_factory):
    """{'top': path, 'notop': path}: seeded ResNet-20 weights, Keras 2 layout."""
    folder = tmp_path_factory.mktemp("resnet20")
    files = {}
    for kind, include_top in (("top", True), ("notop", False)):
        model = resnet_keras.ResNet20(weights=None, include_top=include_top, input_shape=(32, 32, 3))
        official_format.randomize(model, seed=3)
        files[kind] = official_format.write_keras2_weights(model, folder / f"resnet20_{kind}.h5")
    return files


@pytest.fixture
def image_dir(tmp_path):
    """A JPEG, a grey PNG and an RGBA PNG of odd sizes (one in a subfolder), and a text file."""
    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    shutil.copy(PHOTOS[0], root / "b_photo.JPG")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (37, 50), dtype=np.uint8), "L").save(root / "a_grey.png")
    # Opaque, so keras' reading (alpha dropped) is the picture; transparency: tests/test_images.py
    rgba = rng.integers(0, 255, (61, 23, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    Image.fromarray(rgba, "RGBA").save(root / "sub" / "c_rgba.png")
    (root / "notes.txt").write_text("not an image")
    return root


def keras_outputs(paths, weights, *, include_top, size=32, pooling=None):
    """What ResNet-20 computes on the files: keras' load_img, RGB, pixels / 255."""
    model = resnet_keras.ResNet20(weights=str(weights), include_top=include_top, pooling=pooling,
                                  input_shape=(size, size, 3))
    import keras

    x = np.stack([keras.utils.img_to_array(keras.utils.load_img(p, target_size=(size, size))) for p in paths])
    return np.asarray(model.predict_on_batch(x / 255.0))
