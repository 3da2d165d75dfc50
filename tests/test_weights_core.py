"""Official-format weight files load as they are and give keras' outputs;
"imagenet" resolves through the manifest into keras' own cache."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import official_format
import resnet_keras
from conftest import write_manifest
from keras_builders import KERAS_BUILDERS, OUR_BUILDERS
from facts import table
from resnet_keras.weights.manifest import records
from resnet_keras.errors import IntegrityError, OfflineError, WeightsMismatchError

KERAS_BASE = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
# md5 of the official files, (with top, notop); source: tests/data/facts.json.
OFFICIAL_MD5 = table("official_md5", "top", "notop")


def relative_error(ours, theirs) -> float:
    return float(np.max(np.abs(ours - theirs)) / np.max(np.abs(theirs)))


def keras_parity(official_file, key, include_top):
    """Relative error between our model and keras' on the same official file."""
    path = official_file(key, include_top)
    size = 224 if include_top else 64
    # Logits, not softmax: random weights give near one-hot softmax outputs
    # that would hide small differences.
    kwargs = dict(classifier_activation=None) if include_top else dict(include_top=False, input_shape=(size, size, 3))
    theirs = KERAS_BUILDERS[key](weights=None, **kwargs)
    theirs.load_weights(str(path))  # keras' own legacy-HDF5 loader
    ours = OUR_BUILDERS[key](weights=path, **kwargs)
    images = np.random.default_rng(1).uniform(0, 255, (2, size, size, 3)).astype("float32")
    x = resnet_keras.resnet_v2.preprocess_input(images) if key.endswith("v2") else resnet_keras.resnet.preprocess_input(images)
    a, b = ours.predict(x, verbose=0), theirs.predict(x, verbose=0)
    assert a.shape == b.shape
    return relative_error(a, b)


@pytest.mark.parametrize("key", ["resnet50", "resnet50v2"])
@pytest.mark.slow
def test_official_format_file_gives_keras_outputs(official_file, key):
    error = keras_parity(official_file, key, include_top=True)
    print(f"PARITY {key} include_top=True relative_error={error:.3e}")
    assert error < 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("include_top", [True, False], ids=["top", "notop"])
@pytest.mark.parametrize("key", sorted(OUR_BUILDERS))
def test_all_official_format_files_give_keras_outputs(official_file, key, include_top):
    error = keras_parity(official_file, key, include_top)
    print(f"PARITY {key} include_top={include_top} relative_error={error:.3e}")
    assert error < 1e-5


def test_shipped_manifest_has_the_official_files():
    manifest = records.shipped_manifest()
    for key, (top, notop) in OFFICIAL_MD5.items():
        entry = manifest.entry(key, "imagenet")
        assert entry.default and entry.preprocessing == ("tf" if key.endswith("v2") else "caffe")
        for include_top, digest, suffix in [(True, top, ""), (False, notop, "_notop")]:
            wfile = entry.file(include_top)
            name = f"{key}_weights_tf_dim_ordering_tf_kernels{suffix}.h5"
            assert wfile.file_name == name
            assert wfile.urls == (KERAS_BASE + name,)
            assert wfile.hash == f"md5:{digest}"


def test_package_manifest_is_the_top_level_file():
    top_level = Path(__file__).parents[1] / "weights_manifest.json"
    assert records.SHIPPED_MANIFEST.read_bytes() == top_level.read_bytes()


def _serve(mirror, tmp_path, monkeypatch, path, key="resnet50", kind="top", input_size=224):
    url = mirror.add(path.name, path.read_bytes())
    manifest = write_manifest(
        tmp_path / "mirror.json", key, {kind: (path.name, [url], "md5:" + official_format.md5(path))},
        input_size=input_size,
    )
    monkeypatch.setenv("RESNET_KERAS_MANIFEST", str(manifest))
    return path.name


