"""FAULTS.md "Manifest": every malformed manifest is refused when it is loaded,
before any network or cache work, with the field, the value and the remedy."""

from __future__ import annotations

import copy
import json
import math
import os

import pytest

import resnet_keras
from cache_checks import entry, md5, user_manifest
from keras_builders import KERAS_BUILDERS
from facts import table
from resnet_keras.weights.manifest import records
from resnet_keras.architecture import build
from resnet_keras.architecture.specs import SPECS
from resnet_keras.errors import ManifestError, UnknownWeightsError

GOOD_HASH = "md5:" + "0" * 32
URL = "https://example.org/w/file.h5"


def document(file=None, entry_extra=None, top_extra=None, model="resnet50", tag="imagenet"):
    wfile = {"file_name": "file.h5", "urls": [URL], "hash": GOOD_HASH}
    wfile.update(file or {})
    wfile = {k: v for k, v in wfile.items() if v is not ...}
    data = {
        "schema_version": 1,
        "models": {model: {tag: {"files": {"top": wfile}, **(entry_extra or {})}}},
    }
    data.update(top_extra or {})
    return data


def refused(data_or_text, match):
    text = data_or_text if isinstance(data_or_text, str) else json.dumps(data_or_text)
    with pytest.raises(ManifestError, match=match) as info:
        records.parse_manifest(text, source="user.json")
    return str(info.value)


@pytest.fixture
def no_fetch(monkeypatch):
    """Manifest faults must stop a build before any download."""
    from resnet_keras.weights.download import cache

    def forbidden(*args, **kwargs):
        raise AssertionError("the manifest must be refused before any download")

    monkeypatch.setattr(cache, "fetch", forbidden)


# -- unknown model or tag ----------------------------------------------------


def test_unknown_tag_lists_valid_ones_with_suggestion_and_touches_nothing(isolated_env, no_fetch, mirror):
    with pytest.raises(UnknownWeightsError, match=r"Did you mean 'imagenet'\?") as info:
        resnet_keras.ResNet50(weights="imagenett")
    assert "'imagenet'" in str(info.value) and "Received: weights='imagenett'" in str(info.value)
    assert not isolated_env.exists() and mirror.requests == []


def test_unknown_model_lists_models_with_suggestion():
    manifest = build.active_manifest()
    with pytest.raises(UnknownWeightsError, match=r"Did you mean 'resnet50'\?") as info:
        manifest.check_model("resnet5")
    assert "resnet101" in str(info.value) and "Received: model='resnet5'" in str(info.value)


def test_user_tag_is_listed_for_an_unknown_tag(tmp_path, isolated_env, no_fetch):
    path = user_manifest(tmp_path / "m.json", {"resnet50": {"in21k": entry({"top": ("x.h5", [URL], GOOD_HASH)})}})
    with pytest.raises(UnknownWeightsError, match=r"Did you mean 'in21k'\?.*") as info:
        resnet_keras.ResNet50(weights="in21", manifest=path)
    assert "'imagenet', 'in21k'" in str(info.value)
    assert not isolated_env.exists()


# -- file names that escape the cache ------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "../x.h5",
        "a/../../b.h5",
        "/etc/x.h5",
        "C:x.h5",
        "C:\\weights\\x.h5",
        "\\\\server\\share\\x.h5",
        "sub/x.h5",
        "sub\\x.h5",
        "",
        ".",
        "..",
        "x\x00.h5",
        "x\n.h5",
        ".hidden.h5",
        "x.h5.part",
        "x.h5.lock",
        "x.h5.corrupt",
        "x.pth.sha256",  # the full-hash record of x.pth
        " x.h5",
        "-x.h5",
        "x" * 201,
        5,
        None,
    ],
)
def test_file_names_that_escape_the_cache_are_refused(name):
    message = refused(document({"file_name": name}), "plain file name")
    assert "Received: file_name=" in message and "user.json" in message


