"""Hostile files, servers and settings (issue 10): each is refused with a typed,
one-line error, in bounded time and memory, and leaves the cache clean.

Every case here failed before the fix that it names: a raw exception, an
unbounded read or write, a redirect followed to loopback, or a file loaded
that was not the one verified.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import time
from pathlib import Path

import h5py
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
from http_mirror import Mirror, Reply, self_signed_certificate
from resnet_keras.weights.download import cache, download
from resnet_keras.weights.formats import hdf5
from resnet_keras.weights.manifest import records
from resnet_keras.architecture.specs import SPECS
from resnet_keras.architecture import build
from resnet_keras.errors import (
    CacheError,
    DownloadError,
    ImageError,
    IntegrityError,
    ManifestError,
    WeightsFormatError,
)

pytestmark = pytest.mark.usefixtures("fast_network")

DATA = payload(50_000)
NAME = "tiny_weights.h5"


def fetch(wfile, **kwargs):
    kwargs.setdefault("progressbar", False)
    return cache.fetch(wfile, label="resnet50 weights 'imagenet' (notop)", **kwargs)


def one_line(error: BaseException) -> str:
    text = str(error)
    assert "Traceback" not in text
    return text


# -- 2. the bytes that load are the bytes that were verified -------------------------------


@pytest.fixture
def two_tiny_files(tmp_path):
    files = []
    for seed in (1, 2):
        model = build_tiny(include_top=False)
        official_format.randomize(model, seed=seed)
        path = official_format.write_keras2_weights(model, tmp_path / f"tiny{seed}.h5")
        files.append((path, [w.numpy() for w in model.weights]))
    return files


def test_a_file_swapped_between_hash_and_load_is_not_loaded(two_tiny_files, mirror, tmp_path, isolated_env, monkeypatch):
    """Another process replaces the cached file after it was hashed: the verified bytes load."""
    from resnet_keras.architecture import graph

    (good, good_values), (other, _) = two_tiny_files
    url = mirror.add(NAME, good.read_bytes())
    manifest = user_manifest(tmp_path / "m.json", {"resnet50": {"imagenet": entry({"notop": (NAME, [url], md5(good.read_bytes()))})}})
    real = graph.graph

    def swap_then_build(*args):  # the graph is built after the weights file was opened and hashed
        os.replace(shutil.copy(other, isolated_env / "swap.tmp"), isolated_env / NAME)
        return real(*args)

    monkeypatch.setattr(graph, "graph", swap_then_build)
    model = build_tiny(weights="imagenet", manifest=manifest)
    for got, want in zip(model.weights, good_values):
        np.testing.assert_array_equal(got.numpy(), want)


def test_a_local_file_is_opened_once(two_tiny_files, monkeypatch):
    """A path given by the user: its signature check and its load read one descriptor."""
    from resnet_keras.architecture import graph

    (good, good_values), (other, _) = two_tiny_files
    target = good.with_name("mine.h5")
    shutil.copy(good, target)
    real = graph.graph

    def swap_then_build(*args):
        os.replace(shutil.copy(other, target.with_name("x.tmp")), target)
        return real(*args)

    monkeypatch.setattr(graph, "graph", swap_then_build)
    model = build_tiny(weights=str(target))
    for got, want in zip(model.weights, good_values):
        np.testing.assert_array_equal(got.numpy(), want)


# -- 3. bounded work on hostile HDF5 -------------------------------------------------------


@pytest.fixture
def tiny_reference(tmp_path):
    model = build_tiny(include_top=False)
    official_format.randomize(model, seed=5)
    return official_format.write_keras2_weights(model, tmp_path / "ref.h5"), model


def _replace_dataset(path, layer, weight, **create):
    with h5py.File(path, "r+") as root:
        group = root[layer]
        full = next(n.decode() for n in group.attrs["weight_names"] if n.decode().split("/")[-1].startswith(weight))
        value = group[full][()]
        del group[full]
        group.create_dataset(full, data=value, **create)


def test_one_huge_gzip_chunk_is_refused_before_it_is_inflated(tiny_reference, no_data_read):
    path, model = tiny_reference
    kernel = model.get_layer("conv1_conv").weights[0]
    shape = tuple(kernel.shape)  # (7, 7, 3, 4): 2.3 KB of data
    _replace_dataset(path, "conv1_conv", "kernel", chunks=shape[:3] + (1 << 18,),
                     maxshape=shape[:3] + (None,), compression="gzip")
    assert path.stat().st_size < 2_000_000
    no_data_read.clear()
    with pytest.raises(WeightsFormatError, match=r"stored in chunks of 154,140,672 bytes .*decompression bomb"):
        hdf5.load_weights(model, path)
    assert no_data_read == []


def test_declared_far_above_stored_is_refused_by_the_ratio_rule(tiny_reference, no_data_read):
    """24 MB of compressed zeros in 24 KB: below the absolute cap, caught by the ratio."""
    path, model = tiny_reference
    with h5py.File(path, "r+") as root:
        root.create_dataset("padding", data=np.zeros(6_000_000, "float32"), compression="gzip", chunks=(1_000_000,))
    with pytest.raises(WeightsFormatError, match=r"declares shape \(6000000,\) \(24,000,000 bytes\) but stores"):
        hdf5.load_weights(model, path)
    assert no_data_read == []


def test_model_weights_nested_3000_deep_is_refused_quickly(tmp_path, tiny_reference):
    _, model = tiny_reference
    path = tmp_path / "deep.h5"
    with h5py.File(path, "w") as root:
        group = root
        for _ in range(3000):
            group = group.create_group("model_weights")
    start = time.monotonic()
    with pytest.raises(WeightsFormatError) as info:
        hdf5.load_weights(model, path)
    assert time.monotonic() - start < 5
    assert "not a group with `layer_names`" in one_line(info.value) or "nested more than" in str(info.value)


# -- 3. bounded downloads ------------------------------------------------------------------


def test_endless_body_stops_at_the_declared_size(mirror, isolated_env):
    url = mirror.script(NAME, [Reply(body=DATA, send_length=False, endless=True)])
    start = time.monotonic()
    with pytest.raises(IntegrityError, match=r"sent more than the 50,000 bytes the manifest allows"):
        fetch(weights_file(NAME, DATA, [url], size=len(DATA)))
    assert time.monotonic() - start < 10
    assert_clean_cache(isolated_env)


def test_endless_body_without_a_size_stops_at_what_the_parameter_count_allows(mirror, isolated_env, monkeypatch):
    monkeypatch.setattr(records, "LAYOUT_ALLOWANCE", 1000)
    url = mirror.script(NAME, [Reply(body=DATA, send_length=False, endless=True)])
    wfile = weights_file(NAME, DATA, [url], num_params=10_000)  # 4 bytes each + 1% + 1000
    assert wfile.max_bytes == 41_400
    with pytest.raises(IntegrityError, match=r"sent more than the 41,400 bytes"):
        fetch(wfile)
    assert_clean_cache(isolated_env)


def test_a_content_length_above_the_limit_is_refused_before_the_body(mirror, isolated_env):
    url = mirror.add(NAME, DATA + DATA)
    with pytest.raises(IntegrityError, match=r"announced 100,000 bytes \(Content-Length\), more than the 50,000"):
        fetch(weights_file(NAME, DATA, [url], size=len(DATA)))
    assert_clean_cache(isolated_env)


def test_a_gzip_body_is_never_inflated(mirror, isolated_env, tmp_path):
    bomb = gzip.compress(bytes(30_000_000))  # 30 MB of zeros in ~30 KB
    url = mirror.script(NAME, [Reply(body=bomb, headers={"Content-Encoding": "gzip"})])
    with pytest.raises(DownloadError, match="Content-Encoding 'gzip'"):
        fetch(weights_file(NAME, DATA, [url]))
    assert mirror.headers[0].get("Accept-Encoding") == "identity"
    assert_clean_cache(isolated_env)


@pytest.mark.slow  # waits out a timeout or stall bound (0.5-1.5 s): the slow tier
def test_a_trickling_server_is_dropped_by_the_stall_rule(mirror, isolated_env, monkeypatch):
    monkeypatch.setattr(download, "MAX_RETRIES", 0)
    url = mirror.script(NAME, [Reply(body=DATA, trickle=0.05)])
    start = time.monotonic()
    with pytest.raises(DownloadError, match=r"stalled: .* below the floor of 1,024 bytes/s .*RESNET_KERAS_TIMEOUT"):
        fetch(weights_file(NAME, DATA, [url]))
    assert time.monotonic() - start < 5
    assert_clean_cache(isolated_env)


@pytest.mark.slow  # waits out a timeout or stall bound (0.5-1.5 s): the slow tier
def test_silence_mid_body_is_a_read_timeout_not_cannot_connect(mirror, isolated_env, monkeypatch):
    monkeypatch.setattr(download, "MAX_RETRIES", 0)
    url = mirror.script(NAME, [Reply(body=DATA, pause_after=1000, delay_mid=3)])
    with pytest.raises(DownloadError, match=r"no data for 0.5 s in the middle of the file, after 1,000 bytes") as info:
        fetch(weights_file(NAME, DATA, [url]))
    assert "cannot connect" not in str(info.value)


@pytest.mark.slow  # waits out a timeout or stall bound (0.5-1.5 s): the slow tier
def test_a_host_that_never_answers_reports_the_real_wait(mirror, isolated_env, capfd):
    url = mirror.script(NAME, [Reply(body=DATA, delay=3)])
    with pytest.raises(DownloadError, match=r"no answer within 0.5 s \(timeout\) \(3 tries, \d+ s in all\)"):
        fetch(weights_file(NAME, DATA, [url]), progressbar=True)
    assert f"Downloading {url} -> {isolated_env / NAME}" in capfd.readouterr().err


def test_progress_names_the_file_and_ends_at_its_size(mirror, isolated_env, capfd):
    url = mirror.add(NAME, DATA)
    fetch(weights_file(NAME, DATA, [url]), progressbar=True)
    err = capfd.readouterr().err
    assert err.index(f"Downloading {url}") < err.index(NAME + ":")
    last = err.rstrip().split("\r")[-1]  # what the bar shows once done
    assert last.startswith(f"{NAME}: 100%") and "48.8k/48.8k" in last


# -- 4. redirects and URLs -----------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


def test_https_to_plain_http_loopback_is_refused(certificate, mirror, isolated_env, monkeypatch):
    """A mirror must not send the client to services on the user's own machine."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certificate[0])
    local_service = mirror.add("admin", DATA)
    with Mirror(tls=certificate) as secure:
        url = secure.script(NAME, [Reply(302, location=local_service)])
        with pytest.raises(DownloadError, match="redirected from https to plain http .*refused") as info:
            fetch(weights_file(NAME, DATA, [url]))
    assert mirror.requests == [] and secure.count(NAME) == 1
    assert_clean_cache(isolated_env)
    one_line(info.value)


