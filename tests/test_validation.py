"""Builder argument rules (FAULTS.md, "Builders"): typed errors, raised
before any network or cache work, each naming `Received: arg=value`."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import resnet_keras
from resnet_keras.weights.download import cache
from resnet_keras.errors import InvalidArgumentError, UnknownWeightsError

BUILDERS = [
    resnet_keras.ResNet50,
    resnet_keras.ResNet101,
    resnet_keras.ResNet152,
    resnet_keras.ResNet50V2,
    resnet_keras.ResNet101V2,
    resnet_keras.ResNet152V2,
]


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to fetch weights fails the test loudly."""

    def forbidden(*args, **kwargs):
        raise AssertionError("validation must fail before any download")

    monkeypatch.setattr(cache, "fetch", forbidden)


def raises_before_disk(isolated_env, error, match, builder, **kwargs):
    with pytest.raises(error, match=match) as info:
        builder(**kwargs)
    assert not isolated_env.exists(), "the cache folder must not be created"
    return info.value


CASES = [
    # (kwargs, error type, key phrase)
    (dict(input_shape=(31, 31, 3), include_top=False), InvalidArgumentError, r"at least 32.*input_shape=\(31, 31, 3\)"),
    (dict(input_shape=(224, 224), include_top=False), InvalidArgumentError, "tuple of 3 dimensions"),
    (dict(input_shape=(1, 224, 224, 3), include_top=False), InvalidArgumentError, "tuple of 3 dimensions"),
    (dict(input_shape=(0, 224, 3), include_top=False), InvalidArgumentError, "positive integer"),
    (dict(input_shape=(-64, 64, 3), include_top=False), InvalidArgumentError, "positive integer"),
    (dict(input_shape=(64.0, 64, 3), include_top=False), InvalidArgumentError, "positive integer"),
    (dict(input_shape=("64", 64, 3), include_top=False), InvalidArgumentError, "positive integer"),
    (dict(input_shape=(True, 64, 3), include_top=False), InvalidArgumentError, "positive integer"),
    (dict(input_shape="224x224x3"), InvalidArgumentError, "tuple of 3 dimensions"),
    (dict(input_shape=(64, 64, None), weights=None, include_top=False), InvalidArgumentError, "channel dimension"),
    (dict(input_shape=(None, None, 3), weights=None), InvalidArgumentError, "fully static"),
    (dict(input_shape=(64, 64, 1), include_top=False), InvalidArgumentError, "3 channels"),
    (dict(input_shape=(256, 256, 3)), InvalidArgumentError, r"must be \(224, 224, 3\)"),
    (dict(pooling="mean", include_top=False), InvalidArgumentError, "pooling='mean'"),
    (dict(pooling="AVG", include_top=False, weights=None), InvalidArgumentError, "pooling='AVG'"),
    (dict(classes=0, weights=None), InvalidArgumentError, "classes=0"),
    (dict(classes=-1, weights=None), InvalidArgumentError, "classes=-1"),
    (dict(classes=2.5, weights=None), InvalidArgumentError, "classes=2.5"),
    (dict(classes="10", weights=None), InvalidArgumentError, "classes='10'"),
    (dict(classes=True, weights=None), InvalidArgumentError, "classes=True"),
    (dict(classes=10), InvalidArgumentError, "must be 1000"),
    (dict(classifier_activation="sigmoid"), InvalidArgumentError, "None or 'softmax'"),
    (dict(classifier_activation="no_such_fn", weights=None), InvalidArgumentError, "classifier_activation='no_such_fn'"),
    (dict(include_top="yes"), InvalidArgumentError, "include_top='yes'"),
    (dict(weights=3), InvalidArgumentError, "weights=3"),
    (dict(weights="imagenett"), UnknownWeightsError, "Did you mean 'imagenet'"),
    (dict(weights="missing/file.h5"), FileNotFoundError, "missing/file.h5"),
    (dict(input_tensor=np.zeros((1, 224, 224, 3))), InvalidArgumentError, "Keras tensor"),
    (dict(name=""), InvalidArgumentError, "name=''"),
]


