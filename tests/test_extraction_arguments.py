"""Arguments of `features` and `extract_features` that once ran away (issue 19, part 7):
a batch size of 10**20, model actors the Ray cluster cannot place, a folder
given as a str.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from PIL import Image

from cli_runs import run
import official_format
from image_files import random_rgb
from optional import require
from resnet_keras import cli
from resnet_keras.errors import ImageError, InvalidArgumentError
from resnet_keras.extraction import RayOptions, extract_features
from resnet_keras.extraction.engines import check_ray_resources

pq = require("pyarrow.parquet")



@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return official_format.seeded_resnet20(tmp_path_factory.mktemp("w") / "r20.h5")


@pytest.fixture
def photos(tmp_path):
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    for i, folder in enumerate([root, root / "sub", root]):
        Image.fromarray(random_rgb((32, 32), seed=i)).save(folder / f"p{i}.jpg")
    (root / "notes.txt").write_text("not an image")
    return root


# --------------------------------------------------------------------------
# batch size: bounded, in one line, before anything is built


@pytest.mark.parametrize("command", [["classify", "x.jpg"], ["features", "x.jpg", "--out", "o"]])
@pytest.mark.parametrize("value", ["100000000000000000000", "4097"])
def test_cli_batch_size_beyond_the_bound_is_a_usage_error(command, value, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main([*command, "--batch-size", value])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --batch-size: must be at most 4096 images, got '{value}'" in err
    assert "Traceback" not in err


def test_api_batch_size_beyond_the_bound_is_refused_before_any_work(photos, tmp_path):
    with pytest.raises(InvalidArgumentError, match=r"`batch_size` must be at most 4096 .* Received: batch_size=10+$"):
        extract_features(photos, tmp_path / "out", model="resnet20", weights=None, batch_size=10**20)
    assert not (tmp_path / "out").exists()


def test_the_largest_batch_size_is_accepted(photos, tmp_path, weights, capsys):
    status, out, err = run(capsys, "features", photos, "--out", tmp_path / "out", "--model", "resnet20",
                           "--weights", weights, "--quiet", "--runtime", "tensorflow", "--batch-size", "4096")
    assert status == 0 and "3 images -> 3 rows" in out, err


# --------------------------------------------------------------------------
# extract_features(a str or PathLike): one file, or a folder expanded as the CLI does


def rows(folder):
    table = pq.read_table(folder)
    return table.column("path").to_pylist(), np.stack(table.column("embedding").to_numpy(zero_copy_only=False))


@pytest.mark.slow  # two extractions (6 s)
def test_a_folder_given_as_str_is_expanded_like_the_cli(photos, tmp_path, weights, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # README: `photos/` gives `photos/a/1.jpg`
    status, _, err = run(capsys, "features", "photos", "--out", "cli", "--model", "resnet20",
                         "--weights", weights, "--quiet", "--runtime", "tensorflow")
    assert status == 0, err
    summary = extract_features("photos", "api", model="resnet20", weights=weights,
                               runtime="tensorflow", progress=False)
    assert (summary.images, summary.rows, summary.errors) == (3, 3, 0)  # not one per character
    cli_paths, cli_rows = rows(tmp_path / "cli")
    api_paths, api_rows = rows(tmp_path / "api")
    assert api_paths == cli_paths == ["photos/p0.jpg", "photos/p2.jpg", "photos/sub/p1.jpg"]
    np.testing.assert_array_equal(api_rows, cli_rows)
    index = json.loads((tmp_path / "cli" / "_index.json").read_text())
    assert index["shard_size"] == 10_000 and index["arguments"]["inputs"] == ["photos"]


def test_one_file_as_a_path_object(photos, tmp_path, weights):
    summary = extract_features(photos / "p0.jpg", tmp_path / "one", model="resnet20", weights=weights,
                               runtime="tensorflow", progress=False)
    assert (summary.images, summary.rows) == (1, 1)
    assert rows(tmp_path / "one")[0] == [f"{photos}/p0.jpg"]


@pytest.mark.parametrize("images, error, phrase", [
    ("no/such/photos", ImageError, "No such file: no/such/photos"),
    (5, InvalidArgumentError, "`images` must be a file or folder path, a list of them, or a ray.data.Dataset"),
    ([b"a.jpg", 7], InvalidArgumentError, "Received: images=[b'a.jpg', 7]"),
])
def test_images_that_name_nothing_are_refused_before_any_work(images, error, phrase, tmp_path):
    with pytest.raises(error, match=None) as info:
        extract_features(images, tmp_path / "out", model="resnet20", weights=None)
    assert phrase in str(info.value)
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------
# Ray: actors the cluster cannot place are refused before anything is submitted


NODE = {"CPU": 4.0, "memory": 8e9}
GPU_NODE = {"CPU": 8.0, "GPU": 2.0}


@pytest.mark.parametrize("options, nodes, phrase", [
    (RayOptions(cpus_per_actor=5), [NODE, NODE], "one actor needs 5 CPUs, the largest node has 4"),
    (RayOptions(cpus_per_actor=4), [NODE], "1 actors x 4 CPUs plus 1 CPU for decoding is more than the cluster's 4"),
    (RayOptions(actors=3, cpus_per_actor=2.5), [NODE, NODE], "3 actors x 2.5 CPUs plus 1 CPU"),
    (RayOptions(gpus_per_actor=1), [NODE], "one actor needs 1 GPUs, the largest node has 0"),
    (RayOptions(actors=3, gpus_per_actor=1), [GPU_NODE], "3 actors x 1 GPUs is more than the cluster's 2"),
])
def test_actors_the_cluster_cannot_place_are_refused(options, nodes, phrase):
    with pytest.raises(InvalidArgumentError) as info:
        check_ray_resources(options, nodes)
    message = str(info.value)
    assert phrase in message and "Received: actors=" in message and "\n" not in message


@pytest.mark.parametrize("options, nodes", [
    (RayOptions(), [{"CPU": 2.0}]),
    (RayOptions(actors=2, cpus_per_actor=4), [NODE, NODE, {"CPU": 1.0}]),
    (RayOptions(actors=2, cpus_per_actor=3, gpus_per_actor=1), [GPU_NODE]),
])
def test_actors_that_fit_pass(options, nodes):
    check_ray_resources(options, nodes)


@pytest.mark.slow
def test_ray_engine_refuses_cpus_it_cannot_place_in_one_line(photos, tmp_path, weights, capsys):
    ray = require("ray")
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        start = time.monotonic()
        status, out, err = run(capsys, "features", photos, "--out", tmp_path / "out", "--model", "resnet20",
                               "--weights", weights, "--quiet", "--engine", "ray", "--cpus-per-actor", "2")
        assert time.monotonic() - start < 60  # it used to wait until killed
    finally:
        ray.shutdown()
    errors = [line for line in err.splitlines() if line.startswith("resnet-keras: error: ")]
    assert status == 1 and out == "" and len(errors) == 1, err
    assert "1 actors x 2 CPUs plus 1 CPU for decoding is more than the cluster's 2" in errors[0]
    assert "--cpus-per-actor=2" in errors[0]  # the flag, not the Python argument
    assert not (tmp_path / "out").exists()  # refused before the store was opened


# --------------------------------------------------------------------------
# docs/features.md's table says what the capability table says


def test_the_docs_table_of_outputs_is_the_capability_table():
    from pathlib import Path

    from resnet_keras.cli.output import FLAGS
    from resnet_keras.extraction import PRECISIONS
    from resnet_keras.extraction.store import SINKS
    from resnet_keras.inference.precision import PREDICTOR

    page = (Path(__file__).resolve().parents[1] / "docs" / "features.md").read_text(encoding="utf-8")
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in page.splitlines()
            if line.startswith("| `--")]

    def row(flag):
        (found,) = [cells[1:] for cells in rows if flag in cells[0]]
        return [cell.split(",")[0] == "yes" for cell in found]

    sinks = [SINKS["parquet"], SINKS["npz"]]
    for option in {o for sink in sinks for o in sink.options}:
        assert row(f"`{FLAGS[option]}`") == [option in sink.options for sink in sinks], option
    assert row("`--engine ray`") == ["ray" in sink.engines for sink in sinks]
    assert row("`--precision float32`") == [True, True] and PRECISIONS == PREDICTOR


def test_an_npz_refuses_an_unreadable_image_before_the_model_is_built(photos, tmp_path, weights, capsys,
                                                                        monkeypatch):
    from resnet_keras.extraction import source

    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    monkeypatch.setattr(source.Source, "build", lambda *a, **k: pytest.fail("the model was built"))
    status, out, err = run(capsys, "features", photos, "--out", tmp_path / "f.npz", "--model", "resnet20",
                           "--weights", weights, "--quiet")
    errors = [line for line in err.splitlines() if line.startswith("resnet-keras: error: ")]
    assert status == 1 and out == "" and len(errors) == 1 and "broken.jpg" in errors[0], err
    assert not (tmp_path / "f.npz").exists()
