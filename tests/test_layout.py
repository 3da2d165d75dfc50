"""The layout's budget (issue 20): the modules a call crosses, and which way imports point.

`ResNet50(weights="imagenet")` with a cold cache, through a user manifest
whose URL is served over HTTP on 127.0.0.1 (the network code runs, as for
the real URL), to loaded weights: the modules it runs code in
(tests/module_trace.py) are counted. Measured before the renovation: 21;
17 after the first round of it; now 10, the issue's target: the entry
module, build (argument rules, what weights= means, the build), specs
(with the data-format rule), graph (the model, its blocks counted with
it), files (the one atomic write) and five of weights/ (records, cache,
download, registry, hdf5), listed below in the order first entered.

`resnet-keras classify` and `features --out FOLDER`, in-process (`cli.main`)
on a tiny ImageNet-headed model (tests/tiny_zoo.py) whose weights come
through a user manifest and the same HTTP mirror into a cold cache, are
counted the same way: their own modules are listed exactly (the CLI's, the
model source, images, and for features the extraction's and the
Predictor's), the rest is the builder's path. Before issue 20: classify 27,
features 40; after its first round 25 and 39; now 14 and 18 (the targets
are 15 and 18).
"""

from __future__ import annotations

import ast
import importlib
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import official_format
import resnet_keras
from optional import require
from conftest import write_manifest
from module_trace import modules_entered
from tiny_zoo import publish, tiny_zoo  # noqa: F401 (a fixture)
from resnet_keras.weights.formats import hdf5  # noqa: F401 (imported now: the trace counts calls, not imports)

PACKAGE = Path(resnet_keras.__file__).parent
# The weights path, from `weights=` to loaded weights, in the order first entered.
WEIGHTS_PATH = [
    "resnet_keras.architecture.build",  # every argument checked, what weights= means
    "resnet_keras.weights.download.cache",  # offline= checked with the other arguments
    "resnet_keras.weights.manifest.records",  # the manifest read, its URLs checked
    "resnet_keras.files",  # the temp file made before the network is used (the one atomic write)
    "resnet_keras.weights.download.download",  # bytes from the mirror, hashed in memory
    "resnet_keras.weights.formats.registry",  # the format sniffed; the one value rule
    "resnet_keras.weights.formats.hdf5",  # names bounded, then read and assigned
]
# The whole call, measured (tests/module_trace.py): the weights path above plus
# the entry module (resnet), the spec's derived facts and the data-format rule
# (specs) and the graph (graph, which builds the blocks). Issue 20's target.
RESNET50_BUDGET = 10
# What the commands add to the builder's path and, for features, to the Predictor's.
CLASSIFY_OWN = {
    "resnet_keras.cli.common", "resnet_keras.cli.run_commands",  # parse and the shared options, run
    "resnet_keras.extraction.source",  # --model, --weights
    "resnet_keras.images", "resnet_keras._imagenet",  # pixels in, labels out
}
FEATURES_OWN = {
    # no labels; and the handler sits in cli.common, beside main: it is extract_features with flags
    *(CLASSIFY_OWN - {"resnet_keras._imagenet", "resnet_keras.cli.run_commands"}),
    *(f"resnet_keras.extraction.{m}" for m in ("api", "store", "engines")),  # check, run, write
}
# Running the model: the tables checked before any work, the Predictor and its
# TensorFlow engine, and BatchNorm folding.
PREDICTOR = {f"resnet_keras.inference.{m}" for m in ("precision", "predictor", "optimize")}
# Issue 20's targets are 15 and 18; classify is held at what it measures.
CLASSIFY_BUDGET, FEATURES_BUDGET = 14, 18
# The builder's path beyond the weights (RESNET50_BUDGET counts these too).
BUILD = {"resnet_keras.architecture.specs", "resnet_keras.architecture.graph"}


def _weights_path(entered: list[str]) -> list[str]:
    return [m for m in entered if m.startswith("resnet_keras.weights") or m in WEIGHTS_PATH]


def _cold_call(tmp_path, mirror, model_key, file, builder, **kwargs):
    """modules_entered of builder(weights="imagenet", **kwargs), its file served over HTTP on 127.0.0.1."""
    url = mirror.add(f"/{file.name}", file.read_bytes())
    write_manifest(
        tmp_path / "m.json", model_key,
        {"top" if kwargs.get("include_top", True) else "notop": (file.name, [url], f"md5:{official_format.md5(file)}")},
    )
    return modules_entered(lambda: builder(weights="imagenet", manifest=tmp_path / "m.json", **kwargs))


def test_the_weights_path_crosses_these_modules(tmp_path, isolated_env, mirror):
    file = official_format.seeded_resnet20(tmp_path / "resnet20_weights.h5")
    entered = _cold_call(tmp_path, mirror, "resnet20", file, resnet_keras.ResNet20, include_top=False)
    assert (isolated_env / file.name).read_bytes() == file.read_bytes()  # fetched, verified, cached
    assert mirror.count(f"/{file.name}") == 1
    assert _weights_path(entered) == WEIGHTS_PATH


