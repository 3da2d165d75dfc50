"""grad_cam against the textbook formula, on every block kind, head and data format; its errors.

The reference below is the keras.io recipe written out with tf.GradientTape:
one model from the input to (last stage, classifier input), the logit taken
by hand from the classifier's kernel, gradient, spatial mean, weighted sum,
ReLU, bilinear resize, divide by the maximum. It runs in a tf.function:
eagerly, Keras 3.15's TensorFlow `ops.add` adds a channels_first conv bias
along the width axis when the width equals the channel count (it takes the
tensor for NHWC), so eager channels_first outputs can be wrong.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import explain_models as zoo
import official_format
import resnet_keras
from resnet_keras import errors
from resnet_keras.architecture.blocks import FEATURE_STAGES
from resnet_keras.explain import graph

TOLERANCE = 1e-5  # on heatmaps in [0, 1]


def textbook_grad_cam(model, stage: str):
    """(x, class_index) -> (Grad-CAM of the logit of each image's class, logits), written out."""
    conv_and_pooled = zoo.feature_and_pooled(model, stage)
    dense = zoo.classifier(model)
    channels_first = keras.config.image_data_format() == "channels_first"

    @tf.function
    def conv_gradient_logits(x, class_index):
        with tf.GradientTape() as tape:
            conv, pooled = conv_and_pooled(x, training=False)
            logits = tf.matmul(pooled, dense.kernel) + dense.bias
            score = tf.reduce_sum(tf.gather(logits, class_index, axis=1, batch_dims=1))
        return conv, tape.gradient(score, conv), logits

    def heatmaps(x, class_index):
        conv, grads, logits = conv_gradient_logits(tf.constant(x), tf.constant(class_index))
        alpha = tf.reduce_mean(grads, axis=(2, 3) if channels_first else (1, 2))
        equation = "nc,nchw->nhw" if channels_first else "nc,nhwc->nhw"
        cam = tf.nn.relu(tf.einsum(equation, alpha, conv))
        size = x.shape[2:] if channels_first else x.shape[1:3]
        cam = tf.image.resize(cam[..., None], size, method="bilinear")[..., 0].numpy()
        peak = cam.reshape(len(cam), -1).max(axis=1)
        return cam / np.where(peak > 0, peak, 1.0)[:, None, None], logits.numpy()

    return heatmaps


def images(kind, count=3, seed=0):
    return np.random.default_rng(seed).normal(size=(count, *zoo.input_shape(kind))).astype("float32")


# The fast tier: each data format, the nested head (the transfer-learning model) and
# the pre-activation net; the other heads and the bottleneck net (0.6-2 s a case,
# the bigger tiny nets 2-4 s) in the slow tier.
SLOW = pytest.mark.slow
CASES = [
    ("basic", "top", "channels_last"),
    ("basic", "top", "channels_first"),
    ("basic", "nested", "channels_last"),
    *[pytest.param("basic", head, "channels_last", marks=SLOW) for head in zoo.HEADS[1:] if head != "nested"],
    pytest.param("v1", "top", "channels_last", marks=SLOW),
    ("v2", "nested", "channels_first"),
    pytest.param("v1", "top", "channels_first", marks=SLOW),
    pytest.param("v2", "top", "channels_last", marks=SLOW),
    pytest.param("v2", "top", "channels_first", marks=SLOW),
    pytest.param("v1", "sequential", "channels_last", marks=SLOW),
]


@pytest.mark.parametrize("kind, head, data_format", CASES)
def test_agrees_with_the_textbook_formula(kind, head, data_format):
    keras.config.set_image_data_format(data_format)  # restored by conftest
    model = zoo.model(kind, head)
    x = images(kind)
    reference = textbook_grad_cam(model, zoo.TINY[kind][2])
    expected, logits = reference(x, np.array([0, 3, 4]))
    assert expected.max() == pytest.approx(1.0) and expected.std() > 0.05  # not a trivial map
    np.testing.assert_allclose(resnet_keras.grad_cam(model, x, [0, 3, 4]), expected, atol=TOLERANCE, rtol=0)
    # the default is the predicted class (the argmax of the logits and of the softmax alike)
    expected, _ = reference(x, np.argmax(logits, axis=-1))
    np.testing.assert_allclose(resnet_keras.grad_cam(model, x), expected, atol=TOLERANCE, rtol=0)


def test_a_model_without_the_build_record_is_read_by_its_layer_names():
    """What a keras.applications ResNet, a clone or a .keras round trip gives: no recorded stages."""
    model = zoo.model("basic", "top")
    x = images("basic")
    expected = resnet_keras.grad_cam(model, x, [1, 2, 3])
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    assert not hasattr(clone, FEATURE_STAGES)
    np.testing.assert_array_equal(resnet_keras.grad_cam(clone, x, [1, 2, 3]), expected)
    assert graph.split(clone).layer == "conv4_block1_out"


@pytest.mark.slow
@pytest.mark.parametrize("builder, stage", [(keras.applications.ResNet50, "conv5_block3_out"),
                                            (keras.applications.ResNet50V2, "post_relu")])
def test_keras_applications_resnet_by_its_layer_names(builder, stage):
    model = builder(weights=None, input_shape=(64, 64, 3), classes=3)
    official_format.randomize(model, seed=1)
    x = np.random.default_rng(1).normal(size=(3, 64, 64, 3)).astype("float32")
    expected, _ = textbook_grad_cam(model, stage)(x, np.array([2, 0, 1]))
    assert expected.std() > 0.05
    np.testing.assert_allclose(resnet_keras.grad_cam(model, x, [2, 0, 1]), expected, atol=TOLERANCE, rtol=0)


def test_the_readme_transfer_learning_model():
    """Preprocessing ops in the graph, the backbone nested without pooling, the pooling outside."""
    from resnet_keras.resnet_v2 import preprocess_input

    base = zoo.backbone("basic", pooling=None)
    inputs = keras.Input(zoo.input_shape("basic"))
    x = base(preprocess_input(inputs), training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(zoo.CLASSES, activation="softmax")(x))
    official_format.randomize(model, seed=2)
    images_ = np.random.default_rng(2).uniform(0, 255, (3, *zoo.input_shape("basic"))).astype("float32")
    conv_model = keras.Model(base.inputs, base.get_layer("conv4_block1_out").output)
    dense = zoo.classifier(model)

    @tf.function
    def conv_and_gradient(x, wanted):
        with tf.GradientTape() as tape:
            conv = conv_model(preprocess_input(x), training=False)
            logits = tf.matmul(tf.reduce_mean(conv, axis=(1, 2)), dense.kernel) + dense.bias
            score = tf.reduce_sum(tf.gather(logits, wanted, axis=1, batch_dims=1))
        return conv, tape.gradient(score, conv)

    conv, grads = conv_and_gradient(tf.constant(images_), tf.constant([4, 0, 2]))
    cam = tf.nn.relu(tf.einsum("nc,nhwc->nhw", tf.reduce_mean(grads, axis=(1, 2)), conv))
    cam = tf.image.resize(cam[..., None], images_.shape[1:3])[..., 0].numpy()
    expected = cam / cam.reshape(3, -1).max(axis=1)[:, None, None]
    assert expected.std() > 0.05
    np.testing.assert_allclose(resnet_keras.grad_cam(model, images_, [4, 0, 2]), expected, atol=TOLERANCE, rtol=0)


def test_channels_first_gives_the_channels_last_heatmaps():
    last = zoo.model("basic", "nested")
    x = images("basic")
    expected = resnet_keras.grad_cam(last, x, [1, 2, 3])
    keras.config.set_image_data_format("channels_first")
    first = zoo.with_weights("basic", "nested", last)
    np.testing.assert_allclose(resnet_keras.grad_cam(first, x.transpose(0, 3, 1, 2), [1, 2, 3]), expected,
                               atol=TOLERANCE, rtol=0)


def test_several_classes_per_image_stack_the_single_class_maps():
    model = zoo.model("basic", "top")
    x = images("basic", count=2)
    both = resnet_keras.grad_cam(model, x, [[4, 1], [0, 2]])
    assert both.shape == (2, 2, 32, 32) and both.dtype == np.float32
    np.testing.assert_array_equal(both[:, 0], resnet_keras.grad_cam(model, x, [4, 0]))
    np.testing.assert_array_equal(both[:, 1], resnet_keras.grad_cam(model, x, [1, 2]))
    np.testing.assert_array_equal(resnet_keras.grad_cam(model, x, 3), resnet_keras.grad_cam(model, x, [3, 3]))
    one_batch = resnet_keras.grad_cam(model, x, [[4, 1], [0, 2]], batch_size=1)
    np.testing.assert_allclose(one_batch, both, atol=1e-6, rtol=0)
    assert resnet_keras.grad_cam(model, x[:0]).shape == (0, 32, 32)


@pytest.mark.slow  # mixed precision runs in every backend suite too
@pytest.mark.parametrize("policy, tolerance", [("mixed_float16", 5e-3), ("mixed_bfloat16", 5e-2)])
def test_mixed_precision_gives_the_float32_heatmaps(policy, tolerance):
    model = zoo.model("basic", "nested")
    x = images("basic", count=4)
    expected = resnet_keras.grad_cam(model, x, [0, 1, 2, 3])
    keras.config.set_dtype_policy(policy)  # restored by conftest
    mixed = zoo.with_weights("basic", "nested", model)
    assert mixed.get_layer("tiny_basic").get_layer("conv4_block1_out").compute_dtype == policy.split("_")[1]
    heatmaps = resnet_keras.grad_cam(mixed, x, [0, 1, 2, 3])
    assert heatmaps.dtype == np.float32 and np.isfinite(heatmaps).all()
    error = np.abs(heatmaps - expected).max()
    print(f"\nMIXED {policy}: max |heatmap - float32 heatmap| = {error:.2e}")
    assert error < tolerance


def test_softmax_is_taken_off_the_score():
    """The gradient of a softmax output mixes in the other classes' evidence; ours uses the logit."""
    model = zoo.model("basic", "top")
    split = graph.split(model)
    assert split.final is not None and split.layer == "conv4_block1_out"
    x = images("basic")
    logits_model = zoo.model("basic", "logits")
    logits_model.set_weights(model.get_weights())
    np.testing.assert_allclose(resnet_keras.grad_cam(model, x, [1, 2, 3]),
                               resnet_keras.grad_cam(logits_model, x, [1, 2, 3]), atol=TOLERANCE, rtol=0)


def test_a_class_without_positive_evidence_gives_zeros_not_nan():
    model = zoo.model("basic", "logits")
    dense = model.get_layer("predictions")
    kernel = dense.kernel.numpy()
    kernel[:, 2] = -np.abs(kernel[:, 2])  # the stage output is post-ReLU: every channel votes against
    dense.kernel.assign(kernel)
    heatmaps = resnet_keras.grad_cam(model, images("basic"), 2)
    assert np.all(heatmaps == 0.0)


def test_layer_picks_another_stage_or_any_layer():
    model = zoo.model("basic", "top")
    x = images("basic", count=1)
    last, c3 = resnet_keras.grad_cam(model, x, 1), resnet_keras.grad_cam(model, x, 1, layer="C3")
    assert c3.shape == last.shape and not np.allclose(c3, last)
    np.testing.assert_array_equal(resnet_keras.grad_cam(model, x, 1, layer="conv3_block1_out"), c3)
    # a CNN that is no ResNet: name the layer
    inputs = keras.Input((16, 16, 3))
    feature = keras.layers.Conv2D(4, 3, activation="relu", name="features")(inputs)
    plain = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(feature)))
    assert resnet_keras.grad_cam(plain, x[:, :16, :16], layer="features").shape == (1, 16, 16)


