"""Explanations: Grad-CAM heatmaps and their overlays on the images.

`grad_cam(model, images)` says where in each image the evidence for a class
is; `overlay` draws it onto the image, `save_overlay` writes that as a PNG or
JPEG file and `encode_overlay` returns its bytes (for an HTML report);
`OverlayWriter` writes them per image and class to a folder (`classify
--explain`). See docs/explain.md.
"""

import importlib

# Imported on first access, so that checking a folder does not load Keras.
_LAZY = {
    "grad_cam": ".gradcam",
    **dict.fromkeys(("overlay", "save_overlay", "encode_overlay"), ".overlays"),
    **dict.fromkeys(("OverlayWriter", "check_folder"), ".folder"),
}
__all__ = list(_LAZY)


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name], __name__), name)
