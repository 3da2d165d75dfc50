"""Grad-CAM on a task where the evidence is known: the overlay of docs/explain.md.

An image holds a small square outline (class "square") or plus ("plus") of
a random color at a random place, or no shape at all ("none"), over
clutter of short strokes and dots in the same colors. Nothing but the shape
decides the class, and its box is known. The "none" class is what makes the
evidence of both shapes positive: with two classes, a net may call an image
"plus" because it finds no square, and then rightly has nothing to point
at. A small ResNet learns the task in seconds; Grad-CAM should put its
peak on the shape.

    python examples/explain.py                            # writes docs/explain_overlay.png
    python examples/explain.py --out /tmp/overlay.png --size 32 --train 450 --epochs 4

No ImageNet weights are used: none can be downloaded here, and random
weights would explain nothing. The tests use this module's task too
(tests/shapes_task.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

CLASSES = ("none", "square", "plus")
SHAPE = 7  # the shape's box is SHAPE x SHAPE pixels
CLUTTER = 10  # strokes and dots per image
STROKE = (2, 4)  # clutter strokes are shorter than a shape's side, so none forms one
# A heatmap finds the shape when its peak is in the shape's box grown by MARGIN px on each
# side: half the 4 px stride of the net's last stage, whose cells the heatmap interpolates.
MARGIN = 2


@dataclasses.dataclass(frozen=True)
class Shapes:
    """Images in [0, 1] (N, size, size, 3), labels (N,), boxes (N, 4) as (top, left, bottom, right) exclusive."""

    images: np.ndarray
    labels: np.ndarray
    boxes: np.ndarray


def _color(rng) -> np.ndarray:
    color = rng.uniform(0.5, 1.0, 3)
    color[rng.integers(3)] = rng.uniform(0.0, 0.3)  # saturated: one channel low
    return color


def _draw_shape(image, top: int, left: int, label: int, color) -> None:
    s = SHAPE
    if label == 1:  # square outline
        image[top, left:left + s] = image[top + s - 1, left:left + s] = color
        image[top:top + s, left] = image[top:top + s, left + s - 1] = color
    else:  # plus through the middle
        image[top + s // 2, left:left + s] = image[top:top + s, left + s // 2] = color


def shapes(count: int, size: int = 32, seed: int = 0) -> Shapes:
    """`count` images of the task, classes balanced, reproducible from `seed`."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0.0, 0.25, (count, size, size, 3)).astype(np.float32)
    labels = np.arange(count) % len(CLASSES)
    rng.shuffle(labels)
    boxes = np.zeros((count, 4), np.int64)
    for image, label, box in zip(images, labels, boxes):
        for _ in range(CLUTTER):
            y, x = rng.integers(0, size, 2)
            length = rng.integers(STROKE[0], STROKE[1] + 1) if rng.uniform() < 0.7 else 1
            if rng.uniform() < 0.5:
                image[y, x:x + length] = _color(rng)
            else:
                image[y:y + length, x] = _color(rng)
        if label:  # class 0 has no shape, and an empty box
            top, left = rng.integers(1, size - SHAPE, 2)
            _draw_shape(image, top, left, label, _color(rng))
            box[:] = (top, left, top + SHAPE, left + SHAPE)
    return Shapes(images, labels, boxes)


def build_model(size: int = 32, widths=(16, 32, 64), seed: int = 0):
    """A small CIFAR-style ResNet, one basic block per stage; the last stage at stride 4.

    Built from the ResNet-20 spec with fewer, narrower blocks (the zoo's own builder).
    """
    import keras

    from resnet_keras.architecture import build as builder
    from resnet_keras.architecture.specs import SPECS

    keras.utils.set_random_seed(seed)
    spec = dataclasses.replace(SPECS["resnet20"], depths=(1,) * len(widths), widths=tuple(widths),
                               stem_width=widths[0])
    return builder.create_model(
        spec, include_top=True, weights=None, input_tensor=None, input_shape=(size, size, 3),
        pooling=None, classes=len(CLASSES), classifier_activation="softmax", name="shapes_resnet",
    )


def preprocess(images: np.ndarray) -> np.ndarray:
    return images * 2.0 - 1.0