@pytest.mark.slow
def test_resnet50_imagenet_to_loaded_weights_stays_within_budget(tmp_path, isolated_env, mirror, official_file):
    entered = _cold_call(tmp_path, mirror, "resnet50", official_file("resnet50", True), resnet_keras.ResNet50)
    print(f"MODULES {len(entered)}: {entered}")
    assert _weights_path(entered) == WEIGHTS_PATH
    assert len(entered) <= RESNET50_BUDGET


def _package_imported() -> None:
    """Every module of the package imported first: the trace counts the work, not the imports."""
    for module in pkgutil.walk_packages(resnet_keras.__path__, "resnet_keras."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)


def _command_modules(argv: list) -> list[str]:
    from resnet_keras import cli

    _package_imported()
    status = []
    entered = modules_entered(lambda: status.append(cli.main([str(a) for a in argv])))
    assert status == [0]
    return entered


def _photos(folder: Path) -> Path:
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (40 + i, 30), (40 * i, 90, 200)).save(folder / f"{i}.png")
    return folder


def test_classify_crosses_its_own_modules_and_the_builders(tiny_zoo, tmp_path, isolated_env, mirror, capsys):
    published = publish(tmp_path / "weights", mirror=mirror)
    entered = _command_modules(["classify", _photos(tmp_path / "photos"), "--model", "tinynet",
                                "--manifest", published.manifest])
    print(f"MODULES {len(entered)}: {entered}")
    assert (isolated_env / published.files["top"].name).is_file()  # fetched into the cold cache
    assert _weights_path(entered) == WEIGHTS_PATH
    assert set(entered) == set(WEIGHTS_PATH) | BUILD | CLASSIFY_OWN
    assert len(entered) <= CLASSIFY_BUDGET


def test_features_to_parquet_crosses_its_own_modules_the_builders_and_the_predictors(tiny_zoo, tmp_path,
                                                                                     isolated_env, mirror, capsys):
    require("pyarrow")
    published = publish(tmp_path / "weights", mirror=mirror)
    entered = _command_modules(["features", _photos(tmp_path / "photos"), "--out", tmp_path / "out", "--model",
                                "tinynet", "--manifest", published.manifest, "--runtime", "tensorflow", "--quiet"])
    print(f"MODULES {len(entered)}: {entered}")
    assert _weights_path(entered) == WEIGHTS_PATH
    assert set(entered) == set(WEIGHTS_PATH) | BUILD | FEATURES_OWN | PREDICTOR
    assert len(entered) <= FEATURES_BUDGET


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
    assert len(files) > 10
    upward = {
        str(path.relative_to(PACKAGE)): name
        for path in files
        for name in _imports(path)
        if name.startswith("resnet_keras.architecture")
    }
    assert upward == {}


def test_the_import_scan_sees_relative_imports():
    """The scan above would catch `from ...architecture import specs` in weights/formats/x.py."""
    path = PACKAGE / "architecture" / "build.py"
    assert "resnet_keras.weights.formats.registry" in _imports(path)
    assert "resnet_keras.architecture.specs.SPECS" in _imports(path)


def test_the_test_fixtures_load_without_keras():
    """conftest.py (and the helpers it imports) never import Keras: a test that builds no model runs without it."""
    tests = Path(__file__).parent
    probe = "import sys, conftest; assert 'keras' not in sys.modules, 'keras was imported'"
    done = subprocess.run([sys.executable, "-c", probe], cwd=tests, capture_output=True, text=True,
                          env={"PYTHONPATH": os.pathsep.join([str(tests), str(tests.parent)])})
    assert done.returncode == 0, done.stderr


def test_test_modules_import_helpers_never_other_test_modules():
    """A test module's tests run once, where pytest collects them: shared code lives in helper modules."""
    tests = Path(__file__).parent
    offending = {
        str(path.relative_to(tests)): name
        for path in sorted(tests.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for name in ([a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""])
        if name.rpartition(".")[2].startswith("test_")
    }
    assert offending == {}


# A module's size (issue 20: "no package file over ~350 lines") gives way to the
# budgets above in one place only: a module that a counted call enters may hold
# more, because splitting it by job would add a module to those calls. (In six
# of the ten, records, download, build, cache, hdf5 and store, the functions
# those calls enter alone hold over 350 lines.) Off those paths a module that
# grows past the guide is split; on them, none may pass the ceiling.
SIZE_GUIDE, PATH_MODULE_CEILING = 350, 650


def test_modules_past_the_size_guide_sit_on_a_counted_path():
    counted = set(WEIGHTS_PATH) | BUILD | CLASSIFY_OWN | FEATURES_OWN | PREDICTOR
    sizes = {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts): len(p.read_text().splitlines())
             for p in PACKAGE.rglob("*.py")}
    assert {m: n for m, n in sizes.items() if n > SIZE_GUIDE and m not in counted} == {}
    assert {m: n for m, n in sizes.items() if n > PATH_MODULE_CEILING} == {}
