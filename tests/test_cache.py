"""FAULTS.md "Cache, concurrency, offline": where the cache is, read-only caches,
two real processes fetching one file, offline mode with zero network."""

from __future__ import annotations

import builtins
import errno
import io
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import official_format
from cache_checks import (
    assert_clean_cache,
    build_tiny,
    entry,
    fast_network,  # noqa: F401 (fixture)
    md5,
    payload,
    user_manifest,
    weights_file,
)
from http_mirror import Reply
from resnet_keras.weights.download import cache
from resnet_keras.errors import CacheError, DownloadError, InvalidArgumentError, OfflineError

pytestmark = pytest.mark.usefixtures("fast_network")

REPO = Path(__file__).resolve().parents[1]
NAME = "tiny_notop.h5"
DATA = payload(300_000)


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory):
    model = build_tiny(include_top=False)
    official_format.randomize(model, seed=5)
    path = tmp_path_factory.mktemp("tiny") / NAME
    official_format.write_keras2_weights(model, path)
    return path, [w.numpy() for w in model.weights]


@pytest.fixture
def served(tiny_file, mirror, tmp_path):
    """The tiny notop file on the mirror, as resnet50 'imagenet' of a user manifest."""
    path, _ = tiny_file
    url = mirror.add(NAME, path.read_bytes())
    manifest = user_manifest(tmp_path / "m.json", {"resnet50": {"imagenet": entry({"notop": (NAME, [url], md5(path.read_bytes()))})}})
    return manifest, url, path.read_bytes()


# -- where the cache is ------------------------------------------------------------


