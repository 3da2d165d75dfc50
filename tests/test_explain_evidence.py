"""Grad-CAM points at the evidence, and only a trained model's does (checks that can fail).

The task (examples/explain.py): a square, a plus or no shape at a random
place over clutter of strokes in the same colors; only the shape decides the
class, and its box is known. A heatmap "finds the evidence" when its peak
lies in the shape's box grown by MARGIN pixels on each side. `-rP` prints
the measured numbers. All in the slow tier: each check trains a model
(15-25 s on 2 cores at 32 px, minutes at 48 px); the fast tier's Grad-CAM
tests are tests/test_explain.py. The evidence check runs at 48 px (its
32 px twin would only repeat it); the sanity check at 32 px.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import resnet_keras
from optional import require
from shapes_task import task

pytestmark = pytest.mark.slow
MARGIN = task.MARGIN  # 2 px: half the last stage's stride
FAST = dict(size=32, train=450, epochs=4, held_out=400)
SLOW = dict(size=48, train=2000, epochs=8, held_out=800)


def trained(setting: dict, *, shuffle_labels: bool = False):
    data = task.shapes(setting["train"], setting["size"], seed=10)
    return task.train(data, epochs=setting["epochs"], shuffle_labels=shuffle_labels)


def held_out(setting: dict):
    return task.shapes(setting["held_out"], setting["size"], seed=1)


@pytest.fixture(scope="module")
def model():
    return trained(FAST)


def report(name: str, setting: dict, result: dict) -> None:
    print(f"\nEVIDENCE {name} {setting['size']} px, {setting['train']} images x {setting['epochs']} epochs: "
          f"held-out accuracy {result['accuracy']:.3f}, heatmap peak in the shape's box (+{MARGIN} px) "
          f"for {result['peak_in_box']:.3f} of {result['correct']} correct images with a shape")


# Cascading randomization (Adebayo et al. 2018, section 3): re-initialize the
# weights from the top down, a stage at a time, and compare the heatmaps of the
# true class with the trained model's. A map that ignored the model (e.g. edges
# of the image, or activations without the class gradient) would keep its ranks.
CASCADE = ("predictions", "conv4_", "conv3_", "conv2_", "conv1_")
RANK_CORRELATION_BOUND = 0.3  # mean Spearman rho over the images, at every step


def test_cascading_randomization_changes_the_heatmaps(model):
    stats = require("scipy.stats")
    data = held_out(FAST)
    with_shape = data.labels > 0
    x, labels = task.preprocess(data.images[with_shape][:40]), data.labels[with_shape][:40]
    expected = resnet_keras.grad_cam(model, x, labels)
    trained_weights = model.get_weights()
    fresh = task.build_model(FAST["size"], seed=123)  # weights as initialized
    correlations = []
    try:
        for step in range(1, len(CASCADE) + 1):
            for layer, initial in zip(model.layers, fresh.layers):
                if layer.name.startswith(CASCADE[:step]):
                    layer.set_weights(initial.get_weights())
            heatmaps = resnet_keras.grad_cam(model, x, labels)
            with warnings.catch_warnings():  # a constant map (no evidence at all) has no correlation
                warnings.simplefilter("ignore", stats.ConstantInputWarning)
                rho = [stats.spearmanr(a.ravel(), b.ravel())[0] for a, b in zip(expected, heatmaps)]
            correlations.append(float(np.mean(np.nan_to_num(rho))))
    finally:
        model.set_weights(trained_weights)
    print("\nSANITY mean Spearman rho with the trained model's heatmaps, randomized from the top: "
          + ", ".join(f"{name.rstrip('_')} {rho:+.3f}" for name, rho in zip(CASCADE, correlations)))
    assert max(correlations) < RANK_CORRELATION_BOUND
    # and the trained model compared with itself would give 1: the statistic can see sameness
    same = [stats.spearmanr(a.ravel(), a.ravel())[0] for a in expected[:3]]
    assert np.allclose(same, 1.0)


def test_the_heatmap_peak_is_on_the_shape_at_48_px_and_not_for_shuffled_labels():
    data = held_out(SLOW)
    result = task.evaluate(trained(SLOW), data, MARGIN)
    report("trained", SLOW, result)
    control = task.evaluate(trained(SLOW, shuffle_labels=True), data, MARGIN)
    report("shuffled labels", SLOW, control)
    assert result["accuracy"] >= 0.95 and result["peak_in_box"] >= 0.95
    assert control["peak_in_box"] < 0.4
