"""Real labelled images and pretrained weights for the fine-tuning tests.

scikit-learn's digits (1,797 real 8x8 scans) upscaled to RGB, as arrays or
written as a folder of class sub-folders (PNG); and a "pretrained" ResNet20
backbone published as a user would publish weights: an HDF5 file and a
manifest entry (file:// URL, sha256, input size, preprocessing).

`digits_run` (conftest imports it, so every test may take it) is the fast
tier's one fine-tuning run, shared by the API's and the command line's tests.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import NamedTuple

import pytest

import numpy as np

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
    from conftest import write_manifest  # here: conftest imports this module
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


SIZE = 16  # the fine-tuning tests' input size (the weights' record says it)
CLASSES = ["zero", "one", "two"]


def finetune_args(folder: Path, out: Path, manifest: Path, *extra) -> list[str]:
    """`resnet-keras finetune` of `folder` into `out`: the head starts as the linear probe, then
    one epoch with the backbone unfrozen (kept: the weights it left, which the tests compare
    with the pretrained ones), quiet. The head-only phase: the slow tier (test_finetune.py)."""
    return ["finetune", str(folder), "--model", "resnet20", "--weights", TAG, "--manifest", str(manifest),
            "--out", str(out), "--head-epochs", "0", "--epochs", "1", "--batch-size", "16", "--keep", "last",
            "--quiet", *extra]


class DigitsRun(NamedTuple):
    run: Path  # the run dir
    folder: Path  # the data it was trained on
    manifest: Path  # the pretrained weights' manifest
    pretrained: dict  # variable path -> the backbone's pretrained value


def digits_folder(root: Path) -> Path:
    """3 classes of 16 digit scans each (PNG), plus the files users have: a grey PNG and a
    CMYK JPEG (converted, trained on), a 0-byte file and a non-image (counted skips), a
    text file (ignored)."""
    from PIL import Image

    x, y = digits(classes=range(3), per_class=16, size=SIZE)
    write_folder(root, x, y, CLASSES)
    Image.fromarray(x[0][..., 0], "L").save(root / "zero" / "grey.png")
    Image.fromarray(x[20]).convert("CMYK").save(root / "one" / "cmyk.jpg")
    (root / "zero" / "empty.png").write_bytes(b"")
    (root / "one" / "broken.jpg").write_bytes(b"<html>not a jpeg</html>")
    (root / "two" / "notes.txt").write_text("not an image")
    return root


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory) -> DigitsRun:
    """The fast tier's one training run (8 s): `resnet-keras finetune` on `digits_folder`
    from a random "pretrained" ResNet20. conftest groups the tests that take it
    (SHARED_ON_ONE_WORKER), so that one worker trains it once."""
    from resnet_keras import cli

    _claim_for_this_worker(tmp_path_factory, "digits_run")
    folder = digits_folder(tmp_path_factory.mktemp("data") / "digits")
    backbone = random_backbone(SIZE, seed=2)
    manifest = publish_weights(backbone, tmp_path_factory.mktemp("weights"), input_size=SIZE)
    run = tmp_path_factory.mktemp("runs") / "run"
    with own_cache(tmp_path_factory.mktemp("cache")):
        assert cli.main(finetune_args(folder, run, manifest)) == 0
    return DigitsRun(run, folder, manifest, {v.path: v.numpy() for v in backbone.variables})


def _claim_for_this_worker(tmp_path_factory, name: str) -> None:
    """Fails when a second pytest-xdist worker of this run makes the fixture `name`: its tests
    lost their group (a fixture missing from conftest.SHARED_ON_ONE_WORKER, or --dist loadgroup not working)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is None:  # one process
        return
    claim = tmp_path_factory.getbasetemp().parent / f"{name}.worker"  # shared by this run's workers
    try:
        with open(claim, "x") as f:
            f.write(worker)
    except FileExistsError:
        pytest.fail(f"{name} was made on {claim.read_text()} already and again on {worker}: the tests that "
                    f"take it must run in one xdist group (conftest.SHARED_ON_ONE_WORKER, --dist loadgroup)")
