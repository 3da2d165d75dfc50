"""optimize_for_inference: fold BatchNorm away and pick the compute dtype.

The rewrite is generic: it reads the functional graph of the model (which
layer consumes which tensor), decides for every BatchNormalization layer how
to fold it, and then rebuilds the model with `keras.models.clone_model`,
re-calling freshly cloned layers on new inputs. Nothing is matched by layer
name and no Lambda layer is created.

How each BatchNormalization is folded (into the layer before it, into the
layers after it, or into a `ChannelAffine`) is decided in `folding.py`.

Dropout layers (identity at inference) are dropped too. All other layers are
cloned with their weights, so the returned model shares nothing with the
original. Reduced precision (`"bfloat16"`, `"float16"`) sets that dtype
policy on every layer whose output has spatial dimensions (variables and
compute in that dtype: no per-call casts of the kernels); layers with
rank <= 2 outputs (global pooling, the classifier and its softmax) run in
float32, and every model output is float32.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from . import folding
from .precision import KERAS, check
from ..architecture.blocks import graph_depth
from ..errors import InvalidArgumentError


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
    `ChannelAffine` layer named `*_affine`. See inference/folding.py for the
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
    plan = folding.plan_folds(model, precision)
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
                weights = folding.folded_weights(
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
