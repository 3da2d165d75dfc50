"""The degradation experiment of the ResNet paper (He et al. 2015, Fig. 1 and 6).

Trains PlainNet20, PlainNet56, ResNet20 and ResNet56 with one recipe and
plots training error against epochs. Deeper plain nets train worse than
shallow ones (degradation); with shortcuts, depth helps.

    python examples/degradation.py --quick            # digits, 2-core CPU, < 10 min
    python examples/degradation.py --cifar10 DIR      # CIFAR-10 binary batches

`--quick` uses scikit-learn's handwritten digits (1,797 real 8x8 images,
shipped with scikit-learn), upscaled to 16x16. The full setting reads the
CIFAR-10 *binary* version (`cifar-10-batches-bin`, plain bytes, no pickle)
from DIR. Both subtract the per-pixel mean, as the paper does.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

from resnet_keras import cifar

# "Trains as well": within half a point of training error. One image of the
# 1,797 digits is 0.06 points, below what a 10-epoch run resolves (ResNet-56
# ended one image above ResNet-20 in one CI run, at zero in another).
AS_GOOD_POINTS = 0.5

NETS = {
    "plain-20": cifar.PlainNet20,
    "plain-56": cifar.PlainNet56,
    "resnet-20": cifar.ResNet20,
    "resnet-56": cifar.ResNet56,
}


def load_digits(size: int):
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images.astype("float32") / 16.0  # 0..16 -> 0..1
    factor = size // images.shape[1]
    images = np.kron(images, np.ones((factor, factor), "float32"))[..., None]
    return images, digits.target.astype("int64")


def load_cifar10(folder: Path):
    """Read the CIFAR-10 binary batches: 1 label byte + 3072 pixel bytes."""
    records = []
    for i in range(1, 6):
        raw = np.fromfile(folder / f"data_batch_{i}.bin", dtype=np.uint8)
        records.append(raw.reshape(-1, 3073))
    data = np.concatenate(records)
    images = data[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images.astype("float32") / 255.0, data[:, 0].astype("int64")


class WarmupStepDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up, then the learning rate divided by 10 at 50% and 75%
    of training: the paper's recipe (its warm-up for ResNet-110), scaled to
    the number of steps."""

    def __init__(self, peak: float, total_steps: int, warmup_steps: int):
        self.peak, self.total, self.warmup = peak, total_steps, max(warmup_steps, 1)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        warm = self.peak * (step + 1.0) / self.warmup
        decayed = keras.ops.where(
            step < 0.5 * self.total, self.peak,
            keras.ops.where(step < 0.75 * self.total, self.peak / 10, self.peak / 100),
        )
        return keras.ops.where(step < self.warmup, warm, decayed)

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.total, "warmup_steps": self.warmup}


def train(builder, x, y, *, epochs: int, batch_size: int, lr: float, seed: int):
    """Train one net; return training error (%) after each epoch."""
    keras.utils.set_random_seed(seed)
    model = builder(input_shape=x.shape[1:], classes=int(y.max()) + 1)
    steps_per_epoch = int(np.ceil(len(x) / batch_size))
    schedule = WarmupStepDecay(lr, epochs * steps_per_epoch, warmup_steps=steps_per_epoch)
    # SGD with momentum 0.9 and weight decay 1e-4, as in the paper.
    model.compile(
        optimizer=keras.optimizers.SGD(schedule, momentum=0.9, weight_decay=1e-4),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    history = model.fit(x, y, epochs=epochs, batch_size=batch_size, shuffle=True, verbose=0)
    return [round(100.0 * (1.0 - a), 2) for a in history.history["accuracy"]]


def plot(curves: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, family in zip(axes, ("plain", "resnet")):
        for name, errors in curves.items():
            if name.startswith(family):
                style = "-" if name.endswith("56") else "--"
                ax.plot(range(1, len(errors) + 1), errors, style, label=name)
        ax.set_title(f"{family} nets")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0].set_ylabel("training error (%)")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--quick", action="store_true", help="digits at 16x16, fits a 2-core CPU in < 10 min")
    source.add_argument("--cifar10", type=Path, metavar="DIR", help="folder with the CIFAR-10 binary batches")
    parser.add_argument("--epochs", type=int, help="default: 10 quick, 160 CIFAR-10")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("degradation.png"))
    args = parser.parse_args(argv)

    if args.quick:
        x, y = load_digits(size=16)
        epochs, title = args.epochs or 10, "digits 16x16 (--quick)"
    else:
        x, y = load_cifar10(args.cifar10)
        epochs, title = args.epochs or 160, "CIFAR-10"
    x = x - x.mean(axis=0)  # per-pixel mean subtraction, as in the paper

    curves, seconds = {}, {}
    for name, builder in NETS.items():
        start = time.perf_counter()
        curves[name] = train(builder, x, y, epochs=epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
        seconds[name] = round(time.perf_counter() - start, 1)
        print(f"{name:>10}: final training error {curves[name][-1]:6.2f} %  ({seconds[name]} s)", flush=True)

    plot(curves, args.out, f"Training error, {title}")
    final = {name: errors[-1] for name, errors in curves.items()}
    result = {
        "setting": title,
        "epochs": epochs,
        "final_training_error": final,
        "seconds": seconds,
        "curves": curves,
        "plain_56_above_plain_20": final["plain-56"] > final["plain-20"],
        "resnet_56_as_good_as_resnet_20": final["resnet-56"] <= final["resnet-20"] + AS_GOOD_POINTS,
    }
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "curves"}))
    print(f"plot: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
