"""The official weight files as the world wrote them load here exactly as keras loads them.

The official ResNet files were written by keras-applications' resnet_common.py
under Keras 2, with the classifier named `probs`; tf.keras 2.x files name it
`predictions`; Keras 3 writes its own legacy HDF5. Each writer runs for real
(tests/keras2_writers.py in its own process for Keras 2; Keras 3's legacy
writer here), each file loads into our model and into keras.applications'
(computed at test time), and the outputs must agree.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

import official_format
import resnet_keras
from keras_builders import KERAS_BUILDERS, OUR_BUILDERS
from keras2_writers import file_name
from optional import require

require("tf_keras")
require("keras_applications")

WRITERS = ("keras-applications", "tf-keras", "keras3-legacy")
# V1 and V2, top and notop, in every naming: the default run.
DEFAULT = [(w, m, h) for w in WRITERS for m in ("resnet50", "resnet50v2") for h in ("top", "notop")]
# Every other model and head, written as the official files were (by
# keras-applications): the slow run.
ALL = [("keras-applications", m, h) for m in OUR_BUILDERS for h in ("top", "notop")
       if ("keras-applications", m, h) not in DEFAULT]


def _write_keras3_legacy(folder: Path, model_key: str, head: str, seed: int) -> Path:
    from keras.src.legacy.saving import legacy_h5_format

    model = KERAS_BUILDERS[model_key](weights=None, include_top=head == "top")
    official_format.randomize(model, seed=seed)
    path = folder / file_name("keras3-legacy", model_key, head)
    with h5py.File(path, "w") as root:
        legacy_h5_format.save_weights_to_hdf5_group(root, model)
    return path


@pytest.fixture(scope="session")
def world_file(tmp_path_factory):
    """world_file(writer, model, head) -> a file written by that writer (made once, in batches)."""
    folder = tmp_path_factory.mktemp("world")
    batches = ([c for c in DEFAULT if c[0] != "keras3-legacy"], ALL)  # one process each

    def write_keras2(cases):
        specs = [":".join(c) for c in cases if not (folder / file_name(*c)).exists()]
        if specs:
            env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
            subprocess.run(
                [sys.executable, str(Path(__file__).with_name("keras2_writers.py")), str(folder), *specs],
                check=True, env=env, capture_output=True, timeout=1200,
            )

    def make(writer, model_key, head):
        path = folder / file_name(writer, model_key, head)
        if not path.exists():
            if writer == "keras3-legacy":
                _write_keras3_legacy(folder, model_key, head, seed=len(list(folder.iterdir())))
            else:  # Keras 2 starts slowly: its whole batch in one process
                write_keras2(next(b for b in batches if (writer, model_key, head) in b))
        return path

    return make


def _check_same_outputs(path: Path, model_key: str, head: str) -> float:
    include_top = head == "top"
    shape = None if include_top else (64, 64, 3)
    kwargs = dict(include_top=include_top, weights=str(path), input_shape=shape)
    if include_top:
        kwargs["classifier_activation"] = None  # logits: softmax would hide differences
    reference = KERAS_BUILDERS[model_key](**kwargs)
    ours = OUR_BUILDERS[model_key](**kwargs)
    size = 224 if include_top else 64
    x = np.random.default_rng(0).uniform(-1, 1, (2, size, size, 3)).astype("float32")
    want = reference.predict(x, verbose=0)
    got = ours.predict(x, verbose=0)
    error = float(np.max(np.abs(got - want)) / np.max(np.abs(want)))
    assert error <= 1e-6, f"{path.name}: relative error {error:.2e}"
    return error


def _text(name) -> str:
    """An HDF5 name as h5py gives it back: bytes or str, as the writer stored it."""
    return name.decode() if isinstance(name, bytes) else name


def _classifier_names(path: Path) -> list[str]:
    with h5py.File(path, "r") as root:
        names = [_text(n) for n in root.attrs["layer_names"]]
    return [n for n in names if n in ("probs", "predictions")]


@pytest.mark.parametrize("writer, model_key, head", DEFAULT)
@pytest.mark.slow
def test_file_from_each_writer_loads_like_keras(world_file, writer, model_key, head):
    path = world_file(writer, model_key, head)
    if head == "top":  # the naming each writer really uses
        expected = "probs" if writer == "keras-applications" else "predictions"
        assert _classifier_names(path) == [expected]
    error = _check_same_outputs(path, model_key, head)
    print(f"PARITY {writer} {model_key} {head}: relative error {error:.3e}")


@pytest.mark.slow
@pytest.mark.parametrize("writer, model_key, head", ALL)
def test_every_official_file_layout_loads_like_keras(world_file, writer, model_key, head):
    error = _check_same_outputs(world_file(writer, model_key, head), model_key, head)
    print(f"PARITY {writer} {model_key} {head}: relative error {error:.3e}")


def _layout(path: Path) -> tuple:
    """An HDF5 weights file but its values: the weighted layers in order, each weight's name, shape and dtype."""
    with h5py.File(path, "r") as root:
        layers = []
        for layer in map(_text, root.attrs["layer_names"]):
            weights = [_text(name) for name in root[layer].attrs["weight_names"]]
            if weights:
                layers.append((layer, tuple((w, root[layer][w].shape, root[layer][w].dtype.str) for w in weights)))
        return _text(root.attrs["backend"]), tuple(layers)


