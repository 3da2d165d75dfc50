"""FAULTS.md "Download and integrity": whatever the server or the disk does, the
cache holds only verified files under their final names, no temp files are
left, verified files are untouched, and the error names file, URL and remedy."""

from __future__ import annotations

import errno
import os
import time

import pytest

import resnet_keras
from cache_checks import (
    assert_clean_cache,
    build_tiny,
    entry,
    fast_network,  # noqa: F401 (fixture)
    md5,
    payload,
    umask_mode,
    user_manifest,
    weights_file,
)
from http_mirror import Reply
from resnet_keras.weights.download import cache, download
from resnet_keras.architecture.specs import SPECS
from resnet_keras.errors import CacheError, DownloadError, IntegrityError, OfflineError

pytestmark = pytest.mark.usefixtures("fast_network")

DATA = payload(50_000)
NAME = "tiny_weights.h5"
LABEL = "resnet50 weights 'imagenet' (notop)"


def fetch(wfile, **kwargs):
    return cache.fetch(wfile, progressbar=False, label=LABEL, **kwargs)


def failing(mirror, reply_list, error, match, isolated_env, *, data=DATA, expected=None):
    url = mirror.script(NAME, reply_list)
    with pytest.raises(error, match=match) as info:
        fetch(weights_file(NAME, data, [url]))
    message = str(info.value)
    assert NAME in message and url in message and LABEL in message
    assert_clean_cache(isolated_env, expected)
    return message


# -- what servers do -----------------------------------------------------------


def test_good_download_lands_verified_with_no_leftovers(mirror, isolated_env):
    url = mirror.add(NAME, DATA)
    path = fetch(weights_file(NAME, DATA, [url]))
    assert path == isolated_env / NAME
    assert_clean_cache(isolated_env, {NAME: DATA})
    assert fetch(weights_file(NAME, DATA, [url])) == path  # cache hit: hash only
    assert mirror.count(NAME) == 1


def test_other_bytes_fail_the_hash_and_are_not_kept(mirror, isolated_env):
    message = failing(mirror, [Reply(body=payload(50_000, seed=1))], IntegrityError,
                      "other bytes than the manifest declares", isolated_env)
    assert md5(DATA) in message and "Nothing was saved" in message
    assert mirror.count(NAME) == 1  # wrong bytes are not retried: they would not change


def test_html_page_is_named_as_such(mirror, isolated_env):
    page = b"<!DOCTYPE html><html><body>Sign in to continue</body></html>"
    message = failing(mirror, [Reply(body=page, content_type="text/html")], IntegrityError,
                      "an HTML page", isolated_env)
    assert "fix the hash in your manifest" in message


def test_html_page_through_a_builder(mirror, tmp_path, isolated_env):
    url = mirror.add(NAME, b"<html><head><title>404</title></head></html>")
    manifest = user_manifest(tmp_path / "m.json", {"resnet50": {"imagenet": entry({"notop": (NAME, [url], md5(DATA))})}})
    with pytest.raises(IntegrityError, match="HTML page"):
        resnet_keras.ResNet50(weights="imagenet", include_top=False, manifest=manifest)
    assert_clean_cache(isolated_env)


def test_truncated_body_is_retried_then_refused(mirror, isolated_env):
    message = failing(mirror, [Reply(body=DATA, truncate_to=1000)], DownloadError,
                      "truncated", isolated_env)
    assert mirror.count(NAME) == 1 + download.MAX_RETRIES
    assert "Nothing was saved" in message


def test_truncated_body_then_a_good_one(mirror, isolated_env):
    url = mirror.script(NAME, [Reply(body=DATA, truncate_to=100), Reply(body=DATA)])
    fetch(weights_file(NAME, DATA, [url]))
    assert_clean_cache(isolated_env, {NAME: DATA})


@pytest.mark.parametrize("status", [404, 403, 410])
def test_client_errors_are_not_retried(mirror, isolated_env, status):
    failing(mirror, [Reply(status, b"no")], DownloadError, f"HTTP {status}", isolated_env)
    assert mirror.count(NAME) == 1