def train(data: Shapes, *, epochs: int = 6, seed: int = 0, widths=(16, 32, 64), shuffle_labels: bool = False):
    """The small ResNet trained on `data` (labels permuted when `shuffle_labels`: a control)."""
    import keras

    labels = np.random.default_rng(seed + 1).permutation(data.labels) if shuffle_labels else data.labels
    model = build_model(data.images.shape[1], widths, seed)
    for layer in model.layers:  # moving statistics that settle within a short run
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.8
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(preprocess(data.images), labels, batch_size=32, epochs=epochs, verbose=0)
    return model


def peaks_in_boxes(heatmaps: np.ndarray, boxes: np.ndarray, margin: int) -> np.ndarray:
    """Whether each heatmap's maximum lies in its box grown by `margin` pixels on every side."""
    flat = heatmaps.reshape(len(heatmaps), -1).argmax(axis=1)
    y, x = np.unravel_index(flat, heatmaps.shape[1:])
    top, left, bottom, right = boxes.T
    return (y >= top - margin) & (y < bottom + margin) & (x >= left - margin) & (x < right + margin)


def evaluate(model, data: Shapes, margin: int) -> dict:
    """Held-out accuracy, and the share of correctly classified images with a shape whose
    heatmap peak is on the shape."""
    import resnet_keras

    x = preprocess(data.images)
    predicted = np.argmax(model.predict(x, verbose=0), axis=-1)
    correct = (predicted == data.labels) & (data.labels > 0)
    heatmaps = resnet_keras.grad_cam(model, x[correct])  # the predicted (here: true) class
    hits = peaks_in_boxes(heatmaps, data.boxes[correct], margin)
    return {"accuracy": float((predicted == data.labels).mean()), "correct": int(correct.sum()),
            "peak_in_box": float(hits.mean()) if len(hits) else 0.0}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(Path(__file__).parents[1] / "docs" / "explain_overlay.png"))
    parser.add_argument("--size", type=int, default=48, help="image height and width")
    parser.add_argument("--train", type=int, default=1500, help="training images")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--examples", type=int, default=6, help="held-out images in the picture")
    args = parser.parse_args(argv)

    import resnet_keras

    model = train(shapes(args.train, args.size, seed=0), epochs=args.epochs)
    held_out = shapes(400, args.size, seed=1)
    result = evaluate(model, held_out, MARGIN)
    print(f"held-out accuracy {result['accuracy']:.3f}; heatmap peak on the shape (box + {MARGIN} px) "
          f"for {result['peak_in_box']:.3f} of the {result['correct']} correct images")

    # the first held-out images with a shape, and one without (its evidence is an absence)
    order = np.concatenate([np.flatnonzero(held_out.labels > 0)[: args.examples - 1],
                            np.flatnonzero(held_out.labels == 0)[:1]])
    picked = held_out.images[order]
    predicted = np.argmax(model.predict(preprocess(picked), verbose=0), axis=-1)
    heatmaps = resnet_keras.grad_cam(model, preprocess(picked))
    sheet = _sheet(picked, heatmaps, [CLASSES[i] for i in predicted], scale=max(1, 192 // args.size))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    print(f"top: the images; below: Grad-CAM of the predicted class, named under it -> {out}")


def _sheet(images: np.ndarray, heatmaps: np.ndarray, captions, scale: int):
    """Columns of (image, overlay) enlarged `scale` times (nearest neighbour), a caption under each."""
    import resnet_keras
    from PIL import Image, ImageDraw

    columns = []
    for image, heat in zip(images, heatmaps):
        pixels = np.rint(image * 255).astype(np.uint8)
        pair = np.concatenate([pixels, resnet_keras.overlay(pixels, heat)], axis=0)
        columns.append(np.pad(pair.repeat(scale, 0).repeat(scale, 1), ((4, 24), (4, 4), (0, 0)),
                              constant_values=255))
    sheet = Image.fromarray(np.concatenate(columns, axis=1))
    draw = ImageDraw.Draw(sheet)
    width = columns[0].shape[1]
    for i, caption in enumerate(captions):
        draw.text((i * width + 8, sheet.height - 18), f"predicted: {caption}", fill=(0, 0, 0))
    return sheet


if __name__ == "__main__":
    main()