@pytest.mark.slow
@pytest.mark.parametrize("model_key, head", [(m, h) for m in ("resnet50", "resnet50v2") for h in ("top", "notop")])
def test_the_tests_official_format_writer_writes_the_layout_keras_2_writes(world_file, official_file,
                                                                           model_key, head):
    """official_format.write_keras2_weights (the `official_file` fixture, which the other weights
    tests load) lays a file out as tf.keras 2 did; only the input layer's name, which holds no
    weights, differs between Keras 2 and Keras 3."""
    ours = _layout(official_file(model_key, head == "top"))
    assert ours == _layout(world_file("tf-keras", model_key, head))
    assert len(ours[1]) > 100


@pytest.mark.slow
def test_probs_file_through_the_manifest_is_the_readme_main_job(world_file, mirror, tmp_path, monkeypatch):
    """`ResNet50()` (include_top=True, weights='imagenet') on a keras-applications file."""
    from conftest import write_manifest
    from official_format import md5

    path = world_file("keras-applications", "resnet50", "top")
    name = "resnet50_weights_tf_dim_ordering_tf_kernels.h5"
    url = mirror.add(name, path.read_bytes())
    manifest = write_manifest(tmp_path / "m.json", "resnet50", {"top": (name, [url], "md5:" + md5(path))})
    monkeypatch.setenv("RESNET_KERAS_MANIFEST", str(manifest))
    model = resnet_keras.ResNet50()
    reference = keras.applications.ResNet50(weights=str(path))
    for got, want in zip(model.weights, reference.weights):
        np.testing.assert_array_equal(got.numpy(), want.numpy())


@pytest.mark.network
@pytest.mark.parametrize("model_key", list(OUR_BUILDERS))
def test_real_imagenet_weights_match_keras(model_key):
    """With internet: the six real files through the shipped manifest, against keras' own download."""
    from resnet_keras import images as _images

    images = sorted((Path(__file__).parents[1] / "examples" / "images").glob("*.jpg"))
    x = _images.load_batch(images, (224, 224))
    module = resnet_keras.resnet_v2 if model_key.endswith("v2") else resnet_keras.resnet
    x = module.preprocess_input(x.astype("float32"))
    ours = OUR_BUILDERS[model_key](classifier_activation=None).predict(x, verbose=0)
    want = KERAS_BUILDERS[model_key](classifier_activation=None).predict(x, verbose=0)
    np.testing.assert_allclose(ours, want, rtol=1e-6, atol=1e-5)
    assert np.array_equal(ours.argmax(-1), want.argmax(-1))
