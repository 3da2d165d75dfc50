"""Every wrong option combination of classify, features and export, derived from the tables.

`refused_command_lines(folder)` reads the capability tables (precision per
runtime and per export format: `inference.precision`; what each sink and
engine takes: `extraction.sinks`; the calibration rule) and the parsers, and
returns (kind, argv) for each combination they refuse, every other flag
valid. A new row, option or flag in a table reaches the walk without an edit
here; an option the table names but no flag sets fails `_flag`.
"""

from __future__ import annotations

import argparse

from PIL import Image

from resnet_keras.cli import build_parser
from resnet_keras.cli.output import FLAGS
from resnet_keras.cli.run_commands import EXPORT_FORMATS
from resnet_keras.extraction.store import ENGINE_OPTIONS, SINKS
from resnet_keras.inference.precision import BY_RUNTIME, CALIBRATED, EXPORT, PREDICTOR


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def _flag(command: str, option: str) -> list[str]:
    """The flag that sets library option `option` (cli.output.FLAGS), with a valid value from its parser."""
    flag = FLAGS[option]
    (action,) = [a for a in _subparsers()[command]._actions if flag in a.option_strings]
    if action.nargs == 0:
        return [flag]
    if action.choices:
        return [flag, str(list(action.choices)[-1])]
    return [flag, "2"]  # the numbers these flags take (shard size, actors, CPUs, GPUs) accept 2


def refused_command_lines(folder) -> list[tuple[str, list[str]]]:
    image = folder / "a.png"
    Image.new("RGB", (8, 8)).save(image)
    (folder / "run").mkdir()  # a RUN_DIR is named by a folder: --weights does not apply to it
    calibration = ["--calibration", str(folder)]  # one image: fewer than int8 needs
    outs = {"npz": str(folder / "f.npz"), "parquet": str(folder / "parquet")}
    features = {sink: ["features", str(image), "--out", out] for sink, out in outs.items()}
    runs = [["classify", str(image)], *features.values()]
    lines = []
    for runtime, precisions in BY_RUNTIME.items():
        for p in (p for p in PREDICTOR if p not in precisions):
            flags = ["--runtime", runtime, "--precision", p, *(calibration if p in CALIBRATED else [])]
            lines += [("runtime x precision", [*argv, *flags]) for argv in runs]
    for name, record in EXPORT_FORMATS.items():
        for p in (p for p in EXPORT if p not in record.precisions):
            lines.append(("format x precision", ["export", "resnet20", "--format", name, "--out",
                                                 str(folder / f"m{record.suffix}"), "--precision", p]))
    options = {option for sink in SINKS.values() for option in sink.options}
    engines = {engine for sink in SINKS.values() for engine in sink.engines}
    for name, sink in SINKS.items():
        lines += [("sink x option", [*features[name], *_flag("features", o)])
                  for o in sorted(options - set(sink.options))]
        lines += [("sink x engine", [*features[name], "--engine", e]) for e in sorted(engines - set(sink.engines))]
    for engine, taken in ENGINE_OPTIONS.items():
        for other in (e for e in ENGINE_OPTIONS if e != engine and e in SINKS["parquet"].engines):
            lines += [("engine x option", [*features["parquet"], "--engine", engine, *_flag("features", o)])
                      for o in ENGINE_OPTIONS[other] if o not in taken]
    for argv in runs:
        lines += [("calibration", [*argv, "--precision", p, *calibration]) for p in PREDICTOR if p not in CALIBRATED]
        lines += [("calibration", [*argv, "--precision", p, *extra]) for p in CALIBRATED
                  for extra in ([], calibration)]  # none, or too few images
    lines += [
        ("model", ["classify", str(image), "--model", "resnet20", "--top", "11"]),  # resnet20 has 10 classes
        ("model", ["features", str(image), "--out", outs["npz"], "--model", "resnet20", "--size", "2"]),
        ("model", ["export", "resnet20", "--format", "onnx", "--out", str(folder / "m.onnx"), "--size", "64"]),
        *[("model", [*argv, "--model", str(folder / "run")]) for argv in runs],
        ("model", ["export", str(folder / "run"), "--format", "onnx", "--out", str(folder / "m.onnx")]),
    ]
    # Flags of classify that features does not take (--explain, --top): the parser refuses them.
    classify, features_parser = _subparsers()["classify"], _subparsers()["features"]
    taken = {s for a in features_parser._actions for s in a.option_strings}
    for action in classify._actions:
        for flag in (f for f in action.option_strings[-1:] if f not in taken):
            lines.append(("usage", [*features["npz"], flag, *([] if action.nargs == 0 else ["2"])]))
    # Nothing to fetch: random weights (which a RUN_DIR refuses: the RUN_DIR lines' one wrong flag).
    return [(kind, [*argv, "--weights", "none", "--offline"]) for kind, argv in lines]