def test_file_name_fault_stops_a_build_before_disk_work(tmp_path, isolated_env, no_fetch, monkeypatch):
    data = document({"file_name": "../../evil.h5"})
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    monkeypatch.setenv("RESNET_KERAS_MANIFEST", str(path))
    with pytest.raises(ManifestError, match=r"bad\.json.*plain file name"):
        resnet_keras.ResNet50()
    assert not isolated_env.exists()
    assert not (tmp_path / "evil.h5").exists()


# -- URL policy ----------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://example.org/x.h5",
        "ftp://example.org/x.h5",
        "data:application/octet-stream;base64,AAAA",
        "javascript:alert(1)",
        "example.org/x.h5",
        "//example.org/x.h5",
        "https:///x.h5",
        "https://user:secret@example.org/x.h5",
        "https://token@example.org/x.h5",
        "http://user@127.0.0.1/x.h5",
        "http://localhost.example.org/x.h5",
        "http://10.0.0.1/x.h5",
        "",
        42,
    ],
)
def test_urls_other_than_https_or_with_credentials_are_refused(url):
    message = refused(document({"urls": [URL, url]}), "must be an https:// URL without credentials")
    assert repr(url) in message


@pytest.mark.parametrize(
    "url",
    ["https://example.org/x.h5", "http://127.0.0.1:8080/x.h5", "http://127.1.2.3/x", "http://localhost/x.h5",
     "http://[::1]:9/x.h5", "file:///srv/mirror/x.h5"],
)
def test_https_loopback_http_and_file_urls_are_accepted(url):
    manifest = records.parse_manifest(json.dumps(document({"urls": [url]})))
    assert manifest.entry("resnet50", "imagenet").file(True).urls == (url,)


# -- hashes --------------------------------------------------------------------


@pytest.mark.parametrize(
    "digest",
    ["md5:" + "0" * 31, "md5:" + "0" * 33, "md5:" + "g" * 32, "0" * 32, "sha256:" + "0" * 32,
     "sha1:" + "0" * 40, "md5: " + "0" * 31, "md5-" + "0" * 32, "", 123, None,
     "sha256-prefix:" + "0" * 7, "sha256-prefix:" + "0" * 64, "sha256-prefix:f37072fg",
     "sha256-prefix:", "sha256prefix:f37072fd", "md5-prefix:f37072fd"],
)
def test_bad_hashes_are_refused(digest):
    message = refused(document({"hash": digest}), r"'md5:' \+ 32 hex digits, 'sha256:' \+ 64")
    assert "'sha256-prefix:' + 8 to 63 hex digits (the weaker kind" in message
    assert "Received: hash=" in message


@pytest.mark.parametrize("digits", ["f37072fd", "F37072FD", "f37072fd" * 7 + "0123456"])
def test_sha256_prefix_is_a_kind_of_its_own(digits):
    manifest = records.parse_manifest(json.dumps(document({"hash": "sha256-prefix:" + digits})))
    wfile = manifest.entry("resnet50", "imagenet").file(True)
    assert (wfile.hash_kind, wfile.hash_algorithm, wfile.hash_hex) == ("sha256-prefix", "sha256", digits.lower())
    assert wfile.weak_hash and "a weaker check" in wfile.hash_text
    assert wfile.matches(digits.lower() + "0" * (64 - len(digits)))
    assert not wfile.matches("0" * 64)


def test_full_hashes_are_not_weak():
    wfile = records.parse_manifest(json.dumps(document())).entry("resnet50", "imagenet").file(True)
    assert not wfile.weak_hash and wfile.hash_text == GOOD_HASH
    assert wfile.matches("0" * 32) and not wfile.matches("0" * 31) and not wfile.matches("0" * 33)


def test_uppercase_hash_is_normalised_not_blamed_on_the_file():
    manifest = records.parse_manifest(json.dumps(document({"hash": "MD5:" + "ABCDEF0123456789" * 2})))
    wfile = manifest.entry("resnet50", "imagenet").file(True)
    assert wfile.hash == "md5:" + "abcdef0123456789" * 2
    assert (wfile.hash_algorithm, wfile.hash_hex) == ("md5", "abcdef0123456789" * 2)


