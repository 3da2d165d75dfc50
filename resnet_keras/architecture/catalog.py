"""The registry as data: names, builders and counts, without importing Keras.

`list_models`, `resnet-keras list` and `resnet-keras info` read only this
module, `_specs` and the manifest, so they answer in a fraction of a second.
`_registry` (which imports the builders, and so Keras) checks at import that
every builder is in `ENTRIES` under its own name and module, and
`tests/test_cli.py` checks the counts against the built graphs, so this
table cannot drift from the code it describes.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import re
from typing import Any

from .specs import SPECS
from ..errors import InvalidArgumentError


@dataclasses.dataclass(frozen=True)
class CatalogEntry:
    """One registered model, as `resnet-keras info` shows it.

    Attributes:
        builder: Name of the public builder, `resnet_keras.<builder>`.
        module: The public module that defines it, `resnet_keras.<module>`.
        params: `count_params()` of the model with its default head.
        trainable_params: Its trainable weights only.
        macs: Multiply-accumulates per image at the default input size
            (as `_registry.count_macs` counts them).
    """

    builder: str
    module: str
    params: int
    trainable_params: int
    macs: int


ENTRIES: dict[str, CatalogEntry] = {
    "resnet18": CatalogEntry("ResNet18", "resnet_small", 11699112, 11689512, 1814073344),
    "resnet34": CatalogEntry("ResNet34", "resnet_small", 21814696, 21797672, 3663761408),
    "resnet50": CatalogEntry("ResNet50", "resnet", 25636712, 25583592, 3857973248),
    "resnet101": CatalogEntry("ResNet101", "resnet", 44707176, 44601832, 7570194432),
    "resnet152": CatalogEntry("ResNet152", "resnet", 60419944, 60268520, 11282415616),
    "resnet50v2": CatalogEntry("ResNet50V2", "resnet_v2", 25613800, 25568360, 3482255360),
    "resnet101v2": CatalogEntry("ResNet101V2", "resnet_v2", 44675560, 44577896, 7194476544),
    "resnet152v2": CatalogEntry("ResNet152V2", "resnet_v2", 60380648, 60236904, 10906697728),
    "resnet20": CatalogEntry("ResNet20", "cifar", 271098, 269722, 40551040),
    "resnet32": CatalogEntry("ResNet32", "cifar", 466426, 464154, 68862592),
    "resnet44": CatalogEntry("ResNet44", "cifar", 661754, 658586, 97174144),
    "resnet56": CatalogEntry("ResNet56", "cifar", 857082, 853018, 125485696),
    "resnet110": CatalogEntry("ResNet110", "cifar", 1736058, 1727962, 252887680),
    "resnet1202": CatalogEntry("ResNet1202", "cifar", 19510906, 19421274, 2829238912),
    "plain20": CatalogEntry("PlainNet20", "cifar", 271098, 269722, 40551040),
    "plain32": CatalogEntry("PlainNet32", "cifar", 466426, 464154, 68862592),
    "plain44": CatalogEntry("PlainNet44", "cifar", 661754, 658586, 97174144),
    "plain56": CatalogEntry("PlainNet56", "cifar", 857082, 853018, 125485696),
    "plain110": CatalogEntry("PlainNet110", "cifar", 1736058, 1727962, 252887680),
}

# Text for each preprocess_input mode (None: models without pretrained weights).
PREPROCESSING_TEXT = {
    "caffe": "RGB->BGR, minus the ImageNet channel means (preprocess_input mode 'caffe')",
    "tf": "pixels / 127.5 - 1 (preprocess_input mode 'tf')",
    "torch": "pixels / 255, then ImageNet mean/std (preprocess_input mode 'torch')",
    None: "pixels / 255 (no pretrained weights define a preprocessing)",
}


def natural_key(name: str):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def unknown_model(name: Any) -> InvalidArgumentError:
    hints = difflib.get_close_matches(str(name).lower(), list(SPECS), n=3)
    suggestion = f" Did you mean {', '.join(map(repr, hints))}?" if hints else ""
    return InvalidArgumentError(
        "`name` must be a registered model (see resnet_keras.list_models())."
        f"{suggestion} Received: name={name!r}"
    )


def resolve(name: Any) -> str:
    """The registry key of `name` (case-insensitive); unknown names raise with close matches."""
    if not isinstance(name, str) or name.lower() not in SPECS:
        raise unknown_model(name)
    return name.lower()


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
        from ..weights.resolve import active_manifest  # shipped + RESNET_KERAS_MANIFEST

        manifest = active_manifest()
        names = [n for n in names if bool(manifest.tags(n)) is pretrained]
    return sorted(names, key=natural_key)
