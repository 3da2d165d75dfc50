"""Small HDF5 files that cost gigabytes or load wrong values (issue 19, part 3).

Each is refused through `resnet_keras.load_weights` with a typed one-line
error, in bounded time and memory (measured here: wall time and the peak of
Python's allocations, NumPy's arrays included), and leaves the model as it was.
Before the fixes: repeated names ran past 60 s and 4 GB, a float64 1e39
loaded as Inf, and a dataset never written loaded as zeros.
"""

from __future__ import annotations

import io
import shutil
import time
import tracemalloc

import h5py
import keras
import numpy as np
import pytest

import official_format
from cache_checks import build_tiny, tiny_spec
from hostile_files import repeat_names, share_one_heap_string, snapshot
import resnet_keras
from resnet_keras.errors import WeightsFormatError
from resnet_keras.architecture import build
from resnet_keras.weights.formats import hdf5

FAST_SECONDS = 1.0  # measured ~0.1-0.3 s on a busy 2-core machine; before the fix: > 60 s
SMALL_BYTES = 16 << 20


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory):
    """An official-format file of the tiny notop net, and its values."""
    model = build_tiny()
    official_format.randomize(model, seed=19)
    path = official_format.write_keras2_weights(model, tmp_path_factory.mktemp("h5") / "tiny.h5")
    return path, [w.numpy() for w in model.weights]


@pytest.fixture
def copy(tiny_file, tmp_path):
    return lambda name="edited.h5": shutil.copy(tiny_file[0], tmp_path / name)


@pytest.fixture
def fresh():
    model = build_tiny()
    return model, snapshot(model)


