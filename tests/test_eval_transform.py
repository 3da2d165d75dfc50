"""A weights record's eval transform (`resize_size`) is applied wherever images are read.

tinynet's "imagenet" weights are published with resize_size 36 for its 32x32
input: every command must see the pixels torchvision evaluates on (shorter
side to 36, center 32x32 crop), computed here by `image_files.torchvision_eval`,
not by the package. A plain resize would give other pixels; the tests check
that it would also give other numbers, so they tell the two apart.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from cli_runs import assert_one_line_error, run
from image_files import random_rgb, torchvision_eval
from optional import require
from predictor_doubles import keras_engines
from resnet_keras.images import preprocess
from tiny_zoo import publish, tiny_model, tiny_zoo  # noqa: F401 (a fixture)

RESIZE, SIZE = 36, 32


@pytest.fixture
def published(tiny_zoo, tmp_path):
    return publish(tmp_path / "weights", resize_size=RESIZE)


@pytest.fixture
def photos(tmp_path):
    """Three images of other shapes than the input: landscape, portrait, square."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, shape in enumerate([(40, 60), (70, 45), (50, 50)]):
        Image.fromarray(random_rgb(shape, seed=i)).save(folder / f"p{i}.png")
    return sorted(folder.iterdir())


def expected_pixels(paths):
    return preprocess(np.stack([torchvision_eval(p, RESIZE, SIZE) for p in paths]), "torch")


def plain_pixels(paths):
    from resnet_keras.images import load_batch

    return preprocess(load_batch(paths, (SIZE, SIZE)), "torch")


def test_classify_and_its_calibration_read_resize_then_crop(published, photos, tmp_path, capsys, monkeypatch):
    record = keras_engines(monkeypatch)  # the batches the model runs, exactly
    calibration = tmp_path / "calibration"
    calibration.mkdir()
    for i in range(32):
        Image.fromarray(random_rgb((48, 41), seed=100 + i)).save(calibration / f"c{i:02d}.png")
    status, out, err = run(capsys, "classify", *photos, "--model", "tinynet", "--manifest", published.manifest,
                           "--precision", "int8", "--calibration", calibration)
    assert status == 0, err
    ((_, precision, calibrated),) = record.builds
    np.testing.assert_array_equal(calibrated, expected_pixels(sorted(calibration.iterdir())))
    np.testing.assert_array_equal(record.batches[-1], expected_pixels(photos))
    assert np.abs(plain_pixels(photos) - expected_pixels(photos)).max() > 0.5  # a plain resize differs


def test_features_npz_and_parquet_embed_resize_then_crop_and_record_it(published, photos, tmp_path, capsys):
    require("pyarrow")
    model = tiny_model(published.files["notop"], include_top=False, pooling="avg")
    expected = np.asarray(model.predict_on_batch(expected_pixels(photos)))
    assert np.abs(np.asarray(model.predict_on_batch(plain_pixels(photos))) - expected).max() > 1e-3
    argv = ["features", *photos, "--model", "tinynet", "--manifest", published.manifest, "--quiet",
            "--runtime", "tensorflow"]
    status, _, err = run(capsys, *argv, "--out", tmp_path / "f.npz")
    assert status == 0, err
    with np.load(tmp_path / "f.npz", allow_pickle=False) as data:
        np.testing.assert_allclose(data["features"], expected, rtol=1e-4, atol=1e-5)

    status, _, err = run(capsys, *argv, "--out", tmp_path / "parquet")
    assert status == 0, err
    import pyarrow.parquet as pq

    rows = np.stack(pq.read_table(tmp_path / "parquet").column("embedding").to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(rows, expected, rtol=1e-4, atol=1e-5)
    index = json.loads((tmp_path / "parquet" / "_index.json").read_text())
    assert index["settings"]["resize_size"] == RESIZE and index["settings"]["image_size"] == [SIZE, SIZE]

    # The same weights file under a record without resize_size reads other pixels: not mixed in.
    entry = json.loads(published.manifest.read_text())
    del entry["models"]["tinynet"]["imagenet"]["resize_size"]
    (tmp_path / "plain.json").write_text(json.dumps(entry))
    before = sorted((tmp_path / "parquet").iterdir())
    assert_one_line_error(*run(capsys, "features", *photos, "--model", "tinynet", "--manifest", tmp_path / "plain.json",
                               "--quiet", "--out", tmp_path / "parquet"),
                          f"must not be mixed: resize_size {RESIZE} there, None now")
    assert sorted((tmp_path / "parquet").iterdir()) == before


def test_another_input_size_scales_the_resize(published, photos, tmp_path, capsys):
    status, _, err = run(capsys, "features", *photos, "--model", "tinynet", "--manifest", published.manifest,
                         "--quiet", "--runtime", "tensorflow", "--size", "48", "--out", tmp_path / "f.npz")
    assert status == 0, err
    model = tiny_model(published.files["notop"], include_top=False, pooling="avg")
    from resnet_keras.architecture.build import build_pooled, resolve
    from tiny_zoo import TINY

    at_48 = build_pooled(resolve(TINY, str(published.files["notop"]), include_top=False), pooling="avg", size=48)
    at_48.set_weights(model.get_weights())
    pixels = preprocess(np.stack([torchvision_eval(p, RESIZE * 48 // SIZE, 48) for p in photos]), "torch")
    with np.load(tmp_path / "f.npz", allow_pickle=False) as data:
        np.testing.assert_allclose(data["features"], at_48.predict_on_batch(pixels), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_fine_tune_validates_and_is_read_back_with_the_eval_transform(tmp_path):
    """Weights with resize_size 20 for a 16x16 input: validation, the run's reading and
    `evaluate` all see torchvision's pixels (training too, without augmentation)."""
    from finetune_data import TAG, digits, publish_weights, random_backbone, write_folder
    from resnet_keras import fine_tune
    from resnet_keras.finetune.metrics import classification_metrics
    from resnet_keras.finetune.record import load_run
    from resnet_keras.images import Transform

    x, y = digits(classes=range(3), per_class=8, size=24)
    root = write_folder(tmp_path / "data", x, y, ["a", "b", "c"])
    manifest = publish_weights(random_backbone(16, seed=2), tmp_path / "w", input_size=16, resize_size=20)
    result = fine_tune(root, model="resnet20", weights=TAG, manifest=manifest, out=tmp_path / "run", head_epochs=1,
                       epochs=0, batch_size=8, augment=False, validation_split=0.25, progress=False)
    assert result.settings.resize_size == 20 and load_run(tmp_path / "run").transform == Transform((16, 16), 20)
    names = result.class_names
    validation = json.loads((tmp_path / "run" / "split.json").read_text())["validation"]
    pixels = np.stack([torchvision_eval(root / name, 20, 16) for name, _ in validation])
    probs = np.asarray(result.model.predict_on_batch(preprocess(pixels, result.preprocessing)))
    recomputed = classification_metrics(probs, np.array([label for _, label in validation]), names)
    assert recomputed["loss"] == pytest.approx(result.metrics["loss"], abs=1e-4)
