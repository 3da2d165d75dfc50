"""`classify` and `features` with --precision/--runtime/--calibration (the Predictor)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from cli_runs import assert_one_line_error, keras_outputs, parse_classify, run
from optional import require
from predictor_doubles import keras_engines
from resnet_keras.inference import precision
from tiny_models import cosine


@pytest.fixture
def calibration_dir(tmp_path):
    folder = tmp_path / "calibration"
    folder.mkdir()
    rng = np.random.default_rng(5)
    for i in range(40):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    return folder


@pytest.mark.parametrize("runtime", ["openvino", "onnxruntime", "tensorflow"])
@pytest.mark.slow
def test_classify_float32_predictor_gives_keras_scores(runtime, resnet20_files, image_dir, capsys):
    if runtime != "tensorflow":
        require(runtime)
    # --runtime alone asks for the Predictor too, in float32.
    precision = [] if runtime == "tensorflow" else ["--precision", "float32"]
    status, out, err = run(capsys, "classify", image_dir, "--model", "resnet20", "--weights",
                           resnet20_files["top"], "--top", "3", *precision, "--runtime", runtime)
    assert status == 0 and f"Predictor(runtime='{runtime}', precision='float32'" in err
    assert "parity: max relative error" in err
    result = parse_classify(out)
    expected = keras_outputs(list(result), resnet20_files["top"], include_top=True)
    for path, scores in zip(result, expected):
        best = np.argsort(-scores)[:3]
        assert [label for label, _ in result[path]] == [f"class_{i}" for i in best]
        np.testing.assert_allclose([s for _, s in result[path]], scores[best], atol=1e-4)


@pytest.mark.slow
def test_features_int8_with_calibration(resnet20_files, image_dir, calibration_dir, tmp_path, capsys):
    require("openvino")
    out_path = tmp_path / "f.npz"
    status, out, err = run(capsys, "features", image_dir, "--out", out_path, "--model", "resnet20",
                           "--weights", resnet20_files["notop"], "--precision", "int8",
                           "--calibration", calibration_dir)
    assert status == 0 and "precision='int8'" in err
    with np.load(out_path, allow_pickle=False) as data:
        features, paths = data["features"], data["paths"].tolist()
    expected = keras_outputs(paths, resnet20_files["notop"], include_top=False, pooling="avg")
    cos = (features * expected).sum(1) / np.linalg.norm(features, axis=1) / np.linalg.norm(expected, axis=1)
    assert cos.min() >= 0.99


@pytest.mark.parametrize(
    "extra, phrase",
    [
        (["--precision", "int8"], "--precision int8 needs `--calibration`"),
        (["--calibration", "x"], "`--calibration` is used by --precision int8 only"),
        (["--precision", "bfloat16", "--calibration", "x"], "Received: a calibration set with --precision='bfloat16'"),
    ],
)
def test_inference_options_checked_before_weights(extra, phrase, image_dir, capsys, monkeypatch):
    # The default tag of resnet50 would be fetched; --offline with an empty cache would fail
    # with an OfflineError if weights were resolved first.
    monkeypatch.setenv("KERAS_HOME", str(image_dir / "empty_keras_home"))
    status, out, err = run(capsys, "classify", image_dir, "--offline", *extra)
    assert_one_line_error(status, out, err, phrase)


def test_unknown_runtime_is_a_usage_error(image_dir, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run(capsys, "classify", image_dir, "--runtime", "tensorrt")
    assert exit_info.value.code == 2
    assert "invalid choice: 'tensorrt'" in capsys.readouterr().err


@pytest.mark.slow
def test_int8_on_parquet_records_its_calibration_and_refuses_another(resnet20_files, image_dir, calibration_dir,
                                                                    tmp_path, capsys):
    require("openvino")
    pq = require("pyarrow.parquet")
    out_path = tmp_path / "parquet"
    argv = ["features", image_dir, "--out", out_path, "--model", "resnet20", "--weights", resnet20_files["notop"],
            "--precision", "int8", "--quiet"]
    status, out, err = run(capsys, *argv, "--calibration", calibration_dir)
    assert status == 0 and "3 images -> 3 rows x 64 features" in out, err
    index = json.loads((out_path / "_index.json").read_text())
    assert index["settings"]["precision"] == "int8" and index["settings"]["calibration"].startswith("sha256:")
    table = pq.read_table(out_path)
    features = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
    expected = keras_outputs(table.column("path").to_pylist(), resnet20_files["notop"], include_top=False, pooling="avg")
    assert cosine(features, expected).min() >= 0.99
    (calibration_dir / "00.png").unlink()  # another calibration set: other int8 scales
    before = sorted(out_path.iterdir())
    assert_one_line_error(*run(capsys, *argv, "--calibration", calibration_dir),
                          "must not be mixed: calibration 'sha256:")
    assert sorted(out_path.iterdir()) == before


def test_classify_without_precision_or_runtime_runs_keras_itself(resnet20_files, image_dir, capsys, monkeypatch):
    monkeypatch.setattr(precision.Runtime, "build", lambda *a: pytest.fail("a Predictor was built"))
    status, out, err = run(capsys, "classify", image_dir, "--model", "resnet20", "--weights", resnet20_files["top"])
    assert status == 0 and len(parse_classify(out)) == 3 and "Predictor(" not in err


def test_features_runs_a_quiet_float32_predictor_by_default(resnet20_files, image_dir, tmp_path, capsys, monkeypatch):
    record = keras_engines(monkeypatch)
    status, out, err = run(capsys, "features", image_dir, "--out", tmp_path / "f.npz", "--model", "resnet20",
                           "--weights", resnet20_files["notop"])
    assert status == 0 and "Predictor(" not in err
    assert record.builds == [(precision.choose("auto", "float32").name, "float32", None)]


def test_int8_calibrates_on_the_first_300_images(resnet20_files, image_dir, tmp_path, capsys, monkeypatch):
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(305):  # each image one colour that spells its index: red * 256 + green
        Image.new("RGB", (8, 8), (i // 256, i % 256, 0)).save(folder / f"{i:03d}.png")
    record = keras_engines(monkeypatch)
    status, out, err = run(capsys, "classify", image_dir, "--model", "resnet20", "--weights", resnet20_files["top"],
                           "--precision", "int8", "--calibration", folder)
    assert status == 0, err
    ((_, precision, calibration),) = record.builds
    pixels = np.rint(calibration[:, 0, 0, :2] * 255).astype(int)  # resnet20 preprocessing: pixels / 255
    assert precision == "int8" and calibration.shape == (300, 32, 32, 3)
    assert (pixels[:, 0] * 256 + pixels[:, 1]).tolist() == list(range(300))


def test_int8_with_too_few_calibration_images_is_one_line(resnet20_files, image_dir, calibration_dir, capsys,
                                                          monkeypatch):
    for path in sorted(calibration_dir.iterdir())[31:]:
        path.unlink()
    monkeypatch.setattr(precision.Runtime, "build", lambda *a: pytest.fail("built before the check"))
    status, out, err = run(capsys, "classify", image_dir, "--model", "resnet20", "--weights", resnet20_files["top"],
                           "--precision", "int8", "--calibration", calibration_dir)
    assert_one_line_error(status, out, err, "must hold at least 32 images (a few hundred is better). Received: 31")
