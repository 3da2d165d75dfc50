"""Every registered model: signature, validation, shapes, features, counts.

Parametrized over `resnet_keras.list_models()`, so a new variant is tested
here without new test code. Full-size models are only built symbolically;
forward passes use 32x32 or 64x64 inputs.
"""

from __future__ import annotations

import inspect
import math
import re

import keras
import numpy as np
import pytest

import resnet_keras
from facts import table
from resnet_keras import cifar, errors
from resnet_keras.architecture.catalog import ENTRIES
from resnet_keras.architecture.specs import SPECS

MODELS = resnet_keras.list_models()
HEAVY = {"resnet1202"}  # 3,600 layers: 20 s per symbolic build on 2 cores


def registry_params(keys=MODELS, heavy=HEAVY):
    return [pytest.param(k, marks=pytest.mark.slow) if k in heavy else k for k in keys]


# The fast tier runs one forward pass per kind of net (stem, block, where the stride
# sits): the smallest of each. The other depths run in the slow tier; their specs
# are checked here.
FORWARD_FAST = {"plain20", "resnet20", "resnet18", "resnet50", "resnet50_v1_5", "resnet50v2"}


# Published figures, with their sources: tests/data/facts.json.
KERAS_FACTS = table("keras_applications", "params", "macs_g")  # MACs @224 in G
TORCHVISION_FACTS = table("torchvision", "params", "paper_macs_g")  # trainable; the paper's Table 1
PAPER_CIFAR_PARAMS = table("cifar_paper")  # Table 6, as printed (millions)
EXACT_CIFAR_TRAINABLE = table("cifar_exact_trainable")


def keras_parameters():
    return list(inspect.signature(keras.applications.ResNet50).parameters.values())


def small_shape(key):
    spec = SPECS[key]
    return (32, 32, 3) if spec.stem == "cifar" else (64, 64, 3)


# --- signature ---------------------------------------------------------------


@pytest.mark.parametrize("key", MODELS)
def test_signature_is_keras_then_keyword_only_extras(key):
    builder = ENTRIES[key].function
    params = list(inspect.signature(builder).parameters.values())
    theirs = keras_parameters()
    assert [(p.name, p.kind) for p in params[: len(theirs)]] == [
        (p.name, p.kind) for p in theirs
    ]
    extras = params[len(theirs):]
    assert {p.name for p in extras} >= {"manifest", "offline"}
    assert all(p.kind is p.KEYWORD_ONLY for p in extras)
    defaults = {p.name: p.default for p in params}
    spec = SPECS[key]
    assert defaults["name"] == key == spec.name
    assert defaults["classes"] == spec.classes
    manifest = resnet_keras.architecture.build.active_manifest()
    # A model defaults to pretrained weights exactly when Keras (HDF5) weights
    # exist. torchvision's .pth files need torch, an optional extra: a plain
    # ResNet18() stays weights=None, and weights="imagenet" opts in.
    hdf5 = bool(manifest.tags(key)) and manifest.entry(key, "imagenet").file(True).file_name.endswith(".h5")
    assert defaults["weights"] == ("imagenet" if hdf5 else None)
    assert ("shortcut" in defaults) == (key.startswith("resnet") and spec.stem == "cifar")
    assert getattr(resnet_keras, builder.__name__) is builder
    assert builder.__name__ in resnet_keras.__all__
    assert builder.__doc__ and builder.__name__ in builder.__doc__


# --- validation (all raised before any graph is built) -----------------------


def bad_arguments(key):
    spec = SPECS[key]
    small = (spec.min_size - 1, spec.min_size - 1, 3)
    return [
        (dict(pooling="mean", include_top=False), errors.InvalidArgumentError, "`pooling` must be"),
        (dict(classes=0), errors.InvalidArgumentError, "`classes` must be a positive integer"),
        (dict(input_shape=small, include_top=False), errors.InvalidArgumentError,
         f"at least {spec.min_size}"),
        (dict(input_shape=(None, None, 3)), errors.InvalidArgumentError, "fully static"),
        (dict(weights="imagenett"), errors.UnknownWeightsError, "available:"),
        (dict(include_top="yes"), errors.InvalidArgumentError, "`include_top` must be True or False"),
    ]


