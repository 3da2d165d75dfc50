"""The launcher: start this machine's worker processes, watch them, stop them all if one fails.

`launch(prepared)` runs in the process that checked the arguments
(`fine_tune` or `resnet-keras finetune`). It starts `workers` processes
(`python -m resnet_keras.finetune.distributed.worker`), each one JAX
process on Keras' JAX backend, with the same checked arguments; worker 0
of host 0 writes RUN_DIR and shows the progress, the others write a log
in a temporary folder. It polls them every `POLL` seconds: when one exits
with an error or is killed, the others on this machine are stopped
(SIGTERM, then SIGKILL after `STOP_GRACE` seconds) and the first failure is
raised as one line. Workers on other hosts stop by themselves: their JAX
runtime aborts them within `heartbeat_timeout` seconds of losing a peer.
A worker dies with the launcher (PR_SET_PDEATHSIG), so `kill -9` of the
launcher leaves no worker behind.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .. import rundir
from ..record import load_run
from ...errors import WorkerError

POLL = 0.1
STOP_GRACE = 10.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker_arguments(p) -> dict:
    """`fine_tune`'s arguments for a worker, as JSON: the checked settings where they were normalized."""
    s = p.settings
    path = lambda v: None if v is None else os.fspath(v)  # noqa: E731
    a = {k: v for k, v in p.arguments.items() if k != "distributed"}
    a.update(
        data=path(a["data"]), validation_data=path(a["validation_data"]), manifest=path(a["manifest"]),
        weights=path(a["weights"]), out=None, precision=s.precision, head_lr=s.head_lr,
        augment=False if s.augment is None else {k: list(v) if isinstance(v, tuple) else v
                                                for k, v in dataclasses.asdict(s.augment).items()},
        class_weight=list(s.class_weight) if isinstance(s.class_weight, tuple) else s.class_weight)
    return a


def _environment() -> dict:
    import resnet_keras

    from ..model import _nvidia_driver

    env = dict(os.environ, KERAS_BACKEND="jax")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow only feeds the input pipeline
    if not _nvidia_driver():
        env.setdefault("JAX_PLATFORMS", "cpu")
    # the package this process runs, whatever the working folder of the workers
    package_root = str(Path(resnet_keras.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (package_root, env.get("PYTHONPATH"))))
    return env


def _one_gpu_each(env: dict, local: int, workers: int) -> dict:
    """Several workers on a GPU host: worker `local` sees one GPU (of CUDA_VISIBLE_DEVICES, if set)."""
    from ..model import _nvidia_driver

    if workers == 1 or not _nvidia_driver():
        return env
    visible = env.get("CUDA_VISIBLE_DEVICES") or ",".join(map(str, range(len(os.listdir("/proc/driver/nvidia/gpus")))))
    ids = visible.split(",")
    return dict(env, CUDA_VISIBLE_DEVICES=ids[local % len(ids)])


def _describe(rank: int, process: subprocess.Popen, total: int, logs: Path) -> str:
    code = process.returncode
    status = logs / f"worker-{rank}.error"
    message = status.read_text(encoding="utf-8", errors="replace").strip() if status.exists() else ""
    if message:
        return f"worker {rank} of {total} failed: {message}"
    how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"
    if code == -signal.SIGABRT:
        how += " (the JAX runtime stops a worker whose peers stopped answering: see the other workers)"
    log = logs / f"worker-{rank}.log"
    return f"worker {rank} of {total} {how}" + (f"; its log: {log}" if log.exists() else "")


def _stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE
    for process in processes:
        try:
            process.wait(timeout=max(deadline - time.monotonic(), 0.01))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _watch(processes: dict[int, subprocess.Popen], total: int, logs: Path) -> None:
    """Return when every worker exited 0; else stop the others and raise the first failure."""
    try:
        while True:
            failed = [(rank, p) for rank, p in processes.items() if p.poll() not in (None, 0)]
            if failed:
                _stop(list(processes.values()))
                # a killed worker explains the others' aborts better than they do
                failed.sort(key=lambda item: item[1].returncode == -signal.SIGABRT)
                raise WorkerError(_describe(*failed[0], total, logs) +
                                  ". RUN_DIR keeps the last finished epoch: rerun the same command "
                                  "(on every host) to resume.")
            if all(p.returncode == 0 for p in processes.values()):
                return
            time.sleep(POLL)
    except BaseException:
        _stop(list(processes.values()))
        raise


def launch(p):
    """Train `p` (a Prepared with `distributed`) in worker processes; the run on host 0, None elsewhere."""
    d = p.distributed
    if d.hosts == 1 and p.out is not None and not p.overwrite and (p.out / rundir.RUN).exists():
        if p.progress:
            print(f"resnet-keras: {p.out} is complete; loading it", file=sys.stderr)
        return load_run(p.out)
    logs = Path(tempfile.mkdtemp(prefix="resnet-keras-workers-"))
    out = p.out if p.out is not None or not d.writes else logs / "run"
    if d.address is None:
        port = _free_port()
        coordinator, bind = f"127.0.0.1:{port}", f"127.0.0.1:{port}"
    else:
        coordinator, bind = d.address, None  # the coordinator listens on every interface of host 0
    arguments, env = worker_arguments(p), _environment()
    processes = {}
    for local in range(d.workers):
        rank = d.host_index * d.workers + local
        spec = dict(arguments=dict(arguments, out=None if rank else os.fspath(out),
                                   progress=bool(p.progress and rank == 0)),
                    coordinator=coordinator, bind=bind, processes=d.processes, process_id=rank,
                    heartbeat_timeout=d.heartbeat_timeout, status=os.fspath(logs / f"worker-{rank}.error"),
                    parent=os.getpid())
        log = None if rank == 0 else open(logs / f"worker-{rank}.log", "wb")
        try:
            processes[rank] = subprocess.Popen(
                [sys.executable, "-m", "resnet_keras.finetune.distributed.worker", json.dumps(spec)],
                env=_one_gpu_each(env, local, d.workers), stdout=log, stderr=subprocess.STDOUT if log else None)
        finally:
            if log is not None:
                log.close()
    if p.progress:
        print(f"resnet-keras: {d.workers} worker process(es) on this machine, {d.processes} in all "
              f"(JAX, coordinator {coordinator})", file=sys.stderr)
    _watch(processes, d.processes, logs)
    try:
        if not d.writes:
            return None
        result = load_run(out)
        return result if p.out is not None else dataclasses.replace(result, run_dir=None)
    finally:
        shutil.rmtree(logs, ignore_errors=True)