@pytest.mark.parametrize("status", [500, 503])
def test_server_error_then_ok_is_retried(mirror, isolated_env, status):
    url = mirror.script(NAME, [Reply(status, b"busy"), Reply(body=DATA)])
    fetch(weights_file(NAME, DATA, [url]))
    assert mirror.count(NAME) == 2
    assert_clean_cache(isolated_env, {NAME: DATA})


def test_server_errors_are_retried_a_bounded_number_of_times(mirror, isolated_env):
    failing(mirror, [Reply(503, b"busy")], DownloadError, "HTTP 503", isolated_env)
    assert mirror.count(NAME) == 1 + download.MAX_RETRIES


def test_a_silent_server_times_out(mirror, isolated_env, monkeypatch):
    monkeypatch.setattr(download, "MAX_RETRIES", 0)
    monkeypatch.setenv("RESNET_KERAS_TIMEOUT", "0.3")
    start = time.monotonic()
    failing(mirror, [Reply(body=DATA, delay=3)], DownloadError, r"no answer within 0.3 s \(timeout\)", isolated_env)
    assert time.monotonic() - start < 2.5


def test_timeout_setting_is_validated(monkeypatch):
    from resnet_keras.errors import InvalidArgumentError

    for bad in ("0", "-1", "soon", "inf"):
        monkeypatch.setenv("RESNET_KERAS_TIMEOUT", bad)
        with pytest.raises(InvalidArgumentError, match="RESNET_KERAS_TIMEOUT must be a positive number"):
            cache.timeout_seconds()


def test_redirect_to_plain_http_is_refused_before_it_is_followed(mirror, isolated_env):
    message = failing(mirror, [Reply(302, location="http://example.org/" + NAME)], DownloadError,
                      "redirected to http://example.org/", isolated_env)
    assert "refused" in message and mirror.count(NAME) == 1


def test_redirect_within_loopback_is_followed(mirror, isolated_env):
    target = mirror.add("real/" + NAME, DATA)
    url = mirror.script(NAME, [Reply(301, location=target)])
    fetch(weights_file(NAME, DATA, [url]))
    assert_clean_cache(isolated_env, {NAME: DATA})


def test_redirect_loop_ends(mirror, isolated_env):
    failing(mirror, [Reply(302, location="/" + NAME)], DownloadError, "redirect loop", isolated_env)
    assert mirror.count(NAME) <= 31  # requests' own bound


def test_no_content_length_is_fine(mirror, isolated_env):
    url = mirror.script(NAME, [Reply(body=DATA, send_length=False)])
    fetch(weights_file(NAME, DATA, [url]))
    assert_clean_cache(isolated_env, {NAME: DATA})


def test_declared_size_is_checked_too(mirror, isolated_env):
    url = mirror.add(NAME, DATA)
    with pytest.raises(IntegrityError, match="expected md5"):
        fetch(weights_file(NAME, DATA, [url], size=len(DATA) + 1))
    assert_clean_cache(isolated_env)


def test_mirrors_are_tried_in_order(mirror, isolated_env):
    urls = [mirror.script("a/" + NAME, [Reply(404)]), mirror.add("b/" + NAME, b"wrong"), mirror.add("c/" + NAME, DATA),
            mirror.add("d/" + NAME, DATA)]
    fetch(weights_file(NAME, DATA, urls))
    assert mirror.requests == ["/a/" + NAME, "/b/" + NAME, "/c/" + NAME]
    assert_clean_cache(isolated_env, {NAME: DATA})


def test_when_every_mirror_fails_each_is_reported(mirror, isolated_env):
    urls = [mirror.script("a/" + NAME, [Reply(404)]), mirror.add("b/" + NAME, b"wrong")]
    with pytest.raises(IntegrityError) as info:
        fetch(weights_file(NAME, DATA, urls))
    message = str(info.value)
    assert "Tried 2 URL(s)" in message and f"{urls[0]}: HTTP 404" in message and f"{urls[1]}: sent other bytes" in message
    assert_clean_cache(isolated_env)


def test_file_url_mirror(tmp_path, isolated_env):
    source = tmp_path / "mirror" / NAME
    source.parent.mkdir()
    source.write_bytes(DATA)
    missing = (tmp_path / "gone" / NAME).as_uri()
    fetch(weights_file(NAME, DATA, [missing, source.as_uri()]))
    assert_clean_cache(isolated_env, {NAME: DATA})


