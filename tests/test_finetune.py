"""fine_tune: the record it returns, where its preprocessing comes from, BatchNorm, groups, resume.

A tiny real setting: ResNet20 at 16x16 on scikit-learn digits, a
"pretrained" backbone published with a manifest entry (random weights and
BatchNorm statistics, file:// URL, sha256, input size 16, preprocessing
'tf'), as a user would use published weights. The fast tier's tests read
the session's run that the command line made (finetune_data.digits_run);
the slow tier's training runs are module fixtures or their own.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

import resnet_keras
from finetune_data import CLASSES, SIZE, TAG, digits, own_cache, publish_weights, random_backbone
from resnet_keras.errors import InvalidArgumentError
from resnet_keras.finetune import rundir

QUICK = dict(batch_size=32, progress=False, augment=False, keep="last")  # the weights each phase left
NAMES = [f"digit{d}" for d in range(6)]


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """(manifest path, {variable path: pretrained value}) of a random ResNet20 backbone."""
    backbone = random_backbone(SIZE, seed=1)
    manifest = publish_weights(backbone, tmp_path_factory.mktemp("weights"), input_size=SIZE)
    return manifest, {v.path: v.numpy() for v in backbone.variables}


@pytest.fixture(scope="module")
def six_digits():
    return digits(classes=range(6), per_class=12, size=SIZE)


@pytest.fixture(scope="module")
def train(published, six_digits, tmp_path_factory):
    """train(**options) -> FineTuned, the pretrained weights given by the manifest."""

    cache = tmp_path_factory.mktemp("cache")

    def run(out=None, **options):
        x, y = six_digits
        out = out or tmp_path_factory.mktemp("run") / "run"
        with own_cache(cache):
            return resnet_keras.fine_tune((x, y), "resnet20", TAG, class_names=NAMES, out=out,
                                          manifest=published[0], **{**QUICK, **options})

    return run


def changed(model, pretrained) -> dict[str, bool]:
    """Backbone variable path -> whether training changed it (bit for bit)."""
    return {v.path: not np.array_equal(v.numpy(), pretrained[v.path])
            for v in model.variables if not v.path.startswith("predictions/")}


@pytest.fixture(scope="module")
def two_phase(train):
    return train(head_epochs=1, epochs=1)


@pytest.mark.slow
def test_record_holds_model_classes_preprocessing_history_and_metrics(two_phase, six_digits):
    ft, (x, _) = two_phase, six_digits
    # input size and preprocessing come from the weights' record (the spec says 32 and None)
    assert (ft.input_size, ft.preprocessing, ft.settings.weights) == (SIZE, "tf", TAG)
    assert ft.model.output_shape == (None, 6) and ft.class_names == tuple(NAMES)
    assert [h["phase"] for h in ft.history] == ["head", "unfrozen"]
    assert {"top1", "top5", "loss", "per_class", "confusion"} <= set(ft.metrics)
    assert np.sum(ft.metrics["confusion"]) == ft.metrics["images"] > 0
    assert all(layer.trainable for layer in ft.model.layers)  # a fresh model's state
    run = ft.run_dir
    assert json.loads((run / rundir.CLASSES).read_text()) == NAMES
    split = json.loads((run / rundir.SPLIT).read_text())
    assert len(split["train"]) + len(split["validation"]) == len(x)
    assert not list(run.glob("checkpoint*"))  # removed once complete
    loaded = resnet_keras.load_run(run)
    np.testing.assert_array_equal(loaded.predict(x[:8]), ft.predict(x[:8]))
    assert (loaded.class_names, loaded.preprocessing, loaded.best_epoch) == (ft.class_names, "tf", ft.best_epoch)


@pytest.mark.slow  # a training run of its own (10 s)
def test_head_phase_leaves_every_backbone_weight_and_statistic_bit_identical(train, published):
    ft = train(head_epochs=2, epochs=0)
    assert not any(changed(ft.model, published[1]).values())
    assert ft.history[-1]["loss"] < ft.history[0]["loss"] or ft.history[-1]["accuracy"] > ft.history[0]["accuracy"]


def test_unfrozen_with_frozen_batchnorm_trains_convolutions_only(digits_run):
    """The default: BatchNorm of the backbone stays frozen after unfreezing (moving statistics,
    scale and shift as pretrained); every convolution kernel trains."""
    diff = changed(resnet_keras.load_run(digits_run.run).model, digits_run.pretrained)
    batchnorm = {p: c for p, c in diff.items() if "_bn/" in p}
    kernels = {p: c for p, c in diff.items() if p.endswith("/kernel")}
    assert batchnorm and not any(batchnorm.values())
    assert kernels and all(kernels.values())


@pytest.mark.slow  # a training run of its own (13 s)
def test_unfrozen_with_batchnorm_train_updates_moving_statistics(train, published):
    ft = train(head_epochs=0, epochs=1, batchnorm="train")
    diff = changed(ft.model, published[1])
    for kind in ("moving_mean", "moving_variance", "gamma", "beta"):
        assert all(c for p, c in diff.items() if p.endswith("/" + kind)), kind


@pytest.mark.slow
def test_unfreeze_by_stages_starts_with_the_deepest(train, published):
    ft = train(head_epochs=0, epochs=1, unfreeze="stages")
    diff = changed(ft.model, published[1])
    assert all(c for p, c in diff.items() if p.startswith("conv4_") and p.endswith("/kernel"))
    assert not any(c for p, c in diff.items() if not p.startswith("conv4_"))
    assert ft.history[0]["trained"] == "head + 1 deepest stages"


class Crash(Exception):
    """Stands for a process that dies in the middle of an epoch (the slow tier kills -9)."""


@pytest.mark.slow  # three training runs (24 s)
def test_a_run_that_dies_mid_epoch_resumes_to_the_same_weights(train, tmp_path, monkeypatch):
    """Dies in epoch 2, the second of the unfrozen phase: the resumed run must take the model,
    the optimizer's moments and step count, and the data order from the checkpoint of epoch 1."""
    from resnet_keras.finetune import train as train_module

    reference = train(head_epochs=1, epochs=2)
    real = train_module._EpochBar.on_train_batch_end

    def die_in_epoch_2(self, index, logs=None):
        real(self, index, logs)
        if (self.epoch, index) == (2, 0):
            raise Crash

    out = tmp_path / "resumed"
    monkeypatch.setattr(train_module._EpochBar, "on_train_batch_end", die_in_epoch_2)
    with pytest.raises(Crash):
        train(head_epochs=1, epochs=2, out=out)
    assert json.loads((out / rundir.STATE).read_text())["epoch"] == 1  # the finished epochs only
    assert not (out / rundir.WEIGHTS).exists() and not list(out.glob(".*.part"))
    monkeypatch.setattr(train_module._EpochBar, "on_train_batch_end", real)
    resumed = train(head_epochs=1, epochs=2, out=out)
    for a, b in zip(resumed.model.variables, reference.model.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)  # tolerance: none needed
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in reference.history]


