"""A stand-in for the Predictor's compiled engine: the Keras model itself.

`keras_engines(monkeypatch)` makes every runtime build this engine instead
of converting the model, so a test reaches the Predictor's own logic (the
parity gate and report, batching, the runtime chosen, the probe) in
milliseconds. `change` rewrites its outputs: an engine that strays.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from resnet_keras.inference import precision
from resnet_keras.inference.predictor import Engine


@dataclasses.dataclass
class Record:
    """What the engines were asked to do.

    Attributes:
        builds: (runtime, precision, calibration) per engine built.
        batches: Every batch an engine ran, in order (copies).
    """

    builds: list = dataclasses.field(default_factory=list)
    batches: list = dataclasses.field(default_factory=list)


def keras_engines(monkeypatch, change: Callable[[list], list] | None = None) -> Record:
    """Every runtime builds an engine that runs the Keras model (outputs through `change`)."""
    import keras

    record = Record()

    def build(runtime, model, precision, calibration):
        record.builds.append((runtime.name, precision, calibration))

        def run(x):  # eager: no tracing per batch size
            record.batches.append(np.array(x))
            outputs = [np.asarray(o, np.float32) for o in keras.tree.flatten(model(x, training=False))]
            return outputs if change is None else change(outputs)

        return Engine(runtime.name, precision, run, {"engine": "keras double"})

    monkeypatch.setattr(precision.Runtime, "build", build)
    return record
