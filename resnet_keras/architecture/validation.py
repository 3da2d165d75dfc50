"""Every argument rule of the builders and its message, in one place.

The rules are keras.applications' (`obtain_input_shape`,
`validate_activation`), plus checks where keras is silent or fails late.
All of them run before any network or disk work.
"""

from __future__ import annotations

import numbers
from typing import Any

from .specs import SHORTCUT_OPTIONS
from ..data_format import channel_axis, current, image_shape, layout, spatial_dims
from ..errors import InvalidArgumentError

POOLING_MODES = (None, "avg", "max")
PRETRAINED_ACTIVATIONS = (None, "softmax")


def _fail(rule: str, received: str, remedy: str = "") -> InvalidArgumentError:
    message = f"{rule} Received: {received}"
    if remedy:
        message += f". {remedy}"
    return InvalidArgumentError(message)


def _is_int(value: Any) -> bool:
    # bool is an int subclass, but `True` as a size is always a mistake.
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_flag(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise _fail(f"`{name}` must be True or False.", f"{name}={value!r}")


def check_pooling(pooling: Any) -> None:
    if pooling not in POOLING_MODES:
        raise _fail(
            "`pooling` must be None, 'avg' or 'max'.",
            f"pooling={pooling!r}",
        )


def check_classes(classes: Any, *, include_top: bool, pretrained_top: bool):
    if not _is_int(classes) or classes < 1:
        raise _fail(
            "`classes` must be a positive integer.", f"classes={classes!r}"
        )
    if include_top and pretrained_top and classes != 1000:
        raise _fail(
            "With pretrained weights and `include_top=True`, `classes` "
            "must be 1000 (the ImageNet head).",
            f"classes={classes!r}",
            "Use `include_top=False` and add your own head to train "
            "another number of classes.",
        )


def check_classifier_activation(activation: Any, *, pretrained: bool) -> None:
    import keras  # here, not at the top: the CLI checks weights without Keras

    try:
        resolved = keras.activations.get(activation)
    except (ValueError, TypeError) as error:
        raise _fail(
            "`classifier_activation` must be None, a Keras activation name "
            "or a callable.",
            f"classifier_activation={activation!r}",
        ) from error
    allowed = {keras.activations.get(a) for a in PRETRAINED_ACTIVATIONS}
    if pretrained and resolved not in allowed:
        raise _fail(
            "With pretrained weights, `classifier_activation` must be None "
            "or 'softmax'.",
            f"classifier_activation={activation!r}",
            "Build with None and apply your activation to the logits.",
        )


def check_name(name: Any) -> None:
    if not isinstance(name, str) or not name:
        raise _fail("`name` must be a non-empty string.", f"name={name!r}")


def normalize_input_shape(
    input_shape: Any,
    *,
    default_size: int,
    min_size: int,
    include_top: bool,
    pretrained: bool,
    data_format: str,
    adapt_input_channels: bool = False,
) -> tuple:
    """Check `input_shape` and return it as a tuple, filling the default.

    Mirrors keras' `obtain_input_shape`: a pretrained model with its top
    needs exactly the default shape; otherwise any spatial size of at least
    `min_size` (or None without the top) and, with pretrained weights,
    exactly 3 channels (any number with `adapt_input_channels`).
    """
    default = image_shape(default_size, data_format)
    if input_shape is None:
        if include_top:
            return default
        return image_shape(None, data_format)

    if not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3:
        raise _fail(
            f"`input_shape` must be a tuple of 3 dimensions {layout(data_format)} "
            f"(image_data_format={data_format!r}).",
            f"input_shape={input_shape!r}",
        )
    shape = tuple(input_shape)
    channels = shape[channel_axis(data_format, batched=False)]
    spatial = spatial_dims(shape, data_format, batched=False)

    for dim in shape:
        if dim is not None and (not _is_int(dim) or dim < 1):
            raise _fail(
                "Every dimension of `input_shape` must be a positive integer "
                "or None.",
                f"input_shape={input_shape!r}",
            )
    if channels is None:
        raise _fail(
            "The channel dimension of `input_shape` must be known.",
            f"input_shape={input_shape!r} (image_data_format={data_format!r})",
        )
    if pretrained and channels != 3 and not adapt_input_channels:
        raise _fail(
            "With pretrained weights the input must have 3 channels.",
            f"input_shape={input_shape!r} (image_data_format={data_format!r})",
            "Pass adapt_input_channels=True to adapt the pretrained stem "
            "convolution to your channels, or use weights=None to train on "
            "other inputs.",
        )
    if adapt_input_channels:  # the channels are free, the size is not
        default = image_shape(default_size, data_format, channels)
    if include_top and pretrained and shape != default:
        raise _fail(
            "With pretrained weights and `include_top=True`, `input_shape` "
            f"must be {default}.",
            f"input_shape={input_shape!r}",
            "Use `include_top=False` for other input sizes.",
        )
    if any(d is not None and d < min_size for d in spatial):
        raise _fail(
            f"Input height and width must be at least {min_size}.",
            f"input_shape={input_shape!r}",
        )
    if include_top and None in spatial:
        raise _fail(
            "With `include_top=True`, `input_shape` must be fully static.",
            f"input_shape={input_shape!r}",
            "Give all dimensions or use `include_top=False`.",
        )
    return shape


def input_shape_to_build(
    input_tensor: Any,
    input_shape: Any,
    *,
    default_size: int,
    min_size: int,
    include_top: bool,
    pretrained: bool,
    adapt_input_channels: bool,
) -> tuple | None:
    """The checked shape of one image for the model's new Input (None: `input_tensor` is the input).

    `input_shape` follows `normalize_input_shape`; a given `input_tensor`
    must agree with it and meet the same size rules, with or without the
    head (keras lets a tensor of any valid size through).
    """
    rules = dict(
        default_size=default_size,
        min_size=min_size,
        pretrained=pretrained,
        data_format=current(),
        adapt_input_channels=adapt_input_channels,
    )
    if input_tensor is not None:
        normalize_input_shape(check_input_tensor(input_tensor, input_shape), include_top=False, **rules)
        return None
    return normalize_input_shape(input_shape, include_top=include_top, **rules)


def check_input_tensor(input_tensor: Any, input_shape: Any) -> tuple:
    """Check a user-supplied input tensor; return its per-sample shape."""
    import keras

    if not keras.backend.is_keras_tensor(input_tensor):
        raise _fail(
            "`input_tensor` must be a Keras tensor, e.g. from `keras.Input`.",
            f"input_tensor of type {type(input_tensor).__name__}",
            "Wrap arrays with `keras.Input(tensor=...)` or pass "
            "`input_shape` instead.",
        )
    if len(input_tensor.shape) != 4:
        raise _fail(
            "`input_tensor` must be a batch of images (rank 4).",
            f"input_tensor.shape={tuple(input_tensor.shape)}",
        )
    tensor_shape = tuple(input_tensor.shape[1:])
    if input_shape is not None:
        given = tuple(input_shape) if isinstance(input_shape, (tuple, list)) else None
        if given is None or len(given) != 3 or any(
            a is not None and b is not None and a != b
            for a, b in zip(given, tensor_shape)
        ):
            raise _fail(
                "`input_shape` must agree with the shape of `input_tensor`.",
                f"input_shape={input_shape!r}, input_tensor.shape="
                f"{tuple(input_tensor.shape)}",
                "Pass only one of them.",
            )
    return tensor_shape


def check_adapt_input_channels(adapt: Any, *, has_weights: bool) -> None:
    check_flag("adapt_input_channels", adapt)
    if adapt and not has_weights:
        raise _fail(
            "`adapt_input_channels=True` adapts pretrained weights to the "
            "input's channels, so it needs `weights`.",
            "adapt_input_channels=True, weights=None",
            "Pass a weights tag or file, or leave adapt_input_channels out.",
        )


def check_shortcut(shortcut: Any) -> str:
    """The CIFAR ResNets' shortcut option of the paper (section 4.2)."""
    if shortcut not in SHORTCUT_OPTIONS:
        raise _fail(
            "`shortcut` must be 'A' (identity with zero-padded channels, no "
            "parameters) or 'B' (1x1 projection where the shape changes).",
            f"shortcut={shortcut!r}",
        )
    return shortcut
