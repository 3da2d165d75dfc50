"""Data-parallel fine-tuning, the parts that need no worker process (fast tier).

Every refusal happens in the launching process before a worker starts or
RUN_DIR is created; the sharding of global batches gives every image to
one worker once, with a loss equal to the unsharded batch's; the launcher
stops the other workers when one dies. The runs themselves (two JAX
processes against one) are in test_finetune_distributed_runs.py, marker
`distributed`.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from resnet_keras import cli
from resnet_keras.errors import InvalidArgumentError, MissingDependencyError, WorkerError
from resnet_keras.finetune import Distributed, fine_tune
from resnet_keras.finetune.distributed import launch, options
from resnet_keras.finetune.pipeline import epoch_order, shard_rows


@pytest.fixture
def no_worker_starts(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a worker process was started")

    monkeypatch.setattr(subprocess, "Popen", refuse)


@pytest.fixture
def folder(tmp_path):
    from PIL import Image

    for name in ("a", "b"):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8), (40 * i, 90, 20)).save(tmp_path / "data" / name / f"{i}.png")
    return tmp_path / "data"


@pytest.mark.parametrize("rows, processes, devices", [(16, 2, 2), (13, 2, 2), (7, 4, 4), (1, 2, 2), (5, 2, 4)])
def test_each_row_of_a_global_batch_goes_to_one_worker_and_the_loss_is_the_batchs(rows, processes, devices):
    batch = np.random.default_rng(rows).permutation(100)[:rows]
    losses = np.random.default_rng(1).uniform(0.1, 3.0, 100)  # one per image
    class_weight = np.random.default_rng(2).uniform(0.5, 2.0, 100)
    parts = [shard_rows(batch, (k, processes, devices)) for k in range(processes)]
    assert len({len(r) for r, _ in parts}) == 1  # every worker gets as many rows (JAX shards evenly)
    rows_seen = np.concatenate([r for r, _ in parts])
    factors = np.concatenate([f for _, f in parts])
    real = rows_seen[factors > 0]
    assert sorted(real) == sorted(batch) and len(real) == rows  # each image once, padding weighs 0
    np.testing.assert_array_equal(rows_seen[:rows], batch)  # worker k's slice is the k-th block
    # Keras: sum(weight * loss) / rows of the (padded) global batch
    padded = (class_weight[rows_seen] * factors * losses[rows_seen]).sum() / len(rows_seen)
    np.testing.assert_allclose(padded, (class_weight[batch] * losses[batch]).sum() / rows, rtol=1e-6)


def test_an_epoch_split_over_workers_visits_every_training_image_once():
    order, batch = epoch_order(seed=3, epoch=2, count=45), 16
    seen = [shard_rows(order[s:s + batch], (k, 2, 2)) for s in range(0, 45, batch) for k in range(2)]
    real = np.concatenate([rows[factors > 0] for rows, factors in seen])
    assert sorted(real) == list(range(45))


@pytest.mark.parametrize("arguments, phrase", [
    (dict(distributed=Distributed(workers=2), batch_size=15), "must split evenly across the worker processes"),
    (dict(distributed=2, precision="float16"), "float16's loss scale is not in the checkpoint"),
    (dict(distributed=2, validation_data=(np.zeros((2, 8, 8, 3)), np.array([0, 1]))),
     "`validation_data` must be a folder"),
    (dict(distributed="two"), "`distributed` must be None, a number of worker processes"),
    (dict(distributed=0), "`workers` must be an integer of at least 1"),
    (dict(distributed=Distributed(workers=2, hosts=3, address="10.0.0.1:8476"), batch_size=32),
     r"\(2 per host x 3 hosts = 6\)"),
])
def test_every_option_combination_is_refused_before_a_worker_starts(arguments, phrase, folder, tmp_path,
                                                                     no_worker_starts):
    out = tmp_path / "run"
    with pytest.raises(InvalidArgumentError, match=phrase) as error:
        fine_tune(folder, "resnet20", None, out=out, **{"batch_size": 16, **arguments})
    assert "\n" not in str(error.value) and "Received:" in str(error.value)
    assert not out.exists()


def test_arrays_and_datasets_are_refused_with_workers(no_worker_starts, tmp_path):
    tf = pytest.importorskip("tensorflow")
    pixels, labels = np.zeros((4, 8, 8, 3), np.uint8), np.array([0, 1, 0, 1])
    for data in ((pixels, labels), tf.data.Dataset.from_tensor_slices((pixels, labels))):
        with pytest.raises(InvalidArgumentError, match=r"`data` must be a folder of class sub-folders: every "
                                                       r"worker lists and reads the images itself"):
            fine_tune(data, "resnet20", None, out=tmp_path / "run", batch_size=4, distributed=2)
    assert not (tmp_path / "run").exists()


def test_without_jax_the_run_is_refused_with_the_install_command(folder, tmp_path, monkeypatch, no_worker_starts):
    real = options.importlib.util.find_spec
    monkeypatch.setattr(options.importlib.util, "find_spec", lambda name: None if name == "jax" else real(name))
    with pytest.raises(MissingDependencyError, match=r"pip install 'resnet-keras\[distributed\]'"):
        fine_tune(folder, "resnet20", None, out=tmp_path / "run", batch_size=4, distributed=2)


@pytest.mark.parametrize("kwargs, phrase", [
    (dict(hosts=2), "need the coordinator's `address`"),
    (dict(hosts=2, host_index=2, address="h:1"), "`host_index` must be below `hosts`"),
    (dict(address="no-port"), "`address` must be HOST:PORT"),
    (dict(address="h:70000"), "`address` must be HOST:PORT"),
    (dict(heartbeat_timeout=1), "`heartbeat_timeout` must be an integer of at least 5"),
])
def test_distributed_refuses_a_layout_that_cannot_start(kwargs, phrase):
    with pytest.raises(InvalidArgumentError, match=phrase):
        Distributed(**kwargs)


@pytest.mark.parametrize("flags, phrase", [
    (["--workers", "3"], "`--batch-size` is the global batch and must split evenly"),
    (["--hosts", "2"], "Pass --address HOST0:PORT on every host"),
    (["--heartbeat-timeout", "30"], "--heartbeat-timeout applies to worker processes"),
    (["--workers", "2", "--precision", "float16"], "precision='float16'"),
])
def test_the_command_line_refuses_in_one_line_before_anything_starts(flags, phrase, folder, tmp_path, capsys,
                                                                      no_worker_starts):
    out = tmp_path / "run"
    code = cli.main(["finetune", str(folder), "--model", "resnet20", "--weights", "none", "--out", str(out),
                     "--batch-size", "16", "--quiet", *flags])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and phrase in err, err
    assert not out.exists()


@pytest.mark.distributed  # prepare(distributed=2) checks that JAX is installed: the [distributed] extra
def test_worker_arguments_are_json_and_carry_the_checked_settings(folder, tmp_path):
    from resnet_keras.finetune import Augmentation, prepare

    p = prepare(data=folder, model="resnet20", weights=None, out=tmp_path / "run", batch_size=4,
                augment=Augmentation(crop_scale=(0.5, 1.0), flip=False), class_weight={0: 1.0, 1: 2.0},
                precision="auto", distributed=2)
    arguments = json.loads(json.dumps(launch.worker_arguments(p)))
    assert arguments["precision"] in ("float32", "bfloat16")  # resolved here, not per host
    assert arguments["augment"] == {"crop_scale": [0.5, 1.0], "crop_ratio": [0.75, 4 / 3], "flip": False}
    assert arguments["class_weight"] == [1.0, 2.0] and "distributed" not in arguments
    assert arguments["data"] == str(folder)


def _sleepers(count: int) -> dict[int, subprocess.Popen]:
    return {k: subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) for k in range(count)}


def test_when_a_worker_is_killed_the_launcher_stops_the_others_and_says_which(tmp_path):
    workers = _sleepers(3)
    workers[1].send_signal(signal.SIGKILL)
    began = time.monotonic()
    with pytest.raises(WorkerError, match=r"^worker 1 of 3 was killed by SIGKILL.* rerun the same command") as error:
        launch._watch(workers, 3, tmp_path)
    assert time.monotonic() - began < 5 and "\n" not in str(error.value)
    assert all(w.poll() is not None for w in workers.values())  # none left behind


def test_a_workers_own_error_message_is_the_launchers(tmp_path):
    workers = _sleepers(2)
    (tmp_path / "worker-0.error").write_text("Every worker must train on the same data")
    workers[0].send_signal(signal.SIGTERM)
    with pytest.raises(WorkerError, match=r"^worker 0 of 2 failed: Every worker must train on the same data"):
        launch._watch(workers, 2, tmp_path)
    assert workers[1].poll() is not None


def test_a_worker_without_validation_images_gives_an_empty_block_of_the_right_width():
    """Fewer validation images than workers: a worker's block is empty, yet it must join the gather."""
    import types

    from resnet_keras.finetune.distributed.cluster import Cluster
    from resnet_keras.finetune.source import Pixels
    from resnet_keras.finetune.train import Trainer

    class Third(Cluster):  # worker 2 of 3, with 2 images: rows [2, 2)
        def block(self, count):
            return slice(2, 2)

        def gather(self, block, count):
            gathered.append(block)
            return block

    gathered, seen = [], []
    pixels = Pixels(4, np.arange(2), np.array([0, 1]), cache=np.zeros((2, 4, 4, 3), np.uint8))

    def compute(part):
        seen.append(len(part))
        return np.ones((len(part), 5), np.float32)

    Trainer._shared(types.SimpleNamespace(cluster=Third()), compute, pixels)
    assert seen == [1] and gathered[0].shape == (0, 5)
