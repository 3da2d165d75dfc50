"""OpenVINO engine: the folded graph converted in memory, compiled for the CPU.

What makes it faster than OpenVINO's defaults on the same graph:
- Measured, not guessed: the first batch of each shape is timed on one
  request over all cores (OpenVINO's latency default) and split over the
  throughput streams (parts side by side, each stream on its own cores, with
  no barrier between threads at every layer); the faster plan is kept.
- Static shapes. Each batch (or part) shape gets its own compiled model, so
  the CPU plugin plans memory and picks kernels once instead of per call.
- Inputs are read in place (no copy) and denormals are flushed to zero,
  as TensorFlow does on CPUs.
- The precision is explicit. OpenVINO's CPU plugin computes in bfloat16 by
  default where the CPU has it; float32 asks for float32.
Safe from several threads: each call takes infer requests of its own from a
pool and copies its outputs before giving them back; a new batch shape is
tuned once, under a lock, while known shapes keep running.
int8 is NNCF post-training quantization on the user's calibration set:
per-channel symmetric weights, activations calibrated on the set, the
classifier (the last MatMul) left in float32, biases kept as trained (see
`_quantize`).
"""

from __future__ import annotations

import collections
import contextlib
import io
import logging
import os
import threading
import time

import numpy as np

from ..predictor import Engine, float32_function

_PRECISION_HINT = {"float32": "f32", "bfloat16": "bf16", "int8": "bf16"}
# Parts per stream in a batch: two keep each stream busy while the other part's
# result is copied out.
_PARTS_PER_STREAM = 2
# Timed calls per candidate when a batch shape is first seen, and shapes remembered.
_TUNING_ROUNDS = 2
_PLANS_KEPT = 8


def _quantize(ov_model, calibration: np.ndarray):
    import nncf

    nncf.set_log_level(logging.ERROR)

    matmuls = [op.get_friendly_name() for op in ov_model.get_ordered_ops() if op.get_type_name() == "MatMul"]
    ignored = nncf.IgnoredScope(names=matmuls[-1:]) if matmuls else None  # the classifier
    batches = [calibration[i : i + 1] for i in range(len(calibration))]
    # No bias correction: NNCF's fast one runs each layer on one synthetic map
    # (the per-channel input means, spread evenly) and reads the error of that
    # as int8's. On real maps, with zero-padded borders and uneven means, the
    # two differ, most on small maps: on 24x24 digits it moved biases by up to
    # 0.13 where int8 needed 0.02 (min cosine 0.77, 0.98 without). Per-channel
    # weights leave little bias to correct; onnxruntime's recipe has none either.
    with contextlib.redirect_stdout(io.StringIO()):  # NNCF's progress bar: a library stays quiet
        return nncf.quantize(
            ov_model,
            nncf.Dataset(batches),
            subset_size=len(batches),
            preset=nncf.QuantizationPreset.PERFORMANCE,
            ignored_scope=ignored,
            advanced_parameters=nncf.AdvancedQuantizationParameters(disable_bias_correction=True),
        )


def _copy_outputs(request) -> list[np.ndarray]:
    # Copies: the request's output tensors are overwritten by its next inference.
    return [np.array(t.data, dtype=np.float32, copy=True) for t in request.output_tensors]


class _RequestPool:
    """The infer requests of one compiled model, each lent to one call at a time.

    A request runs one inference at a time ("Infer Request is busy"
    otherwise) and its next inference overwrites its outputs, so calls from
    several threads never share one: a call takes an idle request (or makes
    one), copies its outputs and gives it back. A call that fails keeps its
    requests (they may still be running); the pool makes new ones.
    """

    def __init__(self, compiled):
        self._compiled = compiled
        self._idle: collections.deque = collections.deque()  # append/pop are atomic

    def take(self):
        try:
            return self._idle.pop()  # the most recently used: its memory is warm
        except IndexError:
            return self._compiled.create_infer_request()

    def give_back(self, request) -> None:
        self._idle.append(request)


