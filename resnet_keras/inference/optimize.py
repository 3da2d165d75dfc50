"""optimize_for_inference: fold BatchNorm away and pick the compute dtype; the folding plan.

The rewrite is generic: it reads the functional graph of the model (which
layer consumes which tensor), decides for every BatchNormalization layer how
to fold it, and then rebuilds the model with `keras.models.clone_model`,
re-calling freshly cloned layers on new inputs. Nothing is matched by layer
name and no Lambda layer is created.

How each BatchNormalization is folded (into the layer before it, into the
layers after it, or into a `ChannelAffine`) is decided by the folding plan (`plan_folds`, below).

Dropout layers (identity at inference) are dropped too. All other layers are
cloned with their weights, so the returned model shares nothing with the
original. Reduced precision (`"bfloat16"`, `"float16"`) sets that dtype
policy on every layer whose output has spatial dimensions (variables and
compute in that dtype: no per-call casts of the kernels); layers with
rank <= 2 outputs (global pooling, the classifier and its softmax) run in
float32, and every model output is float32.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any

import keras
import numpy as np

from ..architecture.graph import graph_depth
from ..architecture.specs import channel_axis
from ..errors import InvalidArgumentError
from .precision import KERAS, check


@keras.saving.register_keras_serializable(package="resnet_keras")
class ChannelAffine(keras.layers.Layer):
    """`y = x * scale + shift` along one channel axis (a frozen BatchNorm).

    What `optimize_for_inference` leaves of a BatchNormalization layer that
    cannot be folded into a neighbouring convolution.

    Args:
        axis: The channel axis (-1 for channels_last, 1 for channels_first).
    """

    def __init__(self, axis: int = -1, **kwargs):
        super().__init__(**kwargs)
        self.axis = int(axis)

    def build(self, input_shape):
        channels = input_shape[self.axis]
        self.scale = self.add_weight(
            name="scale", shape=(channels,), initializer="ones", trainable=False
        )
        self.shift = self.add_weight(
            name="shift", shape=(channels,), initializer="zeros", trainable=False
        )

    def call(self, inputs):
        shape = [1] * len(inputs.shape)
        shape[self.axis] = -1
        scale = keras.ops.reshape(self.scale, shape)
        shift = keras.ops.reshape(self.shift, shape)
        return inputs * scale + shift

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


class _Passthrough:
    """Stands in for a dropped layer: its call returns its input."""


def functional_model(model: Any) -> keras.Model:
    """`model` as a functional keras.Model (a built Sequential is wrapped); a typed error otherwise."""
    if isinstance(model, keras.Sequential):
        if not model.built:
            raise InvalidArgumentError(
                "`model` must be built (call it once or give it an Input) before it can be "
                f"optimized. Received: model={model.name!r} (unbuilt Sequential)"
            )
        inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
        model = keras.Model(inputs, model.outputs, name=model.name)
    if not isinstance(model, keras.Model) or getattr(model, "_nodes_by_depth", None) is None:
        raise InvalidArgumentError(
            "`model` must be a functional keras.Model (as every resnet_keras builder "
            f"returns) or a built Sequential. Received: model={type(model).__name__}"
        )
    return model


def _affine_name(name: str) -> str:
    return f"{name[:-3]}_affine" if name.endswith("_bn") else f"{name}_affine"


def optimize_for_inference(model: keras.Model, precision: str = "float32") -> keras.Model:
    """A new model for inference: BatchNorm folded, compute in `precision`.

    The original model is left untouched; the new one shares no variables
    with it. Layer names stay readable: `conv2_block1_1_conv` keeps its name
    (now with a bias that holds the folded BN), folded `*_bn` layers are gone,
    and a BN that no convolution can absorb (V2 pre-activation) becomes a
    `ChannelAffine` layer named `*_affine`. See the folding plan below for the
    rules. Inference only: the result has no BatchNorm statistics to train.

    Args:
        model: A functional Keras model (any resnet_keras model, with or
            without top, any pooling) or a built Sequential model.
        precision: `"float32"`; `"bfloat16"` (fast on CPUs with AVX-512 BF16
            or AMX, and on recent GPUs/TPUs; float32's range, ~3 significant
            digits); or `"float16"` (GPUs; slow on most CPUs; largest value
            65504, so a deep net whose residual stream grows beyond that
            overflows to inf: check that outputs are finite). The body
            computes (and stores weights) in that dtype; global pooling, the
            classifier and its softmax run in float32 and every output is
            float32.

    Returns:
        A new `keras.Model` with the same inputs, output shapes and name.

    Example:
        >>> import resnet_keras
        >>> model = resnet_keras.ResNet20(weights=None)
        >>> fast = resnet_keras.optimize_for_inference(model, precision="bfloat16")
        >>> [layer.name for layer in fast.layers][1:4]  # conv1_bn is folded away
        ['conv1_conv', 'conv1_relu', 'conv2_block1_1_conv']
    """
    precision = check(precision, KERAS)
    model = functional_model(model)
    plan = plan_folds(model, precision)
    origin: dict[int, Any] = {}  # id(clone) -> original layer
    filled: set[int] = set()

    def clone(layer):
        if id(layer) in plan.drop:
            stand_in = _Passthrough()
            origin[id(stand_in)] = layer
            return stand_in
        dtype = "float32" if id(layer) in plan.float32 else precision
        if isinstance(layer, keras.Model) and getattr(layer, "_nodes_by_depth", None) is not None:
            new = optimize_for_inference(layer, precision)  # nested functional model
            filled.add(id(new))
        elif id(layer) in plan.affine:
            rank = len(layer.input.shape)
            axis = layer.axis % rank - rank
            new = ChannelAffine(axis=axis, name=_affine_name(layer.name), dtype=dtype)
        elif type(layer).__name__ == "Lambda":
            raise InvalidArgumentError(
                "`model` must not contain Lambda layers: optimize_for_inference rebuilds "
                "models from layer configs, and a Lambda's code cannot be rebuilt safely. "
                f"Received: layer={layer.name!r}"
            )
        else:
            config = layer.get_config()
            config["dtype"] = dtype
            if id(layer) in plan.fold_out or id(layer) in plan.fold_in:
                config["use_bias"] = True
            new = layer.__class__.from_config(config)
        origin[id(new)] = layer
        return new

    def call(new, *args, **kwargs):
        if isinstance(new, _Passthrough):
            return args[0]
        if isinstance(new, ChannelAffine):
            kwargs = {}  # a BatchNormalization call may carry mask=/training=
        kwargs.pop("training", None)
        outputs = new(*args, **kwargs)
        if id(new) not in filled:
            filled.add(id(new))
            old = origin[id(new)]
            if id(old) in plan.affine:
                fold = plan.affine[id(old)]
                weights = [fold.scale.astype(np.float32), fold.shift.astype(np.float32)]
            elif id(old) in plan.fold_out or id(old) in plan.fold_in:
                weights = folded_weights(
                    old, plan.fold_in.get(id(old)), plan.fold_out.get(id(old))
                )
            else:
                weights = [variable.numpy() for variable in old.weights]
            new.set_weights(weights)
        return outputs

    # New inputs keep the names of the original InputLayers (clone_model's
    # default would name them after the tensors).
    inputs = keras.tree.map_structure(
        lambda t: keras.Input(
            batch_shape=t.shape, dtype=t.dtype, name=t._keras_history.operation.name
        ),
        model.input,
    )
    with graph_depth(len(model.layers)):  # clone_model walks the graph recursively
        fused = keras.models.clone_model(
            model, input_tensors=inputs, clone_function=clone, call_function=call
        )
    outputs = fused.output
    flat = keras.tree.flatten(outputs)
    if any(keras.backend.standardize_dtype(t.dtype) != "float32" for t in flat):
        def to_float32(tensor):
            if keras.backend.standardize_dtype(tensor.dtype) == "float32":
                return tensor
            name = tensor._keras_history.operation.name
            return keras.layers.Activation("linear", dtype="float32", name=f"{name}_float32")(
                tensor
            )

        with graph_depth(len(fused.layers)):
            fused = keras.Model(
                fused.input, keras.tree.map_structure(to_float32, outputs), name=model.name
            )
    return fused


# --------------------------------------------------------------------------
# Where each BatchNormalization of a functional model goes: the folding plan.
#
# `optimize_for_inference` (optimize.py) reads the plan and rebuilds
# the model. The plan reads the functional graph (which layer consumes which
# tensor); nothing is matched by layer name.
#
# How a BatchNormalization (inference mode, `y = x * s + t` per channel with
# `s = gamma / sqrt(var + eps)` and `t = beta - mean * s`) disappears:
#
# 1. **Into the layer before it** when that is a Conv1D/2D/3D or Dense with a
#    linear activation whose output feeds only this BN: the kernel's output
#    channels are scaled by `s`, the bias becomes `bias * s + t`. This removes
#    every BN of the V1, ResNet-18/34 and CIFAR nets, and the `_1_bn` / `_2_bn`
#    of V2 blocks.
# 2. **Into the layers after it** when every consumer of its output is such a
#    layer that does not pad (valid padding or a 1x1 kernel, no groups): the
#    kernel's input channels are scaled by `s` and `t` is pushed through the
#    kernel into the bias.
# 3. Otherwise it becomes a `ChannelAffine` layer (one multiply-add per
#    element, named like the BN with `_bn` replaced by `_affine`). This is the
#    case of the V2 pre-activation BNs (`..._preact_bn`, `post_bn`): they follow
#    a residual Add whose un-normalized sum is also the next shortcut, and feed
#    a ReLU, so no convolution can absorb them.

# Only these exact classes are folded: their kernels are laid out
# (*spatial, in_channels / groups, out_channels) resp. (in, out) and their
# call is `activation(op(x, kernel) + bias)`. A subclass may change that.
_LINEAR_TYPES = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D, keras.layers.Dense)


@dataclasses.dataclass
class Fold:
    """Per-channel `x * scale + shift` to absorb into a linear layer."""

    scale: np.ndarray
    shift: np.ndarray


@dataclasses.dataclass
class Plan:
    """What happens to each layer (keyed by id of the original layer)."""

    drop: set = dataclasses.field(default_factory=set)  # BN folded, Dropout
    affine: dict = dataclasses.field(default_factory=dict)  # BN -> Fold
    fold_out: dict = dataclasses.field(default_factory=dict)  # linear -> Fold after it
    fold_in: dict = dataclasses.field(default_factory=dict)  # linear -> Fold before it
    float32: set = dataclasses.field(default_factory=set)  # head layers


def _graph(model: keras.Model):
    """The model's call nodes, who produces and who consumes each tensor.

    Reads keras' Functional node map (`_nodes_by_depth`), the structure
    `clone_model` itself walks; nodes of the layers in other models are not
    in it.
    """
    nodes = [
        node
        for depth in sorted(model._nodes_by_depth, reverse=True)
        for node in model._nodes_by_depth[depth]
        if node.operation is not None and not node.is_input
    ]
    producer = {id(t): node for node in nodes for t in node.outputs}
    consumers = collections.defaultdict(list)
    for node in nodes:
        for tensor in node.input_tensors:
            consumers[id(tensor)].append(node)
    calls = collections.Counter(id(node.operation) for node in nodes)
    return nodes, producer, consumers, calls


def _bn_affine(bn: keras.layers.BatchNormalization) -> Fold:
    variance = np.asarray(bn.moving_variance.numpy(), np.float64)
    mean = np.asarray(bn.moving_mean.numpy(), np.float64)
    gamma = np.asarray(bn.gamma.numpy(), np.float64) if bn.scale else 1.0
    beta = np.asarray(bn.beta.numpy(), np.float64) if bn.center else 0.0
    scale = gamma / np.sqrt(variance + bn.epsilon) * np.ones_like(mean)
    return Fold(scale=scale, shift=beta - mean * scale)


def _channel_axis(layer) -> int:
    """Positive-from-the-end channel axis of a linear layer's output: -1 or -(rank+1)."""
    if isinstance(layer, keras.layers.Dense):
        return -1
    ndim = layer.rank + 2  # batch and channels around the spatial dims
    return channel_axis(layer.data_format) % ndim - ndim


