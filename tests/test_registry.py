"""The registry: list_models, get_model, model_info."""

from __future__ import annotations

import doctest

import pytest

import resnet_keras
from conftest import write_manifest
from resnet_keras import errors, resnet_small
from resnet_keras.architecture import counts, registry
from resnet_keras.architecture.catalog import ENTRIES, register_model
from resnet_keras.architecture.specs import SPECS

KERAS_KEYS = ["resnet50", "resnet50v2", "resnet101", "resnet101v2", "resnet152", "resnet152v2"]


def test_every_builder_is_registered_under_its_default_name():
    names = resnet_keras.list_models()
    assert len(names) == len(set(names)) == 22
    builders = {ENTRIES[n].builder for n in names}
    assert builders == {
        "ResNet18", "ResNet34", "ResNet50", "ResNet101", "ResNet152",
        "ResNet50V1_5", "ResNet101V1_5", "ResNet152V1_5",
        "ResNet50V2", "ResNet101V2", "ResNet152V2",
        "ResNet20", "ResNet32", "ResNet44", "ResNet56", "ResNet110", "ResNet1202",
        "PlainNet20", "PlainNet32", "PlainNet44", "PlainNet56", "PlainNet110",
    }


def test_list_models_natural_order_and_patterns():
    assert resnet_keras.list_models("resnet1*") == [
        "resnet18", "resnet101", "resnet101_v1_5", "resnet101v2", "resnet110",
        "resnet152", "resnet152_v1_5", "resnet152v2", "resnet1202",
    ]
    assert resnet_keras.list_models("plain*") == ["plain20", "plain32", "plain44", "plain56", "plain110"]
    assert resnet_keras.list_models("ResNet*V2") == ["resnet50v2", "resnet101v2", "resnet152v2"]
    assert resnet_keras.list_models("vgg*") == []


def test_list_models_pretrained_follows_the_active_manifest(tmp_path, monkeypatch):
    pretrained = resnet_keras.list_models(pretrained=True)
    # keras' six, and torchvision's weights for 18/34 and the v1.5 models (where registered)
    assert set(pretrained) == {*KERAS_KEYS, "resnet18", "resnet34", *resnet_keras.list_models("*_v1_5")}
    assert "resnet20" in resnet_keras.list_models(pretrained=False)
    assert not set(resnet_keras.list_models(pretrained=False)) & set(pretrained)
    user = write_manifest(
        tmp_path / "mine.json",
        "resnet20",
        {"notop": ("r20_mine.h5", ["https://example.org/r20_mine.h5"], "md5:" + "0" * 32)},
        tag="mine",
    )
    monkeypatch.setenv("RESNET_KERAS_MANIFEST", str(user))
    assert resnet_keras.list_models("resnet2?", pretrained=True) == ["resnet20"]
    assert resnet_keras.model_info("resnet20").weights == ("mine",)


@pytest.mark.parametrize(
    "kwargs, phrase",
    [
        (dict(pattern=3), "`pattern` must be an fnmatch string"),
        (dict(pretrained="yes"), "`pretrained` must be None, True or False"),
    ],
)
def test_list_models_rejects_bad_arguments(kwargs, phrase):
    with pytest.raises(errors.InvalidArgumentError, match="Received:") as info:
        resnet_keras.list_models(**kwargs)
    assert phrase in str(info.value)


@pytest.mark.parametrize(
    "name, hint",
    [("resnet51", "'resnet50'"), ("plainnet20", "'plain20'"), ("resnet50_v2", "'resnet50v2'")],
)
def test_unknown_names_suggest_close_matches(name, hint):
    for call in (resnet_keras.get_model, resnet_keras.model_info):
        with pytest.raises(errors.InvalidArgumentError, match=f"Received: name='{name}'") as info:
            call(name)
        suggestions = str(info.value).split("Did you mean ", 1)[1].split("?")[0]
        assert hint in suggestions
    with pytest.raises(errors.InvalidArgumentError, match="Received: name=None"):
        resnet_keras.get_model(None)


def test_get_model_builds_with_kwargs_and_is_case_insensitive():
    model = resnet_keras.get_model("ResNet20", classes=7, shortcut="B", name="mine")
    assert model.name == "mine" and model.output_shape == (None, 7)
    assert "conv3_block1_0_conv" in {layer.name for layer in model.layers}
    with pytest.raises(TypeError, match="Did you mean 'classes'") as info:
        resnet_keras.get_model("resnet20", clases=7)
    assert "Received: clases=7" in str(info.value)


def test_model_info_fields_for_a_cifar_and_a_keras_model():
    info = resnet_keras.model_info("resnet56")
    assert (info.trainable_params, info.default_size, info.classes) == (853_018, 32, 10)
    assert info.preprocessing is None and info.weights == ()
    info = resnet_keras.model_info("RESNET50")
    assert info.name == "resnet50" and info.builder is resnet_keras.ResNet50
    assert (info.preprocessing, info.weights, info.default_size) == ("caffe", ("imagenet",), 224)
    assert resnet_keras.model_info("resnet18").preprocessing == "torch"


def test_duplicate_registration_raises():
    def Twin(name="resnet20"):  # noqa: N802 - a builder-like function
        return name

    with pytest.raises(RuntimeError, match="'resnet20' is registered twice"):
        register_model(SPECS["resnet20"], "a twin", "")(Twin)


def test_count_macs_needs_a_static_size():
    model = resnet_keras.ResNet20(include_top=False)
    with pytest.raises(errors.InvalidArgumentError, match="static input size"):
        counts.count_macs(model)


def run_examples(obj, name):
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in doctest.DocTestFinder().find(obj, name, globs={}):
        runner.run(test)
    return runner.summarize(verbose=False)


@pytest.mark.slow
def test_docstring_examples_run():
    """The examples of the registry and of one builder per module."""
    for obj, name in [
        (registry, "registry"),
        (resnet_small.ResNet18, "ResNet18"),
        (resnet_small.torchvision_key, "torchvision_key"),
        (resnet_keras.cifar.ResNet20, "ResNet20"),
        (resnet_keras.cifar.PlainNet20, "PlainNet20"),
        (resnet_keras.ResNet50, "ResNet50"),
        (resnet_keras.ResNet50V2, "ResNet50V2"),
    ]:
        result = run_examples(obj, name)
        assert result.attempted > 0 and result.failed == 0, name
