"""ResNet50 inference paths: keras, the peers and the Predictor, alternating.

One model (random seeded weights, BatchNorm statistics included), one ONNX
export, one set of calibration images; every path is timed in the same
repeats, the order rotating, at each batch size. Outputs are compared with
keras' float32 outputs on the last timed batch.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import keras
import numpy as np

import peers
import resnet_keras
from measure import alternate
from official_files import seed_weights
from resnet_keras.architecture.counts import count_macs  # the package's own MAC convention

KERAS32 = "keras float32"
# label -> (precision, kind): kind "peer" or "ours"; the Predictor rows name their runtime.
PATHS = {
    KERAS32: ("float32", "peer"),
    "keras mixed_bfloat16": ("bfloat16", "peer"),
    "onnxruntime float32": ("float32", "peer"),
    "openvino float32": ("float32", "peer"),
    "openvino bfloat16": ("bfloat16", "peer"),
    "openvino int8 (NNCF)": ("int8", "peer"),
    "Predictor float32 (auto)": ("float32", "ours"),
    "Predictor bfloat16 (auto)": ("bfloat16", "ours"),
    "Predictor int8 (auto)": ("int8", "ours"),
    "Predictor float32 tensorflow": ("float32", "ours"),
    "Predictor bfloat16 tensorflow": ("bfloat16", "ours"),
    "Predictor float32 onnxruntime": ("float32", "ours"),
    "Predictor int8 onnxruntime": ("int8", "ours"),
}
CALIBRATION_IMAGES = 64


def calibration_images(shape: tuple, count: int) -> np.ndarray:
    """Random photos-to-be, preprocessed as ResNet50 expects (caffe mode)."""
    pixels = np.random.default_rng(1).integers(0, 256, (count,) + shape).astype("float32")
    return resnet_keras.resnet.preprocess_input(pixels)


def _predictor(model, label: str, calibration):
    precision, _ = PATHS[label]
    runtime = "auto" if "(auto)" in label else label.split()[-1]
    predictor = resnet_keras.Predictor(
        model, precision=precision, runtime=runtime,
        calibration=calibration if precision == "int8" else None,
    )
    return lambda x: predictor.predict(x, batch_size=len(x)), predictor


def chosen_paths(quick: bool) -> dict:
    """Every path; --quick keeps the peers and the Predictor rows the targets judge."""
    return {label: v for label, v in PATHS.items() if not quick or v[1] == "peer" or "(auto)" in label}


def bench_paths(args) -> dict:
    shape = (args.size, args.size, 3)
    include_top = args.size == 224
    # Logits, not softmax: random weights saturate a softmax, and errors would compare ones and zeros.
    head = dict(include_top=include_top, input_shape=shape, classifier_activation=None)
    base = keras.applications.ResNet50(weights=None, **head)
    seed_weights(base, seed=0)
    ours = resnet_keras.ResNet50(weights=None, **head)
    ours.set_weights(base.get_weights())
    calibration = calibration_images(shape, CALIBRATION_IMAGES)
    calls, setup_s, runtimes = {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = resnet_keras.export_for_inference(ours, Path(tmp) / "resnet50.onnx", format="onnx").path
        makers = {
            KERAS32: lambda: peers.keras_call(base),
            "keras mixed_bfloat16": lambda: peers.keras_bfloat16(base.get_weights(), **head),
            "onnxruntime float32": lambda: peers.onnxruntime_float32(onnx_path),
            "openvino float32": lambda: peers.openvino(onnx_path, "f32"),
            "openvino bfloat16": lambda: peers.openvino(onnx_path, "bf16"),
            "openvino int8 (NNCF)": lambda: peers.openvino(onnx_path, "int8", calibration),
        }
        for label in chosen_paths(args.quick):
            start = time.perf_counter()
            if label in makers:
                calls[label] = makers[label]()
            else:
                calls[label], predictor = _predictor(ours, label, calibration)
                runtimes[label] = predictor.runtime
            setup_s[label] = time.perf_counter() - start
            print(f"  ready: {label} ({setup_s[label]:.1f} s)", flush=True)

    throughput, error, cosine = {}, {}, {}
    for batch in args.batches:
        x = calibration_images(shape, batch)[::-1].copy()  # not the calibration images
        for call in calls.values():  # first calls: compile, allocate
            call(x)
            call(x)
        n = args.path_calls[batch]

        def measure(call):
            start = time.perf_counter()
            for _ in range(n):
                call(x)
            return n * batch / (time.perf_counter() - start)

        throughput[batch] = alternate(args.repeats * 2, calls, measure)
    reference = np.asarray(calls[KERAS32](x), np.float64).reshape(len(x), -1)
    for label, call in calls.items():
        out = np.asarray(call(x), np.float64).reshape(len(x), -1)
        error[label] = float(np.abs(out - reference).max() / np.abs(reference).max())
        cos = (out * reference).sum(1) / (np.linalg.norm(out, axis=1) * np.linalg.norm(reference, axis=1))
        cosine[label] = float(cos.min())
    return {
        "macs": count_macs(base),
        "paths": {label: {"precision": p, "kind": k, "runtime": runtimes.get(label)}
                  for label, (p, k) in chosen_paths(args.quick).items()},
        "setup_s": setup_s,
        "throughput": throughput,
        "error": error,
        "cosine": cosine,
        "calibration_images": CALIBRATION_IMAGES,
    }
