"""Regenerate tests/golden/backend_outputs.npz on the TensorFlow backend.

The fixture holds, for every registered model (but the ones in SKIPPED),
the outputs of a fixed network on a fixed input, computed with TensorFlow;
tests/backends/ checks that JAX and PyTorch (and TensorFlow itself) give
the same numbers (relative error below GOLDEN_TOLERANCE).

- Weights: `seeded_init` with a seed from the model name (NumPy's PCG64,
  so the same values on every backend); CLASSES classes.
- Input: two seeded RGB images in [0, 255], stored in the fixture as uint8
  (`images`), cropped to INPUT_SIZE of the stem, then the model's own
  `preprocess_input` (tf mode for the CIFAR nets, which have none).
- Outputs: `{key}.features` (the `avg_pool` output, what include_top=False
  with pooling="avg" returns) and `{key}.logits` (the `predictions` layer,
  classifier_activation=None: softmax would hide small differences).

Run `python tests/make_backend_golden.py` only when an architecture changes
on purpose; the fixture is plain arrays (np.load with allow_pickle=False).
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

GOLDEN = Path(__file__).parent / "golden" / "backend_outputs.npz"
GOLDEN_TOLERANCE = 1e-4
CLASSES = 5
BATCH = 2
INPUT_SIZE = {"imagenet": 64, "cifar": 32}
# Not in the fixture, with the reason.
SKIPPED = {
    "resnet1202": "1202 layers take about 40 s to build per backend (more to "
    "compile on JAX); its blocks are those of resnet20..resnet110, all checked",
}


def relative_error(ours, golden) -> float:
    """max |ours - golden| / max |golden| (the measure of test_weights_core)."""
    ours = np.asarray(ours, dtype="float64")
    golden = np.asarray(golden, dtype="float64")
    return float(np.max(np.abs(ours - golden)) / np.max(np.abs(golden)))


def variants() -> list[str]:
    import resnet_keras

    return [key for key in resnet_keras.list_models() if key not in SKIPPED]


def seed_of(key: str) -> int:
    return zlib.crc32(key.encode())


def input_size(key: str) -> int:
    from resnet_keras.architecture.specs import SPECS

    return INPUT_SIZE[SPECS[key].stem]


def seeded_init(model, key: str) -> None:
    """Give every weight a seeded value that keeps the input's signal.

    BatchNorm statistics are random (fresh ones make BN the identity, and
    a wrong weight order would go unnoticed). Kernels are N(0, gain/fan_in):
    gain 2 (He) for plain nets, else 110 layers without shortcuts wash the
    input out; gain 1 for residual nets, so the residual stream grows slowly.
    """
    from resnet_keras.architecture.specs import SPECS

    gain = 2.0 if SPECS[key].block == "plain" else 1.0
    rng = np.random.default_rng(seed_of(key))
    for layer in model.layers:
        for variable in layer.weights:
            shape = tuple(variable.shape)
            if variable.name in ("gamma", "moving_variance"):
                value = rng.uniform(0.8, 1.2, shape)
            elif variable.name in ("beta", "moving_mean", "bias"):
                value = rng.normal(0.0, 0.02, shape)
            else:  # conv and dense kernels: fan_in is all but the last axis
                value = rng.normal(0.0, np.sqrt(gain / np.prod(shape[:-1])), shape)
            variable.assign(value.astype("float32"))


def make_images() -> np.ndarray:
    size = max(INPUT_SIZE.values())
    rng = np.random.default_rng(20240611)
    return rng.integers(0, 256, (BATCH, size, size, 3), dtype=np.uint8)


def preprocess(key: str, images: np.ndarray, data_format: str = "channels_last"):
    """The model's preprocessing on a backend tensor (not NumPy)."""
    import keras

    from resnet_keras import resnet, resnet_small, resnet_v2
    from resnet_keras.architecture.specs import SPECS

    functions = {
        "caffe": resnet.preprocess_input,
        "tf": resnet_v2.preprocess_input,
        "torch": resnet_small.preprocess_input,
        None: resnet_v2.preprocess_input,
    }
    size = input_size(key)
    x = images[:, :size, :size, :]
    if data_format == "channels_first":
        x = np.transpose(x, (0, 3, 1, 2))
    x = keras.ops.convert_to_tensor(x.astype("float32"))
    return functions[SPECS[key].preprocessing](x, data_format=data_format)


def build(key: str, **kwargs):
    """The golden network of `key`: seeded weights, CLASSES logits.

    Built in the global image data format; the weights are the same in both.
    """
    import keras

    import resnet_keras

    size = input_size(key)
    channels_first = keras.config.image_data_format() == "channels_first"
    shape = (3, size, size) if channels_first else (size, size, 3)
    model = resnet_keras.get_model(
        key,
        weights=None,
        include_top=True,
        classes=CLASSES,
        classifier_activation=None,
        input_shape=shape,
        **kwargs,
    )
    seeded_init(model, key)
    return model


def outputs(model, x) -> dict[str, np.ndarray]:
    """{"features", "logits"} of a golden network (eager call, no tracing)."""
    import keras

    both = keras.Model(
        model.inputs, [model.get_layer("avg_pool").output, model.output]
    )
    features, logits = both(x, training=False)
    return {
        "features": keras.ops.convert_to_numpy(keras.ops.cast(features, "float32")),
        "logits": keras.ops.convert_to_numpy(keras.ops.cast(logits, "float32")),
    }


def main() -> None:
    import keras

    if keras.backend.backend() != "tensorflow":
        raise SystemExit("The golden outputs are TensorFlow's: run with KERAS_BACKEND=tensorflow.")
    images = make_images()
    arrays = {"images": images}
    for key in variants():
        result = outputs(build(key), preprocess(key, images))
        for name, value in result.items():
            arrays[f"{key}.{name}"] = value
        print(key, {k: v.shape for k, v in result.items()})
    np.savez_compressed(GOLDEN, **arrays)
    print(f"wrote {GOLDEN} ({GOLDEN.stat().st_size:,} bytes)")


if __name__ == "__main__":
    # The golden numbers are TensorFlow's by definition (keras reads this at import).
    os.environ["KERAS_BACKEND"] = "tensorflow"
    main()
