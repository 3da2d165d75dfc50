"""Where Grad-CAM looks: a model split at its last feature stage.

`split(model, layer)` returns a `Split`: `features` (the model's input to
the target feature map A) and `head` (A to the class scores). Grad-CAM
differentiates only `head`, so one explanation costs one forward pass plus
a backward pass through the few layers after A.

The model may be a zoo model or a keras.applications ResNet, or hold one as
a nested model (a fine-tuned head on a backbone, a Sequential). The graph
is first re-traced flat, every nested functional model expanded into its
layers (the same layer objects: no weights are copied), so that A and the
scores are tensors of one graph whatever the nesting.

Scores are taken before the output's softmax or sigmoid (Selvaraju et al.
use the logit): a softmax score's gradient also carries every other class'
evidence, negatively.
"""

from __future__ import annotations

import dataclasses
import re
import weakref
from typing import Callable

import keras

from ..architecture.specs import current_data_format
from ..errors import InvalidArgumentError, did_you_mean
from ..architecture.features import feature_info

_STAGE_KEY = re.compile(r"C\d+$")
_SQUASHING = ("softmax", "sigmoid")  # output activations whose input is the score


@dataclasses.dataclass(frozen=True)
class Split:
    """A model cut at its Grad-CAM target.

    Attributes:
        features: input -> (the target feature map A, the model's output).
        head: A -> the scores' input: the logits, or the input of a Dense
            whose softmax or sigmoid is taken off by `final`.
        final: That Dense's linear part in float32, or None.
        layer: Name of the layer whose output A is.
        data_format: Layout of A ("channels_last" or "channels_first").
        classes: Number of scores per image.
        compiled: Functions a backend compiled for this split, by name.
    """

    features: keras.Model
    head: keras.Model
    final: Callable | None
    layer: str
    data_format: str
    classes: int
    compiled: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)

    def scores(self, a):
        """Float32 class scores (before softmax/sigmoid) from feature maps A."""
        x = self.head(a, training=False)
        if self.final is not None:
            x = self.final(x)
        return keras.ops.cast(x, "float32")


# Built once per model and target (a split adds nodes to the model's layers).
_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def split(model: keras.Model, layer: str | None = None) -> Split:
    """The model cut at `layer` (None: the last feature stage of its ResNet).

    Raises:
        InvalidArgumentError: `model` is not a single-input, single-output
            Keras model with class scores, holds no ResNet feature stage (and
            `layer` is None), or `layer` names no 4-D feature map.
    """
    _check_model(model)
    if layer is not None and not isinstance(layer, str):
        raise InvalidArgumentError(
            "`layer` must be None (the last feature stage), a stage name such as 'C4', or a "
            f"layer name. Received: layer={layer!r}"
        )
    per_model = _CACHE.setdefault(model, {})
    if layer not in per_model:
        per_model[layer] = _split(model, layer)
    return per_model[layer]


def _check_model(model) -> None:
    if not isinstance(model, keras.Model):
        raise InvalidArgumentError(
            "`model` must be a Keras model (a resnet_keras or keras.applications ResNet, or a "
            f"model built on one). Received: model of type {type(model).__name__}"
        )
    try:
        inputs, outputs = model.inputs, model.outputs
    except (AttributeError, ValueError) as error:  # a Sequential that was never built
        raise InvalidArgumentError(
            "`model` must be built with a known input shape (a functional or built Sequential "
            f"model). Received: model={model.name!r}. Call it once or give it an Input first."
        ) from error
    if len(inputs) != 1 or len(outputs) != 1 or len(outputs[0].shape) != 2:
        raise InvalidArgumentError(
            "`model` must have one image input and one output of class scores, shape "
            f"(batch, classes). Received: model={model.name!r} with {len(inputs)} input(s) and "
            f"output shapes {[tuple(o.shape) for o in outputs]}"
        )


def _functional(model):
    """The functional graph a nested model runs, or None for a plain layer."""
    if isinstance(model, keras.Sequential):
        return model._functional  # noqa: SLF001 (built Sequentials run it)
    if isinstance(model, keras.Model) and hasattr(model, "_run_through_graph"):
        return model
    return None


def _flat(model, inputs, calls: dict):
    """Re-trace `model` on `inputs`, expanding nested functional models.

    `calls` collects, per layer (by id), each (layer, positional args,
    output) of the flat graph.
    """

    def call(op, *args, **kwargs):
        inner = _functional(op)
        if inner is not None:  # `training=` of a nested call: the explanation runs in inference
            return _flat(inner, args[0], calls)
        output = op(*args, **kwargs)
        calls.setdefault(id(op), []).append((op, args, output))
        return output

    graph = _functional(model)
    return graph._run_through_graph(inputs, call_fn=call)  # noqa: SLF001 (Functional.call's own walk)


