"""The weaker `sha256-prefix:` hash kind (torchvision publishes 8 hex digits of
a file's SHA-256), end to end through the loopback mirror and a real build:
the prefix is checked on download, the full SHA-256 is recorded beside the
cached file (`NAME.sha256`) and enforced on every later hit and download.

32 bits can be matched on purpose: `prefix_twins` makes two different files
with the same 8-digit prefix (a birthday search, well under a second), so the
tests use real collisions, not a patched check."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest

import official_format
from cache_checks import (
    assert_clean_cache,
    build_tiny,
    entry,
    fast_network,  # noqa: F401 (fixture)
    user_manifest,
)
from resnet_keras.weights.download import cache
from resnet_keras.weights.manifest.records import WeightsFile
from resnet_keras.errors import CacheError, IntegrityError, OfflineError

pytestmark = pytest.mark.usefixtures("fast_network")

PREFIX_DIGITS = 8


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def prefix_twins(data: bytes) -> tuple[bytes, bytes]:
    """(data + tail_a, other + tail_b): different bytes, same 8-digit SHA-256 prefix.

    HDF5 ignores bytes after the end of the file it declares, so `data` with
    a tail still loads; the twin is junk of the same length.
    """
    base_a = hashlib.sha256(data)
    other = bytes(len(data))
    base_b = hashlib.sha256(other)
    seen = {}
    for i in range(1 << 17):
        h = base_a.copy()
        h.update(i.to_bytes(8, "little"))
        seen[h.hexdigest()[:PREFIX_DIGITS]] = i
    for j in range(1 << 24):
        h = base_b.copy()
        tail_b = (j | 1 << 63).to_bytes(8, "little")
        h.update(tail_b)
        i = seen.get(h.hexdigest()[:PREFIX_DIGITS])
        if i is not None:
            return data + i.to_bytes(8, "little"), other + tail_b
    raise AssertionError("no 32-bit prefix collision in 2**24 tries")


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """(bytes of a tiny notop HDF5 file, with a tail; a twin with the same prefix; weights)."""
    model = build_tiny(include_top=False)
    official_format.randomize(model, seed=11)
    path = official_format.write_keras2_weights(model, tmp_path_factory.mktemp("prefix") / "w.h5")
    good, twin = prefix_twins(path.read_bytes())
    assert good != twin and sha256_hex(good)[:8] == sha256_hex(twin)[:8]
    return good, twin, [w.numpy() for w in model.weights]


@pytest.fixture
def served(tiny_weights, mirror, tmp_path):
    """The tiny file on the mirror under a torchvision-style name, with a prefix-hash entry."""
    good, _, _ = tiny_weights
    prefix = sha256_hex(good)[:PREFIX_DIGITS]
    name = f"tiny-{prefix}.h5"
    url = mirror.add(name, good)
    manifest = prefix_manifest(tmp_path, name, url, prefix)
    return name, url, manifest


def prefix_manifest(tmp_path, name, url, prefix):
    files = {"notop": (name, [url], f"sha256-prefix:{prefix}")}
    return user_manifest(tmp_path / "m.json", {"resnet50": {"imagenet": entry(files)}})


def record_line(name: str, data: bytes) -> bytes:
    return f"{sha256_hex(data)}  {name}\n".encode()


def assert_loaded(model, weights):
    for got, want in zip(model.weights, weights):
        np.testing.assert_array_equal(got.numpy(), want)


def forbid_h5py(monkeypatch):
    import h5py

    def no_open(*args, **kwargs):
        raise AssertionError("h5py must not open an unverified file")

    monkeypatch.setattr(h5py, "File", no_open)


# -- download ------------------------------------------------------------------


def test_right_prefix_loads_and_the_full_hash_is_recorded(served, tiny_weights, mirror, isolated_env):
    name, _, manifest = served
    good, _, weights = tiny_weights
    assert_loaded(build_tiny(weights="imagenet", manifest=manifest), weights)
    record = {name + ".sha256": record_line(name, good)}
    assert_clean_cache(isolated_env, {name: good, **record})
    assert_loaded(build_tiny(weights="imagenet", manifest=manifest), weights)  # a hit
    assert mirror.count(name) == 1
    assert_clean_cache(isolated_env, {name: good, **record})


def test_wrong_prefix_is_refused_named_weaker_and_nothing_is_kept(served, mirror, tmp_path, isolated_env, monkeypatch):
    name, url, _ = served
    manifest = prefix_manifest(tmp_path, name, url, "0badf00d")
    forbid_h5py(monkeypatch)
    with pytest.raises(IntegrityError, match="expected sha256-prefix:0badf00d \\(a weaker check") as info:
        build_tiny(weights="imagenet", manifest=manifest)
    assert "Nothing was saved" in str(info.value) and url in str(info.value)
    assert_clean_cache(isolated_env)


def test_a_file_put_in_the_cache_by_hand_is_recorded_at_its_first_hit(served, tiny_weights, mirror, isolated_env):
    name, _, manifest = served
    good, _, weights = tiny_weights
    isolated_env.mkdir(parents=True)
    (isolated_env / name).write_bytes(good)  # as the offline error tells users to do
    assert_loaded(build_tiny(weights="imagenet", manifest=manifest, offline=True), weights)
    assert mirror.requests == []
    assert_clean_cache(isolated_env, {name: good, name + ".sha256": record_line(name, good)})


# -- later hits: the full hash rules --------------------------------------------


def test_tampered_file_with_the_same_prefix_is_refused_offline(served, tiny_weights, mirror, isolated_env, monkeypatch):
    name, _, manifest = served
    good, twin, _ = tiny_weights
    build_tiny(weights="imagenet", manifest=manifest)
    (isolated_env / name).write_bytes(twin)  # passes the prefix, not the record
    forbid_h5py(monkeypatch)
    with pytest.raises(OfflineError, match=f"{name} is corrupt \\(it fails its weaker sha256-prefix hash or the full SHA-256 recorded in {name}.sha256"):
        build_tiny(weights="imagenet", manifest=manifest, offline=True)
    assert mirror.count(name) == 1
    assert_clean_cache(isolated_env, {name + ".sha256": record_line(name, good)}, aside=[name + ".corrupt"])
    assert (isolated_env / (name + ".corrupt")).read_bytes() == twin


def test_tampered_file_is_replaced_online_from_the_mirror(served, tiny_weights, mirror, isolated_env):
    name, _, manifest = served
    good, twin, weights = tiny_weights
    build_tiny(weights="imagenet", manifest=manifest)
    (isolated_env / name).write_bytes(twin)
    assert_loaded(build_tiny(weights="imagenet", manifest=manifest), weights)
    assert mirror.count(name) == 2
    assert_clean_cache(isolated_env, {name: good, name + ".sha256": record_line(name, good)}, aside=[name + ".corrupt"])


def test_a_download_with_the_right_prefix_must_match_the_record(served, tiny_weights, mirror, isolated_env, monkeypatch):
    """A mirror that now serves a made-up file with the same 32-bit prefix is refused."""
    name, url, manifest = served
    good, twin, _ = tiny_weights
    build_tiny(weights="imagenet", manifest=manifest)
    mirror.add(name, twin)
    forbid_h5py(monkeypatch)
    with pytest.raises(IntegrityError, match=f"passes the weaker sha256-prefix:.* check but whose SHA-256 {sha256_hex(twin)} is not the one recorded") as info:
        cache.fetch(WeightsFile(name, (url,), f"sha256-prefix:{sha256_hex(good)[:8]}"), force=True, progressbar=False)
    assert f"remove {isolated_env / name}.sha256" in str(info.value)
    assert_clean_cache(isolated_env, {name: good, name + ".sha256": record_line(name, good)})


# -- the record itself -----------------------------------------------------------


@pytest.mark.parametrize(
    "record",
    [
        b"",
        b"not a hash\n",
        b"%s  other.h5\n",  # another file's record
        b"%s  {name}",  # no newline
        b"%s  {name}\n\n",
        b"%s {name}\n",  # one space
        b"%s  {name}\n" + b"x" * 2000,
    ],
    ids=["empty", "text", "other name", "no newline", "two lines", "one space", "too long"],
)
@pytest.mark.slow
def test_malformed_record_is_a_corrupt_entry_set_aside_and_fetched_again(served, tiny_weights, mirror, isolated_env, record):
    name, _, manifest = served
    good, _, weights = tiny_weights
    build_tiny(weights="imagenet", manifest=manifest)
    bad = record.replace(b"%s", sha256_hex(good).encode()).replace(b"{name}", name.encode())
    (isolated_env / (name + ".sha256")).write_bytes(bad)
    assert cache.read_record(isolated_env / name) == cache.MALFORMED
    assert_loaded(build_tiny(weights="imagenet", manifest=manifest), weights)
    assert mirror.count(name) == 2  # the file could not be vouched for: fetched again
    assert_clean_cache(isolated_env, {name: good, name + ".sha256": record_line(name, good)},
                       aside=[name + ".corrupt", name + ".sha256.corrupt"])
    assert (isolated_env / (name + ".sha256.corrupt")).read_bytes() == bad


def test_malformed_record_offline_is_named_and_nothing_loads(served, mirror, isolated_env, monkeypatch):
    name, _, manifest = served
    build_tiny(weights="imagenet", manifest=manifest)
    (isolated_env / (name + ".sha256")).write_bytes(b"0" * 64 + b"  " + name.encode())
    forbid_h5py(monkeypatch)
    with pytest.raises(OfflineError, match=f"its full-hash record {name}.sha256 is malformed"):
        build_tiny(weights="imagenet", manifest=manifest, offline=True)
    assert mirror.count(name) == 1


def test_record_that_is_not_a_file_is_named_and_left_alone(served, mirror, isolated_env):
    name, _, manifest = served
    (isolated_env / (name + ".sha256")).mkdir(parents=True)
    with pytest.raises(CacheError, match=f"{name}.sha256 is a directory, not the full-hash record of"):
        build_tiny(weights="imagenet", manifest=manifest)
    assert mirror.requests == [] and (isolated_env / (name + ".sha256")).is_dir()


def test_cache_state_and_is_verified_follow_the_record(served, tiny_weights, isolated_env):
    name, url, manifest = served
    good, twin, _ = tiny_weights
    wfile = WeightsFile(name, (url,), f"sha256-prefix:{sha256_hex(good)[:8]}")
    path = cache.fetch(wfile, progressbar=False)
    assert cache.cache_state(wfile) == "cached"
    path.write_bytes(twin)
    assert cache.cache_state(wfile) == "corrupt"
    os.unlink(cache.record_path(path))  # without a record only the prefix is known
    assert cache.cache_state(wfile) == "cached"
    assert not cache.record_path(path).exists()  # checking writes nothing


def test_record_is_written_atomically(served, tiny_weights, isolated_env, monkeypatch):
    """A failure while writing the record leaves neither record, temp file nor weights file."""
    name, url, _ = served
    good, _, _ = tiny_weights
    real_replace = os.replace

    def failing_replace(src, dst):
        if str(dst).endswith(".sha256"):
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    wfile = WeightsFile(name, (url,), f"sha256-prefix:{sha256_hex(good)[:8]}")
    with pytest.raises(CacheError, match="No space left"):
        cache.fetch(wfile, progressbar=False)
    assert_clean_cache(isolated_env)


# -- torchvision's own format: a .pth behind the shipped tag ------------------------


@pytest.mark.slow  # torch comes with the slow tier's packages
def test_imagenet_on_resnet18_loads_a_pth_by_its_prefix_and_records_it(mirror, tmp_path, isolated_env):
    """The shipped tag with the file replaced by a generated checkpoint (no network):
    weights="imagenet" -> torchvision_imagenet1k_v1 -> prefix check -> record -> .pth reader."""
    from optional import require

    torch = require("torch")
    import torch_reference

    torch_model = torch_reference.randomized("resnet18", seed=3)
    path = tmp_path / "r18.pth"
    torch.save(torch_model.state_dict(), path)
    data = path.read_bytes()
    name = f"resnet18-{sha256_hex(data)[:8]}.pth"
    files = {head: (name, [mirror.add(name, data)], f"sha256-prefix:{sha256_hex(data)[:8]}") for head in ("top", "notop")}
    manifest = user_manifest(tmp_path / "m.json", {"resnet18": {"torchvision_imagenet1k_v1": entry(files)}})
    x = np.random.default_rng(0).normal(size=(2, 3, 64, 64)).astype("float32")
    model = build_torchvision_resnet18(manifest)
    with torch.no_grad():
        want = torch_model.avgpool(torch_model.features(torch.from_numpy(x))).flatten(1).numpy()
    got = model.predict(x.transpose(0, 2, 3, 1), verbose=0)
    assert np.max(np.abs(got - want)) / np.max(np.abs(want)) <= 1e-5
    assert_clean_cache(isolated_env, {name: data, name + ".sha256": record_line(name, data)})
    (isolated_env / name).write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # bit rot in the cache
    with pytest.raises(OfflineError, match=f"{name} is corrupt"):
        build_torchvision_resnet18(manifest, offline=True)


def build_torchvision_resnet18(manifest, **kwargs):
    import resnet_keras

    return resnet_keras.ResNet18(
        weights="imagenet", manifest=manifest, input_shape=(64, 64, 3), include_top=False,
        pooling="avg", **kwargs,
    )
