"""Write weight files with the programs that wrote the real ones (run as a script).

    python tests/keras2_writers.py OUT_DIR WRITER:MODEL:HEAD [...]

WRITER is `keras-applications` (keras_applications/resnet_common.py, the
code behind the official files, whose classifier is named `probs`) or
`tf-keras` (tf.keras 2.x applications, classifier `predictions`); both are
saved by Keras 2's own `save_weights` (the tf_keras package) to legacy HDF5.
MODEL is a keras key (resnet50, ..., resnet152v2), HEAD `top` or `notop`.

A separate process because Keras 2 and Keras 3 are different libraries that
should not share one interpreter's TensorFlow state; the files it writes are
what a user downloads, not what our own helpers make.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

BUILDERS = {
    "resnet50": "ResNet50",
    "resnet101": "ResNet101",
    "resnet152": "ResNet152",
    "resnet50v2": "ResNet50V2",
    "resnet101v2": "ResNet101V2",
    "resnet152v2": "ResNet152V2",
}


def file_name(writer: str, model: str, head: str) -> str:
    suffix = "" if head == "top" else "_notop"
    return f"{writer}_{model}_weights_tf_dim_ordering_tf_kernels{suffix}.h5"


def _randomize(model, seed: int) -> None:
    """Distinct, well-conditioned values, BN statistics included."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        values = []
        for weight in layer.weights:
            shape = tuple(weight.shape)
            kind = weight.name.rsplit("/", 1)[-1].split(":")[0]
            if kind in ("gamma", "moving_variance"):
                value = rng.uniform(0.5, 1.5, shape)
            elif kind in ("beta", "moving_mean", "bias"):
                value = rng.normal(0.0, 0.1, shape)
            else:
                value = rng.normal(0.0, np.sqrt(1.0 / int(np.prod(shape[:-1]))), shape)
            values.append(value.astype("float32"))
        if values:
            layer.set_weights(values)


def _build(writer: str, model: str, head: str):
    import tf_keras

    include_top = head == "top"
    if writer == "keras-applications":
        from keras_applications import resnet_common

        return getattr(resnet_common, BUILDERS[model])(
            include_top=include_top, weights=None,
            backend=tf_keras.backend, layers=tf_keras.layers,
            models=tf_keras.models, utils=tf_keras.utils,
        )
    if writer == "tf-keras":
        return getattr(tf_keras.applications, BUILDERS[model])(include_top=include_top, weights=None)
    raise SystemExit(f"unknown writer {writer!r}")


def main(out_dir: str, specs: list[str]) -> None:
    for seed, spec in enumerate(specs):
        writer, model_key, head = spec.split(":")
        model = _build(writer, model_key, head)
        _randomize(model, seed)
        model.save_weights(os.path.join(out_dir, file_name(writer, model_key, head)))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
