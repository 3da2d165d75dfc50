"""fine_tune's training speed against a hand-written model.fit, the model's own step
throughput, and mixed bfloat16 against float32, in one run.

The same model (ResNet50 by default, random weights: speed does not depend on
their values) on the same data: generated JPEGs (smooth random pictures,
320x240) in class sub-folders. Every path trains all layers from the first
step, batch `--batch-size`, AdamW, label smoothing 0.1:

1. model step: `model.fit` on pre-decoded, preprocessed float32 tensors in
   memory, no augmentation (the ceiling of any input pipeline);
2. hand-written: what a user writes, `keras.utils.image_dataset_from_directory`
   (TensorFlow decodes every epoch) + the preprocessing map + `model.fit`;
3. fine_tune float32 with BatchNorm trained (`batchnorm="train"`: the same
   work as 1 and 2), with its default augmentation (random resized crops and
   flips) from the folder;
4. fine_tune bfloat16 (mixed precision, float32 head), otherwise as 3;
5. fine_tune with its defaults (frozen BatchNorm, `precision="auto"`).

Rates are steady-state training images/s of the last epoch (from the end of
its first batch to the end of its last; decoding before training, tracing
and validation are not in them). The paths run in turn, `--repeats` times,
and the median of each is reported. Targets: fine_tune / hand-written >= 1.0,
fine_tune / model step >= 0.90.

Usage:
    python benchmarks/finetune_bench.py [--model resnet50] [--size 224] [--images 256]
        [--batch-size 32] [--epochs 2] [--repeats 3] [--out docs/finetune.md] [--quick]

`--quick` (ResNet20 at 32x32, 64 images, one repeat) checks that the script
works and writes nothing. Run the real thing on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
BEGIN, END = "<!-- finetune-bench -->", "<!-- /finetune-bench -->"
CLASSES = 4


def make_folder(root: Path, images: int, seed: int = 0) -> Path:
    """`images` JPEGs (320x240, quality 90) spread over CLASSES class folders."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for i in range(images):
        folder = root / f"class{i % CLASSES}"
        folder.mkdir(parents=True, exist_ok=True)
        y, x = np.linspace(0, 1, 240)[:, None, None], np.linspace(0, 1, 320)[None, :, None]
        pixels = rng.uniform(0, 255, 3) * y + rng.uniform(0, 255, 3) * x + rng.normal(0, 12, (240, 320, 3))
        Image.fromarray(np.clip(pixels / 2 + 60, 0, 255).astype(np.uint8)).save(folder / f"{i:05d}.jpg", quality=90)
    return root


