"""`resnet-keras list / info / classify / features / export`, end to end.

Subprocesses for `classify` on the sample photos (weights from a local
official-format file, and through a manifest on the loopback mirror); the
rest runs in-process (`cli.main`) on a CIFAR ResNet-20 with a seeded weights
file, so every number can be checked against the Keras model.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import official_format
import resnet_keras
from cli_runs import PHOTOS, assert_one_line_error, cli_env, keras_outputs, parse_classify, run
from conftest import write_manifest
from optional import require
from resnet_keras import cli
from resnet_keras.cli import output, registry

COMMANDS = ("fetch", "verify", "weights", "list", "info", "classify", "features", "export", "finetune", "evaluate")


# --------------------------------------------------------------------------
# classify: subprocesses on the sample photos (ResNet50, official-format file)


def expected_resnet50_top3(path) -> dict[str, list[tuple[str, float]]]:
    from resnet_keras.resnet import decode_predictions, preprocess_input

    model = resnet_keras.ResNet50(weights=str(path))
    x = np.stack([keras.utils.img_to_array(keras.utils.load_img(p, target_size=(224, 224))) for p in PHOTOS])
    scores = model.predict_on_batch(preprocess_input(x))
    return {p: [(label, float(s)) for _, label, s in top] for p, top in zip(PHOTOS, decode_predictions(scores, top=3))}


def assert_same_predictions(actual, expected):
    assert list(actual) == list(expected)
    for path in expected:
        assert actual[path][0][0] == expected[path][0][0], path  # top-1 label
        np.testing.assert_allclose([s for _, s in actual[path]], [s for _, s in expected[path]], atol=2e-4)


@pytest.mark.slow
def test_classify_subprocess_with_a_local_weights_file_and_through_the_mirror(
    official_file, mirror, tmp_path, isolated_env
):
    path = official_file("resnet50", include_top=True)
    expected = expected_resnet50_top3(path)

    # 1. python -m resnet_keras, --weights PATH
    done = subprocess.run(
        [sys.executable, "-m", "resnet_keras", "classify", *PHOTOS, "--weights", str(path), "--top", "3"],
        env=cli_env(), cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert_same_predictions(parse_classify(done.stdout), expected)

    # 2. the console script, default weights from a manifest on the mirror
    script = Path(sys.executable).with_name("resnet-keras")
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "resnet_keras"]
    url = mirror.add(path.name, path.read_bytes())
    manifest = write_manifest(tmp_path / "m.json", "resnet50",
                              {"top": (path.name, [url], "md5:" + official_format.md5(path))})
    done = subprocess.run(
        [*command, "classify", *PHOTOS, "--top", "3"],
        env=cli_env(RESNET_KERAS_MANIFEST=str(manifest)), cwd=tmp_path,
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert_same_predictions(parse_classify(done.stdout), expected)
    assert mirror.count(path.name) == 1 and (isolated_env / path.name).is_file()


@pytest.mark.slow
def test_classify_any_size_grey_and_rgba(resnet20_files, image_dir, capsys):
    status, out, err = run(capsys, "classify", image_dir, "--model", "resnet20",
                           "--weights", resnet20_files["top"], "--top", "4", "--batch-size", "2")
    assert status == 0 and err == ""
    result = parse_classify(out)
    paths = [str(image_dir / "a_grey.png"), str(image_dir / "b_photo.JPG"), str(image_dir / "sub" / "c_rgba.png")]
    assert list(result) == paths  # folder walked, sorted, notes.txt skipped
    expected = keras_outputs(paths, resnet20_files["top"], include_top=True)
    for path, scores in zip(paths, expected):
        best = np.argsort(-scores)[:4]
        assert [label for label, _ in result[path]] == [f"class_{i}" for i in best]
        np.testing.assert_allclose([s for _, s in result[path]], scores[best], atol=1e-4)


# --------------------------------------------------------------------------
# features


@pytest.mark.slow
def test_features_npz_matches_the_keras_model(resnet20_files, image_dir, tmp_path, capsys):
    out_path = tmp_path / "features.npz"
    status, out, err = run(capsys, "features", image_dir / "sub", image_dir, "--out", out_path,
                           "--model", "resnet20", "--weights", resnet20_files["notop"],
                           "--pooling", "max", "--batch-size", "2", "--size", "40")
    assert status == 0
    assert "4/4" in err and "100%" in err  # the progress bar, on stderr
    assert "4 images x 64 features (resnet20, max pooling" in out and str(out_path) in out
    with np.load(out_path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    assert arrays["paths"].dtype.kind == "U"
    paths = [str(image_dir / "sub" / "c_rgba.png"), str(image_dir / "a_grey.png"),
             str(image_dir / "b_photo.JPG"), str(image_dir / "sub" / "c_rgba.png")]
    assert arrays["paths"].tolist() == paths
    assert str(arrays["model"]) == "resnet20" and str(arrays["pooling"]) == "max"
    assert arrays["image_size"].tolist() == [40, 40]
    expected = keras_outputs(paths, resnet20_files["notop"], include_top=False, size=40, pooling="max")
    assert arrays["features"].shape == (4, 64) and arrays["features"].dtype == np.float32
    np.testing.assert_allclose(arrays["features"], expected, rtol=1e-4, atol=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["features.npz", "images"]  # no temp file left


def test_features_with_random_weights_and_quiet(image_dir, tmp_path, capsys):
    status, out, err = run(capsys, "features", image_dir / "a_grey.png", "--out", tmp_path / "f.npz",
                           "--model", "plain20", "--weights", "none", "--quiet")
    assert status == 0 and err == ""
    with np.load(tmp_path / "f.npz", allow_pickle=False) as data:
        assert data["features"].shape == (1, 64) and str(data["weights"]) == "none"


# --------------------------------------------------------------------------
# export


@pytest.mark.slow
def test_export_savedmodel_reloads_with_the_same_outputs(resnet20_files, image_dir, tmp_path, capsys):
    import tensorflow as tf

    out_path = tmp_path / "resnet20_saved"
    status, out, err = run(capsys, "export", "resnet20", "--format", "savedmodel", "--out", out_path,
                           "--weights", resnet20_files["top"])
    assert status == 0, err
    assert f"exported resnet20 (weights: {resnet20_files['top']}) as savedmodel to {out_path}" in out
    assert "input: float32 (batch, 32, 32, 3), preprocessed: pixels / 255" in out
    paths = [str(image_dir / "a_grey.png"), str(image_dir / "b_photo.JPG")]
    expected = keras_outputs(paths, resnet20_files["top"], include_top=True)
    x = np.stack([keras.utils.img_to_array(keras.utils.load_img(p, target_size=(32, 32))) for p in paths]) / 255.0
    loaded = tf.saved_model.load(str(out_path))
    np.testing.assert_allclose(loaded.serve(tf.constant(x, tf.float32)).numpy(), expected, atol=1e-5)

    # an existing path is refused, unless --overwrite
    assert_one_line_error(*run(capsys, "export", "resnet20", "--format", "savedmodel", "--out", out_path,
                               "--weights", "none"), "--out must not exist yet")


@pytest.mark.slow
@pytest.mark.parametrize("fmt, suffix, module", [("onnx", ".onnx", "onnxruntime"), ("tflite", ".tflite", "ai_edge_litert")])
def test_export_onnx_and_tflite(resnet20_files, tmp_path, capsys, fmt, suffix, module):
    require(module)
    out_path = tmp_path / f"resnet20{suffix}"
    status, out, err = run(capsys, "export", "resnet20", "--format", fmt, "--out", out_path,
                           "--weights", resnet20_files["notop"], "--pooling", "avg", "--size", "48")
    assert status == 0, err
    assert out_path.is_file() and "input: float32 (batch, 48, 48, 3)" in out
    x = np.random.default_rng(1).uniform(0, 1, (2, 48, 48, 3)).astype("float32")
    model = resnet_keras.ResNet20(weights=str(resnet20_files["notop"]), include_top=False, pooling="avg",
                                  input_shape=(48, 48, 3))
    from resnet_keras.cli.run_commands import EXPORT_FORMATS

    (actual,) = EXPORT_FORMATS[fmt].run(out_path, x, model)  # the runtime export_for_inference checks with
    np.testing.assert_allclose(actual, model.predict_on_batch(x), rtol=1e-4, atol=1e-5)


def test_export_without_the_toolchain_names_the_package(tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tf2onnx" else real(name, *a))
    status, out, err = run(capsys, "export", "resnet20", "--format", "onnx", "--out", tmp_path / "m.onnx",
                           "--weights", "none")
    assert_one_line_error(status, out, err, "tf2onnx is not installed")
    assert 'pip install "resnet-keras[export]"' in err and not (tmp_path / "m.onnx").exists()


# --------------------------------------------------------------------------
# list and info


def test_list_all_and_patterns(capsys):
    status, out, err = run(capsys, "list")
    lines = out.splitlines()
    assert status == 0 and err == ""
    assert lines[0].split() == ["MODEL", "BUILDER", "BLOCK", "DEPTHS", "INPUT", "CLASSES", "PREPROCESSING", "WEIGHTS"]
    assert [line.split()[0] for line in lines[1:]] == resnet_keras.list_models()
    row = next(line.split() for line in lines if line.startswith("resnet50 "))
    assert row == ["resnet50", "ResNet50", "bottleneck", "3-4-6-3", "224x224", "1000", "caffe", "imagenet"]

    def names(*argv):
        return [line.split()[0] for line in run(capsys, "list", *argv)[1].splitlines()[1:]]

    assert names("resnet*v2") == ["resnet50v2", "resnet101v2", "resnet152v2"]
    assert names("plain") == ["plain20", "plain32", "plain44", "plain56", "plain110"]  # a word: substring
    assert names("--pretrained") == resnet_keras.list_models(pretrained=True)
    assert_one_line_error(*run(capsys, "list", "vgg*"), "PATTERN must match a registered model")


def test_list_counts_and_info(capsys):
    status, out, _ = run(capsys, "list", "resnet20", "--counts")
    header, row = out.splitlines()
    assert status == 0 and "PARAMS" in header and "271,098" in row and "40.6 M" in row

    status, out, _ = run(capsys, "info", "resnet20")
    assert status == 0
    assert "271,098 with the top (269,722 trainable)" in out and "40.6 M per image at 32x32" in out
    assert "pixels / 255" in out and "weights        none" in out


def test_info_resnet50_shows_weights_and_cache_state(capsys):
    status, out, _ = run(capsys, "info", "resnet50")
    assert status == 0
    for phrase in ("25,636,712 with the top", "3.858 G per image at 224x224", "mode 'caffe'",
                   "imagenet (default): source keras-applications; top1 74.9",
                   "top   resnet50_weights_tf_dim_ordering_tf_kernels.h5 (missing)"):
        assert phrase in out


# --------------------------------------------------------------------------
# Errors: one line, exit 1, before any model is built or file downloaded


@pytest.fixture
def mirrored_resnet50(mirror, tmp_path, monkeypatch):
    """resnet50's default weights point at the mirror (which must see no request)."""
    url = mirror.add("r50.h5", b"never served")
    manifest = write_manifest(tmp_path / "m.json", "resnet50", {"top": ("r50.h5", [url], "md5:" + "0" * 32)})
    monkeypatch.setenv("RESNET_KERAS_MANIFEST", str(manifest))
    return mirror


