"""The runtimes a Predictor can run on, and which one `runtime="auto"` picks.

Each runtime is one `Runtime` record: the Python modules it needs, the pip
extra that installs them, the precisions it runs, and the module that builds
its engine. `AUTO_ORDER` lists, per precision, the runtimes fastest first as
measured by `benchmarks/bench.py` on an AVX-512 CPU (docs/performance.md);
"auto" takes the first one installed.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
from types import MappingProxyType

from ..errors import InvalidArgumentError, MissingDependencyError

PRECISIONS = ("float32", "bfloat16", "int8")


@dataclasses.dataclass(frozen=True)
class Runtime:
    """One inference runtime.

    Attributes:
        name: The `runtime=` value.
        modules: Python modules it imports.
        extra: The pip extra that installs them: `resnet-keras[{extra}]`.
        precisions: The precisions it runs.
        engine: The module (in this package) whose `build` makes its engine.
    """

    name: str
    modules: tuple[str, ...]
    extra: str
    precisions: tuple[str, ...]
    engine: str

    def missing_modules(self) -> list[str]:
        """The modules this runtime needs that are not installed."""
        return [m for m in self.modules if importlib.util.find_spec(m) is None]

    def build(self, model, precision: str, calibration):
        missing = self.missing_modules()
        if missing:
            raise MissingDependencyError(
                f"runtime={self.name!r} needs the packages {missing}, which are not installed. "
                f'Install them with: pip install "resnet-keras[{self.extra}]"'
            )
        module = importlib.import_module(f".{self.engine}", __package__)
        return module.build(model, precision, calibration)


RUNTIMES = MappingProxyType({
    r.name: r
    for r in (
        Runtime("tensorflow", ("tensorflow",), "tensorflow", ("float32", "bfloat16"), "engine_tensorflow"),
        Runtime("openvino", ("openvino", "nncf"), "openvino", PRECISIONS, "engine_openvino"),
        # onnxruntime has no bfloat16 convolution on CPUs.
        Runtime("onnxruntime", ("onnxruntime", "tf2onnx"), "onnxruntime", ("float32", "int8"),
                "engine_onnxruntime"),
    )
})

# Fastest first (benchmarks/bench.py, ResNet50 batch 16; docs/performance.md).
AUTO_ORDER = MappingProxyType({
    "float32": ("openvino", "onnxruntime", "tensorflow"),
    "bfloat16": ("openvino", "tensorflow"),
    "int8": ("openvino", "onnxruntime"),
})


def check_precision(precision) -> str:
    if precision not in PRECISIONS:
        raise InvalidArgumentError(
            f"`precision` must be one of {PRECISIONS}. Received: precision={precision!r}"
        )
    return precision


def choose(runtime, precision: str) -> Runtime:
    """The runtime record for `runtime=` and `precision=`, "auto" resolved."""
    if runtime == "auto":
        order = [RUNTIMES[name] for name in AUTO_ORDER[precision]]
        for candidate in order:
            if not candidate.missing_modules():
                return candidate
        extras = " or ".join(f'"resnet-keras[{r.extra}]"' for r in order)
        raise MissingDependencyError(
            f"precision={precision!r} needs one of the runtimes {[r.name for r in order]}, and "
            f"none is installed. Install one with: pip install {extras}"
        )
    if runtime not in RUNTIMES:
        raise InvalidArgumentError(
            f"`runtime` must be 'auto' or one of {tuple(RUNTIMES)}. Received: runtime={runtime!r}"
        )
    chosen = RUNTIMES[runtime]
    if precision not in chosen.precisions:
        able = [r for r in AUTO_ORDER[precision]]
        raise InvalidArgumentError(
            f"runtime={runtime!r} runs the precisions {chosen.precisions}. Received: "
            f"precision={precision!r}. Use runtime='auto' or one of {able} for {precision}."
        )
    return chosen
