"""Transfer shows: fine_tune from pretrained weights beats training from scratch and a linear probe.

On scikit-learn's digits (real 8x8 scans, upscaled to RGB):

1. The publisher: a ResNet20 trained on digits 0-4 (plain keras `fit`); its
   backbone saved as an HDF5 weights file with a manifest entry (file://
   URL, sha256, input size, preprocessing 'tf'), exactly as a user would
   use published weights.
2. Per seed, few labels of digits 5-9 (`--labels` per class for training,
   as many for validation, the rest for the test):
   - `fine_tune` from those weights (defaults, augmentation off: see `run`);
   - the same architecture from scratch with the same budget (same epochs
     in total, every layer training from the first step, BatchNorm trained,
     one learning rate);
   - a linear probe: logistic regression on the frozen backbone's pooled
     features, its C chosen on the validation images.
3. Test accuracy per seed, mean and spread; the margins.

Usage:
    python benchmarks/finetune_proof.py [--seeds 5] [--labels 10] [--out docs/finetune.md] [--quick]

Writes the numbers into --out between the markers `<!-- finetune-proof -->`
and `<!-- /finetune-proof -->` (and a .json beside it). `--quick` is the
small setting the fast test tier runs (one seed, 8x8, fewer epochs).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
TAG = "digits04"
BEGIN, END = "<!-- finetune-proof -->", "<!-- /finetune-proof -->"


@dataclasses.dataclass(frozen=True)
class Setting:
    size: int = 32
    pretrain_epochs: int = 12
    head_epochs: int = 4
    epochs: int = 16
    batch_size: int = 16


# The fast test tier's setting: digits at their own 8x8, a shorter schedule.
QUICK = Setting(size=8, pretrain_epochs=4, head_epochs=2, epochs=6)


def digits(size: int):
    """(pixels uint8 (n, size, size, 3), digit labels): all 1,797 scans, upscaled (nearest)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    factor = -(-size // 8)
    big = np.kron(data.images / 16.0 * 255.0, np.ones((factor, factor)))[:, :size, :size]
    return np.repeat(np.round(big)[..., None], 3, axis=-1).astype(np.uint8), data.target


def publish(x, y, setting: Setting, folder: Path) -> Path:
    """Train ResNet20 on digits 0-4 and publish its backbone; the manifest path."""
    import keras

    import resnet_keras
    from resnet_keras.images import preprocess
    from resnet_keras.weights.formats.hdf5_write import write_keras2_layout

    keras.utils.set_random_seed(0)
    shape = (setting.size, setting.size, 3)
    model = resnet_keras.get_model("resnet20", weights=None, classes=5, input_shape=shape)
    model.compile(keras.optimizers.AdamW(2e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    first = y < 5
    model.fit(preprocess(x[first].astype("float32"), "tf"), y[first], batch_size=64,
              epochs=setting.pretrain_epochs, verbose=0)
    backbone = resnet_keras.get_model("resnet20", weights=None, include_top=False, input_shape=shape)
    for layer in backbone.layers:
        if layer.weights:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    path = folder / f"resnet20_{TAG}_{setting.size}_notop.h5"
    write_keras2_layout(backbone, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    manifest = {"schema_version": 1, "models": {"resnet20": {TAG: {
        "source": "benchmarks/finetune_proof.py: ResNet20 trained on digits 0-4",
        "preprocessing": "tf", "input_size": setting.size,
        "files": {"notop": {"file_name": path.name, "urls": [path.as_uri()], "hash": f"sha256:{digest}"}}}}}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder / "manifest.json"


def few_labels(y, labels: int, seed: int):
    """(train, validation, test) indices of digits 5-9: `labels` per class each for train and validation."""
    rng = np.random.default_rng(seed)
    parts = ([], [], [])
    for digit in range(5, 10):
        members = rng.permutation(np.flatnonzero(y == digit))
        parts[0].append(members[:labels])
        parts[1].append(members[labels:2 * labels])
        parts[2].append(members[2 * labels:])
    return tuple(np.concatenate(p) for p in parts)


def linear_probe(manifest: Path, x, y, split, setting: Setting) -> float:
    """Test accuracy of logistic regression on frozen pooled features (C chosen on validation)."""
    from sklearn.linear_model import LogisticRegression

    import resnet_keras
    from resnet_keras.images import preprocess

    backbone = resnet_keras.get_model("resnet20", weights=TAG, include_top=False, pooling="avg", manifest=manifest,
                                      input_shape=(setting.size, setting.size, 3))
    features = [backbone.predict(preprocess(x[i].astype("float32"), "tf"), verbose=0) for i in split]
    best = max((LogisticRegression(C=c, max_iter=5000).fit(features[0], y[split[0]]) for c in (0.01, 0.1, 1, 10, 100)),
               key=lambda probe: probe.score(features[1], y[split[1]]))
    return float(best.score(features[2], y[split[2]]))


def run(seeds: int, labels: int, setting: Setting, progress: bool = False) -> dict:
    import resnet_keras

    x, y = digits(setting.size)
    results = dict(setting=dataclasses.asdict(setting), seeds=seeds, labels_per_class=labels, runs=[])
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        os.environ["RESNET_KERAS_HOME"] = str(folder / "cache")
        began = time.perf_counter()
        manifest = publish(x, y, setting, folder)
        results["pretrain_seconds"] = time.perf_counter() - began
        # No crops or flips: the scans are centred and small, and digits are not symmetric
        # (random crops of 50-100% cut strokes off: both methods lose ~20 points with them).
        common = dict(batch_size=setting.batch_size, augment=False, progress=progress, manifest=manifest)
        for seed in range(seeds):
            split = few_labels(y, labels, seed)
            train, val = (x[split[0]], y[split[0]] - 5), (x[split[1]], y[split[1]] - 5)
            test_x, test_y = x[split[2]], y[split[2]] - 5

            def accuracy(ft):
                return float(np.mean(ft.predict(test_x).argmax(axis=1) == test_y))

            tuned = resnet_keras.fine_tune(train, "resnet20", TAG, validation_data=val, seed=seed,
                                           head_epochs=setting.head_epochs, epochs=setting.epochs, **common)
            scratch_run = resnet_keras.fine_tune(
                train, "resnet20", None, validation_data=val, seed=seed, head_epochs=0,
                epochs=setting.head_epochs + setting.epochs, batchnorm="train", stage_lr_decay=1.0,
                input_size=setting.size, preprocessing="tf", **common)
            results["precision"] = tuned.settings.precision
            results["runs"].append(dict(seed=seed, fine_tune=accuracy(tuned), scratch=accuracy(scratch_run),
                                        linear_probe=linear_probe(manifest, x, y, split, setting),
                                        test_images=len(test_y)))
            if progress:
                print(results["runs"][-1], file=sys.stderr)
    for method in ("fine_tune", "scratch", "linear_probe"):
        values = np.array([r[method] for r in results["runs"]])
        results[method] = dict(mean=float(values.mean()), std=float(values.std()), min=float(values.min()))
    results["margin_over_scratch"] = results["fine_tune"]["mean"] - results["scratch"]["mean"]
    results["margin_over_probe"] = results["fine_tune"]["mean"] - results["linear_probe"]["mean"]
    results["wins_over_scratch"] = sum(r["fine_tune"] > r["scratch"] for r in results["runs"])
    return results


def markdown(r: dict, command: str) -> str:
    s = r["setting"]
    rows = "\n".join(f"| {run['seed']} | {run['fine_tune']:.3f} | {run['scratch']:.3f} | {run['linear_probe']:.3f} |"
                     for run in r["runs"])
    mean = lambda m: f"{r[m]['mean']:.3f} ± {r[m]['std']:.3f}"  # noqa: E731
    return f"""{BEGIN}
`{command}`: ResNet20 pretrained on digits 0-4 ({s['pretrain_epochs']} epochs, {s['size']}x{s['size']}),
then digits 5-9 with {r['labels_per_class']} labels per class (as many for validation, the rest
({r['runs'][0]['test_images']} images) for the test), {s['head_epochs']} head + {s['epochs']} epochs,
batch {s['batch_size']}, {r['seeds']} seeds. Test top-1:

| seed | fine_tune (pretrained) | same net from scratch, same budget | linear probe on frozen features |
|---|---|---|---|
{rows}
| **mean ± std** | **{mean('fine_tune')}** | {mean('scratch')} | {mean('linear_probe')} |

Fine-tuning beats training from scratch by {100 * r['margin_over_scratch']:.1f} points on average (on
{r['wins_over_scratch']} of {r['seeds']} seeds) and the linear probe by {100 * r['margin_over_probe']:.1f} points.
{END}"""


def write_docs(path: Path, r: dict, command: str) -> None:
    text = path.read_text(encoding="utf-8") if path.exists() else f"{BEGIN}\n{END}\n"
    section = markdown(r, command)
    text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: section, text, flags=re.S)
    path.write_text(text, encoding="utf-8")
    path.with_name("finetune_proof.json").write_text(json.dumps(r, indent=1) + "\n")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--labels", type=int, default=10, help="labelled training images per class")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "finetune.md")
    parser.add_argument("--quick", action="store_true", help="one seed, 8x8, few epochs; prints only")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    setting = QUICK if args.quick else Setting()
    results = run(1 if args.quick else args.seeds, args.labels, setting, progress=True)
    print(json.dumps({k: v for k, v in results.items() if k != "runs"}, indent=1))
    if not args.quick:
        write_docs(args.out, results, "python benchmarks/finetune_proof.py" + "".join(f" {a}" for a in (argv or sys.argv[1:])))


if __name__ == "__main__":
    main()
