"""The cache we share with keras (issue 19, part 1).

keras' `get_file` downloads into ~/.keras/models/NAME in place (the same
inode, truncated first) and deletes NAME when a download fails. Whatever it
does beside us, a load gives exactly the verified weights or a typed error,
never unverified bytes or a mix; and a verified file is not set aside (or
downloaded again) only because keras was in the middle of rewriting it.
"""

from __future__ import annotations

import os
import threading
import time
import types

import numpy as np
import pytest

import official_format
from cache_checks import (
    assert_clean_cache,
    build_tiny,
    entry,
    fast_network,  # noqa: F401 (fixture)
    md5,
    tiny_spec,
    user_manifest,
)
from http_mirror import Reply
from optional import require
from resnet_keras.errors import OfflineError, ResNetKerasError, WeightsFormatError
from resnet_keras.architecture import build
from resnet_keras.weights.download import snapshot

pytestmark = pytest.mark.usefixtures("fast_network")

NAME = "tiny_notop.h5"


@pytest.fixture(scope="module")
def two_files(tmp_path_factory):
    """(verified bytes, their weights), (other bytes of the same layout, their weights)."""
    folder = tmp_path_factory.mktemp("two")
    files = []
    for seed in (1, 2):
        model = build_tiny(include_top=False)
        official_format.randomize(model, seed=seed)
        path = official_format.write_keras2_weights(model, folder / f"w{seed}.h5")
        files.append((path.read_bytes(), [w.numpy() for w in model.weights]))
    assert len(files[0][0]) == len(files[1][0])  # same layout: a mix would parse
    return files


@pytest.fixture
def served(two_files, mirror, tmp_path):
    """The verified file on the mirror as resnet50 'imagenet' (notop) of a user manifest."""
    (good, _), _ = two_files
    url = mirror.add("ours/" + NAME, good)
    return user_manifest(tmp_path / "m.json", {"resnet50": {"imagenet": entry({"notop": (NAME, [url], md5(good))})}})


def _resolved(manifest, offline=False):
    return build.resolve(tiny_spec(), "imagenet", include_top=False, manifest=manifest, offline=offline)


def _load(model, resolved) -> None:
    """What the builders do: open (fetch, verify) then load into the built model."""
    with build.open_weights(resolved, progressbar=False) as opened:
        build.load_opened(model, resolved, *opened)


def _values(model):
    return [w.numpy() for w in model.weights]


def _same(got, want) -> bool:
    return all(np.array_equal(a, b) for a, b in zip(got, want))


# -- keras itself, rewriting the same name in a loop ---------------------------------


@pytest.mark.slow  # 4-8 s: every load waits for a moment when the file verifies
def test_keras_rewriting_the_file_in_a_loop_never_makes_us_load_a_mix(two_files, served, mirror, isolated_env):
    """keras' own get_file (force_download) beside our loads: verified weights or a typed error.

    Before the shared-cache rule, every run of this test failed: some loads
    gave keras' other file or a mix of both (e.g. 66 of 102 arrays from it),
    and nearly all others raised a format error.
    """
    from keras.utils import get_file

    (good, good_values), (other, other_values) = two_files
    half = len(good) // 2
    cycle = [
        Reply(body=good),
        Reply(body=other),  # unverified weights of the same layout
        Reply(body=good, truncate_to=half),  # a failed download: keras deletes NAME
    ]
    keras_url = mirror.script("keras/" + NAME, cycle * 400)
    isolated_env.mkdir(parents=True)
    (isolated_env / NAME).write_bytes(good)
    stop, rounds = threading.Event(), []

    def keras_loop():
        while not stop.is_set():
            try:
                get_file(NAME, origin=keras_url, cache_dir=str(isolated_env.parent),
                         cache_subdir=isolated_env.name, force_download=True)
            except Exception:  # noqa: BLE001 - keras' failed download (it deletes NAME)
                pass
            rounds.append(1)
            time.sleep(0.03)

    model = build_tiny(include_top=False)
    resolved = {offline: _resolved(served, offline) for offline in (False, True)}
    loaded = typed = 0
    thread = threading.Thread(target=keras_loop, daemon=True)
    thread.start()
    try:
        while len(rounds) < 3:  # keras is at work before we start
            time.sleep(0.005)
        for i in range(24):
            try:
                _load(model, resolved[i % 3 == 2])
            except ResNetKerasError:
                typed += 1
                continue
            got = _values(model)
            assert _same(got, good_values), (
                f"load {i} gave unverified weights: of {len(got)} arrays, "
                f"{sum(map(np.array_equal, got, good_values))} verified, "
                f"{sum(map(np.array_equal, got, other_values))} from keras' other file"
            )
            loaded += 1
    finally:
        stop.set()
        thread.join(timeout=10)
    assert loaded >= 8 and len(rounds) >= 10, (loaded, typed, len(rounds))


