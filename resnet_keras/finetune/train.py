"""The epoch loop: which groups train, their optimizer, validation, checkpoints.

Epochs `0 .. head_epochs-1` are the head phase: only the new classifier
trains; every backbone layer is frozen, so its BatchNorm layers run in
inference mode (Keras 3: a frozen BatchNormalization uses its moving
statistics) and no backbone variable changes. Then the unfrozen phase:
`unfreeze="all"` trains every group, `"stages"` adds one group per epoch,
deepest first (head + conv5, then + conv4, ...). BatchNorm after
unfreezing (`batchnorm=`): "frozen" keeps every backbone BatchNorm layer
frozen (moving statistics, scale and shift exactly as pretrained; the
keras guide's advice, right for small batches), "train" lets the BatchNorm
layers of unfrozen groups use batch statistics and update their moving
statistics (fastai's choice; wants batches of 32 or more).

Each phase has its own schedule (warmup + cosine, or one-cycle) over its
steps. A new optimizer is built when the set of trainable variables
changes (Keras optimizers are built for one set, the JAX trainer requires
it); within a phase it takes over the step count and moments of the
previous one, so adding a stage does not restart the others.

Data-parallel workers (`cluster`, see finetune/distributed/cluster.py)
run this same loop: the trained model is the distributed one; the writer
(worker 0) restores or initializes it and every worker takes its values;
validation and the probe's features are split over the workers; only the
writer writes checkpoints.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import keras
import numpy as np

from . import metrics as metrics_lib
from .head import MAX_IMAGES as MAX_PROBE_IMAGES, linear_probe
from .optimizer import (
    PhaseSchedule, is_batchnorm, layer_groups, load_optimizer_state, lr_multipliers,
    make_optimizer, no_decay_variables, optimizer_state,
)
from .pipeline import TrainingInput, inference_dataset
from .distributed.cluster import Cluster
from .rundir import RunDir
from .settings import Settings
from .source import Pixels


class _EpochBar(keras.callbacks.Callback):
    """A tqdm bar per epoch, and the steady-state time (after the first batch)."""

    def __init__(self, epoch: int, steps: int, desc: str, enabled: bool):
        super().__init__()
        self.epoch, self.steps, self.desc, self.enabled = epoch, steps, desc, enabled
        self.first_batch_end = self.last_batch_end = None

    def on_train_begin(self, logs=None):
        from tqdm import tqdm

        self.bar = tqdm(total=self.steps, unit="step", desc=self.desc, disable=not self.enabled,
                        file=sys.stderr, leave=False)

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        self.first_batch_end = self.first_batch_end or now
        self.last_batch_end = now
        self.bar.update()
        if logs and "loss" in logs:
            self.bar.set_postfix(loss=f"{float(logs['loss']):.4f}", refresh=False)

    def on_train_end(self, logs=None):
        self.bar.close()


def predict(model: keras.Model, pixels: Pixels, preprocessing: str | None, batch_size: int) -> np.ndarray:
    """Class probabilities of every image of `pixels`, in order."""
    return np.asarray(model.predict(inference_dataset(pixels, preprocessing, batch_size), verbose=0),
                      np.float32)


class Trainer:
    """Runs the epochs of `settings` on `model`, checkpointing into `run` after each."""

    def __init__(self, model: keras.Model, settings: Settings, train: TrainingInput,
                 validation: Pixels | None, run: RunDir | None, *, progress: bool,
                 cluster: Cluster | None = None, local: keras.Model | None = None):
        self.model, self.settings, self.train, self.validation = model, settings, train, validation
        self.run, self.progress = run, progress  # run: None on workers other than the writer
        self.cluster = cluster or Cluster()
        self.local = model if local is None else local  # this process's own copy (predictions, the probe)
        self.groups = layer_groups(model)
        self.multipliers = lr_multipliers(self.groups, settings.stage_lr_decay)
        self.no_decay = no_decay_variables(model)
        self.optimizer = None
        self.config: tuple[str, int] | None = None
        self.history: list[dict[str, Any]] = []
        self.best_epoch: int | None = None
        self.best_metrics: dict | None = None
        self.best_weights: dict[str, np.ndarray] | None = None

    # ---- the plan

    def phase(self, epoch: int) -> str:
        return "head" if epoch < self.settings.head_epochs else "unfrozen"

    def groups_trained(self, epoch: int) -> int:
        """How many groups, from the head down, train in `epoch`."""
        if self.phase(epoch) == "head":
            return 1
        if self.settings.unfreeze == "stages":
            return min(2 + epoch - self.settings.head_epochs, len(self.groups))
        return len(self.groups)

    def describe(self, epoch: int) -> str:
        trained = self.groups_trained(epoch)
        if trained == 1:
            return "head"
        if trained == len(self.groups):
            return "all layers"
        return f"head + {trained - 1} deepest stages"

    def _set_trainable(self, trained: int) -> None:
        self.model.trainable = True
        for depth, layers in enumerate(self.groups):
            for layer in layers:
                bn_frozen = depth > 0 and is_batchnorm(layer) and self.settings.batchnorm == "frozen"
                layer.trainable = depth < trained and not bn_frozen

    def prepare(self, epoch: int) -> None:
        """Freeze, unfreeze and (re)build the optimizer for `epoch`."""
        config = (self.phase(epoch), self.groups_trained(epoch))
        if config == self.config:
            return
        same_phase = self.config is not None and self.config[0] == config[0]
        carried = optimizer_state(self.optimizer) if same_phase else {}
        self._set_trainable(config[1])
        s = self.settings
        head = config[0] == "head"
        phase_epochs = s.head_epochs if head else s.epochs
        schedule = PhaseSchedule(s.head_lr if head else s.lr, phase_epochs * self.train.steps,
                                 s.warmup, s.schedule)
        with self.cluster.scope():  # the optimizer's variables live where the model's do
            self.optimizer = make_optimizer(self.model.trainable_variables, schedule=schedule,
                                            weight_decay=s.weight_decay, multipliers=self.multipliers,
                                            no_decay=self.no_decay)
            load_optimizer_state(self.optimizer, carried, strict=False)
            self.model.compile(
                optimizer=self.optimizer,
                loss=keras.losses.CategoricalCrossentropy(label_smoothing=s.label_smoothing),
                metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
            )
        self.config = config

    # ---- checkpoints

    def _arrays(self) -> dict[str, np.ndarray]:
        arrays = {f"model:{v.path}": v.numpy() for v in self.model.variables}
        arrays.update({f"optimizer:{k}": v for k, v in optimizer_state(self.optimizer).items()})
        if self.best_weights is not None:
            arrays.update({f"best:{k}": v for k, v in self.best_weights.items()})
        return arrays

    def resume(self) -> int:
        """The next epoch to run: the writer's last checkpoint restored on every worker, or 0.

        At 0 the writer's weights (pretrained backbone, the head's probe)
        are every worker's; in one process they already are the model's.
        """
        state, arrays = ({}, {}) if not self.cluster.is_writer else (self.run.load_checkpoint() or ({}, {}))
        epoch = int(self.cluster.share([np.int32(state.get("epoch", -1))])[0])
        if epoch < 0:
            self._take_writers(self.model.variables)  # the pretrained backbone
            if self.settings.head_init == "probe" and (self.settings.head_epochs or self.settings.batchnorm == "frozen"):
                # The probe fits features with BatchNorm in inference mode: what the first epoch
                # sees in a head phase, or with frozen BatchNorm (not in scratch-like runs).
                self.cluster.refresh(self.local, self.model)
                self.init_head()
                self._take_writers(self.model.get_layer("predictions").variables)
            return 0
        self.prepare(epoch)  # the optimizer that epoch ended with
        self._assign(self.model.variables, [arrays.get(f"model:{v.path}") for v in self.model.variables])
        self._assign(self.optimizer.variables, [arrays.get(f"optimizer:{v.name}") for v in self.optimizer.variables])
        best = {k[5:]: v for k, v in arrays.items() if k.startswith("best:")}
        self.best_weights = best or None
        self.history = list(state.get("history", ()))
        self.best_epoch, self.best_metrics = state.get("best_epoch"), state.get("best_metrics")
        return epoch + 1

    def _take_writers(self, variables) -> None:
        """`variables` of the trained model take the values of the writer's own copy (one process: they are)."""
        if self.local is self.model:
            return
        local = {v.path: v for v in self.local.variables}
        self._assign(variables, [local[v.path].numpy() if self.cluster.is_writer else None for v in variables])

    def _assign(self, variables, values) -> None:
        """The writer's `values` into `variables` on every worker (None: missing from the checkpoint)."""
        if self.cluster.is_writer and any(v is None for v in values):
            name = next(var.path for var, v in zip(variables, values) if v is None)
            raise KeyError(f"variable {name!r} is not in the checkpoint")
        values = [var.numpy() if v is None else v for var, v in zip(variables, values)]
        with self.cluster.scope():
            for variable, value in zip(variables, self.cluster.share(values)):
                variable.assign(value)

    # ---- the loop

    def init_head(self) -> None:
        """The head (of the writer's model) as a linear probe of the frozen features (head.py): LP-FT."""
        s = self.settings
        pooled = keras.Model(self.local.input, self.local.get_layer("avg_pool").output)

        def features(pixels: Pixels) -> np.ndarray:
            def block(part: Pixels) -> np.ndarray:
                dataset = inference_dataset(part, s.preprocessing, s.batch_size, size=s.input_size)
                return np.asarray(pooled.predict(dataset, verbose=0), np.float32).reshape(len(part), -1)
            return self._shared(block, pixels)

        validation = self.validation if self.validation is not None and len(self.validation) else None
        train = self.train.pixels.part(slice(0, MAX_PROBE_IMAGES))
        kernel, bias = linear_probe(
            features(train), train.labels, self.train.num_classes,
            *((features(validation), validation.labels) if validation is not None else ()))
        self.local.get_layer("predictions").set_weights([kernel, bias])

    def _shared(self, compute, pixels: Pixels) -> np.ndarray:
        """`compute` over all of `pixels`, each worker taking its block (on its own model)."""
        rows = self.cluster.block(len(pixels))
        if rows.start == rows.stop:  # more workers than images: an empty block of the right width
            return self.cluster.gather(compute(pixels.part(slice(0, 1)))[:0], len(pixels))
        return self.cluster.gather(compute(pixels.part(rows)), len(pixels))

    def fit(self, start: int) -> None:
        s = self.settings
        for epoch in range(start, s.total_epochs):
            self.prepare(epoch)
            desc = f"epoch {epoch + 1}/{s.total_epochs} ({self.describe(epoch)})"
            bar = _EpochBar(epoch, self.train.steps, desc, self.progress)
            began = time.perf_counter()
            with self.cluster.scope():
                history = self.model.fit(self.train.dataset(epoch), initial_epoch=epoch, epochs=epoch + 1,
                                         shuffle=False, verbose=0, callbacks=[bar])
            seconds = time.perf_counter() - began
            record = dict(
                epoch=epoch, phase=self.phase(epoch), trained=self.describe(epoch),
                loss=float(history.history["loss"][-1]),
                accuracy=float(history.history["accuracy"][-1]),
                seconds=seconds, images_per_second=len(self.train.pixels) / seconds,
                workers=self.cluster.processes,
            )
            if self.train.steps > 1 and bar.last_batch_end > bar.first_batch_end:
                steady = len(self.train.pixels) - min(s.batch_size, len(self.train.pixels))
                record["steady_images_per_second"] = steady / (bar.last_batch_end - bar.first_batch_end)
            self._validate(epoch, record)
            self.history.append(record)
            if not self.cluster.is_writer:
                continue
            self.run.save_checkpoint(epoch, self._arrays(), dict(
                history=self.history, best_epoch=self.best_epoch, best_metrics=self.best_metrics))
            if self.progress:
                print(_summary(desc, record, self.best_epoch == epoch), file=sys.stderr)

    def _validate(self, epoch: int, record: dict) -> None:
        if self.validation is None or not len(self.validation):
            self.best_epoch = epoch
            return
        self.cluster.refresh(self.local, self.model)
        probs = self._shared(lambda part: predict(self.local, part, self.settings.preprocessing,
                                                  self.settings.batch_size), self.validation)
        scores = metrics_lib.classification_metrics(probs, self.validation.labels, [""] * probs.shape[1])
        current = dict(top1=scores["top1"], top5=scores["top5"], loss=scores["loss"])
        record.update({f"val_{k}": v for k, v in current.items()})
        if self.settings.keep == "last" or metrics_lib.better(current, self.best_metrics):
            self.best_epoch, self.best_metrics = epoch, current
            if self.settings.keep == "best" and self.cluster.is_writer:
                self.best_weights = {v.path: v.numpy() for v in self.model.variables}

    def finish(self, fresh: keras.Model) -> keras.Model:
        """`fresh` (an uncompiled model of the same architecture) with the kept epoch's weights.

        The trained model stays behind with its optimizer: a model compiled
        with this package's optimizer could not be cloned or exported.
        """
        kept = self.best_weights if self.settings.keep == "best" and self.best_weights is not None else {
            v.path: v.numpy() for v in self.model.variables}
        for variable in fresh.variables:
            variable.assign(kept[variable.path])
        self.model = fresh
        return fresh


def _summary(desc: str, record: dict, best: bool) -> str:
    text = f"{desc}: loss {record['loss']:.4f}, accuracy {record['accuracy']:.3f}"
    if "val_top1" in record:
        text += f", val top-1 {record['val_top1']:.3f}, val loss {record['val_loss']:.4f}"
    return text + (" (best)" if best else "") + f", {record['images_per_second']:.1f} images/s"
