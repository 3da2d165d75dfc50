"""Official-format weight files load as they are (keras' outputs from every writer: tests/test_official_files.py);
"imagenet" resolves through the manifest into keras' own cache."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import official_format
import resnet_keras
from conftest import write_manifest
from facts import table
from resnet_keras.weights.manifest import records
from resnet_keras.errors import IntegrityError, OfflineError, WeightsMismatchError

KERAS_BASE = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
# md5 of the official files, (with top, notop); source: tests/data/facts.json.
OFFICIAL_MD5 = table("official_md5", "top", "notop")


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
