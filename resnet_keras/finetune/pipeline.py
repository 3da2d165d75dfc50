"""The training input: a tf.data pipeline whose every random choice is recorded by seed.

Epoch `e` visits the training images in the order
`numpy.random.default_rng([seed, e]).permutation(n)` in batches of
`batch_size` (the last one smaller), and image `i` (its position in the
split) gets the crop box and flip of row `i` of `crop_parameters(seed, e)`,
whatever batch or worker it lands in. A resumed run, or a data-parallel
worker that takes a slice of each global batch, sees the same pixels.

Pixels come as uint8 (or float) RGB; the random resized crop and the flip
run batched in TensorFlow (`crop_and_resize`, bilinear), then the weights'
preprocessing, with the arithmetic of `resnet_keras.images.preprocess`.
"""

from __future__ import annotations

import math

import numpy as np

from .._imagenet import CAFFE_MEAN_BGR, TORCH_MEAN, TORCH_STD
from .settings import Augmentation
from .source import Pixels

# Tries per image to draw a crop that fits (torchvision's RandomResizedCrop: 10).
CROP_ATTEMPTS = 10


def epoch_order(seed: int, epoch: int, count: int) -> np.ndarray:
    """The order in which epoch `epoch` visits the `count` training images."""
    return np.random.default_rng([seed, epoch]).permutation(count)


def crop_parameters(seed: int, epoch: int, count: int, augment: Augmentation) -> np.ndarray:
    """(count, 5) float32 per image: crop box (y0, x0, y1, x1) as shares of the side, flip 0/1.

    The random resized crop of Inception and torchvision: an area share in
    `crop_scale` and a log-uniform aspect ratio in `crop_ratio`, the first
    of `CROP_ATTEMPTS` draws that fits in the image, else the whole image.
    """
    rng = np.random.default_rng([seed, epoch, 1])
    area = rng.uniform(*augment.crop_scale, size=(count, CROP_ATTEMPTS))
    ratio = np.exp(rng.uniform(*np.log(augment.crop_ratio), size=(count, CROP_ATTEMPTS)))
    width, height = np.sqrt(area * ratio), np.sqrt(area / ratio)
    fits = (width <= 1) & (height <= 1)
    first = np.where(fits.any(axis=1), fits.argmax(axis=1), -1)
    rows = np.arange(count)
    width = np.where(first >= 0, width[rows, first], 1.0)
    height = np.where(first >= 0, height[rows, first], 1.0)
    top = rng.uniform(size=count) * (1 - height)
    left = rng.uniform(size=count) * (1 - width)
    flip = (rng.uniform(size=count) < 0.5) & augment.flip
    return np.stack([top, left, top + height, left + width, flip], axis=1).astype(np.float32)


def preprocess_tensor(x, mode: str | None):
    """`images.preprocess` for a float32 tf.Tensor of RGB pixels in [0, 255]."""
    import tensorflow as tf

    if mode is None:
        return x / 255.0
    if mode == "tf":
        return x / 127.5 - 1.0
    if mode == "caffe":
        return tf.reverse(x, axis=[-1]) - tf.constant(CAFFE_MEAN_BGR, tf.float32)
    return (x / 255.0 - tf.constant(TORCH_MEAN, tf.float32)) / tf.constant(TORCH_STD, tf.float32)


def crop_and_resize(images, boxes, size: int):
    """`tf.image.crop_and_resize` (bilinear, box corners on pixel centres) from gathers.

    The same numbers, built from ops that TensorFlow's cost model knows (its
    estimator logs a warning for CropAndResize on every epoch).
    """
    import tensorflow as tf

    steps = tf.linspace(0.0, 1.0, size)  # output pixel -> share of the box

    def sample(start, stop, extent):
        position = (start[:, None] + (stop - start)[:, None] * steps[None, :]) * tf.cast(extent - 1, tf.float32)
        low = tf.clip_by_value(tf.floor(position), 0.0, tf.cast(extent - 1, tf.float32))
        high = tf.minimum(low + 1.0, tf.cast(extent - 1, tf.float32))
        return tf.cast(low, tf.int32), tf.cast(high, tf.int32), position - low

    shape = tf.shape(images)
    top, bottom, y_weight = sample(boxes[:, 0], boxes[:, 2], shape[1])
    left, right, x_weight = sample(boxes[:, 1], boxes[:, 3], shape[2])

    def columns(rows):
        a = tf.gather(rows, left, axis=2, batch_dims=1)
        b = tf.gather(rows, right, axis=2, batch_dims=1)
        return a + (b - a) * x_weight[:, None, :, None]

    upper = columns(tf.gather(images, top, axis=1, batch_dims=1))
    lower = columns(tf.gather(images, bottom, axis=1, batch_dims=1))
    return upper + (lower - upper) * y_weight[:, :, None, None]


