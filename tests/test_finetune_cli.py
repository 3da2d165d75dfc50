"""resnet-keras finetune / evaluate / classify --model RUN_DIR, and bad data folders.

The data: a folder of class sub-folders of real digit scans (PNG), with the
files users have (finetune_data.digits_folder): a grey PNG and a CMYK JPEG
(converted, trained on), a 0-byte file and a file that is not an image
(counted skips), a text file (ignored). Every refusal happens before RUN_DIR
is created.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli_runs import parse_classify
from finetune_data import CLASSES, SIZE, finetune_args
from resnet_keras import cli
from resnet_keras.errors import InvalidArgumentError
from resnet_keras.finetune import data as data_lib
from resnet_keras.finetune.record import load_run


@pytest.fixture
def run(digits_run):
    return digits_run.run


@pytest.fixture
def folder(digits_run):
    return digits_run.folder


@pytest.fixture
def manifest(digits_run):
    return digits_run.manifest


@pytest.mark.slow
def test_finetune_writes_a_complete_run_and_counts_skips(run, capsys):
    names = {p.name for p in run.iterdir()}
    assert {"weights.h5", "run.json", "metrics.json", "report.html", "settings.json", "class_names.json",
            "split.json", "skipped.csv"} <= names
    assert not any(n.startswith("checkpoint") or n.endswith(".part") for n in names)
    skipped = (run / "skipped.csv").read_text().splitlines()
    assert skipped[0] == "path,reason" and len(skipped) == 3
    assert any(line.startswith("zero/empty.png,empty file") for line in skipped)
    assert any(line.startswith("one/broken.jpg,Not an image") for line in skipped)
    split = json.loads((run / "split.json").read_text())
    used = {path for path, _ in split["train"] + split["validation"]}
    assert {"zero/grey.png", "one/cmyk.jpg"} <= used and len(used) == 48 + 2
    assert json.loads((run / "run.json").read_text())["class_names"] == sorted(CLASSES)  # as keras sorts
    metrics = json.loads((run / "metrics.json").read_text())  # --keep last: the last epoch's weights
    assert metrics["best_epoch"] == len(metrics["history"]) - 1 == 0


def test_evaluate_prints_top1_top5_per_class_and_confusion(run, folder, capsys):
    assert cli.main(["evaluate", str(run), str(folder), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "50 images (2 skipped): top-1 " in out and "top-3 1.0000" in out
    assert "precision" in out and "recall" in out and "confusion matrix" in out
    assert cli.main(["evaluate", str(run), str(folder), "--json", "--quiet"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["images"] == 50 and len(metrics["confusion"]) == 3 and metrics["skipped"] == 2
    assert [c["name"] for c in metrics["per_class"]] == sorted(CLASSES)


def test_classify_with_a_run_dir_prints_its_class_names(run, folder, capsys):
    image = folder / "two" / os.listdir(folder / "two")[0]
    assert cli.main(["classify", "--model", str(run), str(image)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == str(image) and {line.split()[1] for line in lines[1:]} == set(CLASSES)


def test_classify_refuses_weights_with_a_run_dir(run, folder, capsys):
    assert cli.main(["classify", "--model", str(run), "--weights", "none", str(folder / "zero")]) == 1
    assert "do not apply to a fine-tuned model" in capsys.readouterr().err


def pngs(folder, count):
    return sorted(str(p) for p in folder.glob("img*.png"))[:count]


def test_classify_a_run_dir_as_a_zoo_model_with_explain_and_a_predictor(run, folder, tmp_path, capsys):
    images, out_dir = pngs(folder / "two", 2), tmp_path / "explained"
    assert cli.main(["classify", "--model", str(run), *images, "--top", "2", "--explain", str(out_dir),
                     "--runtime", "tensorflow", "--batch-size", "1"]) == 0
    captured = capsys.readouterr()
    assert "Predictor(runtime='tensorflow', precision='float32'" in captured.err
    assert captured.out.splitlines()[-1] == f"4 Grad-CAM overlays -> {out_dir}"
    printed = parse_classify("\n".join(captured.out.splitlines()[:-1]))
    ft = load_run(run)
    expected = ft.top_labels(ft.predict(images), 2)  # the run's own reading and names
    assert list(printed) == images and [[n for n, _ in printed[p]] for p in images] == [[n for n, _ in e] for e in expected]
    np.testing.assert_allclose([[s for _, s in printed[p]] for p in images], [[s for _, s in e] for e in expected],
                               atol=1e-4)
    assert sorted(os.listdir(out_dir)) == sorted(f"{Path(p).stem}.top{rank}.{name}.png" for p, labels in
                                                 zip(images, expected) for rank, (name, _) in enumerate(labels, 1))
    assert cli.main(["classify", "--model", str(run), images[0], "--top", "4"]) == 1
    assert "--top must be at most the number of classes (3)" in capsys.readouterr().err


@pytest.mark.slow
def test_features_of_a_run_dir_are_its_pooled_backbone(run, folder, tmp_path, capsys):
    import keras

    from resnet_keras.images import load_batch, preprocess

    images = pngs(folder / "one", 3)
    assert cli.main(["features", *images, "--out", str(tmp_path / "f.npz"), "--model", str(run), "--quiet",
                     "--runtime", "tensorflow"]) == 0
    assert f"3 images x 64 features (resnet20, avg pooling, weights: {run}, {SIZE}x{SIZE} input)" in capsys.readouterr().out
    ft = load_run(run)
    backbone = keras.Model(ft.model.input, ft.model.get_layer("avg_pool").output)  # what its head reads
    with np.load(tmp_path / "f.npz", allow_pickle=False) as data:
        assert data["paths"].tolist() == images and str(data["weights"]) == str(run)
        np.testing.assert_allclose(data["features"], backbone.predict_on_batch(
            preprocess(load_batch(images, ft.transform), ft.preprocessing)), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_export_a_run_dir_serves_its_classifier(run, tmp_path, capsys):
    import tensorflow as tf

    assert cli.main(["export", str(run), "--format", "savedmodel", "--out", str(tmp_path / "m")]) == 0
    assert f"exported resnet20 (weights: {run}) as savedmodel" in capsys.readouterr().out
    x = np.random.default_rng(0).uniform(-1, 1, (2, SIZE, SIZE, 3)).astype("float32")
    loaded = tf.saved_model.load(str(tmp_path / "m"))  # held: its variables live as long as it does
    served = loaded.serve(tf.constant(x)).numpy()
    np.testing.assert_allclose(served, load_run(run).model.predict_on_batch(x), atol=1e-5)


def test_other_settings_in_the_run_dir_are_refused_before_anything_changes(run, folder, manifest, capsys):
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    code = cli.main(finetune_args(folder, run, manifest)[:-1] + ["--lr", "0.002", "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "lr 0.001 there, 0.002 now" in err and "--overwrite" in err
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before


def bad_folder(root, layout):
    """`layout`: path -> bytes, or "folder/" -> None for an empty folder."""
    root.mkdir()
    for path, content in layout.items():
        target = root / path
        if content is None:
            target.mkdir(parents=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    return root


def _png() -> bytes:
    import io

    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


PNG = _png()  # a real 16x16 image


@pytest.mark.parametrize("layout, phrase", [
    ({"cats/a.png": PNG}, "at least 2 class sub-folders"),
    ({"cats/a.png": PNG, "dogs/": None}, "'dogs' holds none"),
    ({"cats/a.png": PNG, "dogs/a.png": b""}, "'dogs' holds 1, all empty"),
    ({"cats/a.png": PNG, "dogs/a.png": b"\x89PNG\r\n\x1a\n broken"}, "'dogs' has none"),
    ({}, "at least 2 class sub-folders"),
])
def test_a_bad_data_folder_is_refused_in_one_line_and_run_dir_is_never_created(layout, phrase, tmp_path, capsys):
    root = bad_folder(tmp_path / "data", layout)
    out = tmp_path / "run"
    code = cli.main(["finetune", str(root), "--model", "resnet20", "--weights", "none", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and phrase in err and err.count("\n") == 1, err
    assert not out.exists()


def test_a_class_name_that_is_not_utf8_is_refused(tmp_path, capsys):
    root = tmp_path / "data"
    root.mkdir()
    (root / "cats").mkdir()
    (root / "cats" / "a.png").write_bytes(PNG)
    os.mkdir(os.fsencode(root) + b"/caf\xe9")
    with open(os.fsencode(root) + b"/caf\xe9/b.png", "wb") as f:
        f.write(PNG)
    code = cli.main(["finetune", str(root), "--model", "resnet20", "--weights", "none", "--out",
                     str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "valid UTF-8" in err and "caf\\xe9" in err and not (tmp_path / "run").exists()


def test_a_missing_data_dir_and_bad_options_fail_before_any_write(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["finetune", str(tmp_path / "nope"), "--model", "resnet20", "--weights", "none",
                     "--out", str(out)]) == 1
    assert "no such folder" in capsys.readouterr().err and not out.exists()
    with pytest.raises(SystemExit) as exit_:
        cli.main(["finetune", str(tmp_path), "--out", str(out), "--validation-split", "1.5"])
    assert exit_.value.code == 2 and not out.exists()
    assert cli.main(["finetune", str(tmp_path), "--model", "resnet20", "--weights", "none", "--out", str(out),
                     "--no-augment", "--no-flip"]) == 1
    assert "--no-augment" in capsys.readouterr().err and not out.exists()


def test_listing_many_files_is_fast_and_bounded(tmp_path, monkeypatch):
    """10,000 empty files: listed with one stat each, none opened, all counted as skips
    (100,000 in the slow tier); more entries than MAX_FILES is an error, not a stall."""
    root = tmp_path / "data"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    (root / "b" / "x.png").write_bytes(PNG)
    (root / "a" / "y.png").write_bytes(PNG)
    fd = os.open(root / "a", os.O_RDONLY)
    for i in range(10_000):
        os.close(os.open(f"{i:06d}.jpg", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd))
    os.close(fd)
    began = time.perf_counter()
    examples = data_lib.list_folder(root)
    assert time.perf_counter() - began < 2.0
    assert len(examples) == 2 and len(examples.skipped) == 10_000
    monkeypatch.setattr(data_lib, "MAX_FILES", 5_000)
    with pytest.raises(InvalidArgumentError, match="at most 5,000 files"):
        data_lib.list_folder(root)


def test_bad_arguments_and_data_are_reported_without_importing_keras(tmp_path):
    import subprocess
    import sys

    probe = ("import sys; from resnet_keras.cli import main\nstatus = main(sys.argv[1:])\n"
             "print('LOADED', sorted(m for m in ('keras', 'tensorflow') if m in sys.modules), status)")
    (tmp_path / "one" / "cats").mkdir(parents=True)
    (tmp_path / "one" / "cats" / "a.png").write_bytes(PNG)
    for data in ("missing", "one"):
        done = subprocess.run([sys.executable, "-c", probe, "finetune", data, "--model", "resnet20", "--weights",
                               "none", "--out", "run"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
        assert done.stdout.splitlines()[-1] == "LOADED [] 1", done.stdout + done.stderr
    assert not (tmp_path / "run").exists()