@pytest.mark.parametrize(
    "key, kwargs, error, phrase",
    [(k, *case) for k in MODELS for case in bad_arguments(k)],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_invalid_arguments_raise_typed_errors(key, kwargs, error, phrase):
    with pytest.raises(error, match="Received:") as info:
        ENTRIES[key].function(**{"weights": None, **kwargs})
    assert phrase in str(info.value)


@pytest.mark.parametrize("key", MODELS)
def test_misspelled_keyword_is_a_type_error(key):
    with pytest.raises(TypeError, match="input_shap"):
        ENTRIES[key].function(input_shap=(32, 32, 3))


@pytest.mark.parametrize("key", ["resnet18", "resnet34"])
@pytest.mark.parametrize("include_top", [True, False])
def test_imagenet_on_18_34_selects_torchvision_v1(key, include_top):
    """Resolution only (no network): the one file of torchvision's V1 weights serves both heads."""
    manifest = resnet_keras.architecture.build.active_manifest()
    assert manifest.tags(key) == ["torchvision_imagenet1k_v1"]
    resolved = resnet_keras.architecture.build.resolve(SPECS[key], "imagenet", include_top=include_top)
    assert resolved.tag == "torchvision_imagenet1k_v1"
    assert resolved.file.file_name.startswith(f"{key}-") and resolved.file.file_name.endswith(".pth")
    assert resolved.file.weak_hash
    assert (resolved.preprocessing, resolved.input_size, resolved.entry.resize_size) == ("torch", 224, 256)


def test_imagenet_without_any_weights_still_names_the_choices():
    with pytest.raises(errors.UnknownWeightsError) as info:
        ENTRIES["resnet20"].function(weights="imagenet")
    message = str(info.value)
    assert "weights tag of resnet20 (available: none)" in message
    assert "Received: weights='imagenet'" in message


def test_shortcut_option_is_validated():
    with pytest.raises(errors.InvalidArgumentError, match="`shortcut` must be 'A'.*Received: shortcut='C'"):
        cifar.ResNet20(shortcut="C")


# --- shapes and features (one small build per model) -------------------------


def small_model(key):
    """CIFAR nets with their defaults (32x32, top); ImageNet ones at 64x64 without top."""
    if SPECS[key].stem == "cifar":
        return ENTRIES[key].function()
    return ENTRIES[key].function(weights=None, include_top=False, input_shape=(64, 64, 3))


# ResNet1202: tests/test_depth.py, on the one 4,214-layer build it makes for every check.
@pytest.mark.parametrize("key", registry_params([k for k in MODELS if k != "resnet1202"],
                                                heavy=set(MODELS) - FORWARD_FAST))
def test_forward_shapes_and_features(key):
    spec = SPECS[key]
    model = small_model(key)
    size = model.input_shape[1]
    x = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype("float32")
    info = resnet_keras.feature_info(model)
    assert [f.name for f in info] == [f"C{k}" for k in range(2, 2 + len(spec.depths))]
    assert [f.channels for f in info] == [w * spec.expansion for w in spec.widths]
    first = 4 if spec.stem == "imagenet" else 1
    assert [f.stride for f in info] == [first * 2**i for i in range(len(info))]

    features = resnet_keras.feature_model(model)
    # BatchNorm in training mode, as at the start of training: with untrained
    # moving statistics the inference-mode residual stream of a 600-block
    # net grows past float32 (about 2x variance per block)
    out = features(x, training=True)
    assert set(out) == {f.name for f in info}
    for f in info:
        assert tuple(out[f.name].shape) == (2, size // f.stride, size // f.stride, f.channels)
        assert np.all(np.isfinite(keras.ops.convert_to_numpy(out[f.name])))
    # the feature model holds the backbone's variables, not copies
    assert {id(v) for v in features.weights} <= {id(v) for v in model.weights}
    if spec.stem == "imagenet":
        assert features.output[info[-1].name] is model.output  # no top: C5 is the output
        return
    assert model.output_shape == (None, 10)
    adds = [layer for layer in model.layers if isinstance(layer, keras.layers.Add)]
    # a ResNet has one residual add per block, a plain net none
    assert len(adds) == (0 if key.startswith("plain") else sum(spec.depths))
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convs and not any(layer.use_bias for layer in convs)


# --- parameter counts and multiply-adds, against published figures ----------
# (model_info reads counts.json, which tests/test_counts.py holds to the graphs)


@pytest.mark.parametrize("key", MODELS)
def test_model_info_counts_match_published_figures(key):
    info = resnet_keras.model_info(key)
    spec = SPECS[key]
    assert info.name == key and info.builder is ENTRIES[key].function and info.spec is spec
    assert (info.default_size, info.classes) == (spec.default_size, spec.classes)
    assert 0 < info.trainable_params < info.params
    # the paper's depth: weighted layers on the main path
    assert spec.num_layers == int(re.match(r"[a-z]+(\d+)", key).group(1))
    if key in KERAS_FACTS:
        params, macs_g = KERAS_FACTS[key]
        assert info.params == params
        assert round(info.macs / 1e9, 3) == macs_g
    if key in TORCHVISION_FACTS:
        params, paper_macs_g = TORCHVISION_FACTS[key]
        assert info.trainable_params == params
        assert abs(info.macs / 1e9 - paper_macs_g) / paper_macs_g < 0.02
    if key in EXACT_CIFAR_TRAINABLE:
        assert info.trainable_params == EXACT_CIFAR_TRAINABLE[key]
    if key in PAPER_CIFAR_PARAMS:
        printed = PAPER_CIFAR_PARAMS[key]
        decimals = len(printed.split(".")[1])
        assert f"{info.trainable_params / 1e6:.{decimals}f}" == printed
        # within 1% of the printed figure; ResNet-110's 1,727,962 prints as
        # "1.7M", 1.6% off only by the paper's two significant digits
        tolerance = 0.017 if key == "resnet110" else 0.01
        assert abs(info.trainable_params / 1e6 / float(printed) - 1) < tolerance
    if key.startswith("plain"):
        twin = resnet_keras.model_info(key.replace("plain", "resnet"))
        # option A shortcuts have no parameters and no multiply-adds
        assert (info.params, info.macs) == (twin.params, twin.macs)


def test_option_b_adds_exactly_the_projections():
    a, b = cifar.ResNet20(), cifar.ResNet20(shortcut="B")
    # conv3: 1x1 16->32 + BN(32); conv4: 1x1 32->64 + BN(64)
    assert b.count_params() - a.count_params() == (16 * 32 + 4 * 32) + (32 * 64 + 4 * 64)
    assert [layer.name for layer in b.layers if "_0_" in layer.name] == [
        "conv3_block1_0_conv", "conv3_block1_0_bn", "conv4_block1_0_conv", "conv4_block1_0_bn",
    ]


def test_option_a_shortcut_subsamples_and_pads_zeros():
    model = cifar.ResNet20(include_top=False)
    probe = keras.Model(
        model.input,
        [model.get_layer("conv2_block3_out").output, model.get_layer("conv3_block1_0_pad").output],
    )
    x = np.random.default_rng(1).normal(size=(1, 32, 32, 3)).astype("float32")
    before, shortcut = (keras.ops.convert_to_numpy(t) for t in probe(x, training=False))
    assert shortcut.shape == (1, 16, 16, 32)
    np.testing.assert_array_equal(shortcut[..., :16], before[:, ::2, ::2, :])
    np.testing.assert_array_equal(shortcut[..., 16:], 0.0)


def test_torchvision_layout_of_resnet18():
    model = resnet_keras.ResNet18()
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert not any(layer.use_bias for layer in convs)
    assert {layer.epsilon for layer in bns} == {1e-5}
    # strided 3x3 convs pad all sides by one, as torch does
    for layer in convs:
        if layer.kernel_size == (3, 3) and layer.strides == (2, 2):
            pad = model.get_layer(layer.name.replace("_conv", "_pad"))
            assert pad.padding == ((1, 1), (1, 1)) and layer.padding == "valid"
    assert [layer.name for layer in model.layers if layer.name.endswith("_0_conv")] == [
        "conv3_block1_0_conv", "conv4_block1_0_conv", "conv5_block1_0_conv",
    ]


def torchvision_state_shapes(depths):
    """torchvision's resnet18/34 state dict (without num_batches_tracked), written from
    its definition: BasicBlock(conv1, bn1, conv2, bn2, downsample=(conv, bn))."""
    shapes = {"conv1.weight": (64, 3, 7, 7)}
    bn = lambda prefix, c: {f"{prefix}.{w}": (c,) for w in ("weight", "bias", "running_mean", "running_var")}  # noqa: E731
    shapes.update(bn("bn1", 64))
    inplanes = 64
    for s, (planes, depth) in enumerate(zip((64, 128, 256, 512), depths), start=1):
        for b in range(depth):
            p = f"layer{s}.{b}"
            cin = inplanes if b == 0 else planes
            shapes[f"{p}.conv1.weight"] = (planes, cin, 3, 3)
            shapes.update(bn(f"{p}.bn1", planes))
            shapes[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
            shapes.update(bn(f"{p}.bn2", planes))
            if b == 0 and cin != planes:
                shapes[f"{p}.downsample.0.weight"] = (planes, cin, 1, 1)
                shapes.update(bn(f"{p}.downsample.1", planes))
        inplanes = planes
    shapes.update({"fc.weight": (1000, 512), "fc.bias": (1000,)})
    return shapes


@pytest.mark.parametrize("key", ["resnet18", "resnet34"])
def test_torchvision_name_mapping_is_one_to_one(key):
    from resnet_keras.resnet_small import torchvision_key

    model = ENTRIES[key].function()
    expected = torchvision_state_shapes(SPECS[key].depths)
    mapped = {}
    for layer in model.layers:
        for weight in layer.weights:
            torch_name = torchvision_key(layer.name, weight.name)
            assert torch_name not in mapped
            shape = tuple(weight.shape)
            # keras (h, w, in, out) / (in, out) <- torch (out, in, h, w) / (out, in)
            mapped[torch_name] = (
                (shape[3], shape[2], shape[0], shape[1]) if len(shape) == 4 else shape[::-1]
            )
    assert mapped == expected
    assert sum(math.prod(s) for k, s in expected.items() if "running" not in k) == (
        TORCHVISION_FACTS[key][0]
    )
    with pytest.raises(errors.InvalidArgumentError, match="Received: layer_name='avg_pool'"):
        torchvision_key("avg_pool", "kernel")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # numpy 2 notes inside keras' loader
@pytest.mark.parametrize("shortcut", ["A", pytest.param("B", marks=pytest.mark.slow)])  # B: 2.7 s more
def test_cifar_model_round_trips_through_keras_file(tmp_path, shortcut):
    """Option A is built from stock layers: a .keras file loads without custom objects."""
    model = cifar.ResNet20(shortcut=shortcut)
    x = np.random.default_rng(2).normal(size=(2, 32, 32, 3)).astype("float32")
    path = tmp_path / "resnet20.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(x)), keras.ops.convert_to_numpy(model(x)), rtol=1e-5, atol=1e-6
    )
    assert resnet_keras.feature_info(loaded) == resnet_keras.feature_info(model)
