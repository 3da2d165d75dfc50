"""Fine-tune a zoo model on one device, then on two; print both runs as JSON.

Run in a fresh process by test_multi_device.py, because the devices must be
set up before the backend starts:

    python tests/backends/multi_device_worker.py tensorflow  # MirroredStrategy, 2 logical CPUs
    python tests/backends/multi_device_worker.py jax         # DataParallel, 2 host devices

Both runs start from the same weights and train STEPS steps on the same
batch. BatchNorm layers are frozen, as when fine-tuning (Keras runs a
non-trainable BN in inference mode), so the loss does not depend on how the
batch is split; the two runs must then agree up to float rounding, which
checks that the gradients of both halves are combined as one batch.
"""

from __future__ import annotations

import json
import os
import sys

BACKEND = sys.argv[1]
os.environ["KERAS_BACKEND"] = BACKEND
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
if BACKEND == "jax":
    os.environ["JAX_PLATFORMS"] = "cpu"
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
    ).strip()
elif BACKEND == "tensorflow":
    import tensorflow as tf

    # Before anything starts the TF runtime: split the CPU in two devices.
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )
else:
    raise SystemExit(f"usage: {sys.argv[0]} tensorflow|jax")

import keras  # noqa: E402 (after the device setup)
import numpy as np  # noqa: E402

import resnet_keras  # noqa: E402

STEPS, BATCH, SIZE, CLASSES = 3, 8, 32, 4


def make_model() -> keras.Model:
    """ResNet18 backbone, frozen BatchNorm, a new 4-class head."""
    backbone = resnet_keras.ResNet18(
        weights=None, include_top=False, pooling="avg", input_shape=(SIZE, SIZE, 3)
    )
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    outputs = keras.layers.Dense(CLASSES, name="head")(backbone.output)
    return keras.Model(backbone.input, outputs, name="finetune")


def fine_tune(initial, x, y) -> dict:
    model = make_model()
    model.set_weights(initial)
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.05),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    history = model.fit(x, y, batch_size=BATCH, epochs=STEPS, shuffle=False, verbose=0)
    return {
        "losses": [float(v) for v in history.history["loss"]],
        "weights": [np.asarray(w) for w in model.get_weights()],
        "model": model,
    }


def main() -> None:
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1.0, 1.0, (BATCH, SIZE, SIZE, 3)).astype("float32")
    y = rng.integers(0, CLASSES, (BATCH,))
    initial = make_model().get_weights()

    one = fine_tune(initial, x, y)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        with strategy.scope():
            two = fine_tune(initial, x, y)
        replicas = strategy.num_replicas_in_sync
        devices = sorted(two["model"].weights[0].value.values[i].device for i in range(replicas))
    else:
        import jax

        distribution = keras.distribution.DataParallel(devices=jax.devices())
        with distribution.scope():
            two = fine_tune(initial, x, y)
        replicas = int(distribution.device_mesh.shape[0])
        sharding = two["model"].weights[0].value.sharding
        devices = sorted(str(d) for d in sharding.device_set)
        batch_axes = distribution.get_data_layout((BATCH, SIZE, SIZE, 3)).axes
        assert batch_axes[0] == "batch", batch_axes  # the batch is split

    weight_error = max(
        float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-12))
        for a, b in zip(two["weights"], one["weights"])
    )
    moved = max(
        float(np.max(np.abs(a - b))) for a, b in zip(one["weights"], initial)
    )
    print(
        "RESULT "
        + json.dumps(
            {
                "backend": BACKEND,
                "replicas": replicas,
                "devices": devices,
                "one_device_losses": one["losses"],
                "two_device_losses": two["losses"],
                "weight_relative_error": weight_error,
                "largest_update": moved,
            }
        )
    )


if __name__ == "__main__":
    main()
