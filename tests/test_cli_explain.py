"""`resnet-keras classify --explain OUT_DIR`: one overlay per image and top-k class, the files
checked against the API, the folder checked before any model is built."""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest
from PIL import Image

from cli_runs import run
import official_format
import resnet_keras
from resnet_keras.cli import run_commands
from resnet_keras.explain import folder, gradcam
from resnet_keras.images import class_names



@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    model = resnet_keras.ResNet20(weights=None, input_shape=(32, 32, 3))
    official_format.randomize(model, seed=3)
    return official_format.write_keras2_weights(model, tmp_path_factory.mktemp("w") / "resnet20.h5")


@pytest.fixture
def photos(tmp_path):
    """Three small images; two share the stem `cat` (in two folders)."""
    rng = np.random.default_rng(0)
    paths = [tmp_path / "a" / "cat.png", tmp_path / "b" / "cat.jpg", tmp_path / "b" / "dog.png"]
    for path, size in zip(paths, [(40, 50), (32, 32), (61, 23)]):
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(path)
    return paths


@pytest.mark.slow
def test_writes_one_overlay_per_image_and_class_as_the_api_computes_it(weights, photos, tmp_path, capsys):
    out_dir = tmp_path / "explained"  # new: created by the run
    status, out, err = run(capsys, "classify", *photos, "--model", "resnet20", "--weights", weights,
                           "--top", "2", "--batch-size", "2", "--explain", out_dir)
    assert status == 0 and err == ""
    assert out.splitlines()[-1] == f"6 Grad-CAM overlays -> {out_dir}"

    model = resnet_keras.ResNet20(weights=str(weights), input_shape=(32, 32, 3))
    pixels = np.stack([keras.utils.img_to_array(keras.utils.load_img(p, target_size=(32, 32))) for p in photos])
    best = np.argsort(-model.predict_on_batch(pixels / 255.0), axis=-1)[:, :2]
    heatmaps = resnet_keras.grad_cam(model, pixels / 255.0, best)
    expected = {}
    for stem, image, classes, maps in zip(["cat~1", "cat~2", "dog"], pixels, best, heatmaps):
        for rank, (index, heatmap) in enumerate(zip(classes, maps), 1):
            expected[f"{stem}.top{rank}.class_{index}.png"] = resnet_keras.overlay(image, heatmap)
    assert sorted(os.listdir(out_dir)) == sorted(expected)
    for name, pixels_expected in expected.items():
        with Image.open(out_dir / name) as written:
            assert written.format == "PNG"
            difference = np.abs(np.asarray(written).astype(int) - pixels_expected)
            assert difference.max() <= 1, name  # the same overlay (1: float rounding across batch sizes)


def test_an_existing_folder_keeps_other_files_and_gets_the_overlays_replaced(weights, photos, tmp_path, capsys):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "notes.txt").write_text("mine")
    argv = ("classify", photos[2], "--model", "resnet20", "--weights", weights, "--top", "10", "--explain", out_dir)
    assert run(capsys, *argv)[0] == 0
    overlays = sorted(set(os.listdir(out_dir)) - {"notes.txt"})
    assert len(overlays) == 10 and all(name.startswith("dog.top") for name in overlays)
    (out_dir / overlays[0]).write_bytes(b"stale")
    assert run(capsys, *argv)[0] == 0
    assert sorted(os.listdir(out_dir)) == sorted([*overlays, "notes.txt"])  # nothing else, no .part files
    assert (out_dir / "notes.txt").read_text() == "mine"
    with Image.open(out_dir / overlays[0]) as replaced:
        assert replaced.format == "PNG"


@pytest.mark.parametrize("make, phrase", [
    (lambda p: p.write_text("x"), "it exists and is not a folder"),
    (lambda p: None, "its parent folder"),
])
def test_out_dir_is_checked_before_any_model_is_built(make, phrase, weights, photos, tmp_path, capsys, monkeypatch):
    target = tmp_path / "file" if phrase.startswith("it exists") else tmp_path / "missing" / "deeper"
    make(target)
    monkeypatch.setattr(run_commands, "build_model", lambda *a, **k: pytest.fail("a model was built"))
    status, out, err = run(capsys, "classify", photos[0], "--model", "resnet20", "--weights", weights,
                           "--explain", target)
    errors_ = [line for line in err.splitlines() if line.startswith("resnet-keras: error: ")]
    assert status == 1 and out == "" and len(errors_) == 1
    assert f"--explain must be a folder to write overlays to (existing, or new in an existing folder); {phrase}" \
        in errors_[0] and f"Received: --explain='{target}'" in errors_[0]
    assert not (tmp_path / "missing").exists()


def test_a_failing_run_creates_no_folder(weights, photos, tmp_path, capsys, monkeypatch):
    out_dir = tmp_path / "never"

    def broken(*_args, **_kwargs):
        raise resnet_keras.errors.InvalidArgumentError("broken on purpose")

    monkeypatch.setattr(gradcam, "grad_cam", broken)
    status, _, err = run(capsys, "classify", photos[0], "--model", "resnet20", "--weights", weights,
                         "--explain", out_dir)
    assert status == 1 and "broken on purpose" in err
    assert not out_dir.exists()


def test_file_names_are_safe_and_unique():
    assert folder.file_name("photo", 1, "jack-o'-lantern") == "photo.top1.jack-o_-lantern.png"
    assert folder.file_name("x", 3, "a/b c") == "x.top3.a_b_c.png"
    assert class_names(1000)[386] == "African_elephant" and class_names(10)[7] == "class_7"
    assert folder.stems([os.path.join("a", "cat.jpg"), os.path.join("b", "cat.png"), "dog.png"]) == \
        ["cat~1", "cat~2", "dog"]