class TrainingInput:
    """Batches of (preprocessed images, one-hot labels, sample weights) for one epoch."""

    def __init__(self, pixels: Pixels, *, input_size: int, preprocessing: str | None,
                 augment: Augmentation | None, batch_size: int, seed: int, num_classes: int,
                 class_weights: np.ndarray):
        self.pixels, self.input_size, self.preprocessing = pixels, input_size, preprocessing
        self.augment, self.batch_size, self.seed = augment, batch_size, seed
        self.num_classes = num_classes
        self.class_weights = np.asarray(class_weights, np.float32)

    @property
    def steps(self) -> int:
        return math.ceil(len(self.pixels) / self.batch_size)

    def _batches(self, epoch: int):
        count = len(self.pixels)
        order = epoch_order(self.seed, epoch, count)
        params = (crop_parameters(self.seed, epoch, count, self.augment) if self.augment
                  else np.zeros((count, 5), np.float32))
        for start in range(0, count, self.batch_size):
            rows = order[start:start + self.batch_size]
            yield self.pixels.take(rows), self.pixels.labels[rows], params[rows]

    def dataset(self, epoch: int):
        """The tf.data.Dataset of epoch `epoch` (0-based, counted over the whole run)."""
        import tensorflow as tf

        side = self.pixels.size
        dtype = tf.uint8 if self.pixels.cache is None else tf.as_dtype(self.pixels.cache.dtype)
        signature = (
            tf.TensorSpec((None, side, side, 3), dtype),
            tf.TensorSpec((None,), tf.int32),
            tf.TensorSpec((None, 5), tf.float32),
        )
        weights = tf.constant(self.class_weights)
        size, mode, augment = self.input_size, self.preprocessing, self.augment is not None

        def transform(images, labels, params):
            images = tf.cast(images, tf.float32)
            if augment:
                images = crop_and_resize(images, params[:, :4], size)
                flip = params[:, 4] > 0.5
                images = tf.where(flip[:, None, None, None], tf.reverse(images, axis=[2]), images)
            elif side != size:
                images = tf.image.resize(images, (size, size), method="bilinear")
            x = preprocess_tensor(images, mode)
            return x, tf.one_hot(labels, self.num_classes), tf.gather(weights, labels)

        dataset = tf.data.Dataset.from_generator(lambda: self._batches(epoch), output_signature=signature)
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(self.steps))  # Keras knows the steps
        return dataset.map(transform, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(2)


def inference_dataset(pixels: Pixels, preprocessing: str | None, batch_size: int, size: int | None = None):
    """Batches of preprocessed images of `pixels`, in order (validation, evaluation), resized
    (bilinear) to `size` if they are held at another."""
    import tensorflow as tf

    side = pixels.size
    size = size or side
    dtype = tf.uint8 if pixels.cache is None else tf.as_dtype(pixels.cache.dtype)

    def batches():
        for start in range(0, len(pixels), batch_size):
            yield pixels.take(np.arange(start, min(start + batch_size, len(pixels))))

    dataset = tf.data.Dataset.from_generator(
        batches, output_signature=tf.TensorSpec((None, side, side, 3), dtype))
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(math.ceil(len(pixels) / batch_size)))
    def transform(x):
        x = tf.cast(x, tf.float32)
        return preprocess_tensor(x if side == size else tf.image.resize(x, (size, size)), preprocessing)

    return dataset.map(transform, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(2)