def test_uppercase_manifest_hash_downloads_fine(mirror, tmp_path, isolated_env):
    url = mirror.add(NAME, DATA)
    manifest = user_manifest(tmp_path / "m.json", {"resnet50": {"imagenet": entry({"notop": (NAME, [url], md5(DATA).upper())})}})
    from resnet_keras.architecture import build

    resolved = build.resolve(SPECS["resnet50"], "imagenet", include_top=False, manifest=manifest)
    assert cache.fetch(resolved.file, progressbar=False) == isolated_env / NAME


# -- what the cache holds -----------------------------------------------------------


@pytest.mark.parametrize("damage", ["truncated", "bit flip", "empty"])
def test_corrupt_cached_file_is_replaced_online(mirror, isolated_env, damage):
    bad = {"truncated": DATA[:-10], "bit flip": bytes([DATA[0] ^ 1]) + DATA[1:], "empty": b""}[damage]
    isolated_env.mkdir(parents=True)
    (isolated_env / NAME).write_bytes(bad)
    url = mirror.add(NAME, DATA)
    fetch(weights_file(NAME, DATA, [url]))
    assert_clean_cache(isolated_env, {NAME: DATA}, aside=[NAME + ".corrupt"])
    assert (isolated_env / (NAME + ".corrupt")).read_bytes() == bad  # kept aside for inspection


@pytest.mark.parametrize("damage", ["truncated", "bit flip", "empty"])
def test_corrupt_cached_file_is_named_offline_before_h5py_opens_it(mirror, tmp_path, isolated_env, monkeypatch, damage, official_tiny):
    data = official_tiny.read_bytes()
    bad = {"truncated": data[:-10], "bit flip": data[:-5] + bytes([data[-5] ^ 1]) + data[-4:], "empty": b""}[damage]
    isolated_env.mkdir(parents=True)
    (isolated_env / NAME).write_bytes(bad)
    url = mirror.add(NAME, data)
    manifest = user_manifest(tmp_path / "m.json", {"resnet50": {"imagenet": entry({"notop": (NAME, [url], md5(data))})}})
    import h5py

    def no_open(*args, **kwargs):
        raise AssertionError("h5py must not open an unverified file")

    monkeypatch.setattr(h5py, "File", no_open)
    with pytest.raises(OfflineError, match=f"{NAME} is corrupt") as info:
        build_tiny(weights="imagenet", manifest=manifest, offline=True)
    assert str(isolated_env / NAME) in str(info.value) and md5(data) in str(info.value)
    assert mirror.requests == []
    assert_clean_cache(isolated_env, aside=[NAME + ".corrupt"])


@pytest.mark.parametrize("kind", ["directory", "fifo", "dangling symlink"])
def test_non_file_at_the_final_path_is_named_and_left_alone(mirror, isolated_env, kind):
    isolated_env.mkdir(parents=True)
    path = isolated_env / NAME
    if kind == "directory":
        path.mkdir()
        (path / "keep").write_text("mine")
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to(isolated_env / "nowhere.h5")
    url = mirror.add(NAME, DATA)
    phrase = {"directory": "a directory", "fifo": r"a FIFO \(named pipe\)", "dangling symlink": "a dangling symbolic link"}[kind]
    for offline in (False, True):
        with pytest.raises(CacheError, match=f"{NAME} is {phrase}, not a weights file.*Remove it"):
            fetch(weights_file(NAME, DATA, [url]), offline=offline)
    assert mirror.requests == []
    assert os.path.lexists(path) and [p.name for p in isolated_env.iterdir()] == [NAME]
    if kind == "directory":
        assert (path / "keep").read_text() == "mine"


def _interrupting_transfer(exception):
    def transfer(url, out, **kwargs):
        out.write(DATA[:1000])  # half a file on disk, then the fault
        out.flush()
        raise exception

    return transfer