# -- fields --------------------------------------------------------------------


@pytest.mark.parametrize("field", ["file_name", "urls", "hash"])
def test_missing_file_field(field):
    message = refused(document({field: ...}), r"needs the fields")
    assert f"missing=['{field}']" in message


def test_missing_top_level_and_entry_fields():
    refused({"models": {}}, r"missing=\['schema_version'\]")
    refused({"schema_version": 1}, r"missing=\['models'\]")
    refused({"schema_version": 1, "models": {"resnet50": {"imagenet": {}}}}, r"missing=\['files'\]")


@pytest.mark.parametrize(
    "where, change, match",
    [
        ("file", {"urls": URL}, "urls must be a non-empty list"),
        ("file", {"urls": []}, "urls must be a non-empty list"),
        ("file", {"num_params": "25M"}, "num_params must be a positive integer"),
        ("file", {"num_params": True}, "num_params must be a positive integer"),
        ("file", {"num_params": 0}, "num_params must be a positive integer"),
        ("file", {"size": -1}, "size must be a positive integer"),
        ("file", {"size": 1.5}, "size must be a positive integer"),
        ("entry", {"default": "yes"}, "default must be true or false"),
        ("entry", {"metrics": {"top1": "74.9"}}, "metrics must map names to numbers"),
        ("entry", {"metrics": [74.9]}, "metrics must map names to numbers"),
        ("entry", {"input_size": 0}, "input_size must be a positive integer"),
        ("entry", {"source": 3}, "source must be a string"),
        ("entry", {"preprocessing": ["x"]}, "preprocessing must be a string"),
        ("entry", {"files": {"head": {}}}, r"files must map some of \['top', 'notop'\]"),
        ("entry", {"files": {}}, "files must map some of"),
        ("entry", {"files": []}, "files must map some of"),
        ("top", {"schema_version": 2}, "schema_version must be 1"),
        ("top", {"schema_version": "1"}, "schema_version must be 1"),
        ("top", {"models": []}, "models must be an object"),
    ],
)
def test_mistyped_fields(where, change, match):
    data = document(
        file=change if where == "file" else None,
        entry_extra=change if where == "entry" else None,
        top_extra=change if where == "top" else None,
    )
    refused(data, match)


def test_mistyped_containers():
    refused({"schema_version": 1, "models": {"resnet50": []}}, "must map tags to entries")
    refused({"schema_version": 1, "models": {"resnet50": {"imagenet": []}}}, "must be an object")
    refused([], "manifest must be an object")
    data = document()
    data["models"]["resnet50"]["imagenet"]["files"]["top"] = "file.h5"
    refused(data, "files.top must be an object")


@pytest.mark.parametrize("where", ["file", "entry", "top"])
def test_unknown_fields_are_refused(where):
    data = document(
        file={"sha": "x"} if where == "file" else None,
        entry_extra={"sha": "x"} if where == "entry" else None,
        top_extra={"sha": "x"} if where == "top" else None,
    )
    assert "unknown=['sha']" in refused(data, "may have")


@pytest.mark.parametrize("key", ["../resnet50", "", "res net", "resnet50/imagenet"])
def test_model_keys_and_tags_must_be_plain_names(key):
    refused(document(model=key), "must be a name of letters")
    refused(document(tag=key), "must be a name of letters")


def test_duplicate_keys_are_refused_not_silently_overwritten():
    text = json.dumps(document())
    refused(text.replace('"schema_version": 1', '"schema_version": 1, "schema_version": 1'), "duplicate key 'schema_version'")
    refused(text.replace(f'"hash": "{GOOD_HASH}"', f'"hash": "{GOOD_HASH}", "hash": "{GOOD_HASH}"'), "duplicate key 'hash'")
    one = json.dumps(document()["models"]["resnet50"]["imagenet"])
    two_tags = '{"schema_version": 1, "models": {"resnet50": {"a": %s, "a": %s}}}' % (one, one)
    refused(two_tags, "duplicate key 'a'")


