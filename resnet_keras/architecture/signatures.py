"""What a builder's signature is, from its spec and the shipped manifest.

keras.applications' eight parameters, with the model's defaults, then
keyword-only options. The generated builders get exactly this signature
(`catalog.define_builder`); the keras drop-ins' explicit `def`s are held
to it (`catalog.register_model`).
"""

from __future__ import annotations

import inspect
import os
from typing import TYPE_CHECKING, Any, Callable, Protocol

from .specs import ResNetSpec

if TYPE_CHECKING:
    import keras


def weights_extra(entry) -> str | None:
    """The pip extra a manifest entry's files need (the formats table's, by suffix), None for none."""
    from ..weights.formats.registry import FORMATS

    suffixes = {"." + f.file_name.lower().rsplit(".", 1)[-1] for f in entry.files.values()}
    extras = {fmt.extra for fmt in FORMATS.values() if suffixes & set(fmt.suffixes)}
    return next(iter(sorted(e for e in extras if e)), None)


def default_weights(spec: ResNetSpec) -> str | None:
    """`weights`' default: "imagenet" where the shipped manifest has default
    weights for the model that need no extra (Keras HDF5), else None.

    keras' builders default to their pretrained weights; torchvision's and
    timm's (whose `.pth` files need torch, an optional extra) to none, so a
    plain `ResNet18()` needs no extra and `weights="imagenet"` opts in.
    """
    from ..weights.manifest import shipped_manifest
    from ..weights.manifest.records import IMAGENET_TAG

    manifest = shipped_manifest()
    if not manifest.tags(spec.name):
        return None
    return IMAGENET_TAG if weights_extra(manifest.entry(spec.name, IMAGENET_TAG)) is None else None


def offers_shortcut(spec: ResNetSpec) -> bool:
    """`shortcut=` is a choice where option A is the default: the CIFAR
    ResNets (option B is the alternative the paper tries). ResNet-18/34 are
    fixed to B by torchvision's weights; plain nets have no shortcut."""
    return spec.block == "basic" and spec.shortcut == "A"


def offers_adapt_input_channels(spec: ResNetSpec) -> bool:
    """ImageNet-stem models, the ones pretrained weights exist for (the CIFAR nets ship none)."""
    return spec.stem == "imagenet"


class Builder(Protocol):
    """A generated builder as static type checkers and IDEs that read types
    see it: the parameters every builder has (`help()` and `inspect.signature`
    show each one's own, with its defaults and family options)."""

    __name__: str

    def __call__(
        self,
        include_top: bool = True,
        weights: str | os.PathLike | None = ...,
        input_tensor: Any = None,
        input_shape: tuple | list | None = None,
        pooling: str | None = None,
        classes: int = ...,
        classifier_activation: str | Callable | None = "softmax",
        name: str = ...,
        *,
        manifest: Any = None,
        offline: bool | None = None,
        **options: Any,
    ) -> keras.Model: ...


def builder_signature(spec: ResNetSpec) -> inspect.Signature:
    """keras' eight parameters with this model's defaults, then keyword-only extras."""
    positional = dict(  # keras.applications' parameters, in its order
        include_top=True, weights=default_weights(spec), input_tensor=None, input_shape=None,
        pooling=None, classes=spec.classes, classifier_activation="softmax", name=spec.name,
    )
    keyword = dict(shortcut=spec.shortcut) if offers_shortcut(spec) else {}
    keyword.update(manifest=None, offline=None)
    if offers_adapt_input_channels(spec):
        keyword["adapt_input_channels"] = False
    P = inspect.Parameter
    return inspect.Signature(
        [P(n, P.POSITIONAL_OR_KEYWORD, default=d) for n, d in positional.items()]
        + [P(n, P.KEYWORD_ONLY, default=d) for n, d in keyword.items()]
    )
