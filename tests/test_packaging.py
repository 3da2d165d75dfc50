"""The installed package (not the checkout) carries the manifest, the recorded counts and data."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
# A wheel built and installed by pip in subprocesses (3 s): the slow tier.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q", "-w", str(out)],
        check=True,
        cwd=out,
    )
    (path,) = out.glob("resnet_keras-*.whl")
    return path


def test_wheel_ships_manifest_and_class_index(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert archive.read("resnet_keras/weights_manifest.json") == (ROOT / "weights_manifest.json").read_bytes()
        assert "resnet_keras/data/imagenet_class_index.json" in names
        counts = "resnet_keras/architecture/counts.json"
        assert archive.read(counts) == (ROOT / counts).read_bytes()
    assert not any(n.startswith("tests/") for n in names)


def test_non_editable_install_resolves_manifest(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
    )
    script = (
        "import resnet_keras, resnet_keras.weights.manifest as m;"
        "print(resnet_keras.__file__);"
        "e = m.shipped_manifest().entry('resnet50', 'imagenet');"
        "print(e.file(True).file_name, e.file(True).hash);"
        "print(resnet_keras.model_info('resnet20').trainable_params)"  # counts.json, installed
    )
    env = dict(os.environ, PYTHONPATH=str(target), TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, check=True
    )
    location, entry, params = result.stdout.strip().splitlines()[-3:]
    assert Path(location).is_relative_to(target)  # not the checkout
    assert entry == "resnet50_weights_tf_dim_ordering_tf_kernels.h5 md5:2cb95161c43110f7111970584f804107"
    assert params == "269722"  # FACTS: the paper's ResNet-20