@pytest.mark.parametrize("text, match", [
    ("{", "is not valid JSON"),
    ("schema_version: 1", "is not valid JSON"),
    ("", "is empty"),
    ("  \n", "is empty"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply|not valid JSON|must be an object"),
])
def test_not_json_or_empty(text, match):
    message = refused(text, match)
    assert "user.json" in message


def test_missing_manifest_file_is_named(tmp_path, isolated_env, no_fetch, monkeypatch):
    missing = tmp_path / "nowhere" / "m.json"
    monkeypatch.setenv("RESNET_KERAS_MANIFEST", str(missing))
    with pytest.raises(ManifestError, match="Cannot read the weights manifest .*m.json.*Check the path"):
        resnet_keras.ResNet50()
    assert not isolated_env.exists()


def test_two_entries_sharing_a_file_name_with_different_hashes():
    data = document()
    data["models"]["resnet50"]["other"] = {
        "files": {"top": {"file_name": "file.h5", "urls": [URL], "hash": "md5:" + "1" * 32}}
    }
    refused(data, "two entries name the file 'file.h5' with different hashes")
    data["models"]["resnet50"]["other"]["files"]["top"]["hash"] = GOOD_HASH
    records.parse_manifest(json.dumps(data))  # the same file under two tags is fine


def test_user_entry_may_not_give_a_shipped_file_name_another_hash(tmp_path, no_fetch, isolated_env):
    shipped = records.shipped_manifest().entry("resnet50", "imagenet").file(True)
    path = user_manifest(tmp_path / "m.json", {"resnet50": {"mine": entry({"top": (shipped.file_name, [URL], GOOD_HASH)})}})
    with pytest.raises(ManifestError, match=f"m.json.*{shipped.file_name}.*different hashes"):
        resnet_keras.ResNet50(manifest=path)
    assert not isolated_env.exists()


def test_at_most_one_default_tag_per_model():
    data = document(entry_extra={"default": True})
    data["models"]["resnet50"]["second"] = copy.deepcopy(data["models"]["resnet50"]["imagenet"])
    refused(data, "at most one tag as default")


# -- merging: RESNET_KERAS_MANIFEST and manifest= --------------------------------


def _write(tmp_path, name, model, tag, file_name, url, digest=GOOD_HASH, **extra):
    return user_manifest(tmp_path / name, {model: {tag: entry({"top": (file_name, [url], digest)}, **extra)}})


def test_env_paths_merge_in_order_and_manifest_argument_wins(tmp_path, monkeypatch):
    first = _write(tmp_path, "a.json", "resnet50", "imagenet", "mirror.h5", "https://a.example/x.h5")
    second = _write(tmp_path, "b.json", "resnet50", "imagenet", "mirror.h5", "https://b.example/x.h5")
    extra = _write(tmp_path, "c.json", "resnet20", "custom", "tiny.h5", "https://c.example/x.h5", default=True)
    monkeypatch.setenv("RESNET_KERAS_MANIFEST", os.pathsep.join([str(first), "", str(second)]))
    merged = build.active_manifest()
    assert merged.entry("resnet50", "imagenet").file(True).urls == ("https://b.example/x.h5",)
    assert merged.entry("resnet101", "imagenet").source == "keras-applications"  # shipped entries stay
    merged = build.active_manifest(extra)
    assert merged.default_tag("resnet20") == "custom"
    assert merged.entry("resnet20", "custom").file(True).file_name == "tiny.h5"
    merged = build.active_manifest(first)
    assert merged.entry("resnet50", "imagenet").file(True).urls == ("https://a.example/x.h5",)


def test_user_manifest_updates_a_shipped_entry_per_file_and_adds_tags(tmp_path):
    path = user_manifest(tmp_path / "m.json", {
        "resnet50": {
            "imagenet": entry({"top": ("internal.h5", ["https://mirror.internal/r50.h5"], GOOD_HASH)}),
            "extra": entry({"notop": ("extra.h5", [URL], "md5:" + "2" * 32)}, default=True),
        }
    })
    merged = build.active_manifest(path)
    assert merged.tags("resnet50") == ["extra", "imagenet"]
    imagenet = merged.entry("resnet50", "imagenet")
    assert imagenet.file(True).urls == ("https://mirror.internal/r50.h5",)  # the user's file
    shipped = build.active_manifest().entry("resnet50", "imagenet")
    assert imagenet.file(False) == shipped.file(False)  # the shipped notop file stays
    assert (imagenet.preprocessing, imagenet.input_size) == ("caffe", 224)  # fields not given stay
    assert merged.default_tag("resnet50") == "extra"
    assert build.active_manifest().default_tag("resnet50") == "imagenet"


def test_manifest_argument_of_the_wrong_type():
    from resnet_keras.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError, match="`manifest` must be a path"):
        build.active_manifest({"schema_version": 1})