def test_https_mirror_serves_and_redirects_within_https(certificate, isolated_env, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certificate[0])
    with Mirror(tls=certificate) as secure:
        target = secure.add("real/" + NAME, DATA)
        url = secure.script(NAME, [Reply(301, location=target)])
        fetch(weights_file(NAME, DATA, [url]))
    assert_clean_cache(isolated_env, {NAME: DATA})


def test_plain_http_mirrors_need_the_opt_in(monkeypatch):
    url = "http://mirror.corp.example/r50.h5"
    with pytest.raises(ManifestError, match="RESNET_KERAS_ALLOW_HTTP=1"):
        records.check_url(url)
    monkeypatch.setenv("RESNET_KERAS_ALLOW_HTTP", "1")
    assert records.check_url(url) == url
    with pytest.raises(ManifestError, match="from https to plain http"):  # never a downgrade
        records.check_redirect("https://a.example/x.h5", url)


# -- 5. typed one-line errors for malformed input -----------------------------------------


def _set_attr(root, where, name, value):
    target = root if where == "/" else root[where]
    del target.attrs[name]
    target.attrs[name] = value


@pytest.mark.parametrize("where, name", [("/", "layer_names"), ("conv1_conv", "weight_names")])
@pytest.mark.parametrize("value, phrase", [
    (7, "is not a list of names"),
    (h5py.Empty("S10"), "is not a list of names"),
    (np.array([b"\xff\xfe"]), "is not UTF-8 text"),
    (np.array([[b"a"]]), "is not a list of names"),
])
def test_malformed_name_attributes(tiny_reference, where, name, value, phrase):
    path, model = tiny_reference
    with h5py.File(path, "r+") as root:
        _set_attr(root, where, name, value)
    with pytest.raises(WeightsFormatError, match=phrase) as info:
        hdf5.load_weights(model, path)
    assert str(path) in one_line(info.value)


