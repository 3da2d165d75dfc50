"""Checkpoint formats (issue 19, part 5) and the one value rule every reader shares.

`resnet_keras/weights/formats/registry.py` decides for HDF5, `.pth` and `.safetensors`
alike: float16, bfloat16 and float64 are converted to float32 and
range-checked; NaN, Inf, overflow, sparse and quantized tensors, and
integer or bool data are refused with a WeightsFormatError naming the file
and the key, before anything is assigned. Before the fixes a bfloat16
safetensors raised a raw `KeyError: 'BF16'`, a sparse tensor a raw
TypeError, and a zip whose end record understated its entries passed the
entry rule.
"""

from __future__ import annotations

import json
import struct
import sys
import time
import zipfile
from types import SimpleNamespace

import numpy as np
import pytest

from optional import require

# torch comes with the test-slow extra (tests/conftest.py: NEEDS_SLOW_EXTRA)
pytestmark = pytest.mark.slow
torch = require("torch")
save_file = require("safetensors.torch").save_file
import official_format  # noqa: E402
from hostile_files import (  # noqa: E402
    TINY_TORCH,
    build_tiny_torch,
    load_in_memory,
    safetensors_bytes,
    set_zip_entry_count,
    snapshot,
    torch_state,
)
from resnet_keras.errors import MissingDependencyError, WeightsFormatError  # noqa: E402
from resnet_keras.weights.formats import torch_files  # noqa: E402


@pytest.fixture(scope="module")
def source():
    """A tiny torch-layout net with distinct random weights, and its state dict."""
    model = build_tiny_torch()
    official_format.randomize(model, seed=23)
    return model, torch_state(model)


@pytest.fixture
def fresh():
    model = build_tiny_torch()
    return model, snapshot(model)


def write(path, state: dict, kind: str):
    """`state` saved as users' tools save it: torch.save, safetensors, or Keras 2's HDF5 writer."""
    if kind == "pth":
        torch.save(state, path)
    elif kind == "safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def refused_everywhere(model, unchanged, path, *phrases) -> str:
    """Through a builder (public API) and into an existing model from bytes in memory."""
    with pytest.raises(WeightsFormatError) as info:
        build_tiny_torch(weights=str(path))
    with pytest.raises(WeightsFormatError) as again:
        load_in_memory(model, TINY_TORCH, path)
    for message in (str(info.value), str(again.value)):
        assert str(path) in message and "\n" not in message and "Traceback" not in message, message
        for phrase in phrases:
            assert phrase in message, message
    assert unchanged()
    return str(info.value)


# -- float16, bfloat16, float64 load as float32, in every format -------------------------


