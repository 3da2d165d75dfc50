"""The runtimes a Predictor can run on, and which one `runtime="auto"` picks.

Each runtime is one `Runtime` record: the Python modules it needs and the
pip extra that installs them. `engines/{name}.py` builds its engine; the
precisions it runs are its row of `precision.BY_RUNTIME`. `FASTEST_FIRST`
orders the runtimes as measured by `benchmarks/bench.py` on an AVX-512 CPU
(docs/performance.md); "auto" takes the first one installed that runs the
precision (`AUTO_ORDER`).

Plain data: the command line reads it without NumPy or Keras.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
from types import MappingProxyType

from .precision import BY_RUNTIME, PREDICTOR, check
from ..errors import InvalidArgumentError, MissingDependencyError


@dataclasses.dataclass(frozen=True)
class Runtime:
    """One inference runtime.

    Attributes:
        name: The `runtime=` value.
        modules: Python modules it imports.
        extra: The pip extra that installs them: `resnet-keras[{extra}]`.
    """

    name: str
    modules: tuple[str, ...]
    extra: str

    @property
    def precisions(self) -> tuple[str, ...]:
        """The precisions it runs (`precision.BY_RUNTIME`)."""
        return BY_RUNTIME[self.name]

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
        module = importlib.import_module(f".engines.{self.name}", __package__)  # its engine
        return module.build(model, precision, calibration)


RUNTIMES = MappingProxyType({
    r.name: r
    for r in (
        Runtime("openvino", ("openvino", "nncf"), "openvino"),
        Runtime("onnxruntime", ("onnxruntime", "tf2onnx"), "onnxruntime"),
        Runtime("tensorflow", ("tensorflow",), "tensorflow"),
    )
})

# Fastest first (benchmarks/bench.py, ResNet50 batch 16; docs/performance.md).
FASTEST_FIRST = ("openvino", "onnxruntime", "tensorflow")
# Per precision, the runtimes that run it, fastest first.
AUTO_ORDER = MappingProxyType({
    p: tuple(name for name in FASTEST_FIRST if p in BY_RUNTIME[name])
    for p in PREDICTOR
})


def choose(runtime, precision: str) -> Runtime:
    """The runtime record for `runtime=` and `precision=`, "auto" resolved.

    Checks the precision too: every Predictor argument error is raised here
    or in the calibration check, before any conversion.
    """
    precision = check(precision, PREDICTOR)
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
    if not isinstance(runtime, str) or runtime not in RUNTIMES:
        raise InvalidArgumentError(
            f"`runtime` must be 'auto' or one of {tuple(RUNTIMES)}. Received: runtime={runtime!r}"
        )
    chosen = RUNTIMES[runtime]
    if precision not in chosen.precisions:
        able = list(AUTO_ORDER[precision])
        raise InvalidArgumentError(
            f"runtime={runtime!r} runs the precisions {chosen.precisions}. Received: "
            f"precision={precision!r}. Use runtime='auto' or one of {able} for {precision}."
        )
    return chosen
