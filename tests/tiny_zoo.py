"""A tiny ImageNet-headed model, registered for one test, its weights published as a user would.

`tinynet`: basic blocks 1-1-1-1, widths 4 to 32, 32x32 input, a 1000-class
head, torch preprocessing: small enough to build in a second, shaped like
the torchvision models (so a manifest entry may give it "imagenet" weights
with a `resize_size`). `publish` writes seeded weights (with and without
the top) and a user manifest entry whose URLs are file:// (a cold cache
fetches and verifies them).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import official_format
from conftest import write_manifest
from resnet_keras.architecture.specs import SPECS, ResNetSpec

TINY = ResNetSpec("tinynet", block="basic", depths=(1, 1, 1, 1), widths=(4, 8, 16, 32), stem_width=4,
                  default_size=32, preprocessing="torch")


@pytest.fixture
def tiny_zoo(monkeypatch):
    """`tinynet` in the registry for this test only."""
    monkeypatch.setitem(SPECS, TINY.name, TINY)
    return TINY


@dataclasses.dataclass(frozen=True)
class Published:
    manifest: Path
    files: dict  # "top"/"notop" -> the weights file


def publish(folder: Path, *, seed: int = 1, tag: str = "imagenet", mirror=None, **entry) -> Published:
    """Seeded tinynet weights (top and notop) and a manifest entry for them; `entry`: more fields.

    The manifest's URLs are file:// URLs, or served by `mirror` (an http_mirror.Mirror) if given.
    """
    from resnet_keras.architecture.build import build, resolve

    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for kind, include_top in (("top", True), ("notop", False)):
        model = build(resolve(TINY, None, include_top=include_top), input_shape=(32, 32, 3))
        official_format.randomize(model, seed=seed)
        files[kind] = official_format.write_keras2_weights(model, folder / f"tinynet_{kind}.h5")
    manifest = write_manifest(
        folder / "manifest.json", TINY.name,
        {kind: (path.name, [mirror.add(f"/{path.name}", path.read_bytes()) if mirror else path.as_uri()],
                "md5:" + official_format.md5(path)) for kind, path in files.items()},
        tag=tag, input_size=32, preprocessing="torch", **entry)
    return Published(manifest, files)


def tiny_model(weights: Path, *, include_top: bool, pooling: str | None = None):
    """tinynet with the weights of a published file, built as the package builds it."""
    from resnet_keras.architecture.build import build, resolve

    return build(resolve(TINY, str(weights), include_top=include_top), pooling=pooling, input_shape=(32, 32, 3))