# -- deterministic: a rewrite between our hash and the parser ----------------------------


def _rewrite_in_place(path, data):
    with open(path, "r+b") as f:  # keras' open(NAME, "wb"): the same inode
        f.write(data)
        f.truncate()


@pytest.mark.parametrize("what_keras_does", ["rewrites it in place", "truncates it", "deletes it"])
def test_a_change_between_hash_and_parse_does_not_reach_the_parser(
    two_files, served, mirror, isolated_env, monkeypatch, what_keras_does
):
    import h5py

    (good, good_values), (other, _) = two_files
    isolated_env.mkdir(parents=True)
    path = isolated_env / NAME
    path.write_bytes(good)
    real_file = h5py.File

    def keras_acts_then_parse(*args, **kwargs):  # the last moment before the parser reads
        if what_keras_does == "rewrites it in place":
            _rewrite_in_place(path, other)
        elif what_keras_does == "truncates it":
            _rewrite_in_place(path, b"")
        else:
            path.unlink()
        return real_file(*args, **kwargs)

    monkeypatch.setattr(h5py, "File", keras_acts_then_parse)
    model = build_tiny(weights="imagenet", manifest=served)
    assert _same(_values(model), good_values)
    assert mirror.requests == []


def test_a_download_rewritten_by_keras_right_after_it_landed_loads_what_was_verified(
    two_files, served, mirror, isolated_env, monkeypatch
):
    import h5py

    (good, good_values), (other, _) = two_files
    real_file = h5py.File

    def keras_acts_then_parse(*args, **kwargs):
        _rewrite_in_place(isolated_env / NAME, other)
        return real_file(*args, **kwargs)

    monkeypatch.setattr(h5py, "File", keras_acts_then_parse)
    model = build_tiny(weights="imagenet", manifest=served)
    assert _same(_values(model), good_values) and mirror.count("ours/" + NAME) == 1


def test_a_local_file_rewritten_in_place_before_parsing_loads_what_was_read(two_files, tmp_path, monkeypatch):
    import h5py

    (good, good_values), (other, _) = two_files
    path = tmp_path / "mine.h5"
    path.write_bytes(good)
    real_file = h5py.File

    def rewrite_then_parse(*args, **kwargs):
        _rewrite_in_place(path, other)
        return real_file(*args, **kwargs)

    monkeypatch.setattr(h5py, "File", rewrite_then_parse)
    model = build_tiny(weights=str(path))
    assert _same(_values(model), good_values)


@pytest.mark.slow  # 3-9 s: torch, and a ResNet18 (the smallest torchvision layout)
@pytest.mark.parametrize("kind", ["pth", "safetensors"])
def test_torch_checkpoints_are_parsed_from_the_bytes_read_not_the_file(tmp_path, monkeypatch, kind):
    """torch.load(weights_only=True) and safetensors get the bytes read once, as h5py does."""
    torch = require("torch")
    import torch_reference
    from resnet_keras import ResNet18
    from resnet_keras.weights.formats import torch_files

    states = [torch_reference.randomized("resnet18", seed=seed).state_dict() for seed in (1, 2)]
    paths = [tmp_path / f"{seed}.{kind}" for seed in (1, 2)]
    for state, path in zip(states, paths):
        if kind == "pth":
            torch.save(state, path)
        else:
            require("safetensors.torch").save_file(state, str(path))
    reader = "read_pth" if kind == "pth" else "read_safetensors"
    real_reader = getattr(torch_files, reader)

    def rewrite_then_read(*args, **kwargs):
        _rewrite_in_place(paths[0], paths[1].read_bytes())
        return real_reader(*args, **kwargs)

    monkeypatch.setattr(torch_files, reader, rewrite_then_read)
    model = ResNet18(weights=str(paths[0]), include_top=False, input_shape=(32, 32, 3))
    want = states[0]["conv1.weight"].numpy().transpose(2, 3, 1, 0)  # (out, in, h, w) -> keras
    np.testing.assert_array_equal(model.get_layer("conv1_conv").kernel.numpy(), want)