def refused(model, path, phrase: str) -> tuple[str, float, int]:
    """Load `path`: WeightsFormatError naming `phrase`; (message, seconds, peak bytes)."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(WeightsFormatError) as info:
            resnet_keras.load_weights(model, path)
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(info.value)
    assert phrase in message and str(path) in message and "\n" not in message, message
    return message, seconds, peak


def _replace(path, layer: str, weight: str, **create) -> None:
    with h5py.File(path, "r+") as root:
        group = root[layer]
        full = next(n.decode() for n in group.attrs["weight_names"] if n.decode().split("/")[-1].startswith(weight))
        del group[full]
        group.create_dataset(full, **create)


# -- name lists: bounded before they are read, no repeats, linear matching ---------------


@pytest.mark.parametrize("layer_times, weight_times", [(60_000, 5_000), (1, 60_000)])
def test_repeated_names_cost_neither_time_nor_memory(copy, fresh, layer_times, weight_times):
    """A 1.2 MB file listing one layer 60,000 times and its kernel 5,000 times (once: 300 M lookups)."""
    model, unchanged = fresh
    path = repeat_names(copy(), layer_times, weight_times)
    assert 0.5e6 < path.stat().st_size < 2e6
    message, seconds, peak = refused(model, path, "more than once")
    which = "layer_names" if layer_times > 1 else "weight_names"
    assert f"attribute '{which}'" in message and "'conv1_conv" in message
    assert seconds < FAST_SECONDS and peak < SMALL_BYTES, (seconds, peak)
    assert unchanged()


def test_two_names_of_one_dataset_are_refused(copy, fresh):
    """'x' and './x' are one dataset: a repeat that a comparison of names cannot see."""
    model, unchanged = fresh
    path = copy()
    with h5py.File(path, "r+") as root:
        names = list(root["conv1_conv"].attrs["weight_names"])
        root["conv1_conv"].attrs["weight_names"] = np.array([names[0], b"./" + names[0]])
    refused(model, path, "is an object the file lists twice")
    assert unchanged()


@pytest.mark.parametrize("names, phrase", [
    ([b"n" * 2000], "holds names of 2,000 bytes (at most 1,024)"),
    ([b"n%06d" % i for i in range(100_001)], "exceed 100,000 names or 4,194,304 bytes"),
])
def test_name_lists_beyond_the_budget_are_refused_unread(copy, fresh, names, phrase):
    model, unchanged = fresh
    path = copy()
    with h5py.File(path, "r+") as root:
        del root.attrs["layer_names"]
        for i, part in enumerate(np.array_split(np.array(names), max(1, len(names) // 5000))):
            root.attrs[f"layer_names{i}"] = part
    _, seconds, _ = refused(model, path, phrase)
    assert seconds < FAST_SECONDS
    assert unchanged()


@pytest.mark.parametrize("libver", ["earliest", "latest"])  # object headers of version 1 and 2
def test_variable_length_name_lists_load_from_bytes_in_memory(tiny_file, tmp_path, fresh, libver):
    """Keras 3's full-model files write the lists as variable-length strings: their
    references are read for the bounds, from any binary file object."""
    source, expected = tiny_file
    path = tmp_path / "vlen.h5"
    with h5py.File(source) as src, h5py.File(path, "w", libver=libver) as dst:
        layers = [n.decode() for n in src.attrs["layer_names"]]
        dst.attrs["layer_names"] = layers
        for layer in layers:
            names = [n.decode() for n in src[layer].attrs["weight_names"]]
            dst.create_group(layer).attrs["weight_names"] = names or np.asarray([])  # as Keras writes []
            for name in names:
                dst[layer].create_dataset(name, data=src[layer][name][()])
    model, _ = fresh
    build.load_file(model, tiny_spec(), io.BytesIO(path.read_bytes()), path)
    for got, want in zip(model.weights, expected):
        np.testing.assert_array_equal(got.numpy(), want)


def test_variable_length_names_that_share_one_string_are_refused_unread(tmp_path, fresh):
    """Keras 3 writes variable-length names; 3,000 entries referring to one 200 KB string
    would cost 600 MB inside HDF5: their references are read and refused first."""
    model, unchanged = fresh
    path = share_one_heap_string(tmp_path / "shared.h5", entries=3000, length=200_000)
    assert path.stat().st_size < 400_000
    _, seconds, peak = refused(model, path, "variable-length strings stored with entries that refer to one stored string")
    assert seconds < FAST_SECONDS and peak < SMALL_BYTES, (seconds, peak)
    assert unchanged()


def test_damaged_object_headers_give_only_the_typed_refusal(tmp_path):
    """The reader of stored references, on 500 random byte changes near an object header:
    it returns lengths or raises its refusal, never another error."""
    path = tmp_path / "names.h5"
    with h5py.File(path, "w") as root:
        root.attrs["layer_names"] = ["conv1", "bn", "dense"]
        root.attrs["backend"] = "tensorflow"
    data = path.read_bytes()
    rng = np.random.default_rng(0)
    with h5py.File(path) as root:  # HDF5 reads the honest file; the parser a damaged copy
        header = h5py.h5o.get_info(root.id).addr
        assert hdf5.string_lengths(io.BytesIO(data), root, {"layer_names": 3}) == {"layer_names": [5, 2, 5]}
        for _ in range(500):
            damaged = bytearray(data)
            for at in rng.integers(0, header + 300, size=rng.integers(1, 4)):
                damaged[at] = rng.integers(256)
            try:
                hdf5.string_lengths(io.BytesIO(bytes(damaged)), root, {"layer_names": 3})
            except hdf5.Unbounded:
                pass


# -- values: the rule every reader shares --------------------------------------------------


def test_a_float64_beyond_float32_is_refused_not_loaded_as_inf(copy, fresh):
    model, unchanged = fresh
    path = copy()
    value = np.full((4,), 0.5)
    value[1] = 1e39  # finite in float64, Inf in float32
    _replace(path, "conv2_block1_1_bn", "moving_variance", data=value)
    message, _, _ = refused(model, path, "conv2_block1_1_bn/moving_variance: holds values beyond the range of float32")
    assert "1e+39" in message
    assert unchanged()


def test_float16_and_float64_datasets_load_as_float32(copy, fresh, tiny_file):
    model, _ = fresh
    path = copy()
    kernel = tiny_file[1][[w.path for w in model.weights].index("conv1_conv/kernel")]
    beta = tiny_file[1][[w.path for w in model.weights].index("conv1_bn/beta")]
    _replace(path, "conv1_conv", "kernel", data=kernel.astype("float16"))
    _replace(path, "conv1_bn", "beta", data=beta.astype("float64"))
    resnet_keras.load_weights(model, path)
    np.testing.assert_array_equal(model.get_layer("conv1_conv").kernel.numpy(), kernel.astype("float16").astype("float32"))
    np.testing.assert_array_equal(model.get_layer("conv1_bn").beta.numpy(), beta)


def test_values_beyond_a_float16_models_range_are_refused(copy):
    """Finite in float32, Inf once cast to the model's float16: checked after that cast."""
    keras.config.set_dtype_policy("float16")  # restored by conftest
    model = build_tiny()
    unchanged = snapshot(model)
    path = copy()
    _replace(path, "conv1_bn", "beta", data=np.full((64,), 1e5, "float32"))
    refused(model, path, "conv1_bn/beta: holds values beyond the range of the model's float16")
    assert unchanged()


@pytest.mark.parametrize("how", ["contiguous", "chunked, half written"])
def test_a_dataset_never_written_is_refused_not_loaded_as_zeros(copy, fresh, how):
    model, unchanged = fresh
    path = copy()
    if how == "contiguous":
        _replace(path, "conv1_conv", "kernel", shape=(7, 7, 3, 64), dtype="float32")
    else:
        _replace(path, "conv1_conv", "kernel", shape=(7, 7, 3, 64), dtype="float32", chunks=(7, 7, 3, 32))
        with h5py.File(path, "r+") as root:  # one of its two chunks
            group = root["conv1_conv"]
            group[group.attrs["weight_names"][0].decode()][..., :32] = 1.0
    refused(model, path, "conv1_conv/kernel: dataset /conv1_conv/conv1_conv/kernel:0 was created but never written")
    assert unchanged()


# -- structure bounds the README states ------------------------------------------------------


def test_groups_nested_more_than_8_deep_are_refused(copy, fresh, no_data_read):
    model, unchanged = fresh
    path = copy()
    with h5py.File(path, "r+") as root:
        root.create_group("/".join(["deep"] * 9))
    refused(model, path, "groups nested more than 8 deep")
    assert no_data_read == [] and unchanged()


def test_more_objects_than_the_bound_are_refused(copy, fresh, no_data_read, monkeypatch):
    model, unchanged = fresh
    monkeypatch.setattr(hdf5, "MAX_OBJECTS", 50)  # the tiny file has more
    refused(model, copy(), "more than 50 objects")
    assert no_data_read == [] and unchanged()