def test_other_settings_in_a_run_dir_are_refused_in_one_line(digits_run):
    """The command line's run, met by the API: other settings or other data are refused, the
    same ones load the finished run."""
    run, folder, manifest = digits_run.run, digits_run.folder, digits_run.manifest
    same = dict(head_epochs=0, epochs=1, batch_size=16, keep="last", progress=False, manifest=manifest)  # finetune_args
    before = sorted(p.name for p in run.iterdir())
    with pytest.raises(InvalidArgumentError, match=r"epochs 1 there, 2 now") as error:
        resnet_keras.fine_tune(folder, "resnet20", TAG, out=run, **{**same, "epochs": 2})
    assert "\n" not in str(error.value) and "--overwrite" in str(error.value)
    assert sorted(p.name for p in run.iterdir()) == before
    x, y = digits(classes=range(3), per_class=4, size=SIZE)
    with pytest.raises(InvalidArgumentError, match=r"data.digest"):
        resnet_keras.fine_tune((x, y), "resnet20", TAG, out=run, class_names=CLASSES, **same)
    again = resnet_keras.fine_tune(folder, "resnet20", TAG, out=run, **same)
    trained = resnet_keras.load_run(run)
    assert again.best_epoch == trained.best_epoch  # complete: loaded, not trained again
    np.testing.assert_array_equal(again.predict(x), trained.predict(x))


