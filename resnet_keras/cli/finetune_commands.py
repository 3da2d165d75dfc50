"""Subcommands of transfer learning: finetune, evaluate.

    resnet-keras finetune DATA_DIR --model resnet50 --out RUN_DIR [--epochs N] ...
    resnet-keras finetune DATA_DIR ... --workers 2                  # data-parallel, this machine
    resnet-keras finetune DATA_DIR ... --address HOST0:PORT --hosts 2 --host-index I   # on each host
    resnet-keras evaluate RUN_DIR DATA_DIR
    resnet-keras classify --model RUN_DIR image.jpg

`finetune` is `resnet_keras.fine_tune` with flags; its defaults are read from
that function's signature, so the two cannot drift. A RUN_DIR is then a
model like any other for classify, features and export (`run_commands`). Every option and the
data folder are checked before Keras is imported, a model is built,
weights are fetched or RUN_DIR is written.
"""

from __future__ import annotations

import argparse
import inspect
import json

from .common import add_model_options, cli_weights, import_keras, non_negative_float, positive_int
from .output import print_table, printable
from .registry import EXIT_OK, command
from ..errors import InvalidArgumentError
from ..finetune.distributed.options import HEARTBEAT_TIMEOUT
from ..finetune.settings import BATCHNORM, KEEP, PRECISIONS, SCHEDULES, UNFREEZE


def _defaults() -> dict:
    from ..finetune.api import fine_tune

    return {name: p.default for name, p in inspect.signature(fine_tune).parameters.items()}


def _fraction(text: str) -> float:
    value = non_negative_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be at least 0 and below 1, got {text!r}")
    return value


def _rate(text: str) -> float:
    value = non_negative_float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be above 0 and at most 1, got {text!r}")
    return value


def _count(text: str) -> int:
    return 0 if text.strip() == "0" else positive_int(text)


# fine_tune argument -> (argparse type or choices, help) of its flag; the default is
# fine_tune's own, named in the help.
TRAINING_OPTIONS = {
    "epochs": (_count, "epochs after unfreezing"),
    "head_epochs": (_count, "epochs of the new head alone, backbone frozen"),
    "batch_size": (positive_int, "images per step"),
    "lr": (_rate, "peak learning rate of the head after unfreezing"),
    "stage_lr_decay": (_rate, "learning-rate factor per stage below the head"),
    "unfreeze": (UNFREEZE, "all at once, one stage per epoch deepest first, or never (a linear probe)"),
    "batchnorm": (BATCHNORM, "backbone BatchNorm after unfreezing: frozen statistics, or trained"),
    "schedule": (SCHEDULES, "warmup + cosine per phase, or fastai's one-cycle"),
    "warmup": (_fraction, "share of each phase's steps"),
    "weight_decay": (_fraction, "AdamW's (none on BatchNorm and biases)"),
    "label_smoothing": (_fraction, "of the cross-entropy targets"),
    "keep": (KEEP, "the weights of the best validation epoch, or of the last"),
    "precision": (PRECISIONS, "compute precision (auto: bfloat16 where native); the head stays float32"),
    "validation_split": (_fraction, "share of each class held out, seeded"),
    "seed": (_count, "of the split, the order, the augmentation and the head"),
}


def _configure_finetune(parser: argparse.ArgumentParser) -> None:
    d = _defaults()
    parser.add_argument("data", metavar="DATA_DIR", help="a folder with one sub-folder of images per class")
    parser.add_argument("--out", required=True, metavar="RUN_DIR",
                        help="where the run writes (checkpoints, weights, metrics, report.html); a rerun resumes")
    add_model_options(parser)
    train = parser.add_argument_group("training (defaults: resnet_keras.fine_tune's)")
    for name, (kind, text) in TRAINING_OPTIONS.items():
        typed = dict(choices=kind) if isinstance(kind, tuple) else dict(type=kind)
        train.add_argument(f"--{name.replace('_', '-')}", default=d[name], help=f"{text} (default: {d[name]})",
                           **typed)
    train.add_argument("--head-lr", type=_rate, help="peak learning rate of the head phase (default: 2 x --lr)")
    train.add_argument("--no-augment", action="store_true", help="no random resized crops and flips")
    train.add_argument("--no-flip", action="store_true", help="random crops, but no horizontal flips")
    train.add_argument("--crop-scale", type=_rate, metavar="MIN", help="smallest crop area share (default: 0.25)")
    train.add_argument("--class-weight", choices=("balanced", "none"), default="balanced",
                       help="weight classes by inverse frequency, or not (default: balanced)")
    train.add_argument("--validation-dir", metavar="DIR", help="held-out images instead of a split (same classes)")
    train.add_argument("--size", type=positive_int, metavar="PIXELS", help="input size (default: the weights')")
    parallel = parser.add_argument_group("data-parallel training on Keras' JAX backend (docs/distributed.md)")
    parallel.add_argument("--workers", type=positive_int, metavar="N",
                          help="worker processes on this machine; --batch-size is the global batch")
    parallel.add_argument("--address", metavar="HOST:PORT",
                          help="the coordinator: host 0's address and a free port, the same on every host")
    parallel.add_argument("--hosts", type=positive_int, default=1, help="machines taking part (default: 1)")
    parallel.add_argument("--host-index", type=_count, default=0, metavar="I",
                          help="this machine, 0 .. hosts-1; host 0 writes RUN_DIR (default: 0)")
    parallel.add_argument("--heartbeat-timeout", type=positive_int, metavar="SECONDS",
                          help=f"stop every worker when one stops answering this long "
                               f"(default: {HEARTBEAT_TIMEOUT})")
    parser.add_argument("--overwrite", action="store_true", help="start again in RUN_DIR instead of resuming")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _distributed(args: argparse.Namespace):
    """The `Distributed` the data-parallel flags describe, or None without them."""
    from ..finetune.distributed import Distributed

    given = args.workers is not None or args.address is not None or args.hosts != 1 or args.host_index != 0
    if not given:
        if args.heartbeat_timeout is not None:
            raise InvalidArgumentError("--heartbeat-timeout applies to worker processes. Received: it without "
                                       "--workers or --address. Add --workers N, or leave it out.")
        return None
    return Distributed(workers=args.workers or 1, address=args.address, hosts=args.hosts,
                       host_index=args.host_index, heartbeat_timeout=args.heartbeat_timeout or HEARTBEAT_TIMEOUT)


