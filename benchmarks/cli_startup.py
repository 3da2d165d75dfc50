"""How long `resnet-keras` takes to answer the commands that build no model.

Runs each command N times in a fresh process (subprocess + time.perf_counter,
wall time from start to exit) and prints min / median / max in seconds:

    resnet-keras --help
    resnet-keras list
    resnet-keras info resnet50
    resnet-keras classify <a missing file>      (the one-line error)

Usage:
    python benchmarks/cli_startup.py [--runs 5] [--command resnet-keras]

The command is the installed `resnet-keras` script beside the running Python
(else `python -m resnet_keras`). Each run's exit status is checked (0, or 1
for the missing file), so a broken command does not pass for a fast one.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

CASES = (
    ("--help", ["--help"], 0),
    ("list", ["list"], 0),
    ("info resnet50", ["info", "resnet50"], 0),
    ("missing file", ["classify", "no-such-photo.jpg"], 1),
)


def default_command() -> list[str]:
    script = Path(sysconfig.get_path("scripts")) / "resnet-keras"
    if script.is_file():
        return [str(script)]
    found = shutil.which("resnet-keras")
    return [found] if found else [sys.executable, "-m", "resnet_keras"]


def time_once(command: list[str], expected: int) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != expected:
        raise SystemExit(
            f"{shlex.join(command)} exited {done.returncode} (expected {expected}):\n{done.stderr}"
        )
    return elapsed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per command (default 5)")
    parser.add_argument("--command", help="the CLI to time (default: the installed resnet-keras)")
    args = parser.parse_args(argv)
    base = shlex.split(args.command) if args.command else default_command()
    print(f"command: {shlex.join(base)}; {args.runs} runs each; {os.cpu_count()} CPUs; "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'case':16} {'min':>7} {'median':>7} {'max':>7}  (seconds)")
    for label, extra, expected in CASES:
        times = [time_once(base + extra, expected) for _ in range(args.runs)]
        print(f"{label:16} {min(times):7.2f} {statistics.median(times):7.2f} {max(times):7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