class SteadyRate:
    """A Keras callback: images/s of the last epoch, after its first batch."""

    def __new__(cls, batch_size: int, images: int):
        import keras

        class Callback(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.first = self.last = None

            def on_train_batch_end(self, batch, logs=None):
                now = time.perf_counter()
                self.first = self.first or now
                self.last = now

            @property
            def rate(self):
                return (images - batch_size) / (self.last - self.first)

        return Callback()


def compiled_model(name: str, size: int):
    import keras

    import resnet_keras

    model = resnet_keras.get_model(name, weights=None, classes=CLASSES, input_shape=(size, size, 3))
    model.compile(keras.optimizers.AdamW(1e-3), keras.losses.CategoricalCrossentropy(label_smoothing=0.1))
    return model


def preprocessing_of(name: str) -> str | None:
    from resnet_keras.architecture.catalog import resolve
    from resnet_keras.architecture.specs import SPECS

    return SPECS[resolve(name)].preprocessing


def model_step(folder: Path, args) -> float:
    """model.fit on pre-decoded, preprocessed tensors held in memory."""
    import tensorflow as tf

    from resnet_keras.finetune.data import list_folder
    from resnet_keras.finetune.source import decode
    from resnet_keras.images import preprocess

    examples = list_folder(folder)
    pixels, _ = decode(examples, np.arange(len(examples)), args.size, budget=1 << 40, progress=False)
    x = preprocess(pixels.cache.astype(np.float32), preprocessing_of(args.model))
    y = np.eye(CLASSES, dtype=np.float32)[pixels.labels]
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(args.batch_size).prefetch(2)
    rate = SteadyRate(args.batch_size, len(x))
    compiled_model(args.model, args.size).fit(data, epochs=args.epochs, verbose=0, callbacks=[rate])
    return rate.rate


def hand_written(folder: Path, args) -> float:
    """image_dataset_from_directory + preprocessing + model.fit, as the keras guides write it."""
    import keras
    import tensorflow as tf

    from resnet_keras.finetune.pipeline import preprocess_tensor

    mode = preprocessing_of(args.model)
    data = keras.utils.image_dataset_from_directory(
        folder, image_size=(args.size, args.size), batch_size=args.batch_size, label_mode="categorical",
        shuffle=True, seed=0, verbose=False)
    data = data.map(lambda x, y: (preprocess_tensor(x, mode), y), num_parallel_calls=tf.data.AUTOTUNE).prefetch(2)
    rate = SteadyRate(args.batch_size, args.images)
    compiled_model(args.model, args.size).fit(data, epochs=args.epochs, verbose=0, callbacks=[rate])
    return rate.rate


def fine_tune(folder: Path, args, **options) -> float:
    import resnet_keras

    result = resnet_keras.fine_tune(
        folder, args.model, None, head_epochs=0, epochs=args.epochs, batch_size=args.batch_size,
        validation_split=0.0, input_size=args.size, progress=False, **options)
    return result.history[-1]["steady_images_per_second"]


PATHS = {
    "model step (pre-decoded tensors)": model_step,
    "hand-written model.fit (image_dataset_from_directory)": hand_written,
    "fine_tune float32": lambda folder, args: fine_tune(folder, args, precision="float32", batchnorm="train"),
    "fine_tune bfloat16": lambda folder, args: fine_tune(folder, args, precision="bfloat16", batchnorm="train"),
    "fine_tune defaults (frozen BatchNorm, auto precision)": lambda folder, args: fine_tune(folder, args),
}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "finetune.md")
    parser.add_argument("--quick", action="store_true", help="ResNet20, 32x32, 64 images, once; writes nothing")
    args = parser.parse_args(argv)
    if args.quick:
        args.model, args.size, args.images, args.batch_size, args.repeats = "resnet20", 32, 64, 16, 1
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    rates: dict[str, list[float]] = {name: [] for name in PATHS}
    with tempfile.TemporaryDirectory() as scratch:
        folder = make_folder(Path(scratch) / "data", args.images)
        for _ in range(args.repeats):
            for name, run in PATHS.items():
                rates[name].append(run(folder, args))
                print(f"{name}: {rates[name][-1]:.1f} images/s", file=sys.stderr, flush=True)
    median = {name: float(np.median(values)) for name, values in rates.items()}
    names = list(PATHS)
    result = dict(
        model=args.model, size=args.size, images=args.images, batch_size=args.batch_size, epochs=args.epochs,
        repeats=args.repeats, machine=f"{platform.machine()}, {os.cpu_count()} CPUs", rates=rates, median=median,
        fine_tune_over_hand_written=median[names[2]] / median[names[1]],
        pipeline_share_of_model_step=median[names[2]] / median[names[0]],
        bfloat16_over_float32=median[names[3]] / median[names[2]],
    )
    print(json.dumps(result, indent=1))
    if not args.quick:
        command = "python benchmarks/finetune_bench.py" + "".join(f" {a}" for a in (argv or sys.argv[1:]))
        write_docs(args.out, result, command)


def write_docs(path: Path, r: dict, command: str) -> None:
    rows = "\n".join(f"| {name} | {rate:.1f} |" for name, rate in r["median"].items())
    section = f"""{BEGIN}
`{command}` on {r['machine']}: {r['model']} at {r['size']}x{r['size']}, {r['images']} JPEGs, batch
{r['batch_size']}, all layers training, steady images/s of the last of {r['epochs']} epochs, median of {r['repeats']}.

| path | training images/s |
|---|---|
{rows}

- fine_tune / hand-written `model.fit`: {r['fine_tune_over_hand_written']:.2f} (target >= 1.0).
- fine_tune's input pipeline: {100 * r['pipeline_share_of_model_step']:.0f}% of the model's own step throughput (target >= 90%).
- Mixed bfloat16 / float32: {r['bfloat16_over_float32']:.2f}.
{END}"""
    text = path.read_text(encoding="utf-8")
    text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: section, text, flags=re.S)
    path.write_text(text, encoding="utf-8")
    path.with_name("finetune_bench.json").write_text(json.dumps(r, indent=1) + "\n")


if __name__ == "__main__":
    main()
