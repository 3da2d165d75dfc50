"""preprocess_input and decode_predictions give exactly keras' results."""

from __future__ import annotations

import hashlib
import json

import keras
import numpy as np
import pytest

from resnet_keras import _imagenet, resnet, resnet_v2
from resnet_keras.errors import InvalidArgumentError

PAIRS = [(resnet, keras.applications.resnet), (resnet_v2, keras.applications.resnet_v2)]


def images(shape, dtype):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, shape).astype(dtype)


@pytest.mark.parametrize("ours, theirs", PAIRS, ids=["v1", "v2"])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("dtype", ["uint8", "float16", "float32", "float64"])
@pytest.mark.parametrize("ndim", [3, 4])
def test_numpy_results_and_in_place_writes_equal_keras(ours, theirs, data_format, dtype, ndim):
    """Swapping the import changes nothing, also for a script that ignores the result."""
    shape = (2, 8, 8, 3)[4 - ndim:] if data_format == "channels_last" else (2, 3, 8, 8)[4 - ndim:]
    x = images(shape, dtype)
    keras_x = x.copy()
    got = ours.preprocess_input(x, data_format=data_format)
    want = theirs.preprocess_input(keras_x, data_format=data_format)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    # What is left in the input array: keras' in-place writes, exactly.
    np.testing.assert_array_equal(x, keras_x)
    if dtype == "uint8":
        np.testing.assert_array_equal(x, images(shape, dtype))  # ints can't be written over
    else:
        assert np.shares_memory(got, x) and not np.array_equal(x, images(shape, dtype))


@pytest.mark.parametrize("mode", ["caffe", "tf", "torch"])
def test_in_place_result_is_the_returned_array(mode):
    """A script that calls preprocess_input(x) and then uses x gets keras' x."""
    x = images((1, 4, 4, 3), "float32")
    keras_x = x.copy()
    returned = _imagenet.preprocess_input(x, data_format="channels_last", mode=mode)
    keras.applications.imagenet_utils.preprocess_input(keras_x, data_format="channels_last", mode=mode)
    np.testing.assert_array_equal(x, keras_x)
    # caffe returns the BGR view of the same memory (as keras); the others x itself
    expected_view = x[..., ::-1] if mode == "caffe" else x
    np.testing.assert_array_equal(returned, expected_view)
    assert np.shares_memory(returned, x)


def test_read_only_array_gives_a_new_array():
    x = images((1, 4, 4, 3), "float32")
    x.setflags(write=False)
    got = resnet.preprocess_input(x)
    np.testing.assert_array_equal(x, images((1, 4, 4, 3), "float32"))
    np.testing.assert_array_equal(got, resnet.preprocess_input(x.copy()))


def channel_inputs(channels, data_format, kind):
    shape = (2, 4, 4, channels) if data_format == "channels_last" else (2, channels, 4, 4)
    x = images(shape, "float32")
    if kind == "numpy":
        return x
    if kind == "tensor":
        return keras.ops.convert_to_tensor(x)
    return keras.Input(shape[1:])  # symbolic


@pytest.mark.parametrize("mode", ["caffe", "tf", "torch"])
@pytest.mark.parametrize("channels", [1, 2, 4])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("kind", ["numpy", "tensor", "symbolic"])
def test_non_rgb_input_is_a_typed_error_naming_channels(mode, channels, data_format, kind):
    x = channel_inputs(channels, data_format, kind)
    before = np.array(x) if kind == "numpy" else None
    with pytest.raises(InvalidArgumentError) as caught:
        _imagenet.preprocess_input(x, data_format=data_format, mode=mode)
    message = str(caught.value)
    assert f"{channels} channels" in message and f"data_format={data_format!r}" in message
    assert "3 channels" in message and "Received: x.shape=" in message
    if kind == "numpy":
        np.testing.assert_array_equal(x, before)  # nothing written before the check


@pytest.mark.parametrize("ours", [resnet, resnet_v2], ids=["v1", "v2"])
def test_public_preprocess_input_rejects_grey_and_rgba(ours):
    for channels in (1, 4):
        with pytest.raises(InvalidArgumentError, match=f"{channels} channels"):
            ours.preprocess_input(images((1, 8, 8, channels), "uint8"))


