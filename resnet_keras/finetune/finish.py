"""The end of a run: final validation, weights, metrics, report, then run.json."""

from __future__ import annotations

import sys
from typing import Sequence

import numpy as np

from . import rundir
from ..files import replaced
from .metrics import classification_metrics, most_wrong
from .model import write_weights
from .record import FineTuned
from .report import write_report
from .source import Pixels
from .train import Trainer, predict

# Most confident validation mistakes shown in the report.
REPORT_MISTAKES = 16


def grad_cam_overlays(model, pixels: np.ndarray, classes: Sequence[int],
                      preprocessing: str | None) -> list[np.ndarray]:
    """One Grad-CAM overlay per image for the report's mistakes: where the
    evidence for the predicted class lies.

    `pixels` are the images (n, size, size, 3) in [0, 255], `classes` the
    predicted class of each; the model takes them preprocessed.
    """
    from ..explain import grad_cam, overlay
    from ..images import preprocess

    heatmaps = grad_cam(model, preprocess(np.array(pixels, np.float32), preprocessing), list(classes))
    return [overlay(image, heatmap) for image, heatmap in zip(pixels, heatmaps)]


def _unfreeze_epochs(trainer: Trainer) -> list[int]:
    """Epochs (0-based) in which more groups start to train than in the one before."""
    counts = [trainer.groups_trained(e) for e in range(trainer.settings.total_epochs)]
    return [e for e in range(1, len(counts)) if counts[e] > counts[e - 1]]


def finish_run(run: rundir.RunDir, trainer: Trainer, class_names: Sequence[str], val: Pixels | None,
               val_names: Sequence[str], skipped: Sequence[tuple[str, str]], *, progress: bool) -> FineTuned:
    settings, model = trainer.settings, trainer.model
    validation, mistakes, overlays = {}, [], None
    if val is not None and len(val):
        probs = predict(model, val, settings.preprocessing, settings.batch_size)
        validation = classification_metrics(probs, val.labels, class_names)
        for row, predicted, confidence in most_wrong(probs, val.labels, REPORT_MISTAKES):
            mistakes.append(dict(pixels=val.take(np.array([row]))[0], name=val_names[row],
                                 true=class_names[val.labels[row]], predicted=class_names[predicted],
                                 confidence=confidence))
        if mistakes:
            overlays = grad_cam_overlays(model, np.stack([m["pixels"] for m in mistakes]),
                                         [class_names.index(m["predicted"]) for m in mistakes],
                                         settings.preprocessing)
    with replaced(run.path(rundir.WEIGHTS)) as temp:
        sha256 = write_weights(model, temp)
    history = trainer.history
    rundir.write_json(run.path(rundir.METRICS), dict(
        best_epoch=trainer.best_epoch, validation=validation, history=history,
        training_images=len(trainer.train.pixels), validation_images=0 if val is None else len(val),
        skipped_images=len(skipped),
        train_seconds=sum(h["seconds"] for h in history)))
    best = validation.get("top1")
    write_report(
        run.path(rundir.REPORT),
        title=f"Fine-tuned {settings.model}: {len(class_names)} classes",
        summary=[
            ("model", settings.model), ("weights", settings.weights),
            ("classes", ", ".join(class_names[:20]) + (" ..." if len(class_names) > 20 else "")),
            ("training images", len(trainer.train.pixels)),
            ("validation images", 0 if val is None else len(val)),
            ("images skipped", f"{len(skipped)} (listed in {rundir.SKIPPED})"),
            ("kept epoch", "none" if trainer.best_epoch is None else trainer.best_epoch + 1),
            ("validation top-1", "n/a" if best is None else f"{best:.4f}"),
            (f"validation top-{validation.get('top5_k', 5)}",
             "n/a" if best is None else f"{validation['top5']:.4f}"),
        ],
        history=history, unfreeze_epochs=_unfreeze_epochs(trainer), validation=validation,
        class_names=class_names, mistakes=mistakes, settings=settings.as_json(), overlays=overlays)
    rundir.write_json(run.path(rundir.RUN), dict(
        format=rundir.FORMAT, model=settings.model, class_names=list(class_names),
        input_size=settings.input_size, preprocessing=settings.preprocessing,
        weights_file=rundir.WEIGHTS, weights_sha256=sha256, settings=settings.as_json()))
    run.remove_checkpoints()
    if progress:
        score = "" if best is None else f", validation top-1 {best:.4f}"
        print(f"resnet-keras: fine-tuned {settings.model} on {len(class_names)} classes{score} -> "
              f"{run.folder}", file=sys.stderr)
    return FineTuned(
        model=model, class_names=tuple(class_names), input_size=settings.input_size,
        preprocessing=settings.preprocessing, settings=settings, history=tuple(history),
        metrics=validation, best_epoch=trainer.best_epoch, run_dir=run.folder, skipped=tuple(skipped))
