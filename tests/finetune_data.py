"""Real labelled images and pretrained weights for the fine-tuning tests.

scikit-learn's digits (1,797 real 8x8 scans) upscaled to RGB, as arrays or
written as a folder of class sub-folders (PNG); and a "pretrained" ResNet20
backbone published as a user would publish weights: an HDF5 file and a
manifest entry (file:// URL, sha256, input size, preprocessing).
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

import pytest

import numpy as np

from conftest import write_manifest
from optional import require

TAG = "digits_test"


def digits(classes=range(10), per_class: int | None = None, size: int = 16, seed: int = 0,
           skip_per_class: int = 0):
    """(pixels uint8 (n, size, size, 3), labels 0..len(classes)-1): digits of `classes`, upscaled.

    Per class, images are taken in a seeded order: `skip_per_class` are
    left out first, then `per_class` (all when None).
    """
    data = require("sklearn.datasets").load_digits()
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for label, digit in enumerate(classes):
        members = rng.permutation(np.flatnonzero(data.target == digit))[skip_per_class:]
        members = members if per_class is None else members[:per_class]
        images.append(data.images[members])
        labels += [label] * len(members)
    scans = np.concatenate(images) / 16.0 * 255.0
    factor = -(-size // 8)
    big = np.kron(scans, np.ones((factor, factor)))[:, :size, :size]
    return np.repeat(np.round(big)[..., None], 3, axis=-1).astype(np.uint8), np.asarray(labels)


def write_folder(root: Path, pixels: np.ndarray, labels: np.ndarray, class_names) -> Path:
    """One sub-folder per class of PNG files, as a user keeps labelled images."""
    from PIL import Image

    for name in class_names:
        (root / name).mkdir(parents=True, exist_ok=True)
    for i, (image, label) in enumerate(zip(pixels, labels)):
        Image.fromarray(image, "RGB").save(root / class_names[label] / f"img{i:04d}.png")
    return root


def publish_weights(model, folder: Path, *, input_size: int, preprocessing: str = "tf",
                    tag: str = TAG, **entry) -> Path:
    """`model`'s backbone (include_top=False) as a weights file with a manifest entry (more fields in
    `entry`, e.g. resize_size); the manifest path."""
    from resnet_keras.weights.formats.hdf5_write import write_keras2_layout

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"resnet20_{tag}_notop.h5"
    write_keras2_layout(model, path)
    digest = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    return write_manifest(folder / "manifest.json", "resnet20", {"notop": (path.name, [path.as_uri()], digest)},
                          tag=tag, input_size=input_size, preprocessing=preprocessing,
                          source="resnet20 trained on digits (tests)", **entry)


def random_backbone(input_size: int, seed: int = 0):
    """A ResNet20 without top whose every weight and BatchNorm statistic is random (seeded)."""
    import official_format
    import resnet_keras

    model = resnet_keras.get_model("resnet20", include_top=False, weights=None,
                                   input_shape=(input_size, input_size, 3))
    official_format.randomize(model, seed=seed)
    return model


@contextlib.contextmanager
def own_cache(folder: Path):
    """A weights cache of its own for module-scoped fixtures, which run before the
    per-test `isolated_env` of conftest and would otherwise fetch into the user's cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RESNET_KERAS_HOME", str(folder))
        yield
