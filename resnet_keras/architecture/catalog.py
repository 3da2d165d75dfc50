"""The registry as data: builders declared once, names, without Keras.

A model is a row of `SPECS` and one line in a public module:

    ResNet18 = define_builder("ResNet18", SPECS["resnet18"], "ResNet-18", _ABOUT)

`define_builder` makes the builder from the spec's facts (its signature,
defaults and docstring: `signatures.builder_signature`, `docs.builder_doc`)
and registers it. The six keras drop-ins keep keras' explicit `def` (their
signature is the contract) under `@register_model`, which holds that `def`
to the same `builder_signature`. The public modules' `__all__`, the
package's names, `get_model`, `model_info` and `resnet-keras list`/`info`
read `ENTRIES`. `ENTRIES` imports the public modules on first use, so that
their registrations have run; `list_models` and `specs.model_key` read only `SPECS`
(tests/test_declaration.py holds the two equal).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import importlib
import inspect
import re
import sys
from typing import Any, Callable, Iterator, Mapping

from . import docs
from .build import create_model
from .signatures import Builder, builder_signature
from .specs import SPECS, ResNetSpec
from ..errors import InvalidArgumentError

# The modules whose decorators register the zoo, in the order of its table.
ZOO_MODULES = ("resnet_small", "resnet", "resnet_v1_5", "resnet_v2", "cifar")


@dataclasses.dataclass(frozen=True)
class CatalogEntry:
    """One registered model.

    Attributes:
        spec: Its architecture.
        title: How the docs name it, e.g. "ResNet-50".
        function: The public builder. Its parameter and MAC counts are in
            `architecture.counts` (counts.json, measured from the graph).
    """

    spec: ResNetSpec
    title: str
    function: Callable[..., Any]

    @property
    def builder(self) -> str:
        """Name of the builder, `resnet_keras.<builder>`."""
        return self.function.__name__

    @property
    def module(self) -> str:
        """The public module that defines it, `resnet_keras.<module>`."""
        return self.function.__module__.removeprefix("resnet_keras.")


_REGISTERED: dict[str, CatalogEntry] = {}


def _check_new(builder: str, spec: ResNetSpec) -> None:
    key = spec.name
    if SPECS.get(key) is not spec:
        raise RuntimeError(f"Builder {builder} registers a spec that is not SPECS[{key!r}].")
    if key in _REGISTERED:
        raise RuntimeError(
            f"Model {key!r} is registered twice ({_REGISTERED[key].builder} and "
            f"{builder}); registry keys must be unique."
        )


def _register(fn, spec: ResNetSpec, title: str, about: str, keras_name: bool) -> None:
    fn.__doc__ = docs.builder_doc(fn, spec, title, about, keras_name=keras_name)
    _REGISTERED[spec.name] = CatalogEntry(spec, title, fn)


def register_model(spec: ResNetSpec, title: str, about: str, *, keras_name: bool = False):
    """Register a builder written out with `def` as model `spec.name`, and write its docstring.

    For the keras drop-ins, whose explicit signature is the contract; it
    must be `builder_signature(spec)`. Any other model: `define_builder`.

    Args:
        spec: Its row of `SPECS`.
        title: How the docs name it, e.g. "ResNet-50".
        about: One paragraph on its blocks and weights, for the docstring.
        keras_name: The builder is a drop-in for `keras.applications.<fn>`.
    """

    def register(fn):
        key = spec.name
        _check_new(fn.__name__, spec)
        written = inspect.signature(fn)
        default_name = written.parameters["name"].default
        if default_name != key:
            raise RuntimeError(
                f"{fn.__name__}'s default `name` must be its registry key {key!r}. "
                f"Received: name={default_name!r}"
            )
        if written != builder_signature(spec):
            raise RuntimeError(
                f"{fn.__name__}'s signature must be {builder_signature(spec)} (from its spec "
                f"and the shipped manifest). Received: {written}"
            )
        _register(fn, spec, title, about, keras_name)
        return fn

    return register


def define_builder(
    name: str, spec: ResNetSpec, title: str, about: str = "", *, module: str | None = None
) -> Builder:
    """The builder of `spec`, made from its facts and registered as model `spec.name`.

    Its signature is `builder_signature(spec)` (what `inspect.signature`,
    `help()` and IDEs that introspect show); a call binds its arguments to
    it, as Python would for a `def`, and hands them to `create_model`.

    Args:
        name: The builder's name, e.g. "ResNet18" (assign it to that name).
        spec: Its row of `SPECS`.
        title: How the docs name it, e.g. "ResNet-18".
        about: One paragraph on its blocks and weights, for the docstring.
        module: The module it belongs to; default: the caller's (as
            `collections.namedtuple` does), so that `help()` and pickle find it.
    """
    _check_new(name, spec)
    signature = builder_signature(spec)

    def builder(*args, **kwargs):
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as error:  # Python's own message, as a `def` gives it
            raise TypeError(f"{name}() {error}") from None
        bound.apply_defaults()
        return create_model(spec, **bound.arguments)

    builder.__name__ = builder.__qualname__ = name
    builder.__module__ = module or sys._getframe(1).f_globals["__name__"]
    builder.__signature__ = signature
    _register(builder, spec, title, about, keras_name=False)
    return builder


class _Entries(Mapping[str, CatalogEntry]):
    """Registered models by key; reading imports the public modules first."""

    def _loaded(self) -> dict[str, CatalogEntry]:
        for module in ZOO_MODULES:
            importlib.import_module(f"resnet_keras.{module}")
        return _REGISTERED

    def __getitem__(self, key: str) -> CatalogEntry:
        return self._loaded()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._loaded(), key=natural_key))

    def __len__(self) -> int:
        return len(self._loaded())


ENTRIES: Mapping[str, CatalogEntry] = _Entries()


def _defined_in(module: str) -> list[CatalogEntry]:
    # Read while `module` is being imported: its decorators have run, and
    # going through ENTRIES would import the other public modules from it.
    return [e for e in _REGISTERED.values() if e.function.__module__ == module]


def builder_names(module: str) -> list[str]:
    """Names of the builders a public module (`__name__`) registered, in the order of their defs."""
    return [e.builder for e in _defined_in(module)]


def preprocessing_of(module: str) -> str:
    """The one `preprocess_input` mode of a public module's models, from their specs."""
    modes = {e.spec.preprocessing for e in _defined_in(module)}
    if len(modes) != 1 or None in modes:
        raise RuntimeError(f"The models of {module} must share one preprocessing mode: {modes}")
    return modes.pop()


