"""FAULTS.md "Weight files": every bad file is refused with all its problems at
once, the model is left unchanged, unsafe HDF5 structures are refused before a
byte of data is read, and no code or pickle from a file ever runs."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

import official_format
from cache_checks import build_tiny, entry, md5, user_manifest
from resnet_keras.weights.formats import hdf5
from resnet_keras.architecture import build
from resnet_keras.architecture.specs import SPECS
from resnet_keras.errors import UnknownWeightsError, WeightsFormatError, WeightsMismatchError


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An official-format file of the tiny notop net and the values it holds."""
    model = build_tiny(include_top=False)
    official_format.randomize(model, seed=7)
    path = tmp_path_factory.mktemp("ref") / "tiny_notop.h5"
    official_format.write_keras2_weights(model, path)
    return path, [w.numpy() for w in model.weights]


@pytest.fixture
def variant(reference, tmp_path):
    """variant(edit) -> a copy of the reference file after `edit(h5py root)`."""

    def make(edit, name="variant.h5"):
        path = tmp_path / name
        shutil.copy(reference[0], path)
        with h5py.File(path, "r+") as root:
            edit(root)
        return path

    return make


@pytest.fixture
def fresh():
    """A tiny model and a check that it is unchanged."""
    model = build_tiny(include_top=False)
    before = [w.numpy().copy() for w in model.weights]

    def unchanged():
        return all(np.array_equal(a, w.numpy()) for a, w in zip(before, model.weights))

    return model, unchanged


def _names(root):
    return [n.decode() for n in root.attrs["layer_names"]]


def _replace(root, layer, weight, value):
    group = root[layer]
    full = next(n.decode() for n in group.attrs["weight_names"] if n.decode().split("/")[-1].startswith(weight))
    del group[full]
    group.create_dataset(full, data=value)


def mismatch(model, path, *phrases, error=WeightsMismatchError):
    """Loading raises `error` (values that break the rule: WeightsFormatError), naming each phrase."""
    with pytest.raises(error) as info:
        hdf5.load_weights(model, path)
    message = str(info.value)
    for phrase in phrases:
        assert phrase in message, message
    return message


# -- mismatches: all reported at once, model unchanged ---------------------------------


def test_good_file_loads(reference, fresh):
    model, _ = fresh
    hdf5.load_weights(model, reference[0])
    for got, want in zip(model.weights, reference[1]):
        np.testing.assert_array_equal(got.numpy(), want)


def test_layer_names_are_not_matched_order_is(variant, fresh, reference):
    """As keras: weighted layers pair up in order; the file's names only label messages."""
    def rename(root):
        names = _names(root)
        root.move("conv2_block1_1_conv", "conv2_block1_1_convX")
        names[names.index("conv2_block1_1_conv")] = "conv2_block1_1_convX"
        root.attrs["layer_names"] = np.array([n.encode() for n in names])
        _replace(root, "conv2_block1_1_convX", "bias", np.zeros(5, "float32"))

    model, unchanged = fresh
    path = variant(rename)
    mismatch(model, path, "conv2_block1_1_conv (file: conv2_block1_1_convX)/bias: shape (5,) in the file", "model unchanged")
    assert unchanged()
    with h5py.File(path, "r+") as root:  # the same file with a fitting bias loads
        _replace(root, "conv2_block1_1_convX", "bias", reference[1][[w.path for w in model.weights].index("conv2_block1_1_conv/bias")])
    hdf5.load_weights(model, path)
    for got, want in zip(model.weights, reference[1]):
        np.testing.assert_array_equal(got.numpy(), want)


def test_shape_mismatch(variant, fresh):
    model, unchanged = fresh
    path = variant(lambda root: _replace(root, "conv1_conv", "kernel", np.zeros((7, 7, 3, 65), "float32")))
    mismatch(model, path, "conv1_conv/kernel: shape (7, 7, 3, 65) in the file, (7, 7, 3, 64) in the model")
    assert unchanged()