@pytest.mark.parametrize("argv, phrase", [
    (["classify", "missing.jpg"], "No such file: missing.jpg"),
    (["classify", "{junk}"], "Not an image Pillow can read"),
    (["classify", "{empty}"], "must name at least one image file"),
    (["classify", "{photo}", "--model", "resnet5"], "'resnet50', 'resnet152'? Received: --model='resnet5'"),
    (["classify", "{photo}", "--model", "resnet20"], "--weights` needs a value for resnet20: it has no pretrained weights in the manifest. Received: --model='resnet20'. Pass the path of a weights file, or --weights none"),
    (["classify", "{photo}", "--weights", "missing.h5"], "Weights file not found: missing.h5"),
    (["classify", "{photo}", "--weights", "imagenett"], "Did you mean 'imagenet'?"),
    (["classify", "{photo}", "--top", "1001"], "--top must be at most the number of classes (1000)"),
    (["classify", "{photo}", "--offline"], "Offline mode is on"),
    (["features", "{photo}", "--out", "no/such/folder/f.npz"], "--out` must be a file path in an existing folder"),
    (["features", "missing", "--out", "f.npz", "--model", "resnt20"], "Did you mean 'resnet20'"),
    (["export", "resnet50", "--format", "tflite", "--out", "model.onnx"], "--out must end with .tflite"),
    (["export", "resnet50", "--format", "savedmodel", "--out", "m", "--size", "64"], "--size needs --pooling"),
    (["export", "resnet50", "--format", "onnx", "--out", "{existing}"], "--out must not exist yet"),
    (["export", "resnet50", "--format", "onnx", "--out", "{existing_upper}"], "--out must not exist yet"),
    (["info", "resnet51"], "Did you mean"),
])
def test_errors_are_one_line_and_exit_1(argv, phrase, mirrored_resnet50, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "junk.jpg").write_text("not a JPEG")
    (tmp_path / "empty").mkdir()
    (tmp_path / "old.onnx").write_bytes(b"keep me")
    (tmp_path / "OLD.ONNX").write_bytes(b"keep me")
    values = dict(junk="junk.jpg", empty="empty", photo=PHOTOS[0], existing="old.onnx", existing_upper="OLD.ONNX")
    assert_one_line_error(*run(capsys, *[a.format(**values) for a in argv]), phrase)
    assert mirrored_resnet50.requests == []
    assert (tmp_path / "old.onnx").read_bytes() == (tmp_path / "OLD.ONNX").read_bytes() == b"keep me"