def test_classify_is_pure(tmp_path, isolated_env, mirror, monkeypatch):
    """Resolution of a tag reads manifests only: no network, no cache folder."""
    url = mirror.add("w.h5", b"x")
    path = _write(tmp_path, "m.json", "resnet50", "imagenet", "w.h5", url, md5(b"x"))
    source = build.resolve(SPECS["resnet50"], "imagenet", include_top=True, manifest=path)
    assert source.pretrained and source.file.file_name == "w.h5" and source.label == "resnet50 weights 'imagenet' (top)"
    assert mirror.requests == [] and not isolated_env.exists()


# -- metadata held against the models ----------------------------------------------


def _slow_unless_50(key):
    marks = () if key.startswith("resnet50") else (pytest.mark.slow,)
    return pytest.param(key, marks=marks)


def _slow_unless_small(key):
    marks = () if key.startswith(("resnet18", "resnet34")) else (pytest.mark.slow,)
    return pytest.param(key, marks=marks)


def test_num_params_of_shipped_entries_match_the_golden_layer_shapes():
    """All six, cheaply: the golden (name, shapes) list is itself held against builds."""
    import math

    from make_golden import GOLDEN

    golden = json.loads(GOLDEN.read_text())
    for key in KERAS_BUILDERS:
        sizes = {name: sum(math.prod(s) for s in shapes) for name, shapes in golden[key]}
        files = records.shipped_manifest().entry(key, "imagenet").files
        assert files["top"].num_params == sum(sizes.values()), key
        assert files["notop"].num_params == sum(sizes.values()) - sizes["predictions"], key


@pytest.mark.parametrize("key", [_slow_unless_50(k) for k in sorted(KERAS_BUILDERS)])
def test_num_params_of_shipped_entries_match_the_built_model(key):
    from resnet_keras.architecture import build as _builder

    model = _builder.create_model(
        SPECS[key], include_top=True, weights=None, input_tensor=None, input_shape=None,
        pooling=None, classes=1000, classifier_activation="softmax", name=key,
    )
    head = model.get_layer("predictions").count_params()
    files = records.shipped_manifest().entry(key, "imagenet").files
    assert files["top"].num_params == model.count_params()
    assert files["notop"].num_params == model.count_params() - head


def test_every_shipped_file_declares_num_params():
    for entry_, kind, wfile in records.shipped_manifest().files():
        assert wfile.num_params, f"{entry_.model} {entry_.tag} {kind} lacks num_params"



# -- torchvision's published weights ----------------------------------------------

TORCHVISION_WEIGHTS = table("torchvision_weights")
TORCHVISION_URL = "https://download.pytorch.org/models/"
# torchvision's model -> ours: its ResNet-50/101/152 are the v1.5 layout.
OUR_KEY = {"resnet18": "resnet18", "resnet34": "resnet34", "resnet50": "resnet50_v1_5",
           "resnet101": "resnet101_v1_5", "resnet152": "resnet152_v1_5"}


def torchvision_entries():
    """{facts key ('resnet50/IMAGENET1K_V2'): shipped entry}, read from each entry's source."""
    found = {}
    for tags in records.shipped_manifest().entries.values():
        for entry_ in tags.values():
            if entry_.source.startswith("torchvision "):
                weights_class, _, version = entry_.source.split()[1].partition(".")
                found[f"{weights_class.removesuffix('_Weights').lower()}/{version}"] = entry_
    return found


