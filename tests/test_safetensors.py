"""timm's `.safetensors` in the fast tier, without torch: the package reads the format itself.

The torch side (torchvision's `.pth`, parity with a torch.nn ResNet, the
hostile checkpoints) needs torch, which comes with the test-slow extra:
tests/test_torch_checkpoints.py and tests/test_hostile_checkpoints.py.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

import official_format
from hostile_files import build_tiny_torch, numpy_state
from optional import require
from resnet_keras.errors import WeightsFormatError
from resnet_keras.weights.formats.torch_names import torchvision_key


def _save(state: dict, path) -> str:
    require("safetensors.numpy").save_file(state, str(path))
    return str(path)


def _without_torch(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails


def test_a_checkpoint_in_torchvisions_layout_loads_bit_for_bit(tmp_path, monkeypatch):
    model = build_tiny_torch()
    official_format.randomize(model, seed=4)
    path = _save(numpy_state(model), tmp_path / "w.safetensors")
    _without_torch(monkeypatch)
    loaded = build_tiny_torch(weights=path)
    for want, got in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(got.numpy(), want.numpy(), err_msg=want.path)


def test_the_value_rule_refuses_nan_naming_the_key(tmp_path, monkeypatch):
    state = numpy_state(build_tiny_torch())
    key = torchvision_key("conv1_bn", "beta")
    state[key] = np.array([0, np.nan, 0, 0], "float32")
    path = _save(state, tmp_path / "nan.safetensors")
    _without_torch(monkeypatch)
    with pytest.raises(WeightsFormatError, match="contains NaN or Inf") as error:
        build_tiny_torch(weights=path)
    assert key in str(error.value) and "\n" not in str(error.value)