@pytest.mark.parametrize("kind", ["pth", "safetensors"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_other_float_dtypes_load_as_float32(source, tmp_path, kind, dtype):
    model, state = source
    path = write(tmp_path / f"w.{kind}", torch_state(model, dtype), kind)
    loaded = build_tiny_torch(weights=str(path))
    for want, got in zip(model.weights, loaded.weights):
        expected = torch.from_numpy(want.numpy()).to(dtype).float().numpy()
        np.testing.assert_array_equal(got.numpy(), expected)
        assert got.dtype == "float32"


def test_bfloat16_safetensors_load_without_torch(source, tmp_path, monkeypatch):
    model, _ = source
    path = write(tmp_path / "w.safetensors", torch_state(model, torch.bfloat16), "safetensors")
    expected = [torch.from_numpy(w.numpy()).bfloat16().float().numpy() for w in model.weights]
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails
    loaded = build_tiny_torch(weights=str(path))
    for want, got in zip(expected, loaded.weights):
        np.testing.assert_array_equal(got.numpy(), want)


# -- one rule, three readers: the same refusal, the same words -------------------------------

CASES = {  # what bn1.bias (conv1_bn/beta) holds -> the phrase every reader says
    "float64 beyond float32": (np.full(4, 1e39), "holds values beyond the range of float32"),
    "NaN in float16": (np.array([0, np.nan, 0, 0], "float16"), "contains NaN or Inf"),
    "int64": (np.arange(4, dtype="int64"), "dtype int64 is not floating point"),
    "bool": (np.ones(4, bool), "dtype bool is not floating point"),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("kind", ["h5", "pth", "safetensors"])
@pytest.mark.slow
def test_one_value_rule_for_every_reader(source, fresh, tmp_path, kind, case):
    model, unchanged = fresh
    value, phrase = CASES[case]
    if kind == "h5":
        import h5py

        path = official_format.write_keras2_weights(source[0], tmp_path / "w.h5")
        with h5py.File(path, "r+") as root:
            del root["conv1_bn/conv1_bn/beta:0"]
            root["conv1_bn"].create_dataset("conv1_bn/beta:0", data=value)
        key = "conv1_bn/beta"
    else:
        path = write(tmp_path / f"w.{kind}", dict(source[1], **{"bn1.bias": torch.from_numpy(value)}), kind)
        key = "bn1.bias"
    refused_everywhere(model, unchanged, path, f"{key}: {phrase}", "model unchanged")


# -- .pth: layouts that are not dense tensors ----------------------------------------------------

LAYOUTS = {
    "sparse COO": (lambda t: t.to_sparse(), "conv1.weight", "is a sparse_coo tensor"),
    "quantized": (lambda t: torch.quantize_per_tensor(t, 0.1, 0, torch.qint8), "bn1.running_var", "is a quantized tensor (qint8)"),
    "complex": (lambda t: t.to(torch.complex64), "bn1.weight", "dtype complex64 is not floating point"),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_sparse_quantized_and_complex_tensors_are_refused_by_key(source, fresh, tmp_path, layout):
    model, unchanged = fresh
    change, key, phrase = LAYOUTS[layout]
    state = dict(source[1], **{key: change(source[1][key])})
    path = write(tmp_path / "w.pth", state, "pth")
    refused_everywhere(model, unchanged, path, f"{key}: {phrase}")


# -- .safetensors: read within its header's bounds ---------------------------------------------


@pytest.mark.parametrize("edit, phrase", [
    (lambda h: h["a"].update(data_offsets=[0, 12]), "has 12 bytes of data for shape [2] in F32"),
    (lambda h: h["b"].update(data_offsets=[4, 12]), "overlap or leave gaps"),
    (lambda h: h["b"].update(data_offsets=[8, 200]), "lies beyond the file's 16 bytes of data"),
    (lambda h: h["a"].update(shape=[1] * 9), "malformed dtype, shape or data_offsets"),
    (lambda h: h.update(c={"dtype": "F32", "shape": [0], "data_offsets": [16, 16], "x": 1}), "is not a tensor"),
])
def test_malformed_safetensors_headers_are_refused(fresh, tmp_path, edit, phrase):
    model, unchanged = fresh
    header = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
              "b": {"dtype": "BF16", "shape": [4], "data_offsets": [8, 16]}}
    edit(header)
    path = tmp_path / "bad.safetensors"
    path.write_bytes(safetensors_bytes(header, bytes(16)))
    refused_everywhere(model, unchanged, path, phrase)


@pytest.mark.parametrize("header, phrase", [
    (b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "is not JSON"),  # nesting past Python's recursion limit
    (b'{"a": {}, "a": {}}', "is not JSON (a key appears twice)"),
    (json.dumps({"k" * 5000: {}}).encode(), "a key is 5,000 characters long"),
], ids=["deep nesting", "repeated key", "long key"])
def test_safetensors_headers_that_are_not_a_table_are_refused(fresh, tmp_path, header, phrase):
    model, unchanged = fresh
    path = tmp_path / "bad.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header)
    refused_everywhere(model, unchanged, path, phrase)


def test_a_safetensors_header_over_16_mb_is_refused_unparsed(fresh, tmp_path, monkeypatch):
    model, unchanged = fresh
    path = tmp_path / "big_header.safetensors"
    with open(path, "wb") as f:  # 20 MB, sparse on disk: a header that claims 17 MB of it
        f.write((17 << 20).to_bytes(8, "little") + b"{")
        f.truncate(20 << 20)
    monkeypatch.setattr(torch_files, "json", SimpleNamespace(loads=lambda *a, **k: pytest.fail("the header was parsed")))
    refused_everywhere(model, unchanged, path, "its safetensors header claims 17,825,792 bytes")


# -- .pth zips: the entry count is the directory's own ------------------------------------------


def test_a_zip_whose_end_record_understates_its_entries_is_refused(source, fresh, tmp_path, monkeypatch):
    """1,001 entries (the tiny net has fewer than 200 tensors), an end record that says 3."""
    model, unchanged = fresh
    good = write(tmp_path / "good.pth", source[1], "pth")
    folder = zipfile.ZipFile(good).namelist()[0].split("/")[0]
    crowd = tmp_path / "crowd.pth"
    with zipfile.ZipFile(crowd, "w") as archive:
        archive.writestr(f"{folder}/data.pkl", b"")
        for i in range(1000):
            archive.writestr(f"{folder}/data/{i}", b"")
    set_zip_entry_count(crowd, 3)
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load reached"))
    monkeypatch.setattr(zipfile.ZipFile, "__init__", lambda *a, **k: pytest.fail("zipfile reached"))
    start = time.perf_counter()
    refused_everywhere(model, unchanged, crowd, "its zip end record counts 3 entries but its directory holds more than 3")
    assert time.perf_counter() - start < 5  # two builds and two loads


def test_end_records_that_disagree_are_refused(source, fresh, tmp_path):
    """torch writes an end record and a zip64 end record; zipfile trusts the second."""
    model, unchanged = fresh
    path = write(tmp_path / "w.pth", source[1], "pth")
    with zipfile.ZipFile(path) as archive:
        count = len(archive.infolist())
    set_zip_entry_count(path, count - 1, zip64=False)
    refused_everywhere(model, unchanged, path, "its zip end record and zip64 end record disagree")


def test_an_entry_larger_than_the_file_is_refused(source, fresh, tmp_path, monkeypatch):
    """The README's rule: every entry lies inside the file (its directory says 1 GB here)."""
    model, unchanged = fresh
    path = write(tmp_path / "w.pth", source[1], "pth")
    data = bytearray(path.read_bytes())
    at = data.find(b"PK\x01\x02")  # the first entry of the central directory
    struct.pack_into("<II", data, at + 20, 1 << 30, 1 << 30)  # its stored and real sizes
    path.write_bytes(bytes(data))
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load reached"))
    refused_everywhere(model, unchanged, path, "entries larger than the bytes the file holds")


def test_a_pth_without_torch_names_the_extra(source, tmp_path, monkeypatch):
    path = write(tmp_path / "w.pth", source[1], "pth")
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails
    with pytest.raises(MissingDependencyError, match=r'needs torch.*pip install "resnet-keras\[torch\]"'):
        build_tiny_torch(weights=str(path))
