"""Python's recursion limit: raised only around the graph walks that need it, and put back.

Measured on Keras 3.15 with the limit at Python's 1,000 (TensorFlow raises
it to 3,000 when imported; JAX and torch do not): building ResNet1202
(4,214 layers, 2,434 frames deep), `keras.models.clone_model` and
`keras.saving.load_model` of it walk the graph recursively; a call,
predict, fit, summary, get_config and saving or loading its weights or a
.keras file do not.
"""

from __future__ import annotations

import sys
import threading

import keras
import numpy as np
import pytest

import resnet_keras
from resnet_keras.architecture import counts
from resnet_keras.architecture.graph import graph_depth
from resnet_keras.architecture.specs import SPECS
from tiny_models import fused_error


@pytest.fixture
def python_default_limit():
    """The limit as plain Python sets it (below TensorFlow's 3,000), put back after the test."""
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(1_000)
    yield 1_000
    sys.setrecursionlimit(before)


def frames() -> int:
    frame, count = sys._getframe(1), 0
    while frame is not None:
        frame, count = frame.f_back, count + 1
    return count


def test_graph_depth_raises_inside_and_restores_after(python_default_limit):
    with graph_depth(5_000):
        inside = sys.getrecursionlimit()
        with graph_depth(10):  # a nested, smaller walk keeps the higher limit
            assert sys.getrecursionlimit() == inside
        assert sys.getrecursionlimit() == inside
    assert inside >= 2 * 5_000 and sys.getrecursionlimit() == python_default_limit
    with pytest.raises(KeyError), graph_depth(5_000):
        raise KeyError("a failed walk")
    assert sys.getrecursionlimit() == python_default_limit


def test_overlapping_walks_in_threads_keep_the_highest_until_the_last_ends(python_default_limit):
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def first():
        with graph_depth(8_000):
            first_in.set()
            second_in.wait(5)
        first_out.set()

    def second():
        first_in.wait(5)
        with graph_depth(2_000):
            second_in.set()
            first_out.wait(5)
            seen["after the first ended"] = sys.getrecursionlimit()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert seen["after the first ended"] >= 2 * 2_000  # the second walk still has its depth
    assert sys.getrecursionlimit() == python_default_limit


def test_a_build_raises_the_limit_only_for_its_walk(python_default_limit):
    # 120 frames above this test hold the layer calls but not the walk of
    # plain56's 170-layer chain; the builder raises the limit for the walk only
    sys.setrecursionlimit(frames() + 120)
    low = sys.getrecursionlimit()
    model = resnet_keras.PlainNet56()
    assert sys.getrecursionlimit() == low
    assert model.count_params() == resnet_keras.model_info("plain56").params


def test_a_limit_set_by_someone_else_inside_a_walk_is_kept(python_default_limit):
    with graph_depth(10):
        sys.setrecursionlimit(3_000)  # as importing TensorFlow does, e.g. during a first build
    assert sys.getrecursionlimit() == 3_000
    with graph_depth(2_000):
        with graph_depth(10):
            sys.setrecursionlimit(4_500)
    assert sys.getrecursionlimit() == 4_500


def test_optimize_for_inference_raises_the_limit_only_for_its_walk(python_default_limit):
    model = resnet_keras.PlainNet56()
    sys.setrecursionlimit(frames() + 120)  # as above: enough for the calls, not for clone_model's walk
    low = sys.getrecursionlimit()
    fused = resnet_keras.optimize_for_inference(model)
    assert sys.getrecursionlimit() == low
    assert len(fused.layers) < len(model.layers)  # BatchNorm folded


@pytest.mark.slow  # 4,214 layers: about 20 s per symbolic build on 2 cores; built once here
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # numpy 2 notes inside keras' weight saving
def test_resnet1202_builds_counts_runs_folds_and_gives_features_at_pythons_default_limit(python_default_limit, tmp_path):
    model = resnet_keras.ResNet1202(classifier_activation=None)
    assert sys.getrecursionlimit() == python_default_limit
    x = np.random.default_rng(0).uniform(0, 255, (1, 32, 32, 3)).astype("float32")
    assert model(x, training=True).shape == (1, 10)  # training BN: finite with random statistics
    # its recorded counts (tests/test_counts.py holds the other models to theirs)
    assert counts.recorded()["resnet1202"] == (repr(SPECS["resnet1202"]), counts.count(model))
    info = resnet_keras.feature_info(model)
    assert [(f.name, f.stride, f.channels) for f in info] == [("C2", 1, 16), ("C3", 2, 32), ("C4", 4, 64)]
    features = resnet_keras.feature_model(model)
    assert [tuple(t.shape) for t in features.output.values()] == [
        (None, 32, 32, 16), (None, 16, 16, 32), (None, 8, 8, 64),
    ]
    out = features(x, training=True)  # training BN, as above
    assert all(np.all(np.isfinite(keras.ops.convert_to_numpy(t))) for t in out.values())
    assert {id(v) for v in features.weights} <= {id(v) for v in model.weights}  # the backbone's, not copies
    # BatchNorm folding keeps the outputs (tests/test_inference.py holds the other models to this)
    fused, error = fused_error("resnet1202", model)
    print(f"FUSED resnet1202: relative error {error:.2e}")
    assert error < 1e-4 and len(fused.layers) < len(model.layers)
    path = tmp_path / "resnet1202.weights.h5"
    model.save_weights(path)
    model.load_weights(path)
    assert sys.getrecursionlimit() == python_default_limit
    # keras' own graph walks need the depth from their caller
    with pytest.raises(RecursionError):
        keras.models.clone_model(model)
    with graph_depth(len(model.layers)):
        assert len(keras.models.clone_model(model).layers) == len(model.layers)
