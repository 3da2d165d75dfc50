"""resnet_keras: keras.applications-compatible ResNets, and more.

Swap `from keras.applications import ResNet50` for
`from resnet_keras import ResNet50`; layer names, weight order and outputs
are the same, and the official Keras weight files load as they are.
"""

import importlib

# Imported on first access (PEP 562), so that `import resnet_keras.cli` or
# `resnet_keras.list_models` do not load Keras and TensorFlow: name -> module.
_LAZY = {
    **dict.fromkeys(("ResNet50", "ResNet101", "ResNet152"), ".resnet"),
    **dict.fromkeys(("ResNet50V2", "ResNet101V2", "ResNet152V2"), ".resnet_v2"),
    **dict.fromkeys(("ResNet18", "ResNet34"), ".resnet_small"),
    **dict.fromkeys(
        (
            "PlainNet20", "PlainNet32", "PlainNet44", "PlainNet56", "PlainNet110",
            "ResNet20", "ResNet32", "ResNet44", "ResNet56", "ResNet110", "ResNet1202",
        ),
        ".cifar",
    ),
    "ResNetKerasError": ".errors",
    "decode_predictions": "._imagenet",
    "load_weights": ".weights.h5",
    **dict.fromkeys(("FeatureInfo", "feature_info", "feature_model"), ".tools.features"),
    **dict.fromkeys(("ModelInfo", "get_model", "model_info"), ".architecture.registry"),
    "list_models": ".architecture.catalog",
    "optimize_for_inference": ".tools.inference",
    **dict.fromkeys(("ExportReport", "export_for_inference"), ".tools.export"),
}
_SUBMODULES = ("cifar", "errors", "resnet", "resnet50", "resnet_small", "resnet_v2")


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value  # later look-ups skip __getattr__
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__version__ = "0.1.0"

__all__ = [
    "ResNet50",
    "ResNet101",
    "ResNet152",
    "ResNet50V2",
    "ResNet101V2",
    "ResNet152V2",
    "ResNetKerasError",
    "decode_predictions",
    "errors",
    "load_weights",
    "resnet",
    "resnet50",
    "resnet_v2",
    # beyond keras.applications
    "ResNet18",
    "ResNet34",
    "ResNet20",
    "ResNet32",
    "ResNet44",
    "ResNet56",
    "ResNet110",
    "ResNet1202",
    "PlainNet20",
    "PlainNet32",
    "PlainNet44",
    "PlainNet56",
    "PlainNet110",
    "FeatureInfo",
    "ModelInfo",
    "cifar",
    "feature_info",
    "feature_model",
    "get_model",
    "list_models",
    "model_info",
    "resnet_small",
    "optimize_for_inference",
    "export_for_inference",
    "ExportReport",
]