@pytest.mark.parametrize("value", [np.float32(1.0), np.zeros((2, 2), "float32")])
def test_model_weights_that_is_a_dataset(tmp_path, tiny_reference, value):
    _, model = tiny_reference
    path = tmp_path / "full.h5"
    with h5py.File(path, "w") as root:
        root["model_weights"] = value
    with pytest.raises(WeightsFormatError, match="its `model_weights` is not a group"):
        hdf5.load_weights(model, path)


def _manifest_with_file(tmp_path, **file_fields):
    fields = {"file_name": "w.h5", "urls": ["https://a.example/w.h5"], "hash": "md5:" + "0" * 32}
    fields.update(file_fields)
    document = {"schema_version": 1, "models": {"resnet50": {"imagenet": {"files": {"top": fields}}}}}
    return json.dumps(document, ensure_ascii=True)


@pytest.mark.parametrize("text, phrase", [
    ('{"schema_version": 1, "models": {}, "comment": "caf\xe9"}'.encode("latin-1"), "is not UTF-8 text"),
    (b'{"schema_version": 1, "models": {"resnet50": {"imagenet": {"files": {"top": {"file_name": "w.h5", '
     b'"urls": ["https://a.example/w.h5"], "hash": "md5:00000000000000000000000000000000", "size": '
     + b"9" * 5000 + b"}}}}}}", "is not valid JSON"),
])
def test_manifest_bytes_that_are_not_a_manifest(tmp_path, text, phrase):
    path = tmp_path / "m.json"
    path.write_bytes(text)
    with pytest.raises(ManifestError, match=phrase) as info:
        records.read_manifest(path)
    assert len(one_line(info.value)) < 400