@command("finetune", help="train a classifier on a folder of class sub-folders (resumable RUN_DIR)",
         configure=_configure_finetune)
def run_finetune(args: argparse.Namespace) -> int:
    from ..finetune.api import prepare
    from ..finetune.settings import Augmentation

    if (args.no_flip or args.crop_scale) and args.no_augment:
        raise InvalidArgumentError("--no-flip and --crop-scale change the augmentation that --no-augment "
                                   "turns off. Received: both. Leave out one of them.")
    augment = False if args.no_augment else Augmentation(
        crop_scale=(args.crop_scale or Augmentation.crop_scale[0], 1.0), flip=not args.no_flip)
    prepared = prepare(  # every option and the data folder checked, without Keras
        data=args.data, model=args.model, weights=cli_weights(args), out=args.out, augment=augment,
        **{name: getattr(args, name) for name in TRAINING_OPTIONS}, head_lr=args.head_lr,
        validation_data=args.validation_dir, input_size=args.size,
        class_weight=None if args.class_weight == "none" else "balanced", overwrite=args.overwrite,
        progress=not args.quiet, manifest=args.manifest, offline=True if args.offline else None,
        distributed=_distributed(args))
    import_keras(args)
    result = prepared.run()
    if result is None:  # a host other than 0 of a data-parallel run
        print(f"host {args.host_index}: its workers finished; host 0 wrote the run to its {printable(args.out)}")
        return EXIT_OK
    m = result.metrics
    scores = "no validation images" if not m else (
        f"validation top-1 {m['top1']:.4f}, top-{m['top5_k']} {m['top5']:.4f} (epoch {result.best_epoch + 1})")
    print(f"fine-tuned {result.settings.model} (weights: {printable(result.settings.weights)}) on "
          f"{len(result.class_names)} classes, {len(result.skipped)} images skipped (listed in skipped.csv): "
          f"{scores} -> {printable(result.run_dir)}")
    print(f"report: {printable(result.run_dir / 'report.html')}")
    return EXIT_OK


def _configure_evaluate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a complete run of `resnet-keras finetune`")
    parser.add_argument("data", metavar="DATA_DIR",
                        help="labelled images: one sub-folder per class, named as the run's classes")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="images per forward pass (default: 32)")
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON instead of tables")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


@command("evaluate", help="top-1, top-5, per-class precision/recall and confusion matrix of a fine-tuned run",
         configure=_configure_evaluate)
def run_evaluate(args: argparse.Namespace) -> int:
    import numpy as np

    from ..finetune.data import list_folder
    from ..finetune.metrics import classification_metrics
    from ..finetune.record import read_run
    from ..finetune.source import decode, memory_budget

    run = read_run(args.run_dir)
    examples = list_folder(args.data)
    names = run["class_names"]
    unknown = [n for n in examples.class_names if n not in names]
    if unknown:
        raise InvalidArgumentError(
            f"DATA_DIR's class folders must be classes of the run ({len(names)}: {', '.join(names[:8])}"
            f"{' ...' if len(names) > 8 else ''}). Received: {unknown[:3]!r}. Rename or remove those folders.")
    labels = np.array([names.index(examples.class_names[i]) for i in examples.labels], np.int32)
    import_keras(args)
    from ..finetune.record import load_run
    from ..finetune.train import predict

    ft = load_run(args.run_dir)
    pixels, skipped = decode(examples, np.arange(len(examples)), ft.input_size, resize=ft.transform.resize,
                             budget=memory_budget(), progress=not args.quiet, what="evaluating")
    probs = predict(ft.model, pixels, ft.preprocessing, args.batch_size)
    metrics = classification_metrics(probs, labels[pixels.positions], names)
    metrics["skipped"] = len(skipped) + len(examples.skipped)
    if args.json:
        print(json.dumps(metrics, indent=1))
        return EXIT_OK
    print(f"{metrics['images']} images ({metrics['skipped']} skipped): top-1 {metrics['top1']:.4f}, "
          f"top-{metrics['top5_k']} {metrics['top5']:.4f}, loss {metrics['loss']:.4f}")
    cell = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    print_table([("class", "images", "precision", "recall")] + [
        (printable(c["name"]), str(c["support"]), cell(c["precision"]), cell(c["recall"]))
        for c in metrics["per_class"]])
    print("confusion matrix (rows: true class, columns: predicted):")
    print_table([("", *map(printable, names))] + [
        (printable(name), *map(str, row)) for name, row in zip(names, metrics["confusion"])])
    return EXIT_OK
