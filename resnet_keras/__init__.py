"""resnet_keras: keras.applications-compatible ResNets, and more.

Swap `from keras.applications import ResNet50` for
`from resnet_keras import ResNet50`; layer names, weight order and outputs
are the same, and the official Keras weight files load as they are.
"""

import importlib

# Imported on first access (PEP 562), so that `import resnet_keras.cli` or
# `resnet_keras.list_models` do not load Keras and TensorFlow: name -> module.
# The builders are not listed here: `architecture.catalog` knows them from
# their registrations (`define_builder`, `@register_model`).
_LAZY = {
    "ResNetKerasError": ".errors",
    "decode_predictions": "._imagenet",
    "load_weights": ".weights.formats.hdf5",
    **dict.fromkeys(("FeatureInfo", "feature_info", "feature_model"), ".architecture.features"),
    **dict.fromkeys(("ModelInfo", "get_model", "model_info"), ".architecture.registry"),
    "list_models": ".architecture.catalog",
    "optimize_for_inference": ".inference.optimize",
    **dict.fromkeys(("ExportReport", "export_for_inference"), ".inference.export"),
    "ParityReport": ".inference.precision",
    "Predictor": ".inference.predictor",
    **dict.fromkeys(("ConvertedWeights", "convert_checkpoint"), ".architecture.convert"),
    **dict.fromkeys(("grad_cam", "overlay", "save_overlay"), ".explain"),
    **dict.fromkeys(("FineTuned", "fine_tune", "load_run"), ".finetune"),
}
_SUBMODULES = ("cifar", "errors", "finetune", "resnet", "resnet50", "resnet_small", "resnet_v1_5", "resnet_v2")


def _builders() -> dict:
    from .architecture.catalog import ENTRIES

    return {entry.builder: entry.function for entry in ENTRIES.values()}


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name == "__all__":
        return [*_builders(), *_LAZY, *_SUBMODULES]
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    elif name[:1].isupper() and name in (builders := _builders()):  # a builder's kind of name
        value = builders[name]
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__getattr__("__all__")))


__version__ = "0.1.0"
