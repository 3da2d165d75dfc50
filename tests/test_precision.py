"""The capability tables (resnet_keras/inference/precision.py) answer the same everywhere.

Every place that asks "which precisions" (the Predictor per runtime, export
per format, optimize_for_inference, the command line's choices, the
extraction) is held to the tables: it accepts exactly what they accept. A
walk over the refused command-line combinations checks that each fails at
once, in one line, without Keras, writing nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import resnet_keras
from refusals import refused_command_lines
from resnet_keras import cli, extraction
from resnet_keras.cli import run_commands
from resnet_keras.errors import InvalidArgumentError
from resnet_keras.extraction import api
from resnet_keras.inference import export, optimize, precision
from resnet_keras.inference.precision import ALL, BY_FORMAT, BY_RUNTIME, CALIBRATED, EXPORT, KERAS, PREDICTOR

UNKNOWN = ("half", "INT8", None)


class Accepted(Exception):
    """Raised where the work would start: the arguments passed every check."""


def accepted(call) -> bool:
    """True when `call()` got past its checks, False when it refused with an InvalidArgumentError."""
    try:
        call()
    except Accepted:
        return True
    except InvalidArgumentError:
        return False
    raise AssertionError("neither refused nor reached the work")


@pytest.fixture(scope="module")
def small():
    import keras

    x = keras.Input((8, 8, 3))
    return keras.Model(x, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(x))))


def test_the_tables_cover_each_other():
    assert set(BY_RUNTIME) == set(precision.RUNTIMES) and set(BY_FORMAT) == set(export.FORMATS)
    assert all(set(row) <= set(ALL) for row in [*BY_RUNTIME.values(), *BY_FORMAT.values()])
    # An export optimizes in its precision, and is checked with that precision's tolerance.
    assert set(EXPORT) <= set(KERAS) == set(precision.TOLERANCE)
    assert PREDICTOR == ("float32", "bfloat16", "int8") and EXPORT == KERAS
    assert {p: list(order) for p, order in precision.AUTO_ORDER.items()} == {
        p: [r for r in precision.FASTEST_FIRST if p in BY_RUNTIME[r]] for p in PREDICTOR
    }


def test_the_command_line_offers_what_the_tables_list():
    (subcommands,) = [action for action in cli.build_parser()._actions if action.dest == "command"]
    commands = subcommands.choices

    def choices(command, flag):
        (action,) = [a for a in commands[command]._actions if flag in a.option_strings]
        return tuple(action.choices)

    assert choices("classify", "--precision") == choices("features", "--precision") == PREDICTOR
    assert choices("classify", "--runtime") == choices("features", "--runtime") == ("auto", *BY_RUNTIME)
    assert choices("export", "--precision") == EXPORT
    assert {run_commands.EXPORT_FORMATS[name].name for name in choices("export", "--format")} == set(BY_FORMAT)


def test_fine_tune_trains_in_the_keras_precisions_or_auto():
    from resnet_keras.finetune import model, settings

    assert settings.PRECISIONS == ("auto", *KERAS) and set(model.POLICIES) == set(KERAS)


def test_every_sink_and_engine_runs_the_predictors_precisions():
    assert extraction.PRECISIONS == PREDICTOR  # int8 too, with a calibration set
    for p in (*ALL, *UNKNOWN):
        def check(p=p):
            api._check_values(pooling="avg", precision=p, runtime="auto", engine=None, batch_size=1,
                               shard_size=None, size=None, ray_options=None, overwrite=False)
            raise Accepted

        assert accepted(check) == (p in PREDICTOR), p


def test_export_refuses_exactly_what_the_table_refuses(small, tmp_path, monkeypatch):
    def reached_the_work(model, precision):
        raise Accepted

    monkeypatch.setattr(optimize, "optimize_for_inference", reached_the_work)
    for format in (*BY_FORMAT, "coreml"):
        for p in (*ALL, *UNKNOWN):
            call = lambda: export.export_for_inference(small, tmp_path / "m", format=format, precision=p)  # noqa: E731
            assert accepted(call) == (p in BY_FORMAT.get(format, ())), (format, p)
    assert not any(tmp_path.iterdir())


def test_optimize_for_inference_accepts_exactly_the_keras_precisions(small):
    for p in (*ALL, *UNKNOWN):
        def call(p=p):
            optimize.optimize_for_inference(small, p)
            raise Accepted

        assert accepted(call) == (p in KERAS), p


def test_the_predictor_refuses_exactly_what_the_table_refuses(small, monkeypatch):
    def reached_the_work(runtime, model, precision, calibration):
        raise Accepted

    monkeypatch.setattr(precision.Runtime, "build", reached_the_work)
    images = np.zeros((32, 8, 8, 3), np.float32)
    for runtime in (*BY_RUNTIME, "auto"):
        for p in (*ALL, *UNKNOWN):
            calibration = images if p in CALIBRATED else None
            call = lambda: resnet_keras.Predictor(small, p, runtime, calibration=calibration)  # noqa: E731
            able = BY_RUNTIME[runtime] if runtime != "auto" else PREDICTOR
            assert accepted(call) == (p in able), (runtime, p)


# Runs every refused command line in one fresh interpreter: how long each takes,
# its exit status and stderr, and whether Keras was imported at the end.
WALK = """
import contextlib, io, json, sys, time
from resnet_keras import cli
results = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            status = cli.main(argv)
        except SystemExit as usage:
            status = usage.code
    results.append([status, err.getvalue(), time.perf_counter() - start])
print(json.dumps({"results": results, "keras": "keras" in sys.modules, "tensorflow": "tensorflow" in sys.modules}))
"""


def test_every_refused_combination_fails_at_once_without_keras_and_writes_nothing(tmp_path):
    lines = refused_command_lines(tmp_path)
    assert {kind for kind, _ in lines} == {"runtime x precision", "format x precision", "sink x option",
                                            "sink x engine", "engine x option", "calibration", "model", "usage"}
    before = sorted(tmp_path.rglob("*"))
    done = subprocess.run([sys.executable, "-c", WALK, json.dumps([argv for _, argv in lines])],
                          capture_output=True, text=True, timeout=120)
    report = json.loads(done.stdout)
    for (kind, argv), (status, err, seconds) in zip(lines, report["results"], strict=True):
        errors = [line for line in err.splitlines() if ": error: " in line]
        assert status == (2 if kind == "usage" else 1) and len(errors) == 1, (kind, argv, err)
        assert kind == "usage" or err.count("\n") == 1, (kind, argv, err)  # usage errors come after the usage
        assert seconds < 1, (argv, seconds)
    assert not report["keras"] and not report["tensorflow"]
    assert sorted(tmp_path.rglob("*")) == before  # no _index.json, _errors.csv, _lock, .npz or export
