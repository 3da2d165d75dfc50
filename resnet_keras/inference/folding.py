"""Where each BatchNormalization of a functional model goes: the folding plan.

`optimize_for_inference` (optimize.py) reads the plan and rebuilds
the model. The plan reads the functional graph (which layer consumes which
tensor); nothing is matched by layer name.

How a BatchNormalization (inference mode, `y = x * s + t` per channel with
`s = gamma / sqrt(var + eps)` and `t = beta - mean * s`) disappears:

1. **Into the layer before it** when that is a Conv1D/2D/3D or Dense with a
   linear activation whose output feeds only this BN: the kernel's output
   channels are scaled by `s`, the bias becomes `bias * s + t`. This removes
   every BN of the V1, ResNet-18/34 and CIFAR nets, and the `_1_bn` / `_2_bn`
   of V2 blocks.
2. **Into the layers after it** when every consumer of its output is such a
   layer that does not pad (valid padding or a 1x1 kernel, no groups): the
   kernel's input channels are scaled by `s` and `t` is pushed through the
   kernel into the bias.
3. Otherwise it becomes a `ChannelAffine` layer (one multiply-add per
   element, named like the BN with `_bn` replaced by `_affine`). This is the
   case of the V2 pre-activation BNs (`..._preact_bn`, `post_bn`): they follow
   a residual Add whose un-normalized sum is also the next shortcut, and feed
   a ReLU, so no convolution can absorb them.
"""

from __future__ import annotations

import collections
import dataclasses

import keras
import numpy as np

from ..data_format import channel_axis

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