def test_repeated_calls_reuse_one_split():
    model = zoo.model("basic", "nested")
    x = images("basic", count=1)
    resnet_keras.grad_cam(model, x)
    layer = model.get_layer("tiny_basic").get_layer("conv4_block1_out")
    nodes = len(layer._inbound_nodes)
    resnet_keras.grad_cam(model, x, 2)
    assert len(layer._inbound_nodes) == nodes


# --------------------------------------------------------------------------
# bad input: one typed, one-line error each


@pytest.fixture(scope="module")
def basic_model():
    return zoo.model("basic", "top")


@pytest.mark.parametrize(
    "class_index, phrase",
    [
        (5, "must hold classes of the model, 0 to 4. Received: class_index=5"),
        ([0, -1, 2], "0 to 4. Received: class_index=[0, -1, 2]"),
        ([[0, 1], [2, 7], [1, 1]], "0 to 4"),
        ([0, 1], "one entry per image (3 images). Received: class_index of shape (2,)"),
        (1.0, "must be None, an int"),
        (True, "must be None, an int"),
        ("cat", "must be None, an int"),
    ],
)
def test_bad_class_index(basic_model, class_index, phrase):
    with pytest.raises(errors.InvalidArgumentError) as caught:
        resnet_keras.grad_cam(basic_model, images("basic"), class_index)
    assert phrase in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "x, phrase",
    [
        (np.zeros((2, 64, 64, 3), "float32"), "batch of shape (N, 32, 32, 3), as tiny_basic takes it. "
                                              "Received: images.shape=(2, 64, 64, 3)"),
        (np.zeros((2, 32, 32, 1), "float32"), "Received: images.shape=(2, 32, 32, 1)"),
        (np.zeros((32, 32, 3), "float32"), "Add a batch axis: images[None]"),
        (np.array([["a"]]), "must be numbers"),
    ],
)
def test_images_of_another_shape(basic_model, x, phrase):
    with pytest.raises(errors.InvalidArgumentError, match="must be a batch|must be numbers") as caught:
        resnet_keras.grad_cam(basic_model, x)
    assert phrase in str(caught.value)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_images(basic_model, bad):
    x = images("basic", count=4)
    x[2, 5, 5, 1] = bad
    with pytest.raises(errors.InvalidArgumentError, match=r"finite numbers: no NaN or infinity. "
                                                          r"Received: non-finite values in image\(s\) \[2\] of 4"):
        resnet_keras.grad_cam(basic_model, x)