@pytest.mark.parametrize("fields, phrase", [
    ({"urls": ["https://[::1/x"]}, "must be an https:// URL"),
    ({"file_name": "\u00e9" * 150 + ".h5"}, "at most 200 bytes in UTF-8"),
    ({"file_name": "\ud800.h5"}, "at most 200 bytes in UTF-8"),
    ({"file_name": "a\x85b.h5"}, "bidi or other invisible characters"),
    ({"file_name": "evil\u202egpj.h5"}, "bidi or other invisible characters"),
    ({"file_name": "a\u200bb.h5"}, "bidi or other invisible characters"),
    ({"size": 10**13}, "must be a positive integer of at most"),
])
def test_manifest_fields_that_are_refused(tmp_path, fields, phrase):
    with pytest.raises(ManifestError, match=phrase) as info:
        records.parse_manifest(_manifest_with_file(tmp_path, **fields))
    one_line(info.value)


@pytest.mark.parametrize("variable", ["RESNET_KERAS_HOME", "KERAS_HOME"])
def test_a_home_folder_that_does_not_exist(monkeypatch, variable):
    monkeypatch.setenv(variable, "~nosuchuser_resnet_keras/c")
    with pytest.raises(CacheError, match=f"{variable} must name a folder.*~nosuchuser_resnet_keras"):
        cache.cache_dir()


def test_a_png_that_declares_a_huge_picture(tmp_path):
    import struct
    import zlib

    from resnet_keras import images as _images

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 30_000, 30_000, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b"")
    path = tmp_path / "bomb.png"
    path.write_bytes(png)
    with pytest.raises(ImageError, match="bomb.png") as info:
        _images.load_batch([path], (32, 32))
    one_line(info.value)


# -- 6. "imagenet" is the tag, whatever the working directory holds ---------------------


@pytest.mark.parametrize("stray", ["folder", "file"])
def test_imagenet_is_the_tag_even_with_a_stray_path_of_that_name(tmp_path, monkeypatch, stray):
    monkeypatch.chdir(tmp_path)
    if stray == "folder":
        (tmp_path / "imagenet").mkdir()
    else:
        (tmp_path / "imagenet").write_bytes(b"\x89HDF\r\n\x1a\n")
    source = build.resolve(SPECS["resnet50"], "imagenet", include_top=True)
    assert source.entry is not None and source.entry.tag == "imagenet" and source.path is None
    as_path = build.resolve(SPECS["resnet50"], Path("imagenet"), include_top=True) if stray == "file" else None
    if as_path is not None:  # a pathlib.Path is a path
        assert as_path.path == Path("imagenet")


# -- 7. smaller holes ------------------------------------------------------------------------


def test_html_with_a_bom_or_an_html_content_type_is_named(mirror, isolated_env):
    page = b"\xef\xbb\xbf<!DOCTYPE html><html><body>Sign in</body></html>"
    url = mirror.script(NAME, [Reply(body=page)])
    with pytest.raises(IntegrityError, match="an HTML page"):
        fetch(weights_file(NAME, DATA, [url]))
    url = mirror.script("typed", [Reply(body=b"Access denied", content_type="text/html; charset=utf-8")])
    with pytest.raises(IntegrityError, match="an HTML page"):
        fetch(weights_file(NAME, DATA, [url]))
    assert_clean_cache(isolated_env)


def test_a_model_key_in_the_wrong_case_is_an_error_with_a_suggestion(tmp_path):
    path = user_manifest(tmp_path / "m.json", {"ResNet50": {"imagenet": entry({"top": ("w.h5", ["https://a.example/w.h5"], "md5:" + "1" * 32)})}})
    with pytest.raises(ManifestError, match=r"model 'ResNet50', which is not a model of resnet_keras.*Did you mean 'resnet50'\?"):
        build.resolve(SPECS["resnet50"], "imagenet", include_top=True, manifest=path)


def test_a_corrupt_file_in_a_read_only_cache_is_named_as_corrupt(mirror, isolated_env, monkeypatch):
    isolated_env.mkdir(parents=True)
    (isolated_env / NAME).write_bytes(DATA[:-1] + b"x")
    url = mirror.add(NAME, DATA)

    def no_writes(*args, **kwargs):
        raise PermissionError(13, "Permission denied (read-only)")

    monkeypatch.setattr(cache, "replaced", no_writes)  # no temp file
    monkeypatch.setattr(cache, "USE_FILE_LOCK", False)
    monkeypatch.setattr(os, "replace", no_writes)  # setting it aside fails too
    with pytest.raises(CacheError, match=f"cannot be written .*The cached {NAME} is corrupt"):
        fetch(weights_file(NAME, DATA, [url]))
