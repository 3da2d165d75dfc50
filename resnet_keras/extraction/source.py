"""What `model=` names: a registered model and its weights, or a fine-tuned RUN_DIR.

`open_source(model, weights, ...)` decides once, without Keras, network or
writes (it reads manifests, a local weights file's first bytes, or a run's
run.json), and returns a `Source`: what `classify`, `features`
(`extract_features`) and `export` read (the input size, the eval
transform, the preprocessing, the class names, which weights) and how they
build the Keras model. A fine-tuned model is taken as a zoo model is:
`classify` prints its class names, `features` embeds with its backbone (its
last feature map, globally pooled: what its head reads), `export` serves it.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgumentError

if TYPE_CHECKING:
    from ..architecture.build import Resolved
    from ..images import Transform

# `weights=` values that leave a fine-tuned run's own weights in place: left
# out (the command line), or the API's default (keras' word for "the
# pretrained weights": a run's are its own).
_RUN_WEIGHTS = ("imagenet",)


@dataclasses.dataclass(frozen=True)
class Source:
    """A model to run, decided before Keras is imported.

    Attributes:
        model: The registry key of the architecture, e.g. "resnet50".
        weights: The weights as a user names them: a tag, a path, "none",
            or the RUN_DIR of a fine-tuned model.
        weights_hash: Of the weights file ("none" for random weights).
        classes: Outputs of its classifier.
        class_names: A fine-tuned model's own; None: `images.class_names`.
        input_size: The size its weights were trained at.
        resize_size: The shorter side before the center crop of its eval
            transform at `input_size` (None: keras' plain resize).
        preprocessing: The `preprocess_input` mode (None: pixels / 255).
        resolved: A zoo model's weights record.
        run_dir: A fine-tuned model's RUN_DIR.
    """

    model: str
    weights: str
    weights_hash: str
    classes: int
    class_names: tuple[str, ...] | None
    input_size: int
    resize_size: int | None
    preprocessing: str | None
    resolved: Resolved | None = None
    run_dir: Path | None = None

    @property
    def has_weights(self) -> bool:
        return self.run_dir is not None or self.resolved.has_weights

    @property
    def min_size(self) -> int:
        from ..architecture.specs import SPECS

        return SPECS[self.model].min_size

    def check_size(self, size: int | None) -> None:
        """`size` (an input size asked for; None: the weights') fits the architecture."""
        if size is not None and size < self.min_size:
            raise InvalidArgumentError(f"`size` must be at least {self.min_size} for {self.model}. "
                                       f"Received: size={size}")

    def transform(self, size: int | None = None) -> Transform:
        """How files are read for this model at `size` (default: its own input size)."""
        from ..images import eval_transform

        return eval_transform(size or self.input_size, resize_size=self.resize_size, input_size=self.input_size)

    def names(self) -> list[str]:
        """The labels of its outputs."""
        from ..images import class_names

        return list(self.class_names) if self.class_names is not None else class_names(self.classes)

    def build(self, *, pooling: str | None = None, size: int | None = None):
        """The Keras model with its weights: the classifier, or (with `pooling`) the pooled backbone."""
        if self.run_dir is not None:
            from ..finetune.record import load_run

            return _pooled(load_run(self.run_dir, input_size=size).model, pooling)
        from ..architecture.build import build, build_pooled

        if pooling is None and self.resolved.include_top:
            return build(self.resolved)
        return build_pooled(self.resolved, pooling=pooling, size=size)

    def blank(self, *, pooling: str | None, size: int):
        """The same graph with random weights, reading no file (a Ray actor's, before `set_weights`)."""
        from ..architecture.specs import SPECS

        if self.run_dir is not None:
            from ..finetune.model import classifier

            return _pooled(classifier(SPECS[self.model], classes=self.classes, input_size=size), pooling)
        from ..architecture.build import build_pooled, resolve

        return build_pooled(resolve(SPECS[self.model], None, include_top=False), pooling=pooling, size=size)


def _pooled(classifier, pooling: str | None):
    """A fine-tuned classifier, or its backbone: the feature map its head pools, pooled by `pooling`."""
    if pooling is None:
        return classifier
    import keras

    head_pool = classifier.get_layer("avg_pool")  # what the head reads; its input is the last feature map
    pooled = head_pool.output if pooling == "avg" else keras.layers.GlobalMaxPooling2D(name="max_pool")(head_pool.input)
    return keras.Model(classifier.input, pooled, name=classifier.name)


def run_dir_of(model: Any) -> Path | None:
    """The folder `model` names when it is a fine-tuned run (a folder, not a registered model), else None."""
    from ..architecture.specs import SPECS

    if not isinstance(model, (str, os.PathLike)):
        return None
    text = os.fspath(model)
    if not isinstance(text, str) or text.lower() in SPECS or not os.path.isdir(text):
        return None
    return Path(text)


def open_source(model: Any, weights: Any, *, include_top: bool, manifest: Any = None,
                offline: bool | None = None) -> Source:
    """What `model` and `weights` name, every argument checked; no Keras, no network, no writes.

    `model` is a registered model name or the RUN_DIR of a fine-tuned
    model; `weights` as for the builders (`architecture.build.DEFAULT_TAG`:
    the manifest's default tag).
    """
    from ..architecture.build import DEFAULT_TAG

    run_dir = run_dir_of(model)
    if run_dir is not None:
        if (weights is not DEFAULT_TAG and weights not in _RUN_WEIGHTS) or manifest is not None:
            raise InvalidArgumentError(
                "`weights` and `manifest` do not apply to a fine-tuned model: its RUN_DIR holds its own "
                f"weights. Received: model={os.fspath(model)!r}, weights={weights!r}. Leave them out.")
        return _run_source(run_dir)
    from ..architecture.build import resolve
    from ..architecture.specs import SPECS, model_key

    spec = SPECS[model_key(model)]
    resolved = resolve(spec, weights, include_top=include_top, manifest=manifest, offline=offline)
    return Source(
        model=spec.name, weights=resolved.weights_label, weights_hash=resolved.weights_hash(),
        classes=spec.classes, class_names=None, input_size=resolved.input_size,
        resize_size=resolved.resize_size, preprocessing=resolved.preprocessing, resolved=resolved)


def _run_source(run_dir: Path) -> Source:
    from ..finetune.record import read_run

    run = read_run(run_dir)
    names = tuple(run["class_names"])
    return Source(
        model=run["model"], weights=os.fspath(run_dir), weights_hash=f"sha256:{run['weights_sha256']}",
        classes=len(names), class_names=names, input_size=run["input_size"],
        resize_size=run["settings"].get("resize_size"), preprocessing=run["preprocessing"], run_dir=run_dir)