@pytest.mark.parametrize("change", ["more", "fewer"])
def test_more_or_fewer_layers(variant, fresh, change):
    def edit(root):
        names = _names(root)
        if change == "fewer":
            names.remove("conv5_block1_3_bn")
        else:
            group = root.create_group("extra_dense")
            group.attrs["weight_names"] = np.array([b"extra_dense/kernel:0"])
            group.create_dataset("extra_dense/kernel:0", data=np.zeros((2, 2), "float32"))
            names.append("extra_dense")
        root.attrs["layer_names"] = np.array([n.encode() for n in names])

    model, unchanged = fresh
    n = len(hdf5.weighted_layers(model))
    held = n + 1 if change == "more" else n - 1
    only = "Only in the file: ['extra_dense']" if change == "more" else "only in the model: ['conv5_block1_3_bn']"
    mismatch(model, variant(edit), f"holds weights for {held} layers", f"has {n} layers with weights", only)
    assert unchanged()


def test_wrong_weight_count_per_layer(variant, fresh):
    def drop_bias(root):
        names = list(root["conv1_conv"].attrs["weight_names"])
        root["conv1_conv"].attrs["weight_names"] = np.array(names[:1])

    model, unchanged = fresh
    mismatch(model, variant(drop_bias), "layer 'conv1_conv': expects 2 weights, the file has 1")
    assert unchanged()


def test_all_mismatches_are_reported_at_once(variant, fresh):
    def several(root):
        _replace(root, "conv1_conv", "kernel", np.zeros((1, 1, 3, 64), "float32"))
        _replace(root, "conv3_block1_2_bn", "gamma", np.full((4,), np.nan, "float32"))
        names = list(root["conv4_block1_0_conv"].attrs["weight_names"])
        root["conv4_block1_0_conv"].attrs["weight_names"] = np.array(names[:1])

    model, unchanged = fresh
    message = mismatch(model, variant(several), "(3 problems, model unchanged)", "conv1_conv/kernel: shape",
                       "conv3_block1_2_bn/gamma: contains NaN or Inf", "'conv4_block1_0_conv': expects 2 weights",
                       error=WeightsFormatError)
    assert message.count(";") >= 2
    assert unchanged()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_weights(variant, fresh, bad):
    def poison(root):
        value = np.ones((4,), "float32")
        value[2] = bad
        _replace(root, "conv2_block1_1_bn", "moving_variance", value)

    model, unchanged = fresh
    mismatch(model, variant(poison), "conv2_block1_1_bn/moving_variance: contains NaN or Inf", error=WeightsFormatError)
    assert unchanged()


@pytest.mark.parametrize("dtype, value", [
    ("int32", np.ones((64,), "int32")),
    ("string", np.array([b"1.0"] * 64)),
    ("vlen string", np.array(["1.0"] * 64, dtype=h5py.string_dtype())),
])
def test_integer_or_string_datasets(variant, fresh, dtype, value):
    model, unchanged = fresh
    path = variant(lambda root: _replace(root, "conv1_bn", "beta", value))
    mismatch(model, path, "conv1_bn/beta: dtype", "is not floating point", error=WeightsFormatError)
    assert unchanged()


# -- unsafe HDF5 structures: refused before any data is read ---------------------------


def _relink(root, kind, tmp_dir: Path):
    group = root["conv1_conv"]
    full = group.attrs["weight_names"][1].decode()  # the bias
    del group[full]
    if kind == "soft link":
        group[full] = h5py.SoftLink("/conv1_bn/" + root["conv1_bn"].attrs["weight_names"][0].decode())
    elif kind == "external link":
        with h5py.File(tmp_dir / "other.h5", "w") as other:
            other["bias"] = np.zeros(64, "float32")
        group[full] = h5py.ExternalLink(str(tmp_dir / "other.h5"), "/bias")
    elif kind == "external dataset":
        (tmp_dir / "raw.bin").write_bytes(np.zeros(64, "float32").tobytes())
        group.create_dataset(full, shape=(64,), dtype="float32", external=[(str(tmp_dir / "raw.bin"), 0, 256)])
    elif kind == "virtual dataset":
        with h5py.File(tmp_dir / "source.h5", "w") as source:
            source["bias"] = np.zeros(64, "float32")
        layout = h5py.VirtualLayout(shape=(64,), dtype="float32")
        layout[:] = h5py.VirtualSource(str(tmp_dir / "source.h5"), "bias", shape=(64,))
        group.create_virtual_dataset(full, layout)
    elif kind == "unknown filter":
        group.create_dataset(full, data=np.zeros(64, "float32"), compression="lzf")
    elif kind == "shape bomb":
        # 10^5 x 10^5 float32 = 40 GB declared, nothing stored.
        group.create_dataset(full, shape=(100_000, 100_000), dtype="float32", chunks=(8, 8))