def _plain_linear(layer, calls) -> bool:
    return (
        type(layer) in _LINEAR_TYPES
        and calls[id(layer)] == 1
        and getattr(layer, "quantization_mode", None) is None
        and not getattr(layer, "lora_enabled", False)
    )


def _no_padding(layer) -> bool:
    if isinstance(layer, keras.layers.Dense):
        return True
    return layer.groups == 1 and (
        layer.padding == "valid" or all(k == 1 for k in layer.kernel_size)
    )


def plan_folds(model: keras.Model, precision: str) -> Plan:
    nodes, producer, consumers, calls = _graph(model)
    outputs = {id(t) for t in model.outputs}
    plan = Plan()
    for node in nodes:
        layer = node.operation
        if isinstance(layer, keras.layers.Dropout):
            plan.drop.add(id(layer))
        if precision != "float32" and all(len(t.shape) <= 2 for t in node.outputs):
            plan.float32.add(id(layer))
        if type(layer) is not keras.layers.BatchNormalization or calls[id(layer)] != 1:
            continue
        (source,) = node.input_tensors
        rank = len(source.shape)
        axis = layer.axis % rank - rank  # negative, like _channel_axis
        fold = _bn_affine(layer)

        before = producer.get(id(source))
        if (
            before is not None
            and _plain_linear(before.operation, calls)
            and before.operation.activation is keras.activations.linear
            and _channel_axis(before.operation) == axis
            and len(consumers[id(source)]) == 1
            and id(source) not in outputs
            and id(before.operation) not in plan.fold_out
        ):
            plan.fold_out[id(before.operation)] = fold
            plan.drop.add(id(layer))
            continue

        (result,) = node.outputs
        after = consumers[id(result)]
        if (
            after
            and id(result) not in outputs
            and all(
                _plain_linear(n.operation, calls)
                and _no_padding(n.operation)
                and axis == -1  # the kernel's input axis is the tensor's last
                and _channel_axis(n.operation) == -1
                and id(n.operation) not in plan.fold_in
                for n in after
            )
        ):
            for n in after:
                plan.fold_in[id(n.operation)] = fold
            plan.drop.add(id(layer))
            continue

        plan.affine[id(layer)] = fold
    return plan


def folded_weights(layer, fold_in: Fold | None, fold_out: Fold | None):
    kernel = np.asarray(layer.kernel.numpy(), np.float64)
    out_channels = kernel.shape[-1]
    bias = (
        np.asarray(layer.bias.numpy(), np.float64) if layer.use_bias else np.zeros(out_channels)
    )
    if fold_in is not None:
        # W (s x + t) + b = (W s) x + (W t + b); input channels are axis -2.
        in_axis = kernel.ndim - 2
        shape = [1] * kernel.ndim
        shape[in_axis] = -1
        bias = bias + np.tensordot(kernel, fold_in.shift, axes=([in_axis], [0])).reshape(
            -1, out_channels
        ).sum(axis=0)
        kernel = kernel * fold_in.scale.reshape(shape)
    if fold_out is not None:
        kernel = kernel * fold_out.scale
        bias = bias * fold_out.scale + fold_out.shift
    return [kernel.astype(np.float32), bias.astype(np.float32)]