def test_loading_a_run_checks_the_weights_hash_and_never_deserializes(digits_run, tmp_path, monkeypatch):
    import shutil

    from resnet_keras.errors import IntegrityError

    monkeypatch.setattr(keras.saving, "load_model", lambda *a, **k: pytest.fail("load_model called"))
    monkeypatch.setattr(keras.models, "model_from_json", lambda *a, **k: pytest.fail("from_json called"))
    copy = tmp_path / "copy"
    shutil.copytree(digits_run.run, copy, ignore=shutil.ignore_patterns(".lock"))
    resnet_keras.load_run(copy)
    data = bytearray((copy / rundir.WEIGHTS).read_bytes())
    data[-100] ^= 1
    (copy / rundir.WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="sha256"):
        resnet_keras.load_run(copy)
    run = json.loads((copy / rundir.RUN).read_text())
    (copy / rundir.RUN).write_text(json.dumps({**run, "model": "resnet20; import os"}))
    with pytest.raises(InvalidArgumentError, match="run.json is not readable"):
        resnet_keras.load_run(copy)


@pytest.mark.slow
def test_the_fine_tuned_model_feeds_predictor_export_and_features(two_phase, six_digits, tmp_path):
    from resnet_keras.images import preprocess

    x = preprocess(six_digits[0][:4].astype("float32"), "tf")
    expected = two_phase.model.predict_on_batch(x)
    predictor = resnet_keras.Predictor(two_phase.model, runtime="tensorflow")
    np.testing.assert_allclose(predictor.predict(x), expected, atol=1e-5)
    report = resnet_keras.export_for_inference(two_phase.model, tmp_path / "saved", format="tf_saved_model")
    assert report.max_error < 1e-4
    features = resnet_keras.feature_model(two_phase.model)
    assert {k: tuple(v.shape)[1:] for k, v in features.output.items()} == {
        "C2": (16, 16, 16), "C3": (8, 8, 32), "C4": (4, 4, 64)}


@pytest.mark.slow
def test_the_head_starts_as_the_linear_probe_of_the_frozen_features(train, six_digits):
    """LP-FT: with a learning rate too small to move anything, the head is exactly the probe
    (head.linear_probe) fitted on the frozen features of the split's training images."""
    from resnet_keras.finetune.head import linear_probe
    from resnet_keras.images import preprocess

    ft = train(head_epochs=1, epochs=0, head_lr=1e-12, precision="float32")
    split = json.loads((ft.run_dir / rundir.SPLIT).read_text())
    x, _ = six_digits
    pooled = keras.Model(ft.model.input, ft.model.get_layer("avg_pool").output)

    def features(rows):
        index = [int(name[1:]) for name, _ in rows]  # arrays are named "#<index>"
        return pooled.predict(preprocess(x[index].astype("float32"), "tf"), verbose=0), [c for _, c in rows]

    train_f, train_y = features(split["train"])
    val_f, val_y = features(split["validation"])
    kernel, bias = linear_probe(train_f, np.array(train_y), 6, val_f, np.array(val_y))
    got_kernel, got_bias = ft.model.get_layer("predictions").get_weights()
    np.testing.assert_allclose(got_kernel, kernel, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(got_bias, bias, rtol=1e-3, atol=1e-4)


def test_the_report_shows_a_grad_cam_overlay_beside_each_mistake(digits_run):
    page = (digits_run.run / rundir.REPORT).read_text()
    mistakes = page.count("alt='validation image'")
    assert mistakes > 0 and page.count("alt='Grad-CAM'") == mistakes
