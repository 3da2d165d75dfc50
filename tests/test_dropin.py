"""Every import path keras users write works here, with the same signatures.

The ResNet modules and their public names are read from keras itself at test
time (`keras.applications` and `tf.keras.applications`), so a module or
name keras adds shows up here as a failure, not as a silent gap.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import resnet_keras

REPO = Path(__file__).resolve().parents[1]
# Our builders add keyword-only options after keras' arguments.
OUR_OPTIONS = ("manifest", "offline", "adapt_input_channels")


def keras_resnet_modules() -> dict[str, object]:
    """{'resnet': module, 'resnet50': ..., ...}: public ResNet modules of keras and tf.keras."""
    import keras

    packages = [keras.applications]
    try:
        import tensorflow as tf

        packages.append(tf.keras.applications)
    except ImportError:  # pragma: no cover - keras without TensorFlow
        pass
    found = {}
    for package in packages:
        for info in pkgutil.iter_modules(package.__path__):
            # inception_resnet_v2 is another architecture (Inception), not a ResNet
            if info.name.startswith("resnet") and not info.name.startswith("_"):
                found.setdefault(info.name, importlib.import_module(f"{package.__name__}.{info.name}"))
    return found


KERAS_MODULES = keras_resnet_modules()


def public_names(module) -> list[str]:
    names = getattr(module, "__all__", None) or dir(module)
    return sorted(
        n for n in names
        if not n.startswith("_") and not inspect.ismodule(getattr(module, n))
    )


def test_keras_has_the_resnet_modules_we_expect():
    # a guard on the enumeration itself: an empty list would test nothing
    assert {"resnet", "resnet50", "resnet_v2"} <= set(KERAS_MODULES)


@pytest.mark.parametrize("module_name", sorted(KERAS_MODULES))
def test_every_keras_resnet_module_and_name_exists_with_the_same_signature(module_name):
    theirs = KERAS_MODULES[module_name]
    ours = importlib.import_module(f"resnet_keras.{module_name}")
    names = public_names(theirs)
    assert names, f"keras.applications.{module_name} has no public names?"
    for name in names:
        assert hasattr(ours, name), f"resnet_keras.{module_name}.{name} is missing"
        assert name in ours.__all__
        their_sig = inspect.signature(getattr(theirs, name))
        our_sig = inspect.signature(getattr(ours, name))
        extra = [p for p in our_sig.parameters.values() if p.name not in their_sig.parameters]
        assert all(p.kind is p.KEYWORD_ONLY and p.name in OUR_OPTIONS for p in extra), (name, extra)
        kept = our_sig.replace(parameters=[p for p in our_sig.parameters.values() if p not in extra])
        assert kept == their_sig, f"{module_name}.{name}: ours {our_sig}, keras {their_sig}"


def test_resnet50_module_is_the_tutorial_import():
    from resnet_keras.resnet50 import ResNet50, decode_predictions, preprocess_input

    assert ResNet50 is resnet_keras.ResNet50
    assert preprocess_input is resnet_keras.resnet.preprocess_input
    assert decode_predictions is resnet_keras.resnet.decode_predictions


def test_package_all_and_dir_are_complete_and_every_name_resolves():
    names = set(resnet_keras.__all__)
    assert len(names) == len(resnet_keras.__all__)  # no duplicates
    assert names <= set(dir(resnet_keras))
    for name in sorted(names):
        assert getattr(resnet_keras, name) is not None, name
    lazy = set(resnet_keras._LAZY) | set(resnet_keras._SUBMODULES) | set(resnet_keras._builders())
    assert lazy == names, f"lazy but not public: {lazy - names}; public but not lazy: {names - lazy}"
    assert {"resnet50", "ResNet50", "list_models", "get_model"} <= names


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'ResNet51'"):
        resnet_keras.ResNet51  # noqa: B018


def run_python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=REPO, env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_importing_the_package_and_the_cli_does_not_load_keras():
    code = ("import sys, resnet_keras, resnet_keras.cli; "
            "print(resnet_keras.list_models('plain2*'), 'keras' in sys.modules, 'tensorflow' in sys.modules)")
    assert run_python(code) == "['plain20'] False False"


@pytest.mark.slow
def test_from_import_and_star_import_work_in_a_fresh_process():
    code = ("from resnet_keras import ResNet50, resnet50\n"
            "from resnet_keras import *\n"
            "import resnet_keras\n"
            "missing = [n for n in resnet_keras.__all__ if n not in globals()]\n"
            "print(ResNet50.__name__, resnet50.ResNet50 is ResNet50, missing)")
    assert run_python(code) == "ResNet50 True []"