# Text for each preprocess_input mode (None: models without pretrained weights).
PREPROCESSING_TEXT = {
    "caffe": "RGB->BGR, minus the ImageNet channel means (preprocess_input mode 'caffe')",
    "tf": "pixels / 127.5 - 1 (preprocess_input mode 'tf')",
    "torch": "pixels / 255, then ImageNet mean/std (preprocess_input mode 'torch')",
    None: "pixels / 255 (no pretrained weights define a preprocessing)",
}


def natural_key(name: str):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def list_models(pattern: str = "*", pretrained: bool | None = None) -> list[str]:
    """Registered model names that match a pattern, in natural order.

    Args:
        pattern: An `fnmatch` pattern, case-insensitive, e.g. `"resnet*v2"`.
        pretrained: None for all models; True for only those with weights in
            the active manifest (shipped, plus `RESNET_KERAS_MANIFEST`);
            False for only those without.

    Returns:
        Names such as `["resnet18", "resnet34", "resnet50", ...]`.

    Example:
        >>> from resnet_keras import list_models
        >>> list_models("plain*")
        ['plain20', 'plain32', 'plain44', 'plain56', 'plain110']
    """
    if not isinstance(pattern, str):
        raise InvalidArgumentError(
            f"`pattern` must be an fnmatch string such as 'resnet*'. Received: pattern={pattern!r}"
        )
    if pretrained not in (None, True, False):
        raise InvalidArgumentError(
            f"`pretrained` must be None, True or False. Received: pretrained={pretrained!r}"
        )
    names = fnmatch.filter(SPECS, pattern.lower())
    if pretrained is not None:
        from .build import active_manifest  # shipped + RESNET_KERAS_MANIFEST

        manifest = active_manifest()
        names = [n for n in names if bool(manifest.tags(n)) is pretrained]
    return sorted(names, key=natural_key)