def _carriers(model) -> list[keras.Model]:
    """Models in `model` (itself included, depth first) whose ResNet stages are known."""
    found = []
    try:
        feature_info(model)
        return [model]
    except InvalidArgumentError:
        pass
    for inner in model.layers:
        if _functional(inner) is not None:
            found.extend(_carriers(inner))
    return found


def _target(model, layer: str | None, by_name: dict) -> tuple[keras.layers.Layer, str | None]:
    """The target layer and the data format its ResNet was built with (None if unknown)."""
    carriers = _carriers(model)
    if layer is None or _STAGE_KEY.match(layer):
        if len(carriers) != 1:
            found = "none" if not carriers else ", ".join(repr(c.name) for c in carriers)
            raise InvalidArgumentError(
                "`model` must hold exactly one ResNet with feature stages (a resnet_keras or "
                "keras.applications ResNet, flat or nested) for Grad-CAM to find its last "
                f"convolutional stage. Received: model={model.name!r}, ResNets found: {found}. "
                "Pass layer='NAME' of a convolutional layer's output to explain another model."
            )
        stages = {info.name: info.layer for info in feature_info(carriers[0])}
        key = layer or list(stages)[-1]
        if key not in stages:
            raise InvalidArgumentError(
                f"`layer` must name a stage of {carriers[0].name} ({', '.join(stages)}) or a "
                f"layer. Received: layer={layer!r}"
            )
        layer = stages[key]
    matches = by_name.get(layer, [])
    if len(matches) != 1:
        why = "names no layer" if not matches else "names several layers"
        suggestion = did_you_mean(layer, by_name) if not matches else ""
        raise InvalidArgumentError(
            f"`layer` must name one layer of the model; {layer!r} {why}.{suggestion} "
            f"Received: layer={layer!r}"
        )
    carrier_format = carriers[0].get_layer("conv1_conv").data_format if len(carriers) == 1 else None
    return matches[0], carrier_format


def _split(model: keras.Model, layer: str | None) -> Split:
    source = model.inputs[0]
    inputs = keras.Input(batch_shape=source.shape, dtype=source.dtype, name="explain_input")
    calls: dict = {}
    outputs = keras.tree.flatten(_flat(model, inputs, calls))[0]
    by_name: dict[str, list] = {}
    for op, *_ in (entries[0] for entries in calls.values()):
        by_name.setdefault(op.name, []).append(op)
    target, carrier_format = _target(model, layer, by_name)
    if len(calls[id(target)]) != 1:
        raise InvalidArgumentError(
            f"`layer` must name a layer the model calls once; {target.name!r} is called "
            f"{len(calls[id(target)])} times (a shared backbone?). Received: layer={layer!r}. "
            "Explain each branch as a model of its own."
        )
    a = calls[id(target)][0][2]
    if not isinstance(a, keras.KerasTensor) or len(a.shape) != 4:
        raise InvalidArgumentError(
            "`layer` must output a 4-D feature map (batch, height, width, channels) or its "
            f"channels_first layout. Received: layer={target.name!r} with output "
            f"{getattr(a, 'shape', a)}"
        )
    scores, final = _before_squashing(outputs, calls)
    features = keras.Model(inputs, [a, outputs], name=f"{model.name}_explain_features")
    try:
        head = keras.Model(a, scores, name=f"{model.name}_explain_head")
    except ValueError as error:  # Keras: the output needs a tensor other than A
        raise InvalidArgumentError(
            f"`layer` must be a point every path to the output passes through; {target.name!r} "
            f"is bypassed ({error}). Received: layer={layer!r}. Pick a later layer."
        ) from error
    data_format = getattr(target, "data_format", None) or carrier_format or current_data_format()
    return Split(features, head, final, target.name, data_format, int(outputs.shape[-1]))


def _before_squashing(outputs, calls: dict):
    """(scores tensor, final): the input of an output softmax/sigmoid, else the output."""
    for op, args, output in (entry for entries in calls.values() for entry in entries):
        if output is not outputs:
            continue
        activation = getattr(op, "activation", None)
        squashes = any(activation is keras.activations.get(name) for name in _SQUASHING)
        if isinstance(op, keras.layers.Softmax) or (squashes and isinstance(op, keras.layers.Activation)):
            return args[0], None
        if squashes and isinstance(op, keras.layers.Dense):
            return args[0], _linear(op)
    return outputs, None


def _linear(dense: keras.layers.Dense) -> Callable:
    """The Dense layer without its activation, computed in float32."""

    def logits(x):
        y = keras.ops.matmul(keras.ops.cast(x, "float32"), keras.ops.cast(dense.kernel, "float32"))
        return y + keras.ops.cast(dense.bias, "float32") if dense.use_bias else y

    return logits