def test_a_model_without_a_convolutional_stage():
    mlp = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(3)])
    with pytest.raises(errors.InvalidArgumentError, match="exactly one ResNet with feature stages .* "
                                                          "Received: model='sequential.*', ResNets found: none"):
        resnet_keras.grad_cam(mlp, images("basic"))
    with pytest.raises(errors.InvalidArgumentError, match="must output a 4-D feature map"):
        resnet_keras.grad_cam(mlp, images("basic"), layer=mlp.layers[0].name)


def test_a_backbone_shared_by_two_branches():
    base = zoo.backbone("basic")
    inputs = keras.Input((32, 32, 3))
    both = keras.layers.Concatenate()([base(inputs), base(keras.layers.Rescaling(0.5)(inputs))])
    siamese = keras.Model(inputs, keras.layers.Dense(2)(both))
    with pytest.raises(errors.InvalidArgumentError, match="'conv4_block1_out' is called 2 times"):
        resnet_keras.grad_cam(siamese, images("basic"))


@pytest.mark.parametrize(
    "layer, phrase",
    [
        ("C7", "must name a stage of tiny_basic (C2, C3, C4)"),
        ("conv4_block1_outt", "Did you mean 'conv4_block1_out'?"),
        (3, "must be None (the last feature stage), a stage name"),
    ],
)
def test_bad_layer(basic_model, layer, phrase):
    with pytest.raises(errors.InvalidArgumentError) as caught:
        resnet_keras.grad_cam(basic_model, images("basic"), layer=layer)
    assert phrase in str(caught.value)


def test_not_a_classifier():
    notop = zoo.backbone("basic")
    features = keras.Model(notop.inputs, notop.get_layer("conv4_block1_out").output)
    with pytest.raises(errors.InvalidArgumentError, match=r"one output of class scores, shape \(batch, classes\)"):
        resnet_keras.grad_cam(features, images("basic"))
    with pytest.raises(errors.InvalidArgumentError, match="must be a Keras model"):
        resnet_keras.grad_cam(lambda x: x, images("basic"))


def test_a_backend_without_gradients(basic_model, monkeypatch):
    monkeypatch.setattr(keras.backend, "backend", lambda: "numpy")
    with pytest.raises(errors.UnsupportedBackendError, match="the 'numpy' Keras backend does not compute. "
                                                             "Received: KERAS_BACKEND=numpy"):
        resnet_keras.grad_cam(basic_model, images("basic"))


@pytest.mark.parametrize("module", ["gradcam", "overlays"])
def test_docstring_examples_run(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(f"resnet_keras.explain.{module}"), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