def test_offline_from_the_environment(image_dir, capsys, monkeypatch, isolated_env):
    monkeypatch.setenv("RESNET_KERAS_OFFLINE", "1")
    assert_one_line_error(*run(capsys, "classify", image_dir / "a_grey.png"), "is not in the cache")


def test_truncated_image_is_one_line(resnet20_files, tmp_path, capsys):
    data = Path(PHOTOS[0]).read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 3])
    assert_one_line_error(*run(capsys, "classify", tmp_path / "cut.jpg", "--model", "resnet20",
                               "--weights", resnet20_files["top"]), "Unreadable image (image file is truncated")


@pytest.mark.parametrize("argv", [
    ["classify", "x.jpg", "--top", "0"],
    ["features", "x.jpg", "--out", "f.npz", "--pooling", "mean"],
    ["features", "x.jpg"],
    ["export", "resnet50", "--out", "x"],
    ["export", "resnet50", "--format", "coreml", "--out", "x"],
])
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    assert "usage: resnet-keras" in capsys.readouterr().err


@pytest.mark.parametrize("name", COMMANDS)
def test_help_for_every_command(name, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main([name, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: resnet-keras {name}") and "--help" in out


def test_every_command_is_registered():
    assert set(COMMANDS) == set(registry.COMMANDS)


# --------------------------------------------------------------------------
# Error messages name the flags, not the builder arguments


@pytest.mark.parametrize("argv, flag_phrase, python_phrase", [
    (["classify", "{photo}", "--weights", "imagenett"], "--weights", "weights="),
    (["classify", "{photo}", "--model", "resnt50"], "Received: --model='resnt50'", "name="),
    (["info", "resnt50"], "Received: MODEL='resnt50'", "name="),
    (["features", "{photo}", "--out", "f.npz", "--model", "resnet50", "--weights", "none", "--size", "16"],
     "--size=", "input_shape="),
])
def test_errors_name_the_flag_not_the_python_argument(argv, flag_phrase, python_phrase, tmp_path, capsys,
                                                       monkeypatch, isolated_env):
    monkeypatch.chdir(tmp_path)
    status, out, err = run(capsys, *[a.format(photo=PHOTOS[0]) for a in argv])
    assert status == 1 and flag_phrase in err, err
    assert python_phrase not in err.replace(f"-{python_phrase}", ""), err
    assert "resnet_keras.list_models()" not in err


def test_flag_words_translates_whole_argument_names_only():
    text = "`weights` must be a tag. Received: weights='x', num_weights=3, input_shape=(1, 2)"
    assert output.flag_words(text, None) == (
        "`--weights` must be a tag. Received: --weights='x', num_weights=3, --size=(1, 2)"
    )


# --------------------------------------------------------------------------
# Printed names: a control character cannot forge a line


@pytest.mark.parametrize("name, shown", [
    ("two\nlines.jpg", "two\\nlines.jpg"),
    ("evil\u202egpj.png", "evil\\u202egpj.png"),
    ("tab\there.jpg", "tab\\there.jpg"),
])
@pytest.mark.slow
def test_classify_escapes_control_characters_in_file_names(name, shown, resnet20_files, tmp_path, capsys):
    path = tmp_path / name
    shutil.copy(PHOTOS[0], path)
    status, out, err = run(capsys, "classify", path, "--model", "resnet20",
                           "--weights", resnet20_files["top"], "--top", "2")
    assert status == 0, err
    lines = out.splitlines()
    assert len(lines) == 3 and lines[0] == str(tmp_path / shown)
    assert lines[1].startswith("  1. class_") and lines[2].startswith("  2. class_")


def test_printable_keeps_ordinary_names():
    assert output.printable("photos/Ünïcödé 写真.jpg") == "photos/Ünïcödé 写真.jpg"
    assert output.printable(Path("a\x1b[31mred.jpg")) == "a\\x1b[31mred.jpg"


def test_error_lines_escape_control_characters(tmp_path, capsys):
    status, out, err = run(capsys, "classify", "gone\u202e.jpg")
    assert_one_line_error(status, out, err, "No such file: gone\\u202e.jpg")


# --------------------------------------------------------------------------
# features writes its file as open() would: mode 0o666 less the umask


@pytest.fixture
def umask():
    """Set the process umask for one test; the old one comes back afterwards."""
    old = os.umask(0o022)
    os.umask(old)
    yield lambda mask: os.umask(mask)
    os.umask(old)


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
@pytest.mark.slow
def test_features_output_follows_the_umask(mask, mode, umask, image_dir, tmp_path, capsys):
    umask(mask)
    out_path = tmp_path / "f.npz"
    status, _, err = run(capsys, "features", image_dir / "a_grey.png", "--out", out_path,
                         "--model", "resnet20", "--weights", "none", "--quiet")
    assert status == 0, err
    assert out_path.stat().st_mode & 0o777 == mode


# --------------------------------------------------------------------------
# export: the suffix in any case, the file written where --out says


@pytest.mark.slow  # an ONNX conversion (2 s); the fast tier converts in test_export.py
def test_export_onnx_upper_case_suffix_writes_that_file(tmp_path, capsys):
    require("tf2onnx")
    require("onnxruntime")
    out_path = tmp_path / "m.ONNX"
    status, out, err = run(capsys, "export", "resnet20", "--format", "onnx", "--out", out_path,
                           "--weights", "none")
    assert status == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.ONNX"]  # not m.ONNX.onnx
    assert f"to {out_path}:" in out
    # and it is not replaced without --overwrite
    before = out_path.read_bytes()
    assert_one_line_error(*run(capsys, "export", "resnet20", "--format", "onnx", "--out", out_path,
                               "--weights", "none"), "--out must not exist yet")
    assert out_path.read_bytes() == before


# --------------------------------------------------------------------------
# Commands that build no model answer without Keras or TensorFlow


PROBE = (
    "import sys; from resnet_keras.cli import main\n"
    "try:\n    status = main(sys.argv[1:])\nexcept SystemExit as e:\n    status = e.code\n"
    "print('LOADED', sorted(m for m in ('keras', 'tensorflow') if m in sys.modules), status)"
)


@pytest.mark.parametrize("argv, status", [
    (["--help"], 0),
    (["list", "--help"], 0),
    (["classify", "no-such-photo.jpg"], 1),
    (["classify", "{photo}", "--model", "resnt50"], 1),
    (["classify", "{photo}", "--top", "0"], 2),
    (["info", "resnt50"], 1),
    (["list", "vgg*"], 1),
    (["export", "resnet50", "--format", "onnx", "--out", "m.tflite"], 1),
    (["list"], 0),
    (["list", "resnet*v2", "--pretrained"], 0),
    (["info", "resnet50"], 0),
    (["weights"], 0),
    (["verify"], 0),
])
@pytest.mark.slow
def test_commands_without_a_model_do_not_import_keras(argv, status, tmp_path, isolated_env):
    argv = [a.format(photo=PHOTOS[0]) for a in argv]
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True,
                          env=cli_env(), cwd=tmp_path, timeout=120)
    assert done.stdout.splitlines()[-1] == f"LOADED [] {status}", done.stdout + done.stderr


def test_missing_file_is_exactly_one_line_on_stderr(tmp_path):
    env = {k: v for k, v in cli_env().items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-m", "resnet_keras", "classify", "cat.jpeg"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.splitlines() == [
        "resnet-keras: error: No such file: cat.jpeg. Every IMAGE must be a readable image file "
        "(JPEG, PNG, ...) or a folder of them. Received: 'cat.jpeg'"
    ]


@pytest.mark.slow
def test_tensorflow_start_up_lines_are_hidden_unless_verbose(image_dir, tmp_path):
    """The model path imports TensorFlow; its absl lines stay off the terminal."""
    env = {k: v for k, v in cli_env().items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    argv = ["classify", str(image_dir / "a_grey.png"), "--model", "resnet20", "--weights", "none", "--top", "1"]

    def stderr_lines(*extra):
        done = subprocess.run([sys.executable, "-m", "resnet_keras", *extra, *argv], capture_output=True,
                              text=True, env=env, cwd=tmp_path, timeout=300)
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines()[0] == str(image_dir / "a_grey.png")
        return done.stderr.splitlines()

    warning = "resnet-keras: warning: --weights none: random weights, the labels mean nothing"
    assert stderr_lines() == [warning]
    verbose = stderr_lines("--verbose")
    assert warning in verbose and len(verbose) > 1  # TensorFlow's own lines, as it prints them


@pytest.mark.parametrize("argv, verbose", [
    (["list"], False),
    (["--verbose", "list"], True),
    (["list", "--verbose"], True),
    (["--verbose", "info", "resnet50", "--verbose"], True),
])
def test_verbose_before_or_after_the_command(argv, verbose):
    assert cli.build_parser().parse_args(argv).verbose is verbose