class _Compiler:
    """Compiles the graph for one batch shape and one performance hint."""

    def __init__(self, ov_model, precision: str):
        import openvino as ov

        self.core = ov.Core()
        self.model = ov_model
        # Denormals flushed to zero, as TensorFlow does on CPUs: same results, no slow path.
        self.config = {"INFERENCE_PRECISION_HINT": _PRECISION_HINT[precision],
                       "CPU_DENORMALS_OPTIMIZATION": True}
        probe = self.core.compile_model(ov_model, "CPU", {**self.config, "PERFORMANCE_HINT": "THROUGHPUT"})
        self.streams = int(probe.get_property("NUM_STREAMS"))

    def compile(self, shape: tuple, hint: str):
        model = self.model.clone()
        model.reshape(list(shape))
        return self.core.compile_model(model, "CPU", {**self.config, "PERFORMANCE_HINT": hint})

    def latency(self, shape: tuple):
        """One request on all cores."""
        pool = _RequestPool(self.compile(shape, "LATENCY"))

        def run(x):
            request = pool.take()
            request.infer({0: x}, share_inputs=True)  # x lives until infer returns: no copy
            outputs = _copy_outputs(request)
            pool.give_back(request)
            return outputs

        return run

    def streams_of(self, shape: tuple, parts: int):
        """The batch cut into `parts` that run side by side on the streams."""
        sizes = [len(p) for p in np.array_split(np.empty(shape[0]), parts)]
        pools = {size: _RequestPool(self.compile((size,) + shape[1:], "THROUGHPUT"))
                 for size in sorted(set(sizes))}  # at most two part sizes

        def run(x):
            pieces = np.array_split(x, parts)  # views: they live until every wait returns
            requests = [pools[len(piece)].take() for piece in pieces]
            for request, piece in zip(requests, pieces):
                request.start_async({0: piece}, share_inputs=True)
            results = []
            for request in requests:
                request.wait()
                results.append(_copy_outputs(request))
            for request, piece in zip(requests, pieces):  # all idle now
                pools[len(piece)].give_back(request)
            return [np.concatenate([r[i] for r in results]) for i in range(len(results[0]))]

        return run


def _candidates(compiler: _Compiler, shape: tuple) -> dict:
    """The ways to run batches of `shape`: one request on all cores, and the
    batch split over the streams (one and two parts per stream)."""
    candidates = {"latency": compiler.latency(shape)}
    for per_stream in (1, _PARTS_PER_STREAM):
        parts = compiler.streams * per_stream
        if compiler.streams > 1 and shape[0] >= parts:
            candidates[f"streams x{per_stream}"] = compiler.streams_of(shape, parts)
    return candidates


def _fastest(candidates: dict, x: np.ndarray):
    """The candidate that runs `x` fastest.

    Which wins depends on the batch, the model and the machine (core count,
    what else runs), so it is measured on the first batch of each shape
    rather than fixed.
    """
    runs = list(candidates.values())
    if len(runs) == 1:
        return runs[0]
    times = [0.0] * len(runs)
    for run in runs:
        run(x)  # first call: memory, caches
    for _ in range(_TUNING_ROUNDS):
        for i, run in enumerate(runs):
            start = time.perf_counter()
            run(x)
            times[i] += time.perf_counter() - start
    return runs[int(np.argmin(times))]


class _Plans:
    """The tuned run of each batch shape, tuned once per shape.

    Running a known shape takes no lock. A new shape is tuned under a lock:
    threads that meet it together wait for the one plan (instead of each
    compiling and timing its own, against each other), and the OpenVINO
    model is cloned by one thread at a time.
    """

    def __init__(self, compiler: _Compiler):
        self._compiler = compiler
        self._plans: dict = {}  # batch shape -> the run that won
        self._lock = threading.Lock()

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        plan = self._plans.get(x.shape)
        if plan is None:
            with self._lock:
                plan = self._plans.get(x.shape)  # tuned while this thread waited
                if plan is None:
                    plan = _fastest(_candidates(self._compiler, x.shape), x)
                    if len(self._plans) >= _PLANS_KEPT:  # many batch shapes: keep memory bounded
                        self._plans.pop(next(iter(self._plans)))
                    self._plans[x.shape] = plan
        return plan(x)


def build(model, precision: str, calibration) -> Engine:
    import openvino as ov

    fused, function = float32_function(model)
    ov_model = ov.convert_model(function)
    if precision == "int8":
        ov_model = _quantize(ov_model, calibration)
    compiler = _Compiler(ov_model, precision)
    plans = _Plans(compiler)

    # OpenVINO's constants share memory with the TensorFlow variables they were
    # converted from (no copy): freeing the folded model would leave them
    # pointing at reused memory, so the engine keeps it.
    return Engine("openvino", precision, plans.run, {"streams": compiler.streams, "cores": os.cpu_count()},
                  keep=fused)