def test_unknown_channel_count_of_a_symbolic_input_is_accepted():
    inputs = keras.Input((None, None, None))
    assert tuple(resnet.preprocess_input(inputs).shape) == (None, None, None, 3)  # broadcast, as keras


@pytest.mark.parametrize("ours, theirs", PAIRS, ids=["v1", "v2"])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_tensor_results_equal_keras(ours, theirs, data_format):
    shape = (2, 8, 8, 3) if data_format == "channels_last" else (2, 3, 8, 8)
    x = keras.ops.convert_to_tensor(images(shape, "float32"))
    got = keras.ops.convert_to_numpy(ours.preprocess_input(x, data_format=data_format))
    want = keras.ops.convert_to_numpy(theirs.preprocess_input(x, data_format=data_format))
    np.testing.assert_array_equal(got, want)


def test_symbolic_preprocessing_inside_a_model():
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, resnet.preprocess_input(inputs))
    x = images((1, 8, 8, 3), "float32")
    np.testing.assert_allclose(model.predict(x, verbose=0), resnet.preprocess_input(x.copy()), rtol=1e-6)


def test_global_data_format_is_used_by_default():
    keras.config.set_image_data_format("channels_first")
    x = images((1, 3, 4, 4), "float32")
    np.testing.assert_array_equal(
        resnet.preprocess_input(x.copy()), resnet.preprocess_input(x.copy(), data_format="channels_first")
    )


def test_torch_mode_matches_keras_imagenet_utils():
    x = images((2, 8, 8, 3), "float32")
    want = keras.applications.imagenet_utils.preprocess_input(x.copy(), mode="torch")
    np.testing.assert_allclose(_imagenet.preprocess_input(x.copy(), mode="torch"), want, rtol=1e-6)


def test_bad_mode_and_data_format_are_typed_errors():
    with pytest.raises(InvalidArgumentError, match="mode='nope'"):
        _imagenet.preprocess_input(np.zeros((1, 4, 4, 3)), mode="nope")
    with pytest.raises(InvalidArgumentError, match="data_format='NHWC'"):
        resnet.preprocess_input(np.zeros((1, 4, 4, 3)), data_format="NHWC")


def test_shipped_class_index_is_keras_file():
    digest = hashlib.md5(_imagenet.CLASS_INDEX_PATH.read_bytes()).hexdigest()
    assert digest == "c2c37ea517e94d9795004a39431a14cb"
    index = _imagenet.class_index()
    assert index["386"] == ["n02504458", "African_elephant"]
    assert index["101"] == ["n01871265", "tusker"]


def test_decode_predictions_equals_keras_offline(monkeypatch):
    # keras would download the class index; hand it the same file instead.
    from keras.src.applications import imagenet_utils

    monkeypatch.setattr(imagenet_utils, "CLASS_INDEX", json.loads(_imagenet.CLASS_INDEX_PATH.read_text()))
    preds = np.random.default_rng(3).dirichlet(np.ones(1000), size=4).astype("float32")
    for module, theirs in PAIRS:
        got = module.decode_predictions(preds, top=3)
        assert got == theirs.decode_predictions(preds, top=3)
        assert [len(r) for r in got] == [3] * 4 and isinstance(got[0][0], tuple)
    # Tensors too, as keras accepts them.
    assert resnet.decode_predictions(keras.ops.convert_to_tensor(preds)) == resnet.decode_predictions(preds)


def test_decode_predictions_needs_no_network(isolated_env, monkeypatch):
    monkeypatch.setattr(keras.utils, "get_file", lambda *a, **k: pytest.fail("network used"))
    preds = np.zeros((1, 1000), "float32")
    preds[0, 386] = 1.0
    assert resnet.decode_predictions(preds, top=1)[0][0][:2] == ("n02504458", "African_elephant")
    assert not isolated_env.exists()


@pytest.mark.parametrize("shape", [(1000,), (2, 10), (1, 1000, 1)])
def test_decode_predictions_rejects_bad_shapes(shape):
    with pytest.raises(InvalidArgumentError, match=r"\(samples, 1000\).*Received"):
        resnet.decode_predictions(np.zeros(shape))