@pytest.mark.parametrize("kind, phrase", [
    ("soft link", "SoftLink at /conv1_conv/"),
    ("external link", "ExternalLink at /conv1_conv/"),
    ("external dataset", "external dataset /conv1_conv/"),
    ("virtual dataset", "virtual dataset /conv1_conv/"),
    ("unknown filter", "unsupported compression filter [32000]"),
    ("shape bomb", "declares shape (100000, 100000) (40,000,000,000 bytes) but stores 0 bytes"),
])
def test_unsafe_structures_are_refused_before_any_data_is_read(variant, fresh, tmp_path, no_data_read, kind, phrase):
    model, unchanged = fresh
    path = variant(lambda root: _relink(root, kind, tmp_path))
    with pytest.raises(WeightsFormatError, match="is not a usable Keras HDF5 weights file") as info:
        hdf5.load_weights(model, path)
    assert phrase in str(info.value) and str(path) in str(info.value)
    assert no_data_read == [] and unchanged()


def test_a_big_but_honest_dataset_is_not_a_bomb(tmp_path, no_data_read):
    path = tmp_path / "big.h5"
    with h5py.File(path, "w") as root:
        root.attrs["layer_names"] = np.array([], dtype="S1")
        root.create_dataset("big", data=np.random.default_rng(0).normal(size=(5_000_000,)).astype("float32"))
        hdf5.check_structure(root, path)  # 20 MB stored as 20 MB: fine


# -- local paths that are not weights files ------------------------------------------------


@pytest.mark.parametrize("kind, phrase", [
    ("empty", "it is empty"),
    ("html", "it is an HTML page"),
    ("directory", "it is a directory"),
    ("text", "it is not an HDF5 file"),
])
def test_local_paths_that_are_not_weights_files_fail_before_the_build(tmp_path, kind, phrase, monkeypatch):
    path = tmp_path / "w.h5"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "html":
        path.write_bytes(b"<!DOCTYPE html>\n<html><body>Not found</body></html>")
    elif kind == "directory":
        path.mkdir()
    else:
        path.write_text("weights, honest\n")
    monkeypatch.setattr(keras.layers, "Input", lambda *a, **k: pytest.fail("built before the file was checked"))
    with pytest.raises(WeightsFormatError, match=phrase) as info:
        build_tiny(weights=str(path))
    assert str(path) in str(info.value) and "Keras 2 layout" in str(info.value)


