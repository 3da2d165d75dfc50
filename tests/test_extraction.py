"""`resnet-keras features --out FOLDER` and `extract_features`: sharded Parquet.

A seeded ResNet-20 on small generated images: rows against the Keras model
itself, the errors file, resume after `kill -9` (and in each crash window),
refusal to mix settings. The Ray engine on a local Ray is in the slow suite.
"""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from cli_runs import run
import official_format
import resnet_keras
from image_files import bytes_name
from optional import require
from resnet_keras.errors import InvalidArgumentError, MissingDependencyError

pa = require("pyarrow")
import pyarrow.parquet as pq  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A seeded ResNet-20 without top, in the official (Keras 2) file layout."""
    model = resnet_keras.ResNet20(weights=None, include_top=False, input_shape=(32, 32, 3))
    official_format.randomize(model, seed=5)
    return official_format.write_keras2_weights(model, tmp_path_factory.mktemp("w") / "r20.h5")


def make_images(root: Path, count: int, *, seed: int = 0) -> Path:
    """`count` small JPEGs and PNGs of odd sizes (some grey), plus two unreadable files."""
    rng = np.random.default_rng(seed)
    (root / "sub").mkdir(parents=True)
    for i in range(count):
        shape = (20 + i % 7, 17 + i % 5) if i % 4 == 0 else (20 + i % 7, 17 + i % 5, 3)
        image = Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8))
        folder = root / "sub" if i % 3 == 0 else root
        image.save(folder / f"img{i:03d}.{'png' if i % 2 else 'jpg'}")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "sub" / "text.png").write_text("hello")
    return root



def features_args(images, out, weights, *extra):
    return ["features", images, "--out", out, "--model", "resnet20", "--weights", weights,
            "--quiet", *extra]


def read_rows(folder: Path) -> tuple[list[str], np.ndarray]:
    table = pq.read_table(folder)  # skips _index.json, _errors.csv, _lock, .*.part
    return table.column("path").to_pylist(), np.stack(table.column("embedding").to_numpy(zero_copy_only=False))


def listed(root: Path) -> list[str]:
    """What the command lists: files of the folder, recursively, sorted."""
    return [str(p) for p in sorted(p for p in root.rglob("*") if p.is_file())]


@pytest.mark.slow
def test_rows_match_the_keras_model_and_errors_are_listed(weights, tmp_path, capsys):
    images = make_images(tmp_path / "images", 9)
    out = tmp_path / "out"
    status, stdout, err = run(capsys, *features_args(images, out, weights, "--pooling", "max",
                                                      "--size", "40", "--shard-size", "4",
                                                      "--batch-size", "3"))
    assert status == 0, err
    assert "11 images -> 9 rows x 64 features (resnet20, max pooling" in stdout
    assert "3 shards; 2 unreadable (listed in _errors.csv)" in stdout
    # every listed file is a row or an error, in list order
    paths, embeddings = read_rows(out)
    readable = [p for p in listed(images) if not p.endswith(("broken.jpg", "text.png"))]
    assert paths == readable
    model = resnet_keras.ResNet20(weights=str(weights), include_top=False, pooling="max",
                                  input_shape=(40, 40, 3))
    x = np.stack([keras.utils.img_to_array(keras.utils.load_img(p, target_size=(40, 40))) for p in paths])
    np.testing.assert_allclose(embeddings, model.predict(x / 255.0, verbose=0), rtol=1e-4, atol=1e-5)

    table = pq.read_table(out / "part-00000.parquet")
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), 64)
    assert table.column("model").to_pylist() == ["resnet20"] * table.num_rows
    assert set(table.column("pooling").to_pylist()) == {"max"}
    assert table.column("weights").to_pylist()[0] == str(weights)
    assert table.column("image_size").to_pylist()[0] == [40, 40]

    index = json.loads((out / "_index.json").read_text())
    assert index["complete"] and index["images"] == 11 and index["rows"] == 9 and index["errors"] == 2
    assert [s["file"] for s in index["shards"]] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert [s["rows"] for s in index["shards"]] == [pq.read_metadata(out / s["file"]).num_rows for s in index["shards"]]
    assert index["settings"]["weights_hash"].startswith("sha256:")
    with open(out / "_errors.csv", newline="") as f:
        errors = list(csv.reader(f))
    assert errors[0] == ["path", "reason"]
    assert {row[0] for row in errors[1:]} == {str(images / "broken.jpg"), str(images / "sub" / "text.png")}
    assert all(row[1] for row in errors[1:])
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp file left

    # the same numbers as `features --out x.npz` for the readable files
    status, _, err = run(capsys, "features", *readable, "--out", tmp_path / "f.npz", "--model", "resnet20",
                         "--weights", weights, "--pooling", "max", "--size", "40", "--quiet")
    assert status == 0, err
    with np.load(tmp_path / "f.npz", allow_pickle=False) as data:
        assert data["paths"].tolist() == paths
        np.testing.assert_allclose(data["features"], embeddings, rtol=1e-6, atol=1e-6)


@pytest.mark.slow
def test_extract_features_function_writes_the_same(weights, tmp_path, capsys):
    images = make_images(tmp_path / "images", 5)
    status, _, err = run(capsys, *features_args(images, tmp_path / "cli", weights, "--shard-size", "3"))
    assert status == 0, err
    from resnet_keras.extraction import extract_features

    summary = extract_features(listed(images), tmp_path / "api", model="resnet20", weights=weights,
                               shard_size=3, progress=False)
    assert (summary.images, summary.rows, summary.errors, summary.shards) == (7, 5, 2, 3)
    cli_paths, cli_rows = read_rows(tmp_path / "cli")
    api_paths, api_rows = read_rows(tmp_path / "api")
    assert cli_paths == api_paths
    np.testing.assert_array_equal(cli_rows, api_rows)


def clean_run(images, out, weights, capsys, *extra):
    status, _, err = run(capsys, *features_args(images, out, weights, *extra))
    assert status == 0, err
    return read_rows(out)


@pytest.mark.parametrize("stop", [
    pytest.param(signal.SIGKILL, marks=pytest.mark.slow, id="kill-9"),  # each a worker process (24 s)
    pytest.param(signal.SIGINT, marks=pytest.mark.slow, id="ctrl-c"),
    pytest.param(signal.SIGTERM, marks=pytest.mark.slow, id="sigterm"),
])
def test_resume_after_a_stop_gives_the_rows_of_a_clean_run(stop, weights, tmp_path, capsys):
    images = make_images(tmp_path / "images", 150)
    args = ["--shard-size", "2", "--batch-size", "2"]
    out = tmp_path / "killed"
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
    command = [sys.executable, "-m", "resnet_keras", *map(str, features_args(images, out, weights, *args))]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    index_path, deadline = out / "_index.json", time.monotonic() + 120
    try:  # stopped at a random moment after the first shards are in
        while time.monotonic() < deadline and process.poll() is None:
            if index_path.exists() and len(json.loads(index_path.read_text() or "{}").get("shards", [])) >= 3:
                time.sleep(random.uniform(0, 0.2))
                break
            time.sleep(0.01)
        process.send_signal(stop)
        process.wait(timeout=60)
    finally:
        process.kill()
        process.wait()
    stderr = process.stderr.read().decode()
    if stop == signal.SIGINT:  # Ctrl-C: one line, exit 130, no temp file left
        assert process.returncode == 130 and stderr.strip().splitlines()[-1] == "resnet-keras: interrupted", stderr
        assert not [p for p in out.iterdir() if p.name.startswith(".")]
    else:
        assert process.returncode == -stop, stderr
    index = json.loads(index_path.read_text())
    assert not index["complete"] and 3 <= len(index["shards"]) < 76

    status, stdout, err = run(capsys, *features_args(images, out, weights, *args))
    assert status == 0, err
    assert f"{len(index['shards'])} done before" in stdout or f"{len(index['shards']) + 1} done before" in stdout
    expected_paths, expected_rows = clean_run(images, tmp_path / "clean", weights, capsys, *args)
    paths, rows = read_rows(out)
    assert paths == expected_paths and len(set(paths)) == len(paths) == 150
    np.testing.assert_array_equal(rows, expected_rows)
    assert (out / "_errors.csv").read_text() == (tmp_path / "clean" / "_errors.csv").read_text()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


@pytest.mark.slow
def test_resume_in_each_crash_window(weights, tmp_path, capsys):
    """Killed after a shard's rename but before the index listed it, with temp files about."""
    images = make_images(tmp_path / "images", 7)
    out = tmp_path / "out"
    paths, rows = clean_run(images, out, weights, capsys, "--shard-size", "3")
    index = json.loads((out / "_index.json").read_text())
    index["shards"] = index["shards"][:1]  # shard 1 renamed, index not yet written; shard 2 never started
    (out / "_index.json").write_text(json.dumps(index))
    (out / "part-00002.parquet").unlink()
    (out / ".part-00002.parquet.abc123.part").write_bytes(b"PAR1 half a shard")
    (out / "._index.json.def456.part").write_text("{")
    status, stdout, err = run(capsys, *features_args(images, out, weights, "--shard-size", "3"))
    assert status == 0, err
    assert "3 shards, 1 done before" in stdout
    assert read_rows(out)[0] == paths
    np.testing.assert_array_equal(read_rows(out)[1], rows)
    assert sorted(p.name for p in out.iterdir()) == [
        "_errors.csv", "_index.json", "_lock", "part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    # a shard the index lists but that is damaged is written again
    (out / "part-00001.parquet").write_bytes(b"garbage")
    status, stdout, err = run(capsys, *features_args(images, out, weights, "--shard-size", "3"))
    assert status == 0 and "2 done before" in stdout, err
    np.testing.assert_array_equal(read_rows(out)[1], rows)


def one_line_error(status, out, err, *phrases):
    errors = [line for line in err.splitlines() if line.startswith("resnet-keras: error: ")]
    assert status == 1 and out == "" and len(errors) == 1, (status, out, err)
    for phrase in phrases:
        assert phrase in errors[0], errors[0]


@pytest.mark.slow
def test_refuses_to_mix_other_settings_or_another_list(weights, tmp_path, capsys):
    images = make_images(tmp_path / "images", 4)
    out = tmp_path / "out"
    clean_run(images, out, weights, capsys, "--shard-size", "3")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    one_line_error(*run(capsys, *features_args(images, out, weights, "--shard-size", "3", "--pooling", "max")),
                   "must not be mixed: pooling 'avg' there, 'max' now", "--overwrite")
    one_line_error(*run(capsys, *features_args(images, out, weights, "--shard-size", "3", "--size", "48",
                                               "--precision", "bfloat16")),
                   "image_size (32, 32) there, (48, 48) now", "precision 'float32' there, 'bfloat16' now")
    other = tmp_path / "other.h5"
    other.write_bytes(Path(weights).read_bytes())
    with open(other, "r+b") as f:  # same layers, other numbers: a different file
        f.seek(-64, os.SEEK_END)
        f.write(bytes(64))
    status, out_text, err = run(capsys, *features_args(images, out, other, "--shard-size", "3"))
    one_line_error(status, out_text, err, "weights_hash")
    one_line_error(*run(capsys, *features_args(images, out, weights, "--shard-size", "2")),
                   "another image list or shard size")
    one_line_error(*run(capsys, *features_args(images / "sub", out, weights, "--shard-size", "3")),
                   "another image list")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # untouched
    status, stdout, err = run(capsys, *features_args(images, out, weights, "--pooling", "max", "--overwrite"))
    assert status == 0 and "max pooling" in stdout, err
    assert sorted(p.name for p in out.glob("part-*")) == ["part-00000.parquet"]


@pytest.mark.slow
def test_refuses_a_foreign_folder_a_locked_one_and_random_weights_resume(weights, tmp_path, capsys):
    from filelock import FileLock

    images = make_images(tmp_path / "images", 2)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    one_line_error(*run(capsys, *features_args(images, foreign, weights)), "new or empty folder")
    one_line_error(*run(capsys, *features_args(images, tmp_path / "no" / "out", weights)), "existing folder")
    out = tmp_path / "out"
    clean_run(images, out, weights, capsys)
    with FileLock(str(out / "_lock")):
        one_line_error(*run(capsys, *features_args(images, out, weights)), "in use by another run")
    random_out = tmp_path / "random"
    clean_run(images, random_out, "none", capsys)
    one_line_error(*run(capsys, *features_args(images, random_out, "none")), "random weights")


def test_options_that_do_not_apply_are_named(weights, tmp_path, capsys):
    images = make_images(tmp_path / "images", 1)
    one_line_error(*run(capsys, *features_args(images, tmp_path / "f.npz", weights, "--shard-size", "4")),
                   "`--shard-size` applies only to Parquet output (--out FOLDER)")
    one_line_error(*run(capsys, *features_args(images, tmp_path / "out", weights, "--actors", "2")),
                   "`--actors` applies to --engine ray only. Received: --engine local, --actors=2")
    assert not (tmp_path / "out").exists()


def test_a_refused_run_leaves_nothing_and_the_corrected_one_runs(weights, tmp_path, capsys):
    """The issue's case: onnxruntime has no bfloat16; it used to write _index.json, _errors.csv and
    _lock after 18 s and then refuse the corrected command ("other settings")."""
    images = make_images(tmp_path / "images", 2)
    out = tmp_path / "out"
    one_line_error(*run(capsys, *features_args(images, out, weights, "--runtime", "onnxruntime",
                                               "--precision", "bfloat16")), "runs the precisions")
    assert not out.exists()
    status, stdout, err = run(capsys, *features_args(images, out, weights, "--runtime", "tensorflow",
                                                     "--precision", "bfloat16"))
    assert status == 0 and "4 images -> 2 rows" in stdout, err


def test_missing_pyarrow_or_ray_names_the_extra(weights, tmp_path, capsys, monkeypatch):
    images = make_images(tmp_path / "images", 1)
    monkeypatch.setitem(sys.modules, "ray", None)
    one_line_error(*run(capsys, *features_args(images, tmp_path / "out", weights, "--engine", "ray")),
                   'pip install "resnet-keras[ray]"')
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    one_line_error(*run(capsys, *features_args(images, tmp_path / "out", weights)),
                   'pip install "resnet-keras[features]"', ".npz")
    from resnet_keras.extraction import extract_features

    with pytest.raises(MissingDependencyError, match="resnet-keras\\[features\\]"):
        extract_features([str(images / "img000.jpg")], tmp_path / "out", model="resnet20", weights=weights)
    with pytest.raises(InvalidArgumentError, match="precision"):
        extract_features([], tmp_path / "out", precision="float16")
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------
# Ray Data on a local 2-CPU Ray (slow: Ray starts in about 10 s here)


@pytest.mark.slow
def test_ray_engine_equals_the_local_engine(weights, tmp_path, capsys):
    ray = require("ray")
    images = make_images(tmp_path / "images", 200)
    # a name that is not UTF-8: Ray carries it as bytes, the output escapes it
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(bytes_name(images, b"bad\xff.jpg"), format="JPEG")
    args = ["--shard-size", "64", "--batch-size", "16"]
    local_paths, local_rows = clean_run(images, tmp_path / "local", weights, capsys, *args)
    status, stdout, err = run(capsys, *features_args(images, tmp_path / "ray", weights, *args, "--engine", "ray"))
    assert status == 0, err
    assert "203 images -> 201 rows" in stdout and "2 unreadable" in stdout
    ray_paths, ray_rows = read_rows(tmp_path / "ray")
    assert ray_paths == local_paths and len(set(ray_paths)) == 201  # every path exactly once
    assert f"{images}/bad\\xff.jpg" in ray_paths
    relative = np.abs(ray_rows - local_rows).max() / np.abs(local_rows).max()
    assert relative <= 1e-5, relative
    assert (tmp_path / "ray" / "_errors.csv").read_text() == (tmp_path / "local" / "_errors.csv").read_text()
    local_index = json.loads((tmp_path / "local" / "_index.json").read_text())
    ray_index = json.loads((tmp_path / "ray" / "_index.json").read_text())
    assert ray_index["shards"] == local_index["shards"]  # same layout, same index

    # a notebook: Ray already running, images as a Ray Dataset
    from resnet_keras.extraction import extract_features

    ray.init(num_cpus=2, include_dashboard=False)
    try:
        utf8 = [p for p in listed(images) if p.isprintable()]  # a Dataset's strings must be UTF-8
        dataset = ray.data.from_items([{"path": p} for p in utf8])
        summary = extract_features(dataset, tmp_path / "notebook", model="resnet20", weights=weights,
                                   shard_size=64, batch_size=16, progress=False)
        assert ray.is_initialized()  # the caller's Ray is left running
    finally:
        ray.shutdown()
    assert (summary.rows, summary.errors, summary.shards) == (200, 2, 4)
    paths, rows = read_rows(tmp_path / "notebook")
    kept = np.array([not p.endswith("bad\\xff.jpg") for p in local_paths])
    assert paths == [p for p, k in zip(local_paths, kept) if k]
    assert np.abs(rows - local_rows[kept]).max() / np.abs(local_rows).max() <= 1e-5


@pytest.mark.slow
def test_ray_engine_runs_int8_calibrated_on_the_drivers_images(weights, tmp_path, capsys):
    require("ray")
    require("openvino")
    images = make_images(tmp_path / "images", 40)
    calibration = tmp_path / "calibration"
    calibration.mkdir()
    for i in range(32):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(
            calibration / f"{i}.png")
    args = ["--shard-size", "16", "--batch-size", "8", "--precision", "int8", "--calibration", calibration]
    local_paths, local_rows = clean_run(images, tmp_path / "local", weights, capsys, *args)
    ray_paths, ray_rows = clean_run(images, tmp_path / "ray", weights, capsys, *args, "--engine", "ray")
    assert ray_paths == local_paths
    settings = [json.loads((tmp_path / out / "_index.json").read_text())["settings"] for out in ("local", "ray")]
    assert settings[0] == settings[1] and settings[0]["precision"] == "int8"
    # Every actor quantized from the same pixels as the driver: the same int8 model's numbers.
    cos = (ray_rows * local_rows).sum(1) / np.linalg.norm(ray_rows, axis=1) / np.linalg.norm(local_rows, axis=1)
    assert cos.min() >= 0.999, cos.min()
