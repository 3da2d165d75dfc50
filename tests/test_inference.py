"""optimize_for_inference: BN folding, reduced precision, every zoo model.

Default run: tiny specs (one block per stage, narrow) of every block family in
the registry, all heads, and a tiny ResNet trained on scikit-learn's digits
(real 8x8 scans, upscaled to 24x24) for the reduced-precision top-1 check.
Slow: every registered model at full size, and the six keras variants with
official-format weight files on the real photos in examples/images.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

import digits
import official_format
import resnet_keras
from resnet_keras.architecture import build as _builder
from resnet_keras.inference.optimize import ChannelAffine
from tiny_models import cosine, fused_error, images, rel_error, tiny_model, tiny_spec
from resnet_keras.architecture.specs import SPECS
from resnet_keras.errors import InvalidArgumentError

FLOAT16_MAX = 65504.0
IMAGES = sorted((Path(__file__).parents[1] / "examples" / "images").glob("*.jpg"))


def family(spec) -> tuple:
    return (spec.block, spec.stem, spec.shortcut, spec.conv_bias, spec.bn_epsilon)


# One representative registry model per block family: a new variant of a new
# kind is tested here without new code.
FAMILIES = {}
for _name in resnet_keras.list_models():
    FAMILIES.setdefault(family(SPECS[_name]), _name)
REPRESENTATIVES = sorted(FAMILIES.values())


def layer_types(model):
    return {type(layer).__name__ for layer in model.layers}


HEADS = [
    dict(include_top=True),
    dict(include_top=False, pooling=None),
    dict(include_top=False, pooling="avg"),
    dict(include_top=False, pooling="max"),
]


# Every family with its default head; the V1 and V2 bottlenecks with every head.
CASES = [(name, HEADS[0]) for name in REPRESENTATIVES] + [
    (name, head) for name in ("resnet50", "resnet50v2") for head in HEADS[1:]
]


@pytest.mark.parametrize(
    "name, head", CASES, ids=[f"{n}-{h.get('include_top')}-{h.get('pooling')}" for n, h in CASES]
)
@pytest.mark.slow
def test_fused_float32_matches_original(name, head):
    model = tiny_model(name, **head)
    x = images()
    fused = resnet_keras.optimize_for_inference(model)
    assert rel_error(fused(x), model(x)) < 1e-4
    assert "BatchNormalization" not in layer_types(fused)
    assert fused.output_shape == model.output_shape and fused.name == model.name


@pytest.mark.parametrize("name", REPRESENTATIVES)
def test_layer_names_stay_readable(name):
    model = tiny_model(name)
    fused = resnet_keras.optimize_for_inference(model)
    names = [layer.name for layer in fused.layers]
    kept = [l.name for l in model.layers if not isinstance(l, keras.layers.BatchNormalization)]
    affine = [n for n in names if n.endswith("_affine")]
    assert sorted(n for n in names if n not in affine) == sorted(kept)
    bns = [l.name for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    if SPECS[name].preact:
        # Pre-activation BNs follow an Add and feed a ReLU: affine, not folded.
        expected = [n[: -len("_bn")] + "_affine" for n in bns if "preact" in n or n == "post_bn"]
    else:
        expected = []
    assert affine == expected
    assert fused.get_layer("conv1_conv").use_bias  # holds the folded BN (or its own bias)


def test_original_model_is_untouched_and_shares_nothing():
    model = tiny_model("resnet50v2")
    before = [w.copy() for w in model.get_weights()]
    layers_before = [layer.name for layer in model.layers]
    fused = resnet_keras.optimize_for_inference(model, "bfloat16")
    assert [layer.name for layer in model.layers] == layers_before
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert not {id(v) for v in model.weights} & {id(v) for v in fused.weights}
    assert model.dtype_policy.name == keras.config.dtype_policy().name


# float16 goes the same way as bfloat16 (the fast tier runs it on the features head)
@pytest.mark.parametrize("precision, head", [
    *[pytest.param("bfloat16", head, id=f"{name}-bfloat16") for name, head in zip(("top", "features", "avg"), HEADS)],
    pytest.param("float16", HEADS[1], id="features-float16"),
    *[pytest.param("float16", HEADS[i], id=f"{name}-float16", marks=pytest.mark.slow)
      for i, name in ((0, "top"), (2, "avg"))],
])
def test_reduced_precision_body_float32_head_and_outputs(precision, head):
    model = tiny_model("resnet50v2", **head)
    fused = resnet_keras.optimize_for_inference(model, precision)
    policies = {layer.name: layer.dtype_policy.name for layer in fused.layers}
    assert policies["conv2_block1_1_conv"] == precision
    assert policies["conv2_block1_preact_affine"] == precision
    assert fused.get_layer("conv2_block1_1_conv").kernel.dtype == precision
    if head.get("include_top"):
        assert policies["avg_pool"] == policies["predictions"] == "float32"
    out = fused(images())
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
    assert rel_error(out, model(images())) < 0.05  # bf16 keeps ~3 significant digits


def test_softmax_head_runs_in_float32():
    model = tiny_model("resnet18", activation="softmax")
    fused = resnet_keras.optimize_for_inference(model, "bfloat16")
    probabilities = np.asarray(fused(images()))
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, rtol=1e-6)


def test_generic_graph_forward_fold_dense_bn_and_dropout():
    """BNs feeding only unpadded convs fold forward; Dense+BN folds; Dropout goes."""
    inputs = keras.Input((9, 9, 3), name="pixels")
    x = keras.layers.BatchNormalization(name="input_bn")(inputs)
    x = keras.layers.Conv2D(6, 1, name="a_conv")(x)  # input_bn folds forward into it
    x = keras.layers.ReLU(name="a_relu")(x)
    x = keras.layers.BatchNormalization(name="mid_bn")(x)  # after a ReLU: forward
    left = keras.layers.Conv2D(5, 3, use_bias=False, name="b_conv")(x)
    right = keras.layers.Conv2D(5, 3, strides=2, name="c_conv")(x)
    x = keras.layers.Concatenate(name="cat")(
        [keras.layers.GlobalAveragePooling2D(name="gap")(left),
         keras.layers.GlobalMaxPooling2D(name="gmp")(right)]
    )
    x = keras.layers.Dense(8, name="fc")(x)
    x = keras.layers.BatchNormalization(name="fc_bn")(x)
    x = keras.layers.Dropout(0.5, name="drop")(x)
    outputs = keras.layers.Dense(3, name="logits")(x)
    model = keras.Model(inputs, outputs, name="generic")
    official_format.randomize(model, seed=3)
    fused = resnet_keras.optimize_for_inference(model)
    assert [layer.name for layer in fused.layers] == [
        "pixels", "a_conv", "a_relu", "b_conv", "c_conv", "gap", "gmp", "cat", "fc", "logits"
    ]
    x = images(size=9)
    assert rel_error(fused(x), model(x)) < 1e-5


def test_padded_consumer_gets_an_affine_not_a_wrong_fold():
    """A 'same'-padded 3x3 conv pads zeros after the BN: folding forward would be wrong."""
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.ReLU()(inputs)
    x = keras.layers.BatchNormalization(name="x_bn")(x)
    x = keras.layers.Conv2D(4, 3, padding="same", name="y_conv")(x)
    model = keras.Model(inputs, x)
    official_format.randomize(model, seed=4)
    fused = resnet_keras.optimize_for_inference(model)
    assert isinstance(fused.get_layer("x_affine"), ChannelAffine)
    assert rel_error(fused(images(size=8)), model(images(size=8))) < 1e-5


@pytest.mark.slow  # TensorFlow runs channels_first convolutions on the CPU through transposes: 2.5 s
def test_channels_first():
    keras.config.set_image_data_format("channels_first")  # restored by conftest
    model = _builder.create_model(  # V2: BNs folded into convs and BNs turned affine
        tiny_spec("resnet50v2"), include_top=False, weights=None, input_tensor=None,
        input_shape=(3, 32, 32), pooling=None, classes=1, classifier_activation=None,
        name="resnet50v2",
    )
    official_format.randomize(model, seed=5)
    x = np.transpose(images(), (0, 3, 1, 2)).copy()
    fused = resnet_keras.optimize_for_inference(model)
    # predict (a tf.function): Keras 3.15 eager channels_first 1x1 convs
    # with bias add the bias along the wrong axis when C == H on CPU.
    assert rel_error(fused.predict(x, verbose=0), model.predict(x, verbose=0)) < 1e-4


def test_sequential_and_nested_models():
    base = tiny_model("resnet18", include_top=False, pooling="avg")
    outer = keras.Sequential([keras.Input((32, 32, 3)), base, keras.layers.Dense(2, name="head")])
    fused = resnet_keras.optimize_for_inference(outer)
    assert rel_error(fused(images()), outer(images())) < 1e-4
    inner = fused.get_layer(base.name)
    assert "BatchNormalization" not in layer_types(inner)


def test_saved_and_reloaded_as_keras_file(tmp_path):
    fused = resnet_keras.optimize_for_inference(tiny_model("resnet50v2"), "bfloat16")
    fused.save(tmp_path / "fused.keras")
    reloaded = keras.models.load_model(tmp_path / "fused.keras")  # ChannelAffine is registered
    np.testing.assert_array_equal(np.asarray(reloaded(images())), np.asarray(fused(images())))


@pytest.mark.parametrize(
    "precision, phrase",
    [("fp16", "'float32', 'bfloat16', 'float16'"), ("mixed_bfloat16", "Received: precision=")],
)
def test_bad_precision(precision, phrase):
    with pytest.raises(InvalidArgumentError, match=phrase):
        resnet_keras.optimize_for_inference(tiny_model("resnet18"), precision)


def test_bad_model():
    with pytest.raises(InvalidArgumentError, match="functional keras.Model.*Received: model=str"):
        resnet_keras.optimize_for_inference("resnet50")
    with pytest.raises(InvalidArgumentError, match="must be built"):
        resnet_keras.optimize_for_inference(keras.Sequential([keras.layers.Dense(2)]))


def test_lambda_layers_are_refused():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2, name="double")(inputs))
    with pytest.raises(InvalidArgumentError, match="Lambda.*Received: layer='double'"):
        resnet_keras.optimize_for_inference(model)


# --- reduced precision on a model trained to confident predictions -----------


@pytest.fixture(scope="module")
def trained_digits():
    return digits.trained_model()


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
@pytest.mark.slow
def test_reduced_precision_top1_agreement_on_held_out_digits(trained_digits, precision):
    model, x_test, y_test, _ = trained_digits
    reference = model.predict(x_test, verbose=0)
    accuracy = (reference.argmax(-1) == y_test).mean()
    assert accuracy >= 0.95  # it learned the task (~99%)
    assert np.median(reference.max(-1)) > 0.9  # confident predictions
    fused = resnet_keras.optimize_for_inference(model, precision)
    predictions = fused.predict(x_test, verbose=0)
    agreement = (predictions.argmax(-1) == reference.argmax(-1)).mean()
    print(
        f"AGREEMENT {precision}: {agreement:.4f} on {len(x_test)} held-out digits "
        f"(float32 accuracy {accuracy:.3f})"
    )
    assert agreement >= 0.99
    fused32 = resnet_keras.optimize_for_inference(model)
    assert rel_error(fused32.predict(x_test, verbose=0), reference) < 1e-4


# --- full size (slow) ----------------------------------------------------------


@pytest.mark.slow  # ResNet1202: tests/test_depth.py, one 4,214-layer build for its depth and this
@pytest.mark.parametrize("name", [name for name in resnet_keras.list_models() if name != "resnet1202"])
def test_full_size_fused_float32_matches_original(name):
    model = resnet_keras.get_model(name, weights=None, classifier_activation=None)
    fused, error = fused_error(name, model)
    print(f"FUSED {name}: relative error {error:.2e}")
    assert error < 1e-4
    assert "BatchNormalization" not in layer_types(fused)


def photos(size: int) -> np.ndarray:
    pictures = [
        keras.utils.img_to_array(keras.utils.load_img(p, target_size=(size, size)))
        for p in IMAGES
    ]
    return np.stack(pictures + [p[:, ::-1] for p in pictures])  # and mirrored


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["resnet50", "resnet101", "resnet152", "resnet50v2", "resnet101v2", "resnet152v2"]
)
def test_full_size_reduced_precision_cosine_on_photos(name, official_file):
    assert len(IMAGES) >= 3
    module = resnet_keras.resnet_v2 if name.endswith("v2") else resnet_keras.resnet
    x = module.preprocess_input(photos(224))
    model = resnet_keras.get_model(
        name, weights=str(official_file(name, True)), classifier_activation=None
    )
    logits = model.predict_on_batch(x)
    # The residual stream, where activations grow with depth.
    adds = [l.output for l in model.layers if isinstance(l, keras.layers.Add)]
    stream = max(np.abs(a).max() for a in keras.Model(model.input, adds).predict_on_batch(x))
    for precision in ("bfloat16", "float16"):
        fused = resnet_keras.optimize_for_inference(model, precision)
        outputs = fused.predict_on_batch(x)
        if precision == "float16" and stream > FLOAT16_MAX:
            # Random weights (with caffe-range inputs) grow ResNet152's stream to
            # ~1.5e5; float16 cannot hold it. bfloat16 has float32's range.
            print(f"COSINE {name} {precision}: skipped, residual stream reaches {stream:.3g}")
            assert not np.isfinite(outputs).all()
            continue
        similarity = cosine(outputs, logits)
        print(
            f"COSINE {name} {precision}: min {similarity.min():.6f} over {len(x)} photos "
            f"(residual stream max {stream:.3g})"
        )
        assert similarity.min() >= 0.999
