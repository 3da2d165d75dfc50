"""torchvision/timm state-dict keys of our Keras layers, by rule.

One rule for every model in torchvision's layout (ResNet18/34 and the v1.5
ResNet-50/101/152; timm's ResNets use the same keys):

| torchvision key                         | Keras layer / weight                      |
|-----------------------------------------|-------------------------------------------|
| `conv1.weight`                          | `conv1_conv` kernel                       |
| `bn1.{weight,bias}`                     | `conv1_bn` gamma, beta                    |
| `bn1.{running_mean,running_var}`        | `conv1_bn` moving_mean, moving_variance   |
| `layer{s}.{b}.conv{k}.weight`           | `conv{s+1}_block{b+1}_{k}_conv` kernel    |
| `layer{s}.{b}.bn{k}.*`                  | `conv{s+1}_block{b+1}_{k}_bn` (as bn1)    |
| `layer{s}.{b}.downsample.0.weight`      | `conv{s+1}_block{b+1}_0_conv` kernel      |
| `layer{s}.{b}.downsample.1.*`           | `conv{s+1}_block{b+1}_0_bn` (as bn1)      |
| `fc.weight`, `fc.bias`                  | `predictions` kernel, bias                |

`num_batches_tracked` has no counterpart. Conv kernels transpose from
torch's (out, in, h, w) to Keras' (h, w, in, out), the fc weight from
(out, in) to (in, out).
"""

from __future__ import annotations

import re

from ...errors import InvalidArgumentError

IGNORED_SUFFIX = ".num_batches_tracked"  # a BN step counter, not a weight
HEAD_PREFIX = "fc."

_LAYER = re.compile(r"conv(\d+)_block(\d+)_(\d)_(conv|bn)$")
_BN_WEIGHTS = {
    "gamma": "weight",
    "beta": "bias",
    "moving_mean": "running_mean",
    "moving_variance": "running_var",
}
_CONV_WEIGHTS = {"kernel": "weight", "bias": "bias"}


def torchvision_key(layer_name: str, weight_name: str) -> str:
    """The torchvision state-dict key of one weight of a torch-layout model.

    Args:
        layer_name: A weighted layer of the Keras model, e.g.
            `"conv3_block1_0_conv"`.
        weight_name: The weight's name in that layer (`"kernel"`, `"bias"`,
            `"gamma"`, `"beta"`, `"moving_mean"`, `"moving_variance"`).

    Returns:
        E.g. `"layer2.0.downsample.0.weight"`.

    Example:
        >>> from resnet_keras.resnet_small import torchvision_key
        >>> torchvision_key("conv2_block2_1_bn", "moving_variance")
        'layer1.1.bn1.running_var'
    """
    if layer_name == "predictions":
        module = "fc"
    elif layer_name == "conv1_conv":
        module = "conv1"
    elif layer_name == "conv1_bn":
        module = "bn1"
    elif match := _LAYER.match(layer_name):
        stage, block, index, kind = match.groups()
        prefix = f"layer{int(stage) - 1}.{int(block) - 1}"
        if index == "0":
            module = f"{prefix}.downsample.{0 if kind == 'conv' else 1}"
        else:
            module = f"{prefix}.{kind}{index}"
    else:
        module = None
    weights = _BN_WEIGHTS if layer_name.endswith("_bn") else _CONV_WEIGHTS
    weight = weights.get(weight_name)
    if module is None or weight is None:
        raise InvalidArgumentError(
            "`layer_name` and `weight_name` must name a weight of a torchvision-layout "
            "ResNet (e.g. 'conv2_block1_1_conv', 'kernel'). Received: "
            f"layer_name={layer_name!r}, weight_name={weight_name!r}"
        )
    return f"{module}.{weight}"