def test_ctrl_c_mid_download_leaves_no_partial_file(mirror, isolated_env, monkeypatch):
    url = mirror.add(NAME, DATA)
    real = download._transfer
    monkeypatch.setattr(download, "_transfer", _interrupting_transfer(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        fetch(weights_file(NAME, DATA, [url]))
    assert_clean_cache(isolated_env)
    monkeypatch.setattr(download, "_transfer", real)
    fetch(weights_file(NAME, DATA, [url]))  # and the next run works (lock released)
    assert_clean_cache(isolated_env, {NAME: DATA})


def test_disk_full_mid_download(mirror, isolated_env, monkeypatch):
    url = mirror.add(NAME, DATA)
    full = OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(download, "_transfer", _interrupting_transfer(full))
    with pytest.raises(DownloadError, match="no space left on the device holding the cache"):
        fetch(weights_file(NAME, DATA, [url]))
    assert_clean_cache(isolated_env)


def _temp_name(host, pid, token="dead"):
    return f".{NAME}.{host}-{pid}-{token}.part"


def test_stale_temp_files_from_crashed_runs_are_removed(mirror, isolated_env):
    isolated_env.mkdir(parents=True)
    dead_pid = 2**22 + 12345  # above Linux' pid_max: no such process
    ours_dead = isolated_env / _temp_name(cache._HOST_TAG, dead_pid)
    old_foreign = isolated_env / _temp_name("0badc0de", 1)
    fresh_foreign = isolated_env / _temp_name("0badc0de", 2)  # maybe a live download on NFS
    alive = isolated_env / _temp_name(cache._HOST_TAG, os.getpid(), "live")
    other_file = isolated_env / f".other.h5.{cache._HOST_TAG}-{dead_pid}-x.part"
    for path in (ours_dead, old_foreign, fresh_foreign, alive, other_file):
        path.write_bytes(b"partial")
    old = time.time() - cache.STALE_TEMP_SECONDS - 60
    os.utime(old_foreign, (old, old))
    keras_file = isolated_env / "vgg16_weights_tf_dim_ordering_tf_kernels.h5"
    keras_file.write_bytes(b"not ours")
    fetch(weights_file(NAME, DATA, [mirror.add(NAME, DATA)]))
    left = sorted(p.name for p in isolated_env.iterdir())
    assert left == sorted([NAME, fresh_foreign.name, alive.name, other_file.name, keras_file.name])
    assert keras_file.read_bytes() == b"not ours"


def test_forced_download_keeps_the_good_file_usable_until_verified(mirror, isolated_env, monkeypatch):
    wfile = weights_file(NAME, DATA, [mirror.add(NAME, DATA)])
    path = fetch(wfile)
    real = download._transfer
    seen = []

    def watching(url, out, **kwargs):
        seen.append(cache.is_verified(path, wfile))  # during the transfer
        result = real(url, out, **kwargs)
        seen.append(cache.is_verified(path, wfile))  # before the rename
        return result

    monkeypatch.setattr(download, "_transfer", watching)
    inode = path.stat().st_ino
    with open(path, "rb") as reader:  # a reader holding the old file keeps it whole
        assert fetch(wfile, force=True) == path
        assert reader.read() == DATA
    assert seen == [True, True] and mirror.count(NAME) == 2
    assert path.stat().st_ino != inode  # replaced by a fresh, verified file
    assert_clean_cache(isolated_env, {NAME: DATA})


def test_failed_forced_download_leaves_the_good_file(mirror, isolated_env):
    url = mirror.script(NAME, [Reply(body=DATA), Reply(body=b"<html>gone</html>")])
    wfile = weights_file(NAME, DATA, [url])
    fetch(wfile)
    with pytest.raises(IntegrityError, match=f"The cached copy at .*{NAME} is unchanged"):
        fetch(wfile, force=True)
    assert_clean_cache(isolated_env, {NAME: DATA})


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_downloaded_files_follow_the_umask(mirror, isolated_env, umask):
    previous = os.umask(umask)
    try:
        expected = umask_mode(0o666)
        fetch(weights_file(NAME, DATA, [mirror.add(NAME, DATA)]))
    finally:
        os.umask(previous)
    assert (isolated_env / NAME).stat().st_mode & 0o777 == expected


@pytest.fixture
def official_tiny(tmp_path):
    """A small official-format (Keras 2 layout) notop file of the tiny net."""
    import official_format

    model = build_tiny(include_top=False)
    official_format.randomize(model, seed=3)
    return official_format.write_keras2_weights(model, tmp_path / "official_tiny.h5")
