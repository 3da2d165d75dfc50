"""The keras.applications contract: signatures, modules, names, weights layout."""

from __future__ import annotations

import inspect
import json
import math

import keras
import pytest

import resnet_keras
from keras_builders import KERAS_BUILDERS
from facts import table
from make_golden import GOLDEN, fingerprint
from resnet_keras import resnet, resnet_v2

OURS = {
    "resnet50": resnet.ResNet50,
    "resnet101": resnet.ResNet101,
    "resnet152": resnet.ResNet152,
    "resnet50v2": resnet_v2.ResNet50V2,
    "resnet101v2": resnet_v2.ResNet101V2,
    "resnet152v2": resnet_v2.ResNet152V2,
}
# keras.applications (with top, notop, non-trainable); source: tests/data/facts.json.
PARAMS = table("keras_applications", "params", "params_notop", "non_trainable")
GOLDEN_LAYERS = json.loads(GOLDEN.read_text())


@pytest.mark.parametrize("key", sorted(OURS))
def test_signature_matches_keras_then_keyword_only_extras(key):
    ours = inspect.signature(OURS[key]).parameters
    theirs = inspect.signature(KERAS_BUILDERS[key]).parameters
    shared = list(ours.values())[: len(theirs)]
    assert [(p.name, p.default, p.kind) for p in shared] == [
        (p.name, p.default, p.kind) for p in theirs.values()
    ]
    extras = list(ours.values())[len(theirs):]
    assert extras and all(p.kind is p.KEYWORD_ONLY for p in extras)


@pytest.mark.parametrize(
    "ours, theirs",
    [(resnet, keras.applications.resnet), (resnet_v2, keras.applications.resnet_v2)],
)
def test_modules_offer_everything_keras_modules_offer(ours, theirs):
    public = {n for n in dir(theirs) if not n.startswith("_")}
    assert public <= set(dir(ours))
    assert public <= set(ours.__all__)


def test_top_level_reexports_every_builder():
    for builder in OURS.values():
        assert getattr(resnet_keras, builder.__name__) is builder
    assert set(resnet_keras.__all__) <= set(dir(resnet_keras))


@pytest.mark.parametrize("key", sorted(OURS))
@pytest.mark.slow
def test_weighted_layers_match_golden_fingerprint(key):
    model = OURS[key](weights=None)
    assert model.name == key
    assert fingerprint(model) == GOLDEN_LAYERS[key]
    with_top, _, non_trainable = PARAMS[key]
    assert model.count_params() == with_top
    assert sum(math.prod(w.shape) for w in model.non_trainable_weights) == non_trainable


@pytest.mark.parametrize("key", sorted(OURS))
def test_golden_parameter_counts_match_facts(key):
    """The golden files themselves agree with the published counts."""
    total = sum(math.prod(shape) for _, shapes in GOLDEN_LAYERS[key] for shape in shapes)
    head = sum(math.prod(s) for name, shapes in GOLDEN_LAYERS[key] if name == "predictions" for s in shapes)
    assert (total, total - head) == PARAMS[key][:2]


@pytest.mark.parametrize("key", ["resnet50", "resnet50v2"])
def test_notop_is_golden_without_head(key):
    model = OURS[key](weights=None, include_top=False)
    assert fingerprint(model) == GOLDEN_LAYERS[key][:-1]
    assert model.count_params() == PARAMS[key][1]
    assert model.output_shape == (None, None, None, 2048)  # as keras: any size


@pytest.mark.slow
@pytest.mark.parametrize("key", sorted(KERAS_BUILDERS))
def test_golden_still_describes_installed_keras(key):
    """If keras changes its layout, regenerate with tests/make_golden.py."""
    assert fingerprint(KERAS_BUILDERS[key](weights=None)) == GOLDEN_LAYERS[key]