@pytest.mark.parametrize("kwargs, error, match", CASES, ids=[repr(c[0]) for c in CASES])
def test_bad_argument_is_a_typed_error_before_any_disk_work(isolated_env, kwargs, error, match):
    err = raises_before_disk(isolated_env, error, match, resnet_keras.ResNet50, **kwargs)
    assert isinstance(err, (ValueError, TypeError, OSError))
    if isinstance(err, InvalidArgumentError):
        assert "Received:" in str(err)


@pytest.mark.parametrize("builder", BUILDERS, ids=lambda b: b.__name__)
def test_every_builder_validates_before_download(isolated_env, builder):
    raises_before_disk(isolated_env, InvalidArgumentError, "at least 32", builder, input_shape=(16, 16, 3), include_top=False)
    raises_before_disk(isolated_env, UnknownWeightsError, "available: 'imagenet'", builder, weights="imagenet21k")


def test_misspelled_keyword_is_a_type_error():
    with pytest.raises(TypeError, match="input_shap"):
        resnet_keras.ResNet50(input_shap=(224, 224, 3))


def test_channels_first_rules_follow_image_data_format(isolated_env):
    keras.config.set_image_data_format("channels_first")
    with pytest.raises(InvalidArgumentError, match=r"must be \(3, 224, 224\)"):
        resnet_keras.ResNet50(input_shape=(3, 256, 256))
    with pytest.raises(InvalidArgumentError, match="3 channels.*channels_first"):
        resnet_keras.ResNet50(input_shape=(224, 224, 3))
    with pytest.raises(InvalidArgumentError, match="3 channels"):
        resnet_keras.ResNet50(input_shape=(1, 64, 64), include_top=False)
    model = resnet_keras.ResNet50(weights=None, input_shape=(3, 64, 64), include_top=False)
    assert model.output_shape == (None, 2048, 2, 2)


def test_input_tensor_must_agree_with_input_shape():
    tensor = keras.Input((64, 64, 3))
    with pytest.raises(InvalidArgumentError, match="agree with the shape"):
        resnet_keras.ResNet50(weights=None, include_top=False, input_tensor=tensor, input_shape=(96, 96, 3))
    with pytest.raises(InvalidArgumentError, match="at least 32"):
        resnet_keras.ResNet50(weights=None, include_top=False, input_tensor=keras.Input((16, 16, 3)))


def test_valid_unusual_inputs_are_accepted():
    # A list is a shape too; pooling is ignored with the top, as in keras.
    model = resnet_keras.ResNet50V2(weights=None, include_top=False, input_shape=[32, 48, 3], pooling="max")
    assert model.output_shape == (None, 2048)
    model = resnet_keras.ResNet50(weights=None, classes=7, classifier_activation=None, pooling="avg", input_shape=(64, 64, 3))
    assert model.output_shape == (None, 7)
    model = resnet_keras.ResNet50(weights=None, include_top=False, input_shape=(40, 40, 5))
    assert model.input_shape == (None, 40, 40, 5)


def test_the_data_format_rule():
    """specs.py's data-format rule answers every channel-axis and shape question, keras-free."""
    from resnet_keras.architecture import specs as df

    assert [df.channel_axis(f) for f in df.FORMATS] == [1, -1]
    assert [df.channel_axis(f, batched=False) for f in df.FORMATS] == [0, -1]
    assert df.spatial_dims((8, 3, 32, 24), df.CHANNELS_FIRST) == (32, 24)
    assert df.spatial_dims((32, 24, 3), df.CHANNELS_LAST, batched=False) == (32, 24)
    assert df.image_shape(224, df.CHANNELS_FIRST) == (3, 224, 224)
    assert df.image_shape(None, df.CHANNELS_LAST) == (None, None, 3)
    assert df.check_data_format(None) == keras.config.image_data_format()
    with pytest.raises(InvalidArgumentError, match="Received: data_format='NHWC'"):
        df.check_data_format("NHWC")
