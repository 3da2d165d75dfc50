"""Every option of a fine-tuning run, checked once, as a frozen record.

`Settings` is what decides the numbers of a run: a rerun into the same
RUN_DIR must have equal settings to resume it. `check_options` turns the
keyword arguments of `fine_tune` into one (no Keras, no disk, no network),
so a wrong option fails before anything is built, fetched or written.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Mapping, Sequence

from .._imagenet import MODES
from ..errors import InvalidArgumentError
from ..inference.precision import KERAS

UNFREEZE = ("all", "stages", "none")
BATCHNORM = ("frozen", "train")
SCHEDULES = ("cosine", "onecycle")
KEEP = ("best", "last")
HEAD_INIT = ("probe", "random")
# The precisions a Keras model computes in (inference/precision.py), or "auto".
# float16 needs a GPU to be faster; on CPUs bfloat16 is the reduced precision.
PRECISIONS = ("auto", *KERAS)
# "auto": mixed bfloat16 where the hardware computes it natively (CPUs with
# AVX-512 BF16 or AMX, GPUs of compute capability 8.0 and up), else float32
# (model.resolve_precision). Measured on this project's CPU: ResNet50 training
# ran 1.15x faster in bfloat16 (benchmarks/finetune_bench.py and
# docs/finetune.md, "Speed", give the full numbers). The head is float32 either way.
DEFAULT_PRECISION = "auto"


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """Random transforms of the training images (never of validation images).

    Attributes:
        crop_scale: Area of the random crop as a share of the image,
            (smallest, largest); the crop is resized to the input size.
            Inception/timm use (0.08, 1.0) on ImageNet; small fine-tuning
            sets keep more of each image.
        crop_ratio: Aspect ratio (width / height) range of the crop.
        flip: Random horizontal flips (turn off for text, digits, ...).
    """

    crop_scale: tuple[float, float] = (0.25, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True

    def __post_init__(self):
        low, high = _pair("augment.crop_scale", self.crop_scale)
        if not 0 < low <= high <= 1:
            raise _fail("`augment.crop_scale` must be (low, high) with 0 < low <= high <= 1.",
                        f"crop_scale={self.crop_scale!r}")
        ratio_low, ratio_high = _pair("augment.crop_ratio", self.crop_ratio)
        if not 0 < ratio_low <= ratio_high:
            raise _fail("`augment.crop_ratio` must be (low, high) with 0 < low <= high.",
                        f"crop_ratio={self.crop_ratio!r}")
        check_bool("augment.flip", self.flip)
        object.__setattr__(self, "crop_scale", (low, high))
        object.__setattr__(self, "crop_ratio", (ratio_low, ratio_high))


@dataclasses.dataclass(frozen=True)
class Settings:
    """What a run does; see `fine_tune` for each field's meaning."""

    model: str
    weights: str  # a tag, a path as given, or "none"
    weights_hash: str  # of the file the backbone loads, "none" for random weights
    input_size: int
    preprocessing: str | None
    epochs: int
    head_epochs: int
    batch_size: int
    lr: float
    head_lr: float
    stage_lr_decay: float
    unfreeze: str
    batchnorm: str
    schedule: str
    warmup: float
    weight_decay: float
    label_smoothing: float
    augment: Augmentation | None
    class_weight: str | tuple[float, ...] | None
    keep: str
    precision: str
    validation_split: float
    seed: int
    head_init: str = "probe"
    # The eval transform's shorter side before the center `input_size` crop
    # (the weights' `resize_size`, scaled to `input_size`); None: a plain resize.
    resize_size: int | None = None

    @property
    def total_epochs(self) -> int:
        return self.head_epochs + self.epochs

    def as_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if self.augment is not None:
            data["augment"] = {k: list(v) if isinstance(v, tuple) else v
                               for k, v in dataclasses.asdict(self.augment).items()}
        if isinstance(self.class_weight, tuple):
            data["class_weight"] = list(self.class_weight)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Settings:
        data = dict(data)
        if data.get("augment") is not None:
            data["augment"] = Augmentation(**{k: tuple(v) if isinstance(v, list) else v
                                              for k, v in data["augment"].items()})
        if isinstance(data.get("class_weight"), list):
            data["class_weight"] = tuple(data["class_weight"])
        return cls(**data)


def _fail(rule: str, received: str, remedy: str = "") -> InvalidArgumentError:
    return InvalidArgumentError(f"{rule} Received: {received}" + (f". {remedy}" if remedy else ""))


def _pair(name: str, value: Any) -> tuple[float, float]:
    if (isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2
            or not all(_is_number(v) for v in value)):
        raise _fail(f"`{name}` must be a pair of numbers (low, high).", f"{name.split('.')[-1]}={value!r}")
    return float(value[0]), float(value[1])