def test_every_published_torchvision_weight_of_a_registered_model_is_shipped():
    expected = {key for key in TORCHVISION_WEIGHTS if OUR_KEY[key.split("/")[0]] in SPECS}
    assert {"resnet18/IMAGENET1K_V1", "resnet34/IMAGENET1K_V1"} <= expected
    assert set(torchvision_entries()) == expected


@pytest.mark.parametrize("key", sorted(torchvision_entries()))
def test_shipped_torchvision_entry_is_as_published(key):
    fact, entry_ = TORCHVISION_WEIGHTS[key], torchvision_entries()[key]
    model, version = key.split("/")
    assert (entry_.model, entry_.tag) == (OUR_KEY[model], f"torchvision_{version.lower()}")
    top = entry_.files["top"]
    assert entry_.files["notop"] == top  # one file holds both heads
    assert top.file_name == fact["file"] and top.urls == (TORCHVISION_URL + fact["file"],)
    assert top.hash == "sha256-prefix:" + fact["file"].rsplit("-", 1)[1].removesuffix(".pth")
    assert top.size is None  # not published exactly: max_bytes comes from num_params
    assert dict(entry_.metrics) == {"top1": fact["top1"], "top5": fact["top5"], "eval_size": fact["crop"]}
    assert (entry_.preprocessing, entry_.input_size, entry_.resize_size) == ("torch", fact["crop"], fact["resize"])


@pytest.mark.parametrize("key", [_slow_unless_small(k) for k in sorted(torchvision_entries())])
def test_num_params_of_torchvision_entries_match_the_built_model(key):
    """num_params counts what count_params() counts (BatchNorm statistics too),
    so the file's bound (4 bytes each, 1% and 16 MiB more) holds torch's file."""
    from resnet_keras.architecture.catalog import ENTRIES

    fact, entry_ = TORCHVISION_WEIGHTS[key], torchvision_entries()[key]
    model = ENTRIES[entry_.model].function(weights=None)
    assert sum(math.prod(w.shape) for w in model.trainable_weights) == fact["params"]
    assert entry_.files["top"].num_params == model.count_params()


@pytest.mark.parametrize(
    "extra, match",
    [
        ({"resize_size": 0}, "resize_size must be a positive integer"),
        ({"resize_size": "232"}, "resize_size must be a positive integer"),
        ({"resize_size": 5000}, "at most 4,096"),
        ({"resize_size": 200, "input_size": 224}, "resize_size .* must be at least input_size \\(224\\)"),
    ],
)
def test_resize_size_is_checked(extra, match):
    refused(document(entry_extra=extra), match)


def test_resize_size_is_kept():
    manifest = records.parse_manifest(json.dumps(document(entry_extra={"input_size": 224, "resize_size": 232})))
    assert manifest.entry("resnet50", "imagenet").resize_size == 232


def test_imagenet_selects_the_default_tag_where_no_tag_has_that_name(tmp_path):
    shipped = build.active_manifest()
    assert shipped.entry("resnet18", "imagenet").tag == "torchvision_imagenet1k_v1"
    assert shipped.is_tag("resnet18", "imagenet") and not shipped.is_tag("resnet20", "imagenet")
    assert shipped.entry("resnet50", "imagenet").source == "keras-applications"  # a tag of that name wins
    files = {"top": ("r18_mine.h5", ["https://example.org/r18_mine.h5"], md5(b"x"))}
    literal = user_manifest(tmp_path / "a.json", {"resnet18": {"imagenet": entry(files)}})
    assert build.active_manifest(literal).entry("resnet18", "imagenet").tag == "imagenet"
    default = user_manifest(tmp_path / "b.json", {"resnet18": {"mine": entry(files, default=True)}})
    assert build.active_manifest(default).entry("resnet18", "imagenet").tag == "mine"
