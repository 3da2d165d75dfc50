"""Shared fixtures: an isolated cache, a loopback mirror, official-format files."""

from __future__ import annotations

import importlib.util
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import sys

import pytest

import official_format
from cli_runs import image_dir, resnet20_files  # noqa: F401 (fixtures of the command-line tests)
from finetune_data import digits_run  # noqa: F401 (the fast tier's one fine-tuning run)
from http_mirror import Mirror

# No Keras import here: tests that never build a model run without loading it.


# Modules that import a package of the test-slow extra at their top (their tests are all
# slow). Where the package is missing and the slow tests are deselected (the README's
# command, with the test extra), they are not collected; the slow tier collects them
# and, in CI, fails if the package is missing (tests/optional.py).
NEEDS_SLOW_EXTRA = {"test_torch_checkpoints.py": "torch", "test_hostile_checkpoints.py": "torch"}


def pytest_ignore_collect(collection_path, config):
    package = NEEDS_SLOW_EXTRA.get(collection_path.name)
    if package is None or importlib.util.find_spec(package) is not None:
        return None
    return not _selects_slow_tests(config.option.markexpr)


def _selects_slow_tests(markexpr: str | None) -> bool:
    """Whether `-m markexpr` selects a test marked `slow`, read by the parser -m itself uses."""
    if not markexpr:
        return True
    from _pytest.mark.expression import Expression

    return Expression.compile(markexpr).evaluate(lambda name, **kwargs: name == "slow")


# Session fixtures too costly to make on every worker: the tests that take one run on one
# worker (pytest-xdist's --dist loadgroup, setup.cfg), marked here so none can forget it.
SHARED_ON_ONE_WORKER = ("digits_run",)


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist names the groups
def pytest_collection_modifyitems(items):
    for item in items:
        for name in SHARED_ON_ONE_WORKER:
            if name in getattr(item, "fixturenames", ()):
                item.add_marker(pytest.mark.xdist_group(name))


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """Every test gets its own keras cache and no resnet_keras env settings."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    for name in ("RESNET_KERAS_HOME", "RESNET_KERAS_MANIFEST", "RESNET_KERAS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "keras_home" / "models"


@pytest.fixture(autouse=True)
def restore_keras_globals():
    """Put back any global a test changes, even when the test fails."""
    keras = sys.modules.get("keras")
    if keras is None:  # a test that imports keras starts from its defaults
        yield
        return
    data_format = keras.config.image_data_format()
    floatx = keras.config.floatx()
    policy = keras.config.dtype_policy()
    yield
    keras.config.set_image_data_format(data_format)
    keras.config.set_floatx(floatx)
    keras.config.set_dtype_policy(policy)


@pytest.fixture
def no_data_read(monkeypatch):
    """Names of the HDF5 datasets read during the test, by any of h5py's read paths.

    Tests that promise "refused before any data is read" assert it stays empty.
    """
    import h5py

    reads = []

    def watch(method):
        real = getattr(h5py.Dataset, method)

        def recording(self, *args, **kwargs):
            reads.append(self.name)
            return real(self, *args, **kwargs)

        monkeypatch.setattr(h5py.Dataset, method, recording)

    for method in ("__getitem__", "read_direct", "__array__"):
        watch(method)
    return reads


@pytest.fixture
def mirror():
    with Mirror() as server:
        yield server


@pytest.fixture(scope="session")
def official_file(tmp_path_factory):
    """official_file(model_key, include_top) -> path of an official-format file.

    The file holds random (seeded) weights of the keras.applications model,
    written in the Keras 2 legacy HDF5 layout. Made once per session.
    """
    folder = tmp_path_factory.mktemp("official")
    made = {}

    from keras_builders import KERAS_BUILDERS

    def make(model_key: str, include_top: bool = True):
        key = (model_key, include_top)
        if key not in made:
            model = KERAS_BUILDERS[model_key](weights=None, include_top=include_top)
            official_format.randomize(model, seed=len(made))
            suffix = "" if include_top else "_notop"
            path = folder / f"{model_key}_weights_tf_dim_ordering_tf_kernels{suffix}.h5"
            made[key] = official_format.write_keras2_weights(model, path)
        return made[key]

    return make


def write_manifest(path, model_key, files, *, tag="imagenet", **entry):
    """Write a one-entry user manifest; files: kind -> (file_name, urls, hash)."""
    document = {
        "schema_version": 1,
        "models": {
            model_key: {
                tag: {
                    "files": {
                        kind: {"file_name": name, "urls": list(urls), "hash": digest}
                        for kind, (name, urls, digest) in files.items()
                    },
                    **entry,
                }
            }
        },
    }
    path.write_text(json.dumps(document))
    return path
