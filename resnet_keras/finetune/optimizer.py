"""Layer groups, per-group learning rates and the learning-rate schedule.

Groups, from the head down: `predictions` (the new classifier), then the
stages of the backbone deepest first (conv5, conv4, ... conv2), then the
stem (conv1). Group `d` (the head is 0) trains at `stage_lr_decay ** d`
times the learning rate: the discriminative learning rates of fastai.

Keras optimizers have one learning rate. `GroupAdamW` scales it per
variable inside `update_step` (the step itself, not the gradient: Adam is
invariant to a gradient's scale, so scaling gradients would change
nothing) and scales the decoupled weight decay the same way. BatchNorm
parameters and biases get no weight decay.
"""

from __future__ import annotations

import math
import re
from typing import Mapping, Sequence

import keras
from keras import ops

HEAD = "predictions"
_STAGE = re.compile(r"conv(\d+)_")


def layer_groups(model: keras.Model) -> list[list[keras.layers.Layer]]:
    """Weighted layers by group: [head], [deepest stage], ..., [stem]."""
    stages: dict[int, list] = {}
    head = []
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name == HEAD:
            head.append(layer)
            continue
        match = _STAGE.match(layer.name)
        # V2's final `post_bn` belongs to the last stage.
        stage = int(match.group(1)) if match else max(stages, default=0) + 1
        stages.setdefault(stage, []).append(layer)
    if not head:
        raise ValueError(f"model {model.name!r} has no {HEAD!r} layer")
    return [head, *(stages[s] for s in sorted(stages, reverse=True))]


def is_batchnorm(layer: keras.layers.Layer) -> bool:
    return isinstance(layer, keras.layers.BatchNormalization)


def lr_multipliers(groups: Sequence[Sequence[keras.layers.Layer]], decay: float) -> dict[str, float]:
    """Variable path -> learning-rate factor: decay ** (group depth below the head)."""
    return {variable.path: decay ** depth
            for depth, layers in enumerate(groups) for layer in layers for variable in layer.weights}


def no_decay_variables(model: keras.Model) -> list:
    """BatchNorm scales and shifts and every bias: no weight decay (timm, fastai)."""
    return [v for layer in model.layers for v in layer.trainable_weights
            if is_batchnorm(layer) or v.name == "bias"]


class GroupAdamW(keras.optimizers.AdamW):
    """AdamW whose step (and weight decay) is scaled per variable by `multipliers[path]`."""

    def __init__(self, *, multipliers: Mapping[str, float], **kwargs):
        super().__init__(**kwargs)
        self._multipliers = dict(multipliers)
        self._scales: tuple[float, ...] = ()

    def build(self, variables):
        super().build(variables)
        self._scales = tuple(float(self._multipliers.get(v.path, 1.0)) for v in variables)

    def _scale(self, variable) -> float:
        return self._scales[self._get_variable_index(variable)]

    def update_step(self, gradient, variable, learning_rate):
        super().update_step(gradient, variable, learning_rate * self._scale(variable))

    def _apply_weight_decay(self, variables):
        if self.weight_decay is None:
            return
        for variable in variables:
            if self._use_weight_decay(variable):
                lr = ops.cast(self.learning_rate, variable.dtype) * self._scale(variable)
                variable.assign(variable - variable * ops.cast(self.weight_decay, variable.dtype) * lr)


class PhaseSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """The learning rate of one phase (head, or unfrozen), by the step within it.

    "cosine": linear warmup from 0 over `warmup` of the steps, then cosine
    decay to 1% of `peak`. "onecycle" (fastai's `fit_one_cycle`): cosine
    from peak/25 up to `peak` over `warmup` (at least 25%) of the steps,
    then cosine down to peak/1e5.
    """

    def __init__(self, peak: float, steps: int, warmup: float, kind: str):
        self.peak, self.steps, self.kind = float(peak), max(int(steps), 1), kind
        share = max(warmup, 0.25) if kind == "onecycle" else warmup
        self.warmup_steps = int(round(self.steps * share))

    def __call__(self, step):
        step = ops.cast(step, "float32")
        peak, warmup = self.peak, float(self.warmup_steps)
        rest = float(max(self.steps - self.warmup_steps, 1))
        progress = ops.clip((step - warmup) / rest, 0.0, 1.0)
        cosine = 0.5 * (1.0 + ops.cos(math.pi * progress))
        if self.kind == "onecycle":
            up = ops.clip(step / max(warmup, 1.0), 0.0, 1.0)
            rising = peak / 25 + (peak - peak / 25) * 0.5 * (1.0 - ops.cos(math.pi * up))
            falling = peak / 1e5 + (peak - peak / 1e5) * cosine
        else:
            rising = peak * (step + 1.0) / max(warmup, 1.0)
            falling = peak * (0.01 + 0.99 * cosine)
        return ops.where(step < warmup, rising, falling)

    def get_config(self):
        return dict(peak=self.peak, steps=self.steps, warmup_steps=self.warmup_steps, kind=self.kind)


def make_optimizer(variables: Sequence, *, schedule: PhaseSchedule, weight_decay: float,
                   multipliers: Mapping[str, float], no_decay: Sequence) -> GroupAdamW:
    """A built GroupAdamW over `variables` (the model's trainable ones, in order)."""
    optimizer = GroupAdamW(learning_rate=schedule, weight_decay=weight_decay, multipliers=multipliers)
    optimizer.exclude_from_weight_decay(var_list=list(no_decay))
    optimizer.build(list(variables))
    return optimizer


def optimizer_state(optimizer: GroupAdamW) -> dict:
    """Optimizer variables by name (the step count, moments per model variable)."""
    return {v.name: v.numpy() for v in optimizer.variables}


def load_optimizer_state(optimizer: GroupAdamW, state: Mapping, *, strict: bool) -> None:
    """Set the variables of `optimizer` that `state` names; all of them when `strict`."""
    for variable in optimizer.variables:
        if variable.name in state:
            variable.assign(state[variable.name])
        elif strict:
            raise KeyError(f"optimizer variable {variable.name!r} is not in the checkpoint")
