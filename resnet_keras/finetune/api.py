"""`fine_tune`: from labelled images and a zoo model to a trained, evaluated classifier."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import io
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import data as data_lib, rundir
from .distributed.cluster import Cluster
from .distributed.options import Distributed, check_combination, check_distributed
from .record import FineTuned, load_run
from .settings import DEFAULT_PRECISION, Augmentation, Settings, check_options
from .source import memory_budget
from ..errors import InvalidArgumentError

# Decoded training images are kept this much larger than the input, so the
# random crop has pixels to take (ImageNet's 256 for 224); manifest entries
# with a `resize_size` give theirs.
CROP_MARGIN = 256 / 224


def fine_tune(
    data: Any,
    model: str = "resnet50",
    weights: str | os.PathLike | None = "imagenet",
    *,
    epochs: int = 5,
    head_epochs: int = 1,
    out: str | os.PathLike | None = None,
    validation_data: Any = None,
    validation_split: float = 0.2,
    class_names: Sequence[str] | None = None,
    batch_size: int = 32,
    lr: float = 1e-3,
    head_lr: float | None = None,
    stage_lr_decay: float = 0.4,
    unfreeze: str = "all",
    batchnorm: str = "frozen",
    schedule: str = "cosine",
    warmup: float = 0.1,
    weight_decay: float = 0.01,
    label_smoothing: float = 0.1,
    augment: bool | Augmentation = True,
    class_weight: Any = "balanced",
    keep: str = "best",
    head_init: str = "probe",
    precision: str = DEFAULT_PRECISION,
    input_size: int | None = None,
    preprocessing: str | None = None,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
    manifest: Any = None,
    offline: bool | None = None,
    distributed: int | Distributed | None = None,
) -> FineTuned:
    """Train a classifier on top of a zoo model and its pretrained weights.

    First `head_epochs` with the backbone frozen (BatchNorm in inference
    mode, no backbone variable changes), then `epochs` with the backbone
    unfrozen: all at once (`unfreeze="all"`) or one stage per epoch, deepest
    first (`"stages"`), each stage below the head at `stage_lr_decay` times
    the rate of the one above. AdamW (no weight decay on BatchNorm and
    biases), warmup + cosine (or one-cycle) per phase, label smoothing,
    random resized crops and flips, balanced class weights; the epoch with
    the best validation top-1 (then loss) is kept. See docs/finetune.md.

    Args:
        data: A folder with one sub-folder of images per class, a
            `tf.data.Dataset` of (image, label), or a pair (images, labels)
            of arrays; images RGB in [0, 255].
        model: A registered model name.
        weights: A weights tag (its record gives input size and
            preprocessing), a weights file, or None.
        out: RUN_DIR: checkpoints after every epoch (a rerun resumes), the
            final weights, metrics and report.html. None: a temporary folder.
        validation_data: Held-out data in the forms of `data`; without it,
            `validation_split` of each class of `data` (seeded) validates.
        head_init: "probe": the head starts as a linear probe (logistic
            regression) of the frozen features of the training images, L2
            chosen on the validation images (LP-FT, see finetune/head.py); "random".
        input_size, preprocessing: Override the weights' record.
        precision: "auto" (bfloat16 where the hardware computes it natively,
            else float32), "float32", "bfloat16" or "float16" compute (the
            head stays float32). The run records the one it used.
        seed: Seeds the split, the order, the augmentation and the head.
        distributed: Train data-parallel in worker processes on Keras' JAX
            backend: a number of processes on this machine, or a
            `Distributed` naming hosts (docs/distributed.md). `batch_size`
            is the global batch, split evenly across the processes; `data`
            must be a folder. The result equals the one-process run up to
            float rounding. On hosts other than host 0 it returns None.

    Returns:
        A `FineTuned` with the model, class names, preprocessing, history and metrics.
    """
    return prepare(**locals()).run()


@dataclasses.dataclass(frozen=True)
class Prepared:
    """A fine-tuning run whose every option and every input has been checked; `run()` trains it.

    `prepare` does all of `fine_tune`'s checks without importing Keras,
    building a model, fetching weights or writing a file: the command line
    prepares, then imports Keras (quietly), then runs.
    """

    spec: Any
    resolved: Any
    settings: Settings
    examples: data_lib.Examples
    held_out: data_lib.Examples | None
    train_at: np.ndarray
    val_at: np.ndarray
    key: dict
    out: Path | None
    overwrite: bool
    progress: bool
    offline: bool | None
    budget: int
    distributed: Distributed | None = None
    arguments: dict = dataclasses.field(default_factory=dict)  # as passed: what worker processes get

    def run(self) -> FineTuned:
        if self.distributed is not None:
            from .distributed.launch import launch

            return launch(self)
        return _run(self, Cluster())


def prepare(**arguments: Any) -> Prepared:
    """Check the arguments of `fine_tune` (the same names) and its data; see `Prepared`."""
    import inspect

    from ..architecture.specs import model_key
    from ..architecture.specs import SPECS
    from ..images import eval_transform
    from ..architecture.build import resolve
    from .model import resolve_precision

    parameters = inspect.signature(fine_tune).parameters
    unknown = sorted(set(arguments) - set(parameters))
    if unknown:
        raise TypeError(f"fine_tune() got an unexpected keyword argument {unknown[0]!r}")
    a = {name: arguments.get(name, p.default) for name, p in parameters.items() if name in arguments or
         p.default is not inspect.Parameter.empty}
    options = check_options(**{k: v for k, v in a.items() if k not in (
        "data", "model", "weights", "out", "validation_data", "class_names", "overwrite",
        "progress", "manifest", "offline", "distributed")})
    options["precision"] = resolve_precision(options["precision"])  # the record says what ran
    distributed = check_distributed(a["distributed"])
    if distributed is not None:
        check_combination(distributed, a, options["precision"])
    try:
        spec = SPECS[model_key(a["model"])]
    except InvalidArgumentError as error:
        raise InvalidArgumentError(str(error).replace("`name`", "`model`").replace("name=", "model=")) from None
    resolved = resolve(spec, a["weights"], include_top=False, manifest=a["manifest"], offline=a["offline"])
    size = a["input_size"] or resolved.input_size
    if size < spec.min_size:
        raise InvalidArgumentError(f"`input_size` must be at least {spec.min_size} for {spec.name}. "
                                   f"Received: input_size={size}")
    budget = memory_budget()
    examples = data_lib.read(a["data"], a["class_names"], budget)
    held_out = None if a["validation_data"] is None else data_lib.read(a["validation_data"], a["class_names"], budget)
    if held_out is not None and held_out.class_names != examples.class_names:
        raise InvalidArgumentError(
            "`validation_data` must have the classes of `data`, in the same order. Received: "
            f"{list(held_out.class_names)[:5]} vs {list(examples.class_names)[:5]}")
    if isinstance(options["class_weight"], tuple) and len(options["class_weight"]) != len(examples.class_names):
        raise InvalidArgumentError(f"`class_weight` must give one weight per class ({len(examples.class_names)}). "
                                   f"Received: {len(options['class_weight'])} weights")
    resize = eval_transform(size, resize_size=resolved.resize_size, input_size=resolved.input_size).resize
    settings = Settings(model=spec.name, weights=resolved.weights_label, weights_hash=resolved.weights_hash(),
                        input_size=size, preprocessing=a["preprocessing"] or resolved.preprocessing,
                        resize_size=resize, **options)
    if held_out is None:
        train_at, val_at = data_lib.split(examples.labels, settings.validation_split, settings.seed)
    else:
        train_at, val_at = np.arange(len(examples)), np.arange(len(held_out))
    key = dict(format=rundir.FORMAT, settings=settings.as_json(), data=dict(
        classes=list(examples.class_names), images=len(examples), digest=examples.digest(),
        validation=None if held_out is None else held_out.digest()))
    # RUN_DIR is worker 0's: other hosts need not see it
    out = None if a["out"] is None or (distributed is not None and not distributed.writes) else Path(a["out"])
    if out is not None:
        message = rundir.refusal(out, key, overwrite=a["overwrite"])
        if message:
            raise InvalidArgumentError(message)
    return Prepared(spec, resolved, settings, examples, held_out, train_at, val_at, key, out,
                    a["overwrite"], a["progress"], a["offline"], budget, distributed, a)


def _run(p: Prepared, cluster: Cluster) -> FineTuned | None:
    """Train in this process, as the only one or as one worker of `cluster` (None on all but the writer)."""
    complete = p.out is not None and not p.overwrite and (p.out / rundir.RUN).exists()
    if cluster.share([np.int32(complete)])[0]:
        if not cluster.is_writer:
            return None
        if p.progress:
            print(f"resnet-keras: {p.out} is complete; loading it", file=sys.stderr)
        return load_run(p.out)
    settings, examples = p.settings, p.examples
    train, val, skipped = cluster.agree(
        lambda: _decode(examples, p.held_out, p.train_at, p.val_at, settings, p.resolved, p.budget, p.progress),
        _decoded_digest)
    with contextlib.ExitStack() as stack:
        import keras

        from .model import classifier, with_backbone

        keras.utils.set_random_seed(settings.seed)

        def build():
            return classifier(p.spec, classes=len(examples.class_names), input_size=settings.input_size,
                              precision=settings.precision, offline=p.offline)

        with cluster.scope():
            net = build()
        local = cluster.replica(net, build)  # `net` itself in one process
        run = None
        if cluster.is_writer:
            if p.resolved.has_weights:
                with_backbone(local, p.resolved, settings.input_size)
            folder = p.out or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="resnet-keras-finetune-")))
            run = rundir.RunDir.open(folder, p.key, overwrite=p.overwrite)
            stack.callback(run.close)
            _write_inputs(run, examples, p.held_out, train.positions, val.positions, skipped)
        validation = p.held_out or examples
        val_names = [validation.name(i) for i in val.positions]
        result = _train(run, net, local, cluster, settings, examples, train, val, val_names, skipped, p.progress)
        if result is None or p.out is not None:
            return result
        return dataclasses.replace(result, run_dir=None)


def _decoded_digest(decoded) -> str:
    """What every worker must have decoded alike: the images kept and left out."""
    train, val, skipped = decoded
    digest = hashlib.sha256(np.ascontiguousarray(train.positions, np.int64).tobytes())
    digest.update(np.ascontiguousarray(val.positions, np.int64).tobytes())
    digest.update(repr(skipped).encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def _decode(examples, held_out, train_at, val_at, settings: Settings, resolved, budget, progress):
    """Decoded training and validation pixels, and every image left out (path, reason)."""
    from .source import decode

    size = settings.input_size
    margin = (resolved.entry.resize_size / resolved.input_size) if resolved.entry and resolved.entry.resize_size \
        else CROP_MARGIN
    # Random crops come from a larger picture; without them training reads as validation does:
    # the weights' eval transform (settings.resize_size).
    train_size, train_resize = (int(round(size * margin)), None) if settings.augment else (size, settings.resize_size)
    train, skipped = decode(examples, train_at, train_size, resize=train_resize, budget=budget, progress=progress,
                            what="decoding training images")
    left = max(budget - (0 if train.cache is None else train.cache.nbytes), 0)
    val, skipped_val = decode(held_out or examples, val_at, size, resize=settings.resize_size, budget=left,
                              progress=progress, what="decoding validation images")
    missing = sorted(set(range(len(examples.class_names))) - set(train.labels.tolist()))
    if missing:
        raise InvalidArgumentError(
            f"Every class needs at least one readable training image; {examples.class_names[missing[0]]!r} "
            f"has none ({len(skipped) + len(skipped_val)} images were unreadable, e.g. "
            f"{(skipped + skipped_val)[:1]}). Received: data={os.fspath(examples.root or 'arrays')!r}. "
            "Add readable images to that class.")
    return train, val, list(examples.skipped) + skipped + skipped_val


def _write_inputs(run: rundir.RunDir, examples, held_out, train_at, val_at, skipped) -> None:
    rundir.write_json(run.path(rundir.CLASSES), list(examples.class_names))
    validation = held_out or examples
    rundir.write_json(run.path(rundir.SPLIT), dict(
        root=None if examples.root is None else os.fspath(examples.root),
        train=[[examples.name(i), int(examples.labels[i])] for i in train_at],
        validation=[[validation.name(i), int(validation.labels[i])] for i in val_at],
        validation_source="validation_data" if held_out is not None else "split"))
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["path", "reason"])
    writer.writerows([path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace"), reason]
                     for path, reason in skipped)
    rundir.write_text(run.path(rundir.SKIPPED), text.getvalue())


def _class_weights(settings: Settings, labels: np.ndarray, classes: int) -> np.ndarray:
    if settings.class_weight is None:
        return np.ones(classes, np.float32)
    if settings.class_weight == "balanced":  # scikit-learn's n / (classes * count)
        counts = np.bincount(labels, minlength=classes).astype(np.float64)
        return (len(labels) / (classes * np.maximum(counts, 1))).astype(np.float32)
    return np.asarray(settings.class_weight, np.float32)


def _train(run: rundir.RunDir | None, net, local, cluster: Cluster, settings: Settings, examples, train, val,
           val_names, skipped, progress: bool) -> FineTuned | None:
    from .finish import finish_run
    from .pipeline import TrainingInput
    from .train import Trainer

    classes = len(examples.class_names)
    train_input = TrainingInput(
        train, input_size=settings.input_size, preprocessing=settings.preprocessing,
        augment=settings.augment, batch_size=settings.batch_size, seed=settings.seed,
        num_classes=classes, class_weights=_class_weights(settings, train.labels, classes), shard=cluster.shard)
    trainer = Trainer(net, settings, train_input, val, run, progress=progress, cluster=cluster, local=local)
    trainer.fit(trainer.resume())
    if not cluster.is_writer:
        return None
    trainer.finish(_fresh(settings, classes))
    return finish_run(run, trainer, examples.class_names, val, val_names, skipped, progress=progress)


def _fresh(settings: Settings, classes: int):
    """The model users get: the registry's graph, uncompiled, float32 whatever precision trained it
    (as `load_run` builds it; `load_run(precision=)` or the Predictor give reduced precision)."""
    from .model import classifier
    from ..architecture.specs import SPECS

    return classifier(SPECS[settings.model], classes=classes, input_size=settings.input_size)
