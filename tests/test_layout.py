"""The layout's budget (issue 20): the modules a call crosses, and which way imports point.

`ResNet50(weights="imagenet")` with a cold cache, through a user manifest
whose URL is a file:// mirror, to loaded weights: the modules it runs code
in (tests/module_trace.py) are counted. Measured before the renovation: 21;
the weights side (resolve, manifest, download and cache, formats) is held
here to the modules listed below.
"""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

import pytest

import official_format
import resnet_keras
from conftest import write_manifest
from module_trace import modules_entered
from resnet_keras.weights.formats import hdf5  # noqa: F401 (imported now: the trace counts calls, not imports)

PACKAGE = Path(resnet_keras.__file__).parent
# The weights path, from `weights=` to loaded weights, in the order first entered.
WEIGHTS_PATH = [
    "resnet_keras.architecture.resolve",  # what weights= means
    "resnet_keras.weights.download.cache",  # offline= checked with the other arguments
    "resnet_keras.weights.manifest.parse",
    "resnet_keras.weights.manifest.urls",
    "resnet_keras.weights.manifest.records",
    "resnet_keras.weights.download.housekeeping",
    "resnet_keras.weights.download.download",
    "resnet_keras.weights.formats.registry",
    "resnet_keras.weights.formats.hdf5",
    "resnet_keras.weights.formats.hdf5_bounds",
    "resnet_keras.weights.formats.values",
]
# The whole call, measured (tests/module_trace.py): the weights path above plus
# the builder, build, validation, data_format and the graph (blocks).
RESNET50_BUDGET = 16


def _weights_path(entered: list[str]) -> list[str]:
    return [m for m in entered if m.startswith("resnet_keras.weights") or m.endswith(".resolve")]


def _cold_call(tmp_path, model_key, file, builder, **kwargs):
    """modules_entered of builder(weights="imagenet", **kwargs), its file served from file://."""
    write_manifest(
        tmp_path / "m.json", model_key,
        {"top" if kwargs.get("include_top", True) else "notop": (file.name, [file.as_uri()], f"md5:{official_format.md5(file)}")},
    )
    return modules_entered(lambda: builder(weights="imagenet", manifest=tmp_path / "m.json", **kwargs))


def test_the_weights_path_crosses_these_modules(tmp_path, isolated_env):
    file = official_format.seeded_resnet20(tmp_path / "resnet20_weights.h5")
    entered = _cold_call(tmp_path, "resnet20", file, resnet_keras.ResNet20, include_top=False)
    assert (isolated_env / file.name).read_bytes() == file.read_bytes()  # fetched, verified, cached
    assert _weights_path(entered) == WEIGHTS_PATH


@pytest.mark.slow
def test_resnet50_imagenet_to_loaded_weights_stays_within_budget(tmp_path, isolated_env, official_file):
    entered = _cold_call(tmp_path, "resnet50", official_file("resnet50", True), resnet_keras.ResNet50)
    print(f"MODULES {len(entered)}: {entered}")
    assert _weights_path(entered) == WEIGHTS_PATH
    assert len(entered) <= RESNET50_BUDGET


def _imports(path: Path) -> list[str]:
    """Absolute names of the package modules `path` imports (anywhere in it, TYPE_CHECKING included)."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join([*base, node.module] if node.module else base)
            names += [target] + [f"{target}.{alias.name}" for alias in node.names]
    return names


def test_weights_never_imports_architecture():
    files = sorted((PACKAGE / "weights").rglob("*.py"))
    assert len(files) > 15
    upward = {
        str(path.relative_to(PACKAGE)): name
        for path in files
        for name in _imports(path)
        if name.startswith("resnet_keras.architecture")
    }
    assert upward == {}


def test_the_import_scan_sees_relative_imports():
    """The scan above would catch `from ...architecture import specs` in weights/formats/x.py."""
    path = PACKAGE / "architecture" / "resolve.py"
    assert "resnet_keras.weights.formats.registry" in _imports(path)
    assert "resnet_keras.architecture.specs.SPECS" in _imports(path)