@pytest.mark.slow
def test_imagenet_downloads_through_manifest_into_keras_cache(official_file, mirror, tmp_path, monkeypatch, isolated_env):
    path = official_file("resnet50", include_top=False)
    name = _serve(mirror, tmp_path, monkeypatch, path, kind="notop")
    kwargs = dict(include_top=False, pooling="avg", input_shape=(64, 64, 3))
    model = resnet_keras.ResNet50(weights="imagenet", **kwargs)
    cached = isolated_env / name
    assert cached.read_bytes() == path.read_bytes()  # keras' cache: $KERAS_HOME/models
    assert [p.name for p in isolated_env.iterdir()] == [name]  # no temp leftovers
    reference = resnet_keras.ResNet50(weights=path, **kwargs)
    x = np.random.default_rng(0).normal(size=(1, 64, 64, 3)).astype("float32")
    np.testing.assert_array_equal(model.predict(x, verbose=0), reference.predict(x, verbose=0))
    resnet_keras.ResNet50(weights="imagenet", **kwargs)  # second build: from the cache
    assert mirror.count(name) == 1


@pytest.mark.slow
def test_file_keras_already_downloaded_is_used_offline(official_file, mirror, tmp_path, monkeypatch, isolated_env):
    path = official_file("resnet50", include_top=False)
    name = _serve(mirror, tmp_path, monkeypatch, path, kind="notop")
    isolated_env.mkdir(parents=True)
    shutil.copy(path, isolated_env / name)  # as keras.utils.get_file leaves it
    resnet_keras.ResNet50(weights="imagenet", include_top=False, offline=True)
    monkeypatch.setenv("RESNET_KERAS_OFFLINE", "1")
    resnet_keras.ResNet50(weights="imagenet", include_top=False)
    assert mirror.requests == []


@pytest.mark.slow
def test_corrupt_cached_file_is_replaced_online_and_named_offline(official_file, mirror, tmp_path, monkeypatch, isolated_env):
    path = official_file("resnet50", include_top=False)
    name = _serve(mirror, tmp_path, monkeypatch, path, kind="notop")
    isolated_env.mkdir(parents=True)
    (isolated_env / name).write_bytes(path.read_bytes()[:-100])  # truncated
    with pytest.raises(OfflineError, match=f"{name} is corrupt"):
        resnet_keras.ResNet50(weights="imagenet", include_top=False, offline=True)
    resnet_keras.ResNet50(weights="imagenet", include_top=False)
    assert (isolated_env / name).read_bytes() == path.read_bytes()


# The fast tier's weights-path checks use a ResNet20 file in the official layout;
# the ResNet50 file (a full-size build) is the slow tier's.
def test_offline_cold_cache_says_what_to_put_where(mirror, tmp_path, monkeypatch, isolated_env):
    path = official_format.seeded_resnet20(tmp_path / "resnet20_weights_notop.h5")
    name = _serve(mirror, tmp_path, monkeypatch, path, key="resnet20", kind="notop", input_size=32)
    with pytest.raises(OfflineError) as info:
        resnet_keras.ResNet20(weights="imagenet", include_top=False, offline=True)
    message = str(info.value)
    for part in (name, official_format.md5(path), mirror.url(name), str(isolated_env)):
        assert part in message
    assert mirror.requests == []


def test_wrong_bytes_from_server_never_reach_the_cache(mirror, tmp_path, monkeypatch, isolated_env):
    path = official_format.seeded_resnet20(tmp_path / "resnet20_weights_notop.h5")
    manifest = write_manifest(
        tmp_path / "m.json", "resnet20",
        {"notop": (path.name, [mirror.add(path.name, b"<html>moved</html>")], "md5:" + official_format.md5(path))},
    )
    with pytest.raises(IntegrityError, match=path.name):
        resnet_keras.ResNet20(weights="imagenet", include_top=False, manifest=manifest)
    assert not any(isolated_env.iterdir())


def test_file_for_the_other_head_is_named_and_model_unchanged(tmp_path):
    path = official_format.seeded_resnet20(tmp_path / "resnet20_weights.h5", include_top=True)
    model = resnet_keras.ResNet20(weights=None, include_top=False)
    before = [w.numpy().copy() for w in model.weights]
    with pytest.raises(WeightsMismatchError, match="include_top=True"):
        resnet_keras.load_weights(model, path)
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(before, model.weights))
