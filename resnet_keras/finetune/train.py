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
"""

from __future__ import annotations

import sys
import time
from typing import Any

import keras
import numpy as np

from . import metrics as metrics_lib
from .head import linear_probe
from .optimizer import (
    PhaseSchedule, is_batchnorm, layer_groups, load_optimizer_state, lr_multipliers,
    make_optimizer, no_decay_variables, optimizer_state,
)
from .pipeline import TrainingInput, inference_dataset
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
                 validation: Pixels | None, run: RunDir, *, progress: bool):
        self.model, self.settings, self.train, self.validation = model, settings, train, validation
        self.run, self.progress = run, progress
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

    def restore(self, checkpoint: tuple[dict, dict[str, np.ndarray]] | None) -> int:
        """Load the last finished epoch; the next epoch to run."""
        if checkpoint is None:
            return 0
        state, arrays = checkpoint
        epoch = int(state["epoch"])
        for variable in self.model.variables:
            variable.assign(arrays[f"model:{variable.path}"])
        self.prepare(epoch)  # the optimizer that epoch ended with
        load_optimizer_state(self.optimizer, {k[10:]: v for k, v in arrays.items()
                                              if k.startswith("optimizer:")}, strict=True)
        best = {k[5:]: v for k, v in arrays.items() if k.startswith("best:")}
        self.best_weights = best or None
        self.history = list(state["history"])
        self.best_epoch, self.best_metrics = state.get("best_epoch"), state.get("best_metrics")
        return epoch + 1

    # ---- the loop

    def init_head(self) -> None:
        """The head as a linear probe of the frozen features (head.py): LP-FT."""
        s = self.settings
        pooled = keras.Model(self.model.input, self.model.get_layer("avg_pool").output)

        def features(pixels: Pixels) -> np.ndarray:
            dataset = inference_dataset(pixels, s.preprocessing, s.batch_size, size=s.input_size)
            return np.asarray(pooled.predict(dataset, verbose=0), np.float32)

        validation = self.validation if self.validation is not None and len(self.validation) else None
        kernel, bias = linear_probe(
            features(self.train.pixels), self.train.pixels.labels, self.train.num_classes,
            *((features(validation), validation.labels) if validation is not None else ()))
        self.model.get_layer("predictions").set_weights([kernel, bias])

    def fit(self, start: int) -> None:
        s = self.settings
        # The probe fits features with BatchNorm in inference mode: what the first epoch
        # sees in a head phase, or with frozen BatchNorm (not in scratch-like runs).
        if start == 0 and s.head_init == "probe" and (s.head_epochs or s.batchnorm == "frozen"):
            self.init_head()
        for epoch in range(start, s.total_epochs):
            self.prepare(epoch)
            desc = f"epoch {epoch + 1}/{s.total_epochs} ({self.describe(epoch)})"
            bar = _EpochBar(epoch, self.train.steps, desc, self.progress)
            began = time.perf_counter()
            history = self.model.fit(self.train.dataset(epoch), initial_epoch=epoch, epochs=epoch + 1,
                                     shuffle=False, verbose=0, callbacks=[bar])
            seconds = time.perf_counter() - began
            record = dict(
                epoch=epoch, phase=self.phase(epoch), trained=self.describe(epoch),
                loss=float(history.history["loss"][-1]),
                accuracy=float(history.history["accuracy"][-1]),
                seconds=seconds, images_per_second=len(self.train.pixels) / seconds,
            )
            if self.train.steps > 1 and bar.last_batch_end > bar.first_batch_end:
                steady = len(self.train.pixels) - min(s.batch_size, len(self.train.pixels))
                record["steady_images_per_second"] = steady / (bar.last_batch_end - bar.first_batch_end)
            self._validate(epoch, record)
            self.history.append(record)
            self.run.save_checkpoint(epoch, self._arrays(), dict(
                history=self.history, best_epoch=self.best_epoch, best_metrics=self.best_metrics))
            if self.progress:
                print(_summary(desc, record, self.best_epoch == epoch), file=sys.stderr)

    def _validate(self, epoch: int, record: dict) -> None:
        if self.validation is None or not len(self.validation):
            self.best_epoch = epoch
            return
        probs = predict(self.model, self.validation, self.settings.preprocessing, self.settings.batch_size)
        scores = metrics_lib.classification_metrics(probs, self.validation.labels, [""] * probs.shape[1])
        current = dict(top1=scores["top1"], top5=scores["top5"], loss=scores["loss"])
        record.update({f"val_{k}": v for k, v in current.items()})
        if self.settings.keep == "last" or metrics_lib.better(current, self.best_metrics):
            self.best_epoch, self.best_metrics = epoch, current
            if self.settings.keep == "best":
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