def test_truncated_local_file(reference, tmp_path, fresh):
    path = tmp_path / "truncated.h5"
    data = reference[0].read_bytes()
    path.write_bytes(data[: len(data) // 2])
    model, unchanged = fresh
    with pytest.raises(WeightsFormatError, match="HDF5 could not read it") as info:
        hdf5.load_weights(model, path)
    assert str(path) in str(info.value) and info.value.__cause__ is not None
    assert unchanged()


def test_missing_local_file_is_file_not_found_with_the_path(tmp_path):
    path = tmp_path / "nowhere" / "w.h5"
    with pytest.raises(FileNotFoundError, match=f"Weights file not found: {path}"):
        build_tiny(weights=str(path))


# -- no code from a file ever runs -----------------------------------------------------------


def _evil_model(marker: Path, body=None):
    """A model whose Lambda layer creates `marker` whenever it runs."""
    code = f"lambda t: (__import__('pathlib').Path({str(marker)!r}).touch(), t)[1]"
    if body is None:
        inputs = keras.Input((4,))
        x = keras.layers.Dense(3, name="dense")(inputs)
    else:
        inputs, x = body.inputs, body.outputs[0]
    x = keras.layers.Lambda(eval(code), name="evil")(x)  # noqa: S307 (the point of the test)
    model = keras.Model(inputs, x)
    marker.unlink()  # building the graph ran it once; from now on it must not run
    return model


def test_keras_archive_with_lambda_never_runs(tmp_path):
    marker = tmp_path / "marker"
    archive = tmp_path / "evil.keras"
    _evil_model(marker).save(archive)
    for path in (archive, shutil.copy(archive, tmp_path / "evil.h5")):
        with pytest.raises(WeightsFormatError, match="whole saved Keras model|zip archive"):
            build_tiny(weights=str(path))
        with pytest.raises(WeightsFormatError, match="zip archive"):
            hdf5.load_weights(build_tiny(), path)
    assert not marker.exists()
    keras.saving.load_model(archive, safe_mode=False)  # control: the marker works
    assert marker.exists()


def test_full_model_h5_with_lambda_loads_only_weights_and_never_runs_code(tmp_path, reference):
    marker = tmp_path / "marker"
    source = build_tiny(include_top=False)
    hdf5.load_weights(source, reference[0])
    full = tmp_path / "full_model.h5"
    _evil_model(marker, body=source).save(full)  # legacy full-model HDF5 with model_config
    with h5py.File(full) as root:
        assert "model_config" in root.attrs and "model_weights" in root
    model = build_tiny(weights=str(full))
    for got, want in zip(model.weights, reference[1]):
        np.testing.assert_array_equal(got.numpy(), want)
    assert not marker.exists()
    keras.saving.load_model(full, safe_mode=False)  # control: loading the config runs it
    assert marker.exists()


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


@pytest.mark.parametrize("suffix", [".pkl", ".npz", ".npy", ".pickle"])  # .pth, .pt, .safetensors: test_torch_checkpoints
def test_other_formats_are_refused_and_never_unpickled(tmp_path, suffix):
    marker = tmp_path / "marker"
    path = tmp_path / f"weights{suffix}"
    if suffix == ".npz":
        np.savez(path, a=np.array([_Evil(str(marker))], dtype=object))
    else:
        path.write_bytes(pickle.dumps(_Evil(str(marker))))
    with pytest.raises(WeightsFormatError, match="loads only HDF5 weights files .* never unpickles") as info:
        build_tiny(weights=str(path))
    assert f"Received: weights='{path}'" in str(info.value)
    assert not marker.exists()


def test_pickle_named_h5_is_refused_by_its_bytes(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "weights.h5"
    path.write_bytes(pickle.dumps(_Evil(str(marker))))
    with pytest.raises(WeightsFormatError, match="pickle or NumPy file; those are never loaded"):
        build_tiny(weights=str(path))
    assert not marker.exists()


# -- include_top mismatch ---------------------------------------------------------------------


def test_file_with_head_for_a_model_without(tmp_path):
    top = build_tiny(include_top=True, classes=10)
    path = official_format.write_keras2_weights(top, tmp_path / "top.h5")
    with pytest.raises(WeightsMismatchError, match="The file has a classifier head: build with include_top=True"):
        build_tiny(include_top=False, weights=str(path))


def test_file_without_head_for_a_model_with(reference):
    with pytest.raises(WeightsMismatchError, match="The file has no classifier head: build with include_top=False"):
        build_tiny(include_top=True, weights=str(reference[0]), classes=10)


def test_manifest_entry_without_a_file_for_that_head(tmp_path, isolated_env, mirror):
    url = mirror.add("n.h5", b"x")
    manifest = user_manifest(tmp_path / "m.json", {"resnet50": {"notoponly": entry({"notop": ("n.h5", [url], md5(b"x"))})}})
    with pytest.raises(UnknownWeightsError, match=r"'notoponly' of resnet50 have no file for include_top=True.*Available: \['notop'\]"):
        build.resolve(SPECS["resnet50"], "notoponly", include_top=True, manifest=manifest)
    assert mirror.requests == [] and not isolated_env.exists()
