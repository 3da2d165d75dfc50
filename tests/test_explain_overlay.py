"""overlay / save_overlay: the blend, the built-in colormap, the files, the errors."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from optional import require
from resnet_keras import errors
from resnet_keras.explain import encode_overlay, overlay, save_overlay, overlays as overlay_module

RNG = np.random.default_rng(0)
IMAGE = RNG.integers(0, 256, (20, 30, 3), dtype=np.uint8)
HEAT = RNG.uniform(size=(20, 30)).astype("float32")
# smooth pixels and heat, as JPEG expects them
SMOOTH_IMAGE = np.stack([*np.meshgrid(np.linspace(0, 255, 30), np.linspace(0, 255, 20)), np.full((20, 30), 90.0)],
                        axis=-1).astype(np.uint8)
SMOOTH_HEAT = np.outer(np.hanning(20), np.hanning(30)).astype("float32")


def test_builtin_jet_is_matplotlibs():
    matplotlib = require("matplotlib")
    values = np.linspace(0.0, 1.0, 10_001)
    np.testing.assert_allclose(overlay_module.colorize(values), matplotlib.colormaps["jet"](values)[:, :3],
                               atol=1e-6, rtol=0)


def test_blend_weights_image_and_color():
    np.testing.assert_array_equal(overlay(IMAGE, HEAT, alpha=0.0), IMAGE)
    color = np.rint(overlay_module.colorize(HEAT) * 255).astype(np.uint8)
    np.testing.assert_array_equal(overlay(IMAGE, HEAT, alpha=1.0), color)
    half = overlay(IMAGE, HEAT, alpha=0.5).astype(int)
    assert np.abs(half - (IMAGE.astype(int) + color) / 2).max() <= 1
    assert overlay(IMAGE, HEAT).dtype == np.uint8 and overlay(IMAGE, HEAT).shape == (20, 30, 3)


def test_a_small_heatmap_is_resized_to_the_image_and_its_peak_stays():
    heat = np.zeros((4, 6), "float32")
    heat[1, 4] = 1.0  # the cell covering rows 5..9, columns 20..24 of the image
    blended = overlay(np.zeros((20, 30, 3), np.uint8), heat, alpha=1.0)
    red = blended[..., 0].astype(int) - blended[..., 2]  # jet: red is hot, blue cold
    y, x = np.unravel_index(np.argmax(red), red.shape)
    assert 5 <= y < 10 and 20 <= x < 25


@pytest.mark.parametrize("image", [IMAGE[..., 0], IMAGE[..., :1], IMAGE.transpose(2, 0, 1),
                                   IMAGE.astype("float32")])
def test_grey_channels_first_and_float_pixels(image):
    result = overlay(image, HEAT)
    assert result.shape == (20, 30, 3)
    if image.ndim == 3 and image.shape[-1] == 3:
        np.testing.assert_array_equal(result, overlay(IMAGE, HEAT))


def test_another_matplotlib_colormap():
    matplotlib = require("matplotlib")
    expected = np.rint(matplotlib.colormaps["viridis"](HEAT)[..., :3] * 255)
    assert np.abs(overlay(IMAGE, HEAT, alpha=1.0, colormap="viridis") - expected).max() <= 1


@pytest.mark.parametrize(
    "kwargs, phrase",
    [
        (dict(image=IMAGE * 0.0 - 1.0), "pixels in [0, 255] (uint8, or floats"),
        (dict(image=np.zeros((20, 30, 4))), "of shape (H, W, 3), (H, W), (H, W, 1) or (3, H, W)"),
        (dict(heatmap=HEAT * 2), "values in [0, 1] (as grad_cam returns them). Received: heatmap of shape (20, 30)"),
        (dict(heatmap=np.full((4, 4), np.nan)), "values in [0, 1]"),
        (dict(heatmap=HEAT[None]), "one 2-D map"),
        (dict(alpha=1.5), "must be a number in [0, 1]. Received: alpha=1.5"),
        (dict(colormap="virdis"), "Did you mean 'viridis'?"),
    ],
)
def test_bad_arguments(kwargs, phrase):
    if "colormap" in kwargs:
        require("matplotlib")
    arguments = dict(image=IMAGE, heatmap=HEAT) | kwargs
    with pytest.raises(errors.InvalidArgumentError) as caught:
        overlay(arguments.pop("image"), arguments.pop("heatmap"), **arguments)
    assert phrase in str(caught.value) and "\n" not in str(caught.value)


def test_without_matplotlib_other_colormaps_say_what_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    np.testing.assert_array_equal(overlay(IMAGE, HEAT), overlay(IMAGE, HEAT, colormap="jet"))
    with pytest.raises(errors.MissingDependencyError, match="needs matplotlib; 'jet' is built in"):
        overlay(IMAGE, HEAT, colormap="viridis")


@pytest.mark.parametrize("name", ["a.png", "b.PNG", "c.jpg", "d.JPEG"])
def test_save_overlay_writes_png_or_jpeg_by_suffix(tmp_path, name):
    path = save_overlay(tmp_path / name, SMOOTH_IMAGE, SMOOTH_HEAT)
    assert os.listdir(tmp_path) == [name]
    with Image.open(path) as written:
        assert written.format == ("PNG" if name.lower().endswith("png") else "JPEG")
        pixels = np.asarray(written.convert("RGB"))
    error = np.abs(pixels.astype(int) - overlay(SMOOTH_IMAGE, SMOOTH_HEAT)).mean()
    assert error == 0 if written.format == "PNG" else error < 3


def test_save_overlay_refuses_other_suffixes_before_any_work(tmp_path):
    with pytest.raises(errors.InvalidArgumentError, match=r"must end with .png, .jpg, .jpeg \(any case\). "
                                                          r"Received: path='.*overlay.gif'"):
        save_overlay(tmp_path / "overlay.gif", None, None)
    assert os.listdir(tmp_path) == []


def test_a_failed_write_leaves_no_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    path = tmp_path / "x.png"
    path.write_bytes(b"old")

    def fail(*_):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        save_overlay(path, IMAGE, HEAT)
    assert os.listdir(tmp_path) == ["x.png"] and path.read_bytes() == b"old"


def test_encode_overlay_gives_the_bytes_save_overlay_writes(tmp_path):
    data = encode_overlay(SMOOTH_IMAGE, SMOOTH_HEAT, format="PNG")
    assert data == save_overlay(tmp_path / "o.png", SMOOTH_IMAGE, SMOOTH_HEAT).read_bytes()
    assert encode_overlay(SMOOTH_IMAGE, SMOOTH_HEAT, format="jpg")[:2] == b"\xff\xd8"  # JPEG's start marker
    with pytest.raises(errors.InvalidArgumentError, match="`format` must be 'png', 'jpg' or 'jpeg'. "
                                                          "Received: format='gif'"):
        encode_overlay(SMOOTH_IMAGE, SMOOTH_HEAT, format="gif")
