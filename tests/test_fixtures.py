"""Fixtures that watch for something must see it when it happens.

A watcher that records nothing passes every "nothing happened" assertion, so
each one here is shown, once, the thing it watches for (the positive case).
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest

import official_format
from cache_checks import build_tiny
# Fixtures that record every HDF5 dataset read (tests assert they stay empty).
READ_WATCHERS = ["no_data_read"]


def _datasets(path) -> list[str]:
    names = []
    with h5py.File(path, "r") as root:
        root.visititems(lambda name, item: names.append("/" + name) if isinstance(item, h5py.Dataset) else None)
    return names


@pytest.mark.parametrize("watcher", READ_WATCHERS)
def test_read_watchers_record_every_read_of_a_real_load(tmp_path, request, watcher):
    """The weights loader's own reads, whatever way it reads, are recorded."""
    recorded = request.getfixturevalue(watcher)
    source = build_tiny(include_top=False)
    official_format.randomize(source, seed=11)
    path = official_format.write_keras2_weights(source, tmp_path / "tiny_notop.h5")
    assert recorded == []
    model = build_tiny(include_top=False, weights=str(path))
    for got, want in zip(model.weights, source.weights):
        np.testing.assert_array_equal(got.numpy(), want.numpy())
    assert sorted(set(recorded)) == sorted(_datasets(path))


@pytest.mark.parametrize("watcher", READ_WATCHERS)
def test_read_watchers_record_a_direct_read(tmp_path, request, watcher):
    recorded = request.getfixturevalue(watcher)
    path = tmp_path / "one.h5"
    with h5py.File(path, "w") as root:
        root["group/values"] = np.arange(6, dtype="float32")
    with h5py.File(path, "r") as root:
        assert recorded == []
        root["group/values"][()]
        assert recorded == ["/group/values"]


@pytest.mark.parametrize("watcher", READ_WATCHERS)
@pytest.mark.parametrize("read", [np.asarray, lambda ds: ds.read_direct(np.empty(6, "float32"))])
def test_read_watchers_record_the_other_read_paths(tmp_path, request, watcher, read):
    recorded = request.getfixturevalue(watcher)
    path = tmp_path / "one.h5"
    with h5py.File(path, "w") as root:
        root["values"] = np.arange(6, dtype="float32")
    with h5py.File(path, "r") as root:
        read(root["values"])
    assert set(recorded) == {"/values"}
