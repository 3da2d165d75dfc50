"""fine_tune: the record it returns, where its preprocessing comes from, BatchNorm, groups, resume.

A tiny real setting: ResNet20 at 16x16 on scikit-learn digits, a
"pretrained" backbone published with a manifest entry (random weights and
BatchNorm statistics, file:// URL, sha256, input size 16, preprocessing
'tf'), as a user would use published weights. Each training run is a
module fixture shared by the tests that read it.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

import resnet_keras
from finetune_data import TAG, digits, publish_weights, random_backbone
from resnet_keras.finetune import rundir

SIZE = 16
QUICK = dict(batch_size=32, progress=False, augment=False)
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

    def run(**options):
        x, y = six_digits
        out = tmp_path_factory.mktemp("run") / "run"
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


def test_head_phase_leaves_every_backbone_weight_and_statistic_bit_identical(train, published):
    ft = train(head_epochs=2, epochs=0, keep="last")
    assert not any(changed(ft.model, published[1]).values())
    assert ft.history[-1]["loss"] < ft.history[0]["loss"] or ft.history[-1]["accuracy"] > ft.history[0]["accuracy"]


def test_unfrozen_with_frozen_batchnorm_trains_convolutions_only(two_phase, published):
    """The default: BatchNorm of the backbone stays frozen after unfreezing (moving statistics,
    scale and shift as pretrained); every convolution kernel trains."""
    diff = changed(two_phase.model, published[1])
    batchnorm = {p: c for p, c in diff.items() if "_bn/" in p}
    kernels = {p: c for p, c in diff.items() if p.endswith("/kernel")}
    assert batchnorm and not any(batchnorm.values())
    assert kernels and all(kernels.values())


def test_unfrozen_with_batchnorm_train_updates_moving_statistics(train, published):
    ft = train(head_epochs=0, epochs=1, batchnorm="train", keep="last")
    diff = changed(ft.model, published[1])
    for kind in ("moving_mean", "moving_variance", "gamma", "beta"):
        assert all(c for p, c in diff.items() if p.endswith("/" + kind)), kind


def test_unfreeze_by_stages_starts_with_the_deepest(train, published):
    ft = train(head_epochs=0, epochs=1, unfreeze="stages", keep="last")
    diff = changed(ft.model, published[1])
    assert all(c for p, c in diff.items() if p.startswith("conv4_") and p.endswith("/kernel"))
    assert not any(c for p, c in diff.items() if not p.startswith("conv4_"))
    assert ft.history[0]["trained"] == "head + 1 deepest stages"