def _is_number(value: Any) -> bool:
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(float(value)))


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail(f"`{name}` must be True or False.", f"{name.split('.')[-1]}={value!r}")
    return value


def check_int(name: str, value: Any, least: int) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < least:
        raise _fail(f"`{name}` must be an integer of at least {least}.", f"{name}={value!r}")
    return int(value)


def check_float(name: str, value: Any, low: float, high: float, *, low_open: bool = False,
                high_open: bool = False) -> float:
    ok = _is_number(value) and (low < value if low_open else low <= value) and (
        value < high if high_open else value <= high)
    if not ok:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise _fail(f"`{name}` must be a number in {interval}.", f"{name}={value!r}")
    return float(value)


def check_choice(name: str, value: Any, choices: Sequence) -> Any:
    if value not in choices:
        raise _fail(f"`{name}` must be one of {', '.join(map(repr, choices))}.", f"{name}={value!r}")
    return value


def check_augment(augment: Any) -> Augmentation | None:
    if augment is True:
        return Augmentation()
    if augment is False or augment is None:
        return None
    if isinstance(augment, Augmentation):
        return augment
    raise _fail("`augment` must be True (the default transforms), False (none) or an "
                "`Augmentation`.", f"augment={augment!r}")


def check_class_weight(class_weight: Any) -> str | tuple[float, ...] | None:
    """"balanced", None, or one positive weight per class (a list, or a dict index -> weight)."""
    if class_weight is None or class_weight == "balanced":
        return class_weight
    if isinstance(class_weight, Mapping):
        keys = sorted(class_weight)
        if keys != list(range(len(keys))):
            raise _fail("`class_weight` as a dict must map every class index 0..n-1 to a weight.",
                        f"class_weight keys {keys[:10]!r}")
        class_weight = [class_weight[k] for k in keys]
    if (isinstance(class_weight, (str, bytes)) or not isinstance(class_weight, Sequence)
            or not class_weight or not all(_is_number(w) and w > 0 for w in class_weight)):
        raise _fail("`class_weight` must be 'balanced', None, or one positive number per class.",
                    f"class_weight={class_weight!r}")
    return tuple(float(w) for w in class_weight)


def check_preprocessing(preprocessing: Any) -> None:
    if preprocessing is not None and preprocessing not in MODES:
        raise _fail(f"`preprocessing` must be None (the weights' own) or one of {MODES}.",
                    f"preprocessing={preprocessing!r}")


def check_options(**options: Any) -> dict[str, Any]:
    """The options of `fine_tune` that do not need the model or the data, checked."""
    checked = dict(
        epochs=check_int("epochs", options["epochs"], 0),
        head_epochs=check_int("head_epochs", options["head_epochs"], 0),
        batch_size=check_int("batch_size", options["batch_size"], 1),
        lr=check_float("lr", options["lr"], 0, 1, low_open=True),
        stage_lr_decay=check_float("stage_lr_decay", options["stage_lr_decay"], 0, 1, low_open=True),
        unfreeze=check_choice("unfreeze", options["unfreeze"], UNFREEZE),
        batchnorm=check_choice("batchnorm", options["batchnorm"], BATCHNORM),
        schedule=check_choice("schedule", options["schedule"], SCHEDULES),
        warmup=check_float("warmup", options["warmup"], 0, 1, high_open=True),
        weight_decay=check_float("weight_decay", options["weight_decay"], 0, 1),
        label_smoothing=check_float("label_smoothing", options["label_smoothing"], 0, 1, high_open=True),
        augment=check_augment(options["augment"]),
        class_weight=check_class_weight(options["class_weight"]),
        keep=check_choice("keep", options["keep"], KEEP),
        precision=check_choice("precision", options["precision"], PRECISIONS),
        validation_split=check_float("validation_split", options["validation_split"], 0, 1, high_open=True),
        seed=check_int("seed", options["seed"], 0),
        head_init=check_choice("head_init", options["head_init"], HEAD_INIT),
    )
    head_lr = options["head_lr"]
    # fastai's rule: the head alone trains at twice the rate of the unfrozen net's head.
    checked["head_lr"] = (min(2 * checked["lr"], 1.0) if head_lr is None
                          else check_float("head_lr", head_lr, 0, 1, low_open=True))
    if checked["head_epochs"] + checked["epochs"] == 0:
        raise _fail("`epochs` + `head_epochs` must be at least 1: there is nothing to train.",
                    "epochs=0, head_epochs=0")
    if checked["unfreeze"] == "none" and checked["epochs"]:
        raise _fail("With unfreeze='none' (a linear probe: the backbone stays frozen) only "
                    "`head_epochs` train; `epochs` counts epochs after unfreezing.",
                    f"epochs={checked['epochs']}", "Pass epochs=0 and set head_epochs instead")
    size = options["input_size"]
    if size is not None:
        check_int("input_size", size, 1)
    check_preprocessing(options["preprocessing"])
    return checked