def test_cache_root_from_environment_with_tilde_is_created_when_missing(mirror, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RESNET_KERAS_HOME", "~/deep/weights")
    folder = tmp_path / "home" / "deep" / "weights"
    assert cache.cache_dir() == folder and not folder.exists()
    cache.fetch(weights_file(NAME, DATA, [mirror.add(NAME, DATA)]), progressbar=False)
    assert_clean_cache(folder, {NAME: DATA})


def test_default_cache_is_keras_own(tmp_path, monkeypatch, isolated_env):
    assert cache.cache_dir() == isolated_env  # $KERAS_HOME/models
    monkeypatch.delenv("KERAS_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.cache_dir() == tmp_path / "home" / ".keras" / "models"


def test_uncreatable_cache_is_an_error_never_a_silent_move_to_tmp(mirror, tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("RESNET_KERAS_HOME", str(blocker / "models"))
    tmp_keras = Path(tempfile.gettempdir()) / ".keras"
    existed = tmp_keras.exists()
    with pytest.raises(CacheError, match=r"Cannot create the weights cache .*a_file/models.*RESNET_KERAS_HOME"):
        cache.fetch(weights_file(NAME, DATA, [mirror.add(NAME, DATA)]), progressbar=False)
    assert mirror.requests == []
    assert tmp_keras.exists() == existed
    assert blocker.read_text() == "not a folder"


# -- read-only caches ----------------------------------------------------------------


@pytest.fixture
def read_only(monkeypatch):
    """Make a folder read-only, for root too (root ignores mode bits).

    Every write under the folder (open for writing, mkdir, rename, unlink)
    is recorded and fails with EACCES, like on a read-only mount.
    """
    attempts, protected = [], []
    real_chmod, real_os_open, real_open = os.chmod, os.open, builtins.open

    def inside(path) -> bool:
        path = Path(os.path.abspath(os.fspath(path)))
        return any(path == folder or folder in path.parents for folder in protected)

    def refuse(what, path):
        attempts.append((what, str(path)))
        raise PermissionError(errno.EACCES, "Permission denied (read-only)", str(path))

    def os_open(path, flags, *args, **kwargs):
        if inside(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC):
            refuse("os.open", path)
        return real_os_open(path, flags, *args, **kwargs)

    def py_open(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and inside(file) and set(mode) & set("wax+"):
            refuse("open", file)
        return real_open(file, mode, *args, **kwargs)

    def guarded(name):
        real = getattr(os, name)

        def checked(*paths, **kwargs):
            if any(inside(p) for p in paths[:2] if isinstance(p, (str, os.PathLike))):
                refuse(name, paths[0])
            return real(*paths, **kwargs)

        return checked

    def protect(folder: Path):
        if not protected:
            monkeypatch.setattr(os, "open", os_open)
            monkeypatch.setattr(builtins, "open", py_open)
            monkeypatch.setattr(io, "open", py_open)
            for name in ("mkdir", "replace", "rename", "unlink", "remove", "rmdir", "utime", "chmod"):
                monkeypatch.setattr(os, name, guarded(name))
        real_chmod(folder, 0o555)
        protected.append(Path(os.path.abspath(folder)))
        return attempts

    yield protect
    for folder in protected:
        real_chmod(folder, 0o755)


def _snapshot(folder: Path):
    return {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in folder.iterdir()}


def test_read_only_cache_with_a_good_file_loads_without_writing(served, tiny_file, isolated_env, read_only, mirror):
    manifest, _, data = served
    isolated_env.mkdir(parents=True)
    (isolated_env / NAME).write_bytes(data)
    before = _snapshot(isolated_env)
    attempts = read_only(isolated_env)
    model = build_tiny(weights="imagenet", manifest=manifest)
    assert attempts == [] and mirror.requests == []
    assert _snapshot(isolated_env) == before
    for got, want in zip(model.weights, tiny_file[1]):
        np.testing.assert_array_equal(got.numpy(), want)


def test_read_only_cache_without_the_file_says_so_before_any_download(served, isolated_env, read_only, mirror):
    manifest, _, _ = served
    isolated_env.mkdir(parents=True)
    attempts = read_only(isolated_env)
    with pytest.raises(CacheError, match=r"weights cache .* cannot be written .*RESNET_KERAS_HOME"):
        build_tiny(weights="imagenet", manifest=manifest)
    assert attempts and mirror.requests == []
    assert list(isolated_env.iterdir()) == []


# -- two processes ------------------------------------------------------------------

_WORKER = textwrap.dedent(
    """
    import sys, time, types
    from pathlib import Path

    # Load the weights modules without the package __init__ (keras + TF):
    # the workers then start in well under a second.
    package = types.ModuleType("resnet_keras")
    package.__path__, package.__version__ = [str(Path.cwd() / "resnet_keras")], "test"
    sys.modules["resnet_keras"] = package
    from resnet_keras.weights.download import cache
    from resnet_keras.weights.manifest.records import WeightsFile

    name, url, digest, lock, barrier, me = sys.argv[1:]
    if lock == "nolock":  # as where file locks do not work; "shipped": the module's own setting
        cache.USE_FILE_LOCK = False
    Path(barrier, me).touch()
    while len(list(Path(barrier).iterdir())) < 2:  # start both fetches together
        time.sleep(0.01)
    print(cache.fetch(WeightsFile(name, (url,), digest), progressbar=False))
    """
)


def _two_fetchers(tmp_path, isolated_env, url, lock):
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3", RESNET_KERAS_TIMEOUT="30")
    args = [NAME, url, md5(DATA), lock, str(barrier)]
    return [
        subprocess.Popen([sys.executable, "-c", _WORKER, *args, str(i)], env=env, cwd=REPO,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]


def _finish(procs):
    outputs = [p.communicate(timeout=120) for p in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err[-2000:]
    return [out.strip() for out, _ in outputs]


@pytest.mark.slow  # two Python processes: the slow tier
def test_two_processes_fetch_once_with_the_lock(mirror, tmp_path, isolated_env):
    """The shipped settings (the workers leave USE_FILE_LOCK as it is): one download."""
    url = mirror.script(NAME, [Reply(body=DATA, delay=0.5)])
    outputs = _finish(_two_fetchers(tmp_path, isolated_env, url, "shipped"))
    assert outputs == [str(isolated_env / NAME)] * 2
    assert mirror.count(NAME) == 1  # the second waited for the first, then found the file
    assert_clean_cache(isolated_env, {NAME: DATA})


@pytest.mark.slow  # two Python processes: the slow tier
def test_two_processes_without_working_locks_stay_correct(mirror, tmp_path, isolated_env):
    """As on NFS without locks: both download, readers only ever see whole files."""
    # The second answer comes a second later: the reader has time to look at
    # the first renamed file while the second download is still going on.
    url = mirror.script(NAME, [Reply(body=DATA, delay=0.5), Reply(body=DATA, delay=1.5)])
    procs = _two_fetchers(tmp_path, isolated_env, url, "nolock")
    final, seen = isolated_env / NAME, 0
    while any(p.poll() is None for p in procs):
        try:
            data = final.read_bytes()
        except FileNotFoundError:
            pass
        else:
            assert data == DATA, "a reader saw a partial file"
            seen += 1
        time.sleep(0.005)
    outputs = _finish(procs)
    assert seen > 0, "the reader never saw the file while the downloads ran"
    assert outputs == [str(final)] * 2
    assert mirror.count(NAME) == 2  # both fetched: no lock, and still one whole file
    assert_clean_cache(isolated_env, {NAME: DATA})


# -- offline ------------------------------------------------------------------------


def test_offline_warm_cache_makes_zero_requests(served, isolated_env, mirror, monkeypatch):
    manifest, _, data = served
    isolated_env.mkdir(parents=True)
    (isolated_env / NAME).write_bytes(data)
    build_tiny(weights="imagenet", manifest=manifest, offline=True)
    monkeypatch.setenv("RESNET_KERAS_OFFLINE", "1")
    build_tiny(weights="imagenet", manifest=manifest)
    assert mirror.requests == []
    assert_clean_cache(isolated_env, {NAME: data})


def test_offline_env_cold_cache_names_file_hash_url_and_folder(served, isolated_env, mirror, monkeypatch):
    manifest, url, data = served
    monkeypatch.setenv("RESNET_KERAS_OFFLINE", "yes")
    with pytest.raises(OfflineError) as info:
        build_tiny(weights="imagenet", manifest=manifest)
    message = str(info.value)
    for part in (NAME, md5(data), url, str(isolated_env), "RESNET_KERAS_OFFLINE"):
        assert part in message
    assert mirror.requests == [] and not isolated_env.exists()


def test_offline_argument_wins_over_the_environment(served, isolated_env, mirror, monkeypatch):
    manifest, _, data = served
    monkeypatch.setenv("RESNET_KERAS_OFFLINE", "1")
    build_tiny(weights="imagenet", manifest=manifest, offline=False)
    assert mirror.count(NAME) == 1
    assert_clean_cache(isolated_env, {NAME: data})


def test_bad_offline_settings_fail_before_any_work(served, isolated_env, mirror, monkeypatch):
    manifest, _, _ = served
    with pytest.raises(InvalidArgumentError, match="`offline` must be None, True or False. Received: offline='yes'"):
        build_tiny(weights="imagenet", manifest=manifest, offline="yes")
    monkeypatch.setenv("RESNET_KERAS_OFFLINE", "maybe")
    with pytest.raises(InvalidArgumentError, match="RESNET_KERAS_OFFLINE must be 1/true/yes/on or 0/false/no/off"):
        build_tiny(weights="imagenet", manifest=manifest)
    assert mirror.requests == [] and not isolated_env.exists()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_network_down_without_the_flag_is_a_connection_error_and_cache_intact(isolated_env):
    other = payload(1000, seed=9)
    isolated_env.mkdir(parents=True)
    (isolated_env / "other.h5").write_bytes(other)
    url = f"http://127.0.0.1:{_closed_port()}/{NAME}"
    with pytest.raises(DownloadError, match=f"{url}: cannot connect") as info:
        cache.fetch(weights_file(NAME, DATA, [url]), progressbar=False)
    assert "Check the network, proxy or mirror URLs" in str(info.value)
    assert_clean_cache(isolated_env, {"other.h5": other})
