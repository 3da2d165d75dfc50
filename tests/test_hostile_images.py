"""Real-world image files through `features` and `classify` (issue 19, part 4).

One `features` run over a folder of hostile files (a DDS texture named .jpg,
a file whose Pillow decoder fails with an odd exception, a 4 GB sparse
non-image, names that are not UTF-8, a 16-bit grey PNG) is shared by the
tests of this module; each asserts one case on it. `classify` must give one
typed line for each bad file.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import resource
import tracemalloc

import numpy as np
import pytest
from PIL import Image

from cli_runs import run
import official_format
from image_files import ODD_MAGIC, bytes_name, odd_plugin, random_rgb, write_dds_texture, write_sparse
from optional import require
from resnet_keras import cli
from resnet_keras.errors import ImageError
from resnet_keras.images import load_batch

pq = require("pyarrow.parquet")

FOUR_GB = 4 * 2**30
# One worker runs this module: its `extraction` fixture (a features run, 2 s) is made once.
pytestmark = pytest.mark.xdist_group("hostile_images")
LEVELS = np.linspace(0, 65535, 32 * 32).reshape(32, 32).astype(np.uint16)



def one_line_error(status, out, err, *phrases):
    errors = [line for line in err.splitlines() if line.startswith("resnet-keras: error: ")]
    assert status == 1 and out == "" and len(errors) == 1, (status, out, err)
    assert "Traceback" not in err
    for phrase in phrases:
        assert phrase in errors[0], errors[0]


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile") / "photos"
    root.mkdir()
    Image.fromarray(random_rgb((32, 32))).save(root / "good.jpg")
    Image.fromarray(LEVELS).save(root / "grey16.png")  # mode I;16
    Image.fromarray(np.round(LEVELS / 257).astype(np.uint8)).save(root / "grey8.png")  # what it shows
    Image.fromarray(np.full((32, 32), 255, np.uint8)).save(root / "white.png")
    write_dds_texture(root / "texture.jpg")  # Pillow raises NotImplementedError
    (root / "odd.jpg").write_bytes(ODD_MAGIC + bytes(64))  # its decoder raises ZeroDivisionError
    write_sparse(root / "huge.jpg", FOUR_GB)
    Image.fromarray(random_rgb((32, 32), seed=1)).save(bytes_name(root, b"bad\xff.jpg"), format="JPEG")
    bytes_name(root, b"broken\xfe.png").write_bytes(b"not a PNG")
    return root


@pytest.fixture(scope="module")
def extraction(photos, tmp_path_factory):
    """`features photos --out FOLDER`, run once (rows in shards of 2); what it did."""
    folder = tmp_path_factory.mktemp("run")
    weights = official_format.seeded_resnet20(folder / "r20.h5")
    argv = ["features", photos, "--out", folder / "out", "--model", "resnet20", "--weights", weights,
            "--quiet", "--runtime", "tensorflow", "--shard-size", "2"]
    before = max_rss_mb()
    with odd_plugin(), contextlib.redirect_stdout(io.StringIO()) as stdout:  # capsys is per test
        status = cli.main([str(a) for a in argv])
    table = pq.read_table(folder / "out")
    with open(folder / "out" / "_errors.csv", newline="", encoding="utf-8") as f:
        errors = {row["path"]: row["reason"] for row in csv.DictReader(f)}
    return dict(argv=argv, status=status, stdout=stdout.getvalue(), out=folder / "out",
                rss_growth_mb=max_rss_mb() - before, errors=errors,
                paths=table.column("path").to_pylist(),
                rows=np.stack(table.column("embedding").to_numpy(zero_copy_only=False)))


def row_of(extraction, name):
    return extraction["rows"][extraction["paths"].index(name)]


def test_the_run_finishes_and_counts_every_file(extraction, photos):
    assert extraction["status"] == 0
    assert "9 images -> 5 rows x 64 features" in extraction["stdout"]
    assert "5 shards; 4 unreadable (listed in _errors.csv)" in extraction["stdout"]
    index = json.loads((extraction["out"] / "_index.json").read_text())
    assert index["complete"] and (index["rows"], index["errors"]) == (5, 4)


def test_any_decode_error_is_a_listed_skip(extraction, photos):
    errors = extraction["errors"]
    assert errors[f"{photos}/texture.jpg"] == "Unreadable image (NotImplementedError: Unimplemented pixel format 1465538904)"
    assert errors[f"{photos}/odd.jpg"] == "Unreadable image (ZeroDivisionError: the decoder divided by zero)"


def test_a_4gb_file_is_refused_before_it_is_read(extraction, photos):
    assert extraction["errors"][f"{photos}/huge.jpg"].startswith(
        "Refused: 4,294,967,296 bytes, over the size limit for an image file (268,435,456 bytes; "
        "RESNET_KERAS_MAX_IMAGE_BYTES raises it)")
    assert extraction["rss_growth_mb"] < 1500, extraction["rss_growth_mb"]  # not 4 GB read in


def test_a_file_under_the_limit_is_decoded_from_its_path_not_read_into_memory(tmp_path, monkeypatch):
    path = write_sparse(tmp_path / "big.jpg", 2**30)  # 1 GiB of zeros: Pillow needs only its start
    monkeypatch.setenv("RESNET_KERAS_MAX_IMAGE_BYTES", str(2**31))
    tracemalloc.start()
    try:
        with pytest.raises(ImageError, match="Not an image Pillow can read"):
            load_batch([path], (32, 32))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**24, peak  # keras.utils.load_img reads the whole file first


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX FIFOs")
def test_a_fifo_is_refused_not_waited_on(tmp_path):
    fifo = tmp_path / "camera.jpg"
    os.mkfifo(fifo)  # opening it for reading would wait for a writer forever
    with pytest.raises(ImageError, match="Not a regular file: .*camera.jpg"):
        load_batch([fifo], (32, 32))


def test_names_that_are_not_utf8_are_escaped_rows_and_errors(extraction, photos):
    assert f"{photos}/bad\\xff.jpg" in extraction["paths"]  # a row, its name escaped
    assert extraction["errors"][f"{photos}/broken\\xfe.png"] == "Not an image Pillow can read"
    assert extraction["paths"] == sorted(extraction["paths"])  # list order: the folder's sort


def test_a_16bit_grey_png_embeds_as_its_picture_not_as_white(extraction, photos):
    grey16, grey8 = row_of(extraction, f"{photos}/grey16.png"), row_of(extraction, f"{photos}/grey8.png")
    white = row_of(extraction, f"{photos}/white.png")
    np.testing.assert_allclose(grey16, grey8, rtol=1e-5, atol=1e-6)
    assert np.abs(grey16 - white).max() > 100 * np.abs(grey16 - grey8).max() + 1e-3


def test_a_rerun_meets_the_same_files_and_resumes(extraction, capsys):
    out = extraction["out"]
    index = json.loads((out / "_index.json").read_text())
    index["shards"], index["complete"] = index["shards"][:2], False  # as if killed after 2 shards
    (out / "_index.json").write_text(json.dumps(index))
    errors_before = (out / "_errors.csv").read_bytes()
    with odd_plugin():
        status, stdout, err = run(capsys, *extraction["argv"])
    assert status == 0, err
    assert "5 shards, 2 done before; 4 unreadable" in stdout
    table = pq.read_table(out)
    assert table.column("path").to_pylist() == extraction["paths"]
    np.testing.assert_array_equal(np.stack(table.column("embedding").to_numpy(zero_copy_only=False)),
                                  extraction["rows"])
    assert (out / "_errors.csv").read_bytes() == errors_before


# --------------------------------------------------------------------------
# classify: one typed line per bad file, never a traceback


@pytest.mark.parametrize("name, phrase", [
    (b"texture.jpg", "Unreadable image (NotImplementedError: Unimplemented pixel format"),
    (b"odd.jpg", "Unreadable image (ZeroDivisionError: the decoder divided by zero)"),
    (b"huge.jpg", "Refused: 4,294,967,296 bytes, over the size limit"),
    (b"broken\xfe.png", "Not an image Pillow can read: {photos}/broken\\xfe.png."),
])
def test_classify_gives_one_typed_line_per_bad_file(name, phrase, photos, capsys):
    with odd_plugin():
        status, out, err = run(capsys, "classify", bytes_name(photos, name), "--model", "resnet20",
                               "--weights", "none")
    one_line_error(status, out, err, phrase.format(photos=photos), "Every IMAGE must be a readable image")


def test_classify_and_npz_print_and_store_an_undecodable_name_escaped(photos, tmp_path, capsys):
    path = bytes_name(photos, b"bad\xff.jpg")
    status, out, err = run(capsys, "classify", path, "--model", "resnet20", "--weights", "none", "--top", "1")
    assert status == 0, err
    assert out.splitlines()[0] == f"{photos}/bad\\xff.jpg"
    status, out, err = run(capsys, "features", path, "--out", tmp_path / "f.npz", "--model", "resnet20",
                           "--weights", "none", "--quiet", "--runtime", "tensorflow")
    assert status == 0, err
    with np.load(tmp_path / "f.npz", allow_pickle=False) as data:
        assert data["paths"].tolist() == [f"{photos}/bad\\xff.jpg"]


def test_the_size_limit_is_overridable_and_checked(photos, capsys, monkeypatch):
    size = (photos / "good.jpg").stat().st_size
    monkeypatch.setenv("RESNET_KERAS_MAX_IMAGE_BYTES", str(size - 1))
    one_line_error(*run(capsys, "classify", photos / "good.jpg", "--model", "resnet20", "--weights", "none"),
                   f"Refused: {size:,} bytes, over the size limit for an image file ({size - 1:,} bytes")
    monkeypatch.setenv("RESNET_KERAS_MAX_IMAGE_BYTES", "lots")
    one_line_error(*run(capsys, "classify", photos / "good.jpg", "--model", "resnet20", "--weights", "none"),
                   "RESNET_KERAS_MAX_IMAGE_BYTES must be a positive number of bytes. Received: "
                   "RESNET_KERAS_MAX_IMAGE_BYTES='lots'")
    monkeypatch.setenv("RESNET_KERAS_MAX_IMAGE_BYTES", str(size))
    status, _, err = run(capsys, "classify", photos / "good.jpg", "--model", "resnet20", "--weights", "none")
    assert status == 0, err