def test_a_local_file_above_the_byte_limit_is_refused_before_it_is_read(two_files, tmp_path, monkeypatch):
    (good, _), _ = two_files
    path = tmp_path / "big.h5"
    path.write_bytes(good)
    monkeypatch.setattr(snapshot, "MAX_LOCAL_BYTES", len(good) - 1)
    read = []
    real_read_once = snapshot.read_once
    monkeypatch.setattr(snapshot, "read_once", lambda *a, **k: read.append(a) or real_read_once(*a, **k))
    with pytest.raises(WeightsFormatError, match=rf"holds {len(good):,} bytes, more than the {len(good) - 1:,}") as info:
        build_tiny(weights=str(path))
    assert "\n" not in str(info.value) and read  # refused by the one reader, before any parser


# -- a file keras is in the middle of rewriting ------------------------------------------


def _keras_writing(path, data, *, pieces, pause):
    """keras' urlretrieve: truncate NAME in place, then write the bytes as they arrive."""
    started = threading.Event()

    def write():
        with open(path, "wb") as f:
            size = -(-len(data) // pieces)
            for i in range(pieces):
                f.write(data[i * size:(i + 1) * size])
                f.flush()
                started.set()
                time.sleep(pause)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    started.wait(5)
    return thread


@pytest.mark.slow  # waits out the writer's timeout (0.5-0.8 s): the slow tier
@pytest.mark.parametrize("offline", [False, True])
def test_a_verified_file_keras_is_rewriting_is_waited_for_not_set_aside(
    two_files, served, mirror, isolated_env, offline
):
    (good, good_values), _ = two_files
    isolated_env.mkdir(parents=True)
    (isolated_env / NAME).write_bytes(good)
    writer = _keras_writing(isolated_env / NAME, good, pieces=4, pause=0.05)  # done in 0.2 s
    model = build_tiny(weights="imagenet", manifest=served, offline=offline)
    writer.join()
    assert _same(_values(model), good_values)
    assert mirror.requests == []  # not fetched again
    assert_clean_cache(isolated_env, {NAME: good})  # nothing set aside


@pytest.mark.slow  # waits out the writer's timeout (0.5-0.8 s): the slow tier
def test_a_file_still_being_written_after_the_timeout_is_left_to_its_writer(two_files, served, mirror, isolated_env):
    """Online: our verified download takes the name atomically; the writer's file is not set aside."""
    (good, good_values), (other, _) = two_files
    isolated_env.mkdir(parents=True)
    writer = _keras_writing(isolated_env / NAME, other, pieces=25, pause=0.03)  # 0.75 s > the 0.5 s timeout
    start = time.monotonic()
    model = build_tiny(weights="imagenet", manifest=served)
    assert time.monotonic() - start < 3
    writer.join()
    assert _same(_values(model), good_values) and mirror.count("ours/" + NAME) == 1
    assert_clean_cache(isolated_env, {NAME: good})  # ours, whole; no NAME.corrupt


@pytest.mark.slow  # waits out the writer's timeout (0.5-0.8 s): the slow tier
def test_offline_a_file_still_being_written_is_named_as_such(two_files, served, mirror, isolated_env):
    (_, _), (other, _) = two_files
    isolated_env.mkdir(parents=True)
    writer = _keras_writing(isolated_env / NAME, other, pieces=25, pause=0.03)
    with pytest.raises(OfflineError, match=rf"{NAME} is being written by another program \(it kept changing for 0.5 s"):
        build_tiny(weights="imagenet", manifest=served, offline=True)
    writer.join()
    assert mirror.requests == [] and sorted(os.listdir(isolated_env)) == [NAME]  # left as it is


def test_a_corrupt_file_nobody_is_writing_is_still_set_aside_at_once(two_files, served, mirror, isolated_env, monkeypatch):
    """A file last written long ago is judged without waiting."""
    (good, _), (other, _) = two_files
    isolated_env.mkdir(parents=True)
    (isolated_env / NAME).write_bytes(other)
    # An hour later, as the cache sees it (os.utime cannot age a file's ctime);
    # waits counted, not timed, so a busy machine does not decide this test.
    waits = []
    clock = types.SimpleNamespace(monotonic=time.monotonic, time=lambda: time.time() + 3600, sleep=waits.append)
    monkeypatch.setattr(snapshot, "time", clock)
    build_tiny(weights="imagenet", manifest=served)
    assert waits == []
    assert_clean_cache(isolated_env, {NAME: good}, aside=[NAME + ".corrupt"])


def test_after_keras_deleted_the_file_the_next_load_fetches_it_verified(two_files, served, mirror, isolated_env):
    """keras deletes NAME after a failed download: the next load fetches it again, verified."""
    (good, good_values), _ = two_files
    build_tiny(weights="imagenet", manifest=served)
    (isolated_env / NAME).unlink()  # keras' delete-on-failure
    model = build_tiny(weights="imagenet", manifest=served)
    assert _same(_values(model), good_values) and mirror.count("ours/" + NAME) == 2
