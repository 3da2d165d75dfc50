"""The classifier a run trains, built from the registry, and the run's weights file.

A fine-tuned model is the zoo model with `include_top=True` and `classes=`
the number of classes: the same graph `get_model(name, classes=n)` builds,
layer names and all (so `feature_model`, the `Predictor` and
`export_for_inference` take it as they take any zoo model). Its backbone
starts from the pretrained weights (fetched and verified by the registry),
its `predictions` layer from a seeded random initialization.

Loading a run never runs code from a file: the architecture is rebuilt from
the registry and `run.json` (plain JSON, each field checked), and the
weights are read from `weights.h5` once into memory, their SHA-256 checked
against `run.json`, and those bytes parsed by the package's own HDF5 reader. There is
no keras `load_model`, `from_config` or pickle anywhere on that path.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path
from typing import Iterator

from ..errors import IntegrityError

POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


@contextlib.contextmanager
def building(precision: str = "float32") -> Iterator[None]:
    """Layers built inside compute in `precision` (a float32 head: architecture.build) and
    take channels-last images (what the input pipeline gives); the globals are restored."""
    import keras

    saved = keras.config.dtype_policy(), keras.config.image_data_format()
    keras.config.set_dtype_policy(POLICIES[precision])
    keras.config.set_image_data_format("channels_last")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(saved[0])
        keras.config.set_image_data_format(saved[1])


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _nvidia_driver() -> bool:
    import os

    return os.path.isdir("/proc/driver/nvidia/gpus") and bool(os.listdir("/proc/driver/nvidia/gpus"))


def resolve_precision(precision: str) -> str:
    """"auto" -> bfloat16 where the hardware has it natively (GPU cc >= 8.0, AVX-512 BF16/AMX), else float32."""
    if precision != "auto":
        return precision
    if _nvidia_driver():  # only then TensorFlow is asked (importing it is slow)
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
    else:
        gpus = []
    if gpus:
        capability = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability", (0, 0))
        return "bfloat16" if tuple(capability) >= (8, 0) else "float32"
    return "bfloat16" if _cpu_flags() & {"avx512_bf16", "amx_bf16"} else "float32"


def classifier(spec, *, classes: int, input_size: int, precision: str = "float32", offline=None):
    """The zoo model `spec` with a new softmax head of `classes`, random weights."""
    from ..architecture.build import build
    from ..architecture.specs import image_shape
    from ..architecture.build import resolve

    with building(precision):
        return build(resolve(spec, None, include_top=True, offline=offline), classes=classes,
                     input_shape=image_shape(input_size, "channels_last"))


def with_backbone(model, resolved, input_size: int) -> None:
    """Copy the weights `resolved` names (fetched and verified) into `model`'s backbone."""
    from ..architecture.build import build
    from ..architecture.specs import image_shape

    with building():
        backbone = build(resolved, input_shape=image_shape(input_size, "channels_last"))
    for layer in backbone.layers:
        if layer.weights:
            model.get_layer(layer.name).set_weights(layer.get_weights())


def write_weights(model, path: Path) -> str:
    """`model`'s weights in the Keras 2 HDF5 layout at `path`; their sha256."""
    from ..files import file_sha256
    from ..weights.formats.hdf5_write import write_keras2_layout

    write_keras2_layout(model, path)
    return file_sha256(path)


def load_weights(model, path: Path, sha256: str) -> None:
    """Load `path` into `model` with the package's safe reader, after checking its sha256.

    The shared-cache rule (`weights.download.snapshot`): the file is read once into
    memory, those bytes are hashed, and the HDF5 reader parses those bytes.
    """
    from ..weights.download import snapshot
    from ..weights.formats import hdf5

    data = snapshot.read_once(path, snapshot.MAX_LOCAL_BYTES)
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise IntegrityError(
            f"{path} does not match the sha256 its run.json records ({sha256[:16]}...): the file "
            f"changed after the run wrote it. Received: sha256 {digest[:16]}... Train again, or restore "
            "the file.")
    hdf5.load(model, snapshot.as_file(data), path)
