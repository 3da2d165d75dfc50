"""feature_model / feature_info beyond what the registry sweep in test_zoo checks."""

from __future__ import annotations

import doctest

import keras
import numpy as np
import pytest

import resnet_keras
from resnet_keras import errors
from resnet_keras.architecture.blocks import FEATURE_STAGES
from resnet_keras.architecture import features


def test_features_share_weights_with_the_backbone():
    model = resnet_keras.ResNet20(include_top=False)
    features = resnet_keras.feature_model(model, stages=["C4"])
    x = np.random.default_rng(0).normal(size=(1, 32, 32, 3)).astype("float32")
    before = keras.ops.convert_to_numpy(features(x)["C4"])
    kernel = model.get_layer("conv4_block3_2_conv").kernel
    kernel.assign(kernel * 2.0)  # change the backbone only
    after = keras.ops.convert_to_numpy(features(x)["C4"])
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, keras.ops.convert_to_numpy(model(x)), rtol=1e-5, atol=1e-5)


def test_stage_selection_keeps_the_requested_order():
    model = resnet_keras.ResNet18(include_top=False, input_shape=(64, 64, 3))
    features = resnet_keras.feature_model(model, stages=["C5", "C3"])
    assert list(features.output) == ["C5", "C3"]
    assert features.name == "resnet18_features"


def test_works_with_the_top_and_at_any_input_size():
    model = resnet_keras.ResNet18()  # 224x224, with the classifier
    info = resnet_keras.feature_info(model)
    assert [(f.name, f.stride) for f in info] == [("C2", 4), ("C3", 8), ("C4", 16), ("C5", 32)]
    outputs = resnet_keras.feature_model(model).output
    assert [tuple(outputs[f.name].shape) for f in info] == [
        (None, 56, 56, 64), (None, 28, 28, 128), (None, 14, 14, 256), (None, 7, 7, 512),
    ]
    open_size = resnet_keras.ResNet50V2(weights=None, include_top=False)  # (None, None, 3)
    info = resnet_keras.feature_info(open_size)
    assert [(f.layer, f.stride) for f in info] == [
        ("conv2_block2_out", 4), ("conv3_block3_out", 8), ("conv4_block5_out", 16), ("post_relu", 32),
    ]


def test_works_on_keras_applications_resnets():
    model = keras.applications.ResNet50(weights=None, include_top=False, input_shape=(64, 64, 3))
    info = resnet_keras.feature_info(model)
    assert [(f.layer, f.channels, f.stride) for f in info] == [
        ("conv2_block3_out", 256, 4), ("conv3_block4_out", 512, 8),
        ("conv4_block6_out", 1024, 16), ("conv5_block3_out", 2048, 32),
    ]


def test_channels_first_reports_channels_from_the_channel_axis():
    keras.config.set_image_data_format("channels_first")  # restored by conftest
    model = resnet_keras.ResNet20(include_top=False, input_shape=(3, 32, 32))
    info = resnet_keras.feature_info(model)
    assert [(f.channels, f.stride) for f in info] == [(16, 1), (32, 2), (64, 4)]
    outputs = resnet_keras.feature_model(model).output
    assert tuple(outputs["C4"].shape) == (None, 64, 8, 8)


@pytest.mark.parametrize(
    "stages, phrase",
    [
        (["C6"], "must name stages of resnet20 (C2, C3, C4)"),
        (["c3"], "Did you mean 'C3'?"),
        ("C3", "non-empty list of stage names"),
        ([], "non-empty list of stage names"),
        (["C3", "C3"], "must not repeat a stage"),
    ],
)
def test_bad_stages_raise_with_the_valid_names(stages, phrase):
    model = resnet_keras.ResNet20(include_top=False)
    with pytest.raises(errors.InvalidArgumentError, match="Received: stages=") as info:
        resnet_keras.feature_model(model, stages=stages)
    assert phrase in str(info.value)


# The full-size ResNet50s (1-2 s a build) in the slow tier; V2's reading runs here on the clone below.
@pytest.mark.parametrize("builder", [pytest.param(name, marks=pytest.mark.slow) for name in ("ResNet50", "ResNet50V2")]
                         + ["ResNet18", "ResNet20"])
def test_recorded_stages_match_what_the_layer_names_show(builder):
    """The builder's record and the reading of a model without one agree."""
    model = getattr(resnet_keras, builder)(weights=None, include_top=False)
    recorded = getattr(model, FEATURE_STAGES)
    assert [s.name for s in recorded][:2] == ["C2", "C3"]
    assert recorded == features._stages_from_layer_names(model)


def test_cloned_models_have_the_same_features():
    """clone_model drops the builder's record; the layer names still show the stages."""
    model = resnet_keras.ResNet50V2(weights=None, include_top=False, input_shape=(64, 64, 3))
    clone = keras.models.clone_model(model)
    assert not hasattr(clone, FEATURE_STAGES)
    assert resnet_keras.feature_info(clone) == resnet_keras.feature_info(model)


def test_models_without_resnet_layers_are_refused():
    inputs = keras.Input((32, 32, 3))
    other = keras.Model(inputs, keras.layers.Conv2D(4, 3, name="conv1_conv")(inputs), name="tiny")
    with pytest.raises(errors.InvalidArgumentError, match="Received: model='tiny'"):
        resnet_keras.feature_model(other)
    with pytest.raises(errors.InvalidArgumentError, match="Received: model of type str"):
        resnet_keras.feature_info("resnet50")


def test_documented_fpn_example_runs():
    """feature_model's docstring builds a small FPN head on ResNet18's C3..C5."""
    result = doctest.testmod(features, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 10 and result.failed == 0
