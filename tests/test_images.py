"""The image rule of every command and the library (`resnet_keras.images`):
the picture a person sees, as 8-bit RGB, and exactly keras' pixels for
ordinary 8-bit RGB files.

Each expected picture is computed here from the numbers written into the
file, not by the code under test.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from PIL import Image

from image_files import random_rgb, torchvision_eval, write_png48
from resnet_keras.images import Transform, class_names, eval_transform, load_batch, top_classes, top_labels


def read(path, size=None) -> np.ndarray:
    """What the model sees, as uint8 (at the file's own size unless `size` is given)."""
    if size is None:
        with Image.open(path) as image:
            width, height = image.size
        size = (height, width)
    pixels = load_batch([path], size)[0]
    assert pixels.dtype == np.float32 and pixels.shape == (*size, 3)
    assert np.array_equal(pixels, np.round(pixels))  # whole levels, as from 8-bit files
    return pixels.astype(np.uint8)


def grey(levels: np.ndarray) -> np.ndarray:
    return np.repeat(np.asarray(levels, np.uint8)[..., None], 3, axis=-1)


def over_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha[..., None] / 255.0
    return rgb * a + 255 * (1 - a)


# --------------------------------------------------------------------------
# 8-bit RGB (and what keras converts the same way): exactly keras.utils.load_img


@pytest.mark.parametrize("suffix", ["jpg", "png", "bmp", "webp"])
@pytest.mark.parametrize("size", [(32, 32), (50, 37), (17, 64), (41, 29)])
def test_8bit_files_give_exactly_keras_pixels(suffix, size, tmp_path):
    path = tmp_path / f"photo.{suffix}"
    Image.fromarray(random_rgb((41, 29), seed=len(suffix))).save(path)
    expected = keras.utils.img_to_array(keras.utils.load_img(path, target_size=size))
    np.testing.assert_array_equal(load_batch([path], size)[0], expected)


@pytest.mark.parametrize("mode", ["L", "P"])
def test_grey_and_opaque_palette_files_give_exactly_keras_pixels(mode, tmp_path):
    path = tmp_path / f"{mode}.png"
    Image.fromarray(random_rgb((30, 20))).convert(mode).save(path)
    expected = keras.utils.img_to_array(keras.utils.load_img(path, target_size=(32, 32)))
    np.testing.assert_array_equal(load_batch([path], (32, 32))[0], expected)


# --------------------------------------------------------------------------
# Bit depth: the whole range of the file maps to 0..255


def test_16bit_grey_png_is_scaled_not_white(tmp_path):
    levels = np.linspace(0, 65535, 24 * 40).reshape(24, 40).astype(np.uint16)
    path = tmp_path / "grey16.png"
    Image.fromarray(levels).save(path)
    assert Image.open(path).mode == "I;16"  # how Pillow opens it: keras reads it nearly white
    np.testing.assert_array_equal(read(path), grey(np.round(levels / 257)))


def test_32bit_integer_tiff_is_read_as_16bit_range(tmp_path):
    levels = np.array([[-5, 0, 257, 32768], [65535, 70000, 1000, 12850]], np.int32)
    path = tmp_path / "int32.tif"
    Image.fromarray(levels).save(path)
    assert Image.open(path).mode == "I"
    np.testing.assert_array_equal(read(path), grey(np.round(np.clip(levels, 0, 65535) / 257)))


def test_float_tiff_is_read_as_0_to_1(tmp_path):
    levels = np.array([[0.0, 0.25, 0.5, 1.0], [-0.5, 2.0, np.nan, 0.999]], np.float32)
    path = tmp_path / "float.tif"
    Image.fromarray(levels).save(path)
    assert Image.open(path).mode == "F"  # Pillow's own conversion gives 0 (black) for 0.5
    expected = np.round(np.clip(np.nan_to_num(levels), 0, 1) * 255)
    np.testing.assert_array_equal(read(path), grey(expected))


def test_16bit_rgb_png_keeps_its_colours(tmp_path):
    pixels = np.random.default_rng(1).integers(0, 65536, (12, 9, 3), dtype=np.uint16)
    path = write_png48(tmp_path / "rgb48.png", pixels)
    np.testing.assert_allclose(read(path), pixels / 257, atol=1)


# --------------------------------------------------------------------------
# Colour models and transparency


CMYK_BLOCKS = {  # CMYK ink -> the RGB a person sees
    (255, 0, 0, 0): (0, 255, 255),
    (0, 255, 255, 0): (255, 0, 0),
    (0, 0, 0, 255): (0, 0, 0),
    (0, 0, 0, 0): (255, 255, 255),
}


@pytest.mark.parametrize("suffix, tolerance", [("tif", 0), ("jpg", 12)])
def test_cmyk_files_show_their_colours(suffix, tolerance, tmp_path):
    inks, colours = zip(*CMYK_BLOCKS.items())
    cmyk = np.concatenate([np.tile(np.array(ink, np.uint8), (16, 16, 1)) for ink in inks], axis=1)
    path = tmp_path / f"cmyk.{suffix}"
    Image.fromarray(cmyk, "CMYK").save(path, quality=95)
    expected = np.concatenate([np.tile(np.array(c, np.uint8), (16, 16, 1)) for c in colours], axis=1)
    np.testing.assert_allclose(read(path), expected, atol=tolerance)


def test_rgba_and_la_are_laid_over_white(tmp_path):
    rgb = random_rgb((20, 30), seed=2)
    alpha = np.random.default_rng(3).integers(0, 256, (20, 30), dtype=np.uint8)
    alpha[0] = 0  # fully transparent: white, whatever colour is stored under it
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_allclose(read(tmp_path / "rgba.png"), over_white(rgb, alpha), atol=1)
    assert (read(tmp_path / "rgba.png")[0] == 255).all()
    Image.fromarray(np.dstack([rgb[..., 0], alpha]), "LA").save(tmp_path / "la.png")
    np.testing.assert_allclose(read(tmp_path / "la.png"), over_white(grey(rgb[..., 0]), alpha), atol=1)


@pytest.mark.parametrize("suffix", ["png", "gif"])
def test_palette_transparency_is_white(suffix, tmp_path):
    indices = np.tile(np.array([0, 1, 2, 1], np.uint8), (8, 2))
    image = Image.fromarray(indices, "P")
    image.putpalette([0, 0, 0, 200, 10, 10, 10, 200, 10])  # index 0: black, transparent
    path = tmp_path / f"palette.{suffix}"
    image.save(path, transparency=0)
    colours = np.array([(255, 255, 255), (200, 10, 10), (10, 200, 10)], np.uint8)
    np.testing.assert_array_equal(read(path), colours[indices])


def test_1bit_files_are_black_and_white(tmp_path):
    bits = np.random.default_rng(4).integers(0, 2, (16, 24)).astype(bool)
    Image.fromarray(bits).save(tmp_path / "bits.png")
    np.testing.assert_array_equal(read(tmp_path / "bits.png"), grey(bits * 255))


# --------------------------------------------------------------------------
# EXIF orientation: as a viewer shows the photo (keras ignores it)


@pytest.mark.parametrize("orientation, turn", [
    (3, lambda a: np.rot90(a, 2)),
    (6, lambda a: np.rot90(a, -1)),  # "rotate 90 clockwise to view", as phones write it
    (8, lambda a: np.rot90(a, 1)),
    (2, lambda a: a[:, ::-1]),
])
def test_exif_orientation_is_applied(orientation, turn, tmp_path):
    path = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(random_rgb((24, 40), seed=5)).save(path, exif=exif)
    stored = keras.utils.img_to_array(keras.utils.load_img(path)).astype(np.uint8)  # as decoded, unturned
    expected = turn(stored)
    np.testing.assert_array_equal(read(path, expected.shape[:2]), expected)


def test_a_damaged_exif_block_leaves_the_photo_as_stored(tmp_path):
    path = tmp_path / "damaged.jpg"
    Image.fromarray(random_rgb((24, 40), seed=6)).save(path, exif=b"Exif\x00\x00II*\x00" + b"\xff\xff\xff\x7f")
    with pytest.warns(UserWarning, match="Corrupt EXIF"):  # the block really is damaged
        pixels = load_batch([path], (24, 40))[0]
        expected = keras.utils.img_to_array(keras.utils.load_img(path))
    np.testing.assert_array_equal(pixels, expected)


# --------------------------------------------------------------------------
# The eval transform of a weights record: torchvision's resize-then-crop, or keras' plain resize


@pytest.mark.parametrize("shape", [(300, 400), (400, 300), (256, 256), (97, 333), (230, 231)])
@pytest.mark.parametrize("resize, crop", [(256, 224), (232, 224), (36, 32)])
def test_a_resize_size_reads_as_torchvision_evaluates(shape, resize, crop, tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(random_rgb(shape, seed=shape[0])).save(path)
    transform = eval_transform(crop, resize_size=resize, input_size=crop)
    assert transform == Transform((crop, crop), resize)
    np.testing.assert_array_equal(load_batch([path], transform)[0], torchvision_eval(path, resize, crop))


@pytest.mark.parametrize("width, left", [(30, 7), (31, 8), (33, 8), (35, 10)])  # round(7.5) = 8, round(8.5) = 8
def test_the_center_crop_rounds_as_torchvision(width, left, tmp_path):
    """Shorter side already `resize`: no resampling, so the crop's offsets are visible exactly."""
    pixels = random_rgb((20, width), seed=width)
    Image.fromarray(pixels).save(tmp_path / "p.png")
    read_back = load_batch([tmp_path / "p.png"], Transform((16, 16), resize=20))[0]
    np.testing.assert_array_equal(read_back, pixels[2:18, left:left + 16])


def test_without_a_resize_size_the_transform_is_keras_plain_resize(tmp_path):
    path = tmp_path / "photo.jpg"
    Image.fromarray(random_rgb((41, 29), seed=9)).save(path)
    transform = eval_transform(32, resize_size=None, input_size=224)
    expected = keras.utils.img_to_array(keras.utils.load_img(path, target_size=(32, 32)))
    np.testing.assert_array_equal(load_batch([path], transform)[0], expected)  # bit-identical


def test_the_resize_scales_with_another_input_size():
    assert eval_transform(224, resize_size=256, input_size=224) == Transform((224, 224), 256)
    assert eval_transform(160, resize_size=256, input_size=224) == Transform((160, 160), 182)  # 256 * 160 // 224
    assert eval_transform(224, resize_size=232, input_size=224) == Transform((224, 224), 232)


def test_labels_rank_best_first_and_name_heads_without_names():
    scores = np.array([[0.1, 0.5, 0.5, 0.2]])
    assert top_classes(scores, 3).tolist() == [[1, 2, 3]]  # a tie: the lower index first
    assert top_labels(scores, 2) == [[("class_1", 0.5), ("class_2", 0.5)]]
    assert top_labels(scores, 1, ["a", "b", "c", "d"]) == [[("b", 0.5)]]
    imagenet = np.zeros((1, 1000))
    imagenet[0, 386] = 1
    assert top_labels(imagenet, 1) == [[("African_elephant", 1.0)]] and class_names(1000)[386] == "African_elephant"
