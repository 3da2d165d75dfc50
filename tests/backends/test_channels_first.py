"""channels_first builds and runs on every backend, with channels_last's numbers.

The weights are the same arrays in both formats, so a channels_last file
loads into a channels_first model; on a transposed input it must give the
golden (TensorFlow, channels_last) outputs. On this machine TensorFlow's CPU
kernels (oneDNN) run NCHW too, so nothing is skipped.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import make_backend_golden as golden_lib
import official_format
import resnet_keras
from make_backend_golden import GOLDEN_TOLERANCE, relative_error

pytestmark = pytest.mark.backend

# Every block kind, both stems and both shortcut options.
MODELS = ["resnet18", "resnet50", "resnet50v2", "resnet20", "plain20"]


@pytest.mark.parametrize("key", MODELS)
def test_channels_first_gives_channels_last_outputs(key, golden, tmp_path, record):
    channels_last = golden_lib.build(key)
    path = official_format.write_keras2_weights(channels_last, tmp_path / "weights.h5")
    here = golden_lib.outputs(channels_last, golden_lib.preprocess(key, golden["images"]))

    keras.config.set_image_data_format("channels_first")
    size = golden_lib.input_size(key)
    model = resnet_keras.get_model(
        key,
        weights=str(path),
        classes=golden_lib.CLASSES,
        classifier_activation=None,
        input_shape=(3, size, size),
    )
    assert model.get_layer("conv1_conv").data_format == "channels_first"
    assert [f.channels for f in resnet_keras.feature_info(model)] == [
        f.channels for f in resnet_keras.feature_info(channels_last)
    ]
    x = golden_lib.preprocess(key, golden["images"], data_format="channels_first")
    assert tuple(x.shape) == (2, 3, size, size)
    result = golden_lib.outputs(model, x)
    for name, value in result.items():
        # against this backend's channels_last run, and against TensorFlow's
        np.testing.assert_allclose(value, here[name], rtol=0, atol=GOLDEN_TOLERANCE * np.abs(here[name]).max())
        error = relative_error(value, golden[f"{key}.{name}"])
        record("channels_first", key, name, error)
        assert error < GOLDEN_TOLERANCE
