"""`Distributed`: where the worker processes of a data-parallel run are, checked before any starts.

Nothing here imports Keras or JAX: every option and every combination with
the run's other arguments is refused here, in the launching process,
before a worker process starts or a file is written.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
from typing import Any

from ...errors import InvalidArgumentError, MissingDependencyError

# The JAX runtime aborts a worker whose peers stop sending heartbeats for
# this long (JAX's own default: 100 s): the bound on how long a surviving
# worker on another host waits for a dead one.
HEARTBEAT_TIMEOUT = 60
# How long a worker waits for all the others to reach the coordinator.
START_TIMEOUT = 300
_ADDRESS = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")


def _fail(rule: str, received: str, remedy: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"{rule} Received: {received}. {remedy}")


@dataclasses.dataclass(frozen=True)
class Distributed:
    """The processes of a data-parallel fine-tuning run (see docs/distributed.md).

    Attributes:
        workers: Worker processes on this machine (one JAX process each, one
            CPU or GPU each).
        address: `host:port` of the coordinator, which worker 0 of host 0
            serves. None: every worker is on this machine (a free port of
            127.0.0.1 is used).
        hosts: Machines taking part; each runs the same command with its
            own `host_index` (0 is the one that writes RUN_DIR).
        host_index: This machine's index, 0 .. hosts-1.
        heartbeat_timeout: Seconds after which the JAX runtime stops every
            worker when one of them stopped answering (killed, host lost).
    """

    workers: int = 1
    address: str | None = None
    hosts: int = 1
    host_index: int = 0
    heartbeat_timeout: int = HEARTBEAT_TIMEOUT

    def __post_init__(self):
        for name, least in (("workers", 1), ("hosts", 1), ("host_index", 0), ("heartbeat_timeout", 5)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise _fail(f"`{name}` must be an integer of at least {least}.", f"{name}={value!r}",
                            "See docs/distributed.md")
        if self.host_index >= self.hosts:
            raise _fail("`host_index` must be below `hosts` (hosts are numbered 0 .. hosts-1).",
                        f"host_index={self.host_index}, hosts={self.hosts}", "Give each host its own index")
        if self.address is None and self.hosts > 1:
            raise _fail("Several hosts need the coordinator's `address` (host:port of host 0).",
                        f"hosts={self.hosts}, address=None", "Pass --address HOST0:PORT on every host")
        if self.address is not None:
            match = _ADDRESS.match(self.address) if isinstance(self.address, str) else None
            if match is None or not 0 < int(match.group(2)) < 65536:
                raise _fail("`address` must be HOST:PORT (the coordinator on host 0, a port from 1 to 65535).",
                            f"address={self.address!r}", "For example --address 10.0.0.1:8476")

    @property
    def processes(self) -> int:
        return self.workers * self.hosts

    @property
    def writes(self) -> bool:
        """Whether this machine holds worker 0, the only one that writes RUN_DIR."""
        return self.host_index == 0


def check_distributed(value: Any) -> Distributed | None:
    """`distributed=` as a `Distributed` (an integer is that many workers on this machine), or None."""
    if value is None or isinstance(value, Distributed):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return Distributed(workers=value)
    raise _fail("`distributed` must be None, a number of worker processes on this machine, or a "
                "`Distributed(workers=, address=, hosts=, host_index=)`.", f"distributed={value!r}",
                "See docs/distributed.md")


def _is_folder_argument(value: Any) -> bool:
    return isinstance(value, (str, os.PathLike))


def check_combination(distributed: Distributed, arguments: dict, precision: str) -> None:
    """Refuse what a data-parallel run cannot do, before any process starts (`precision` resolved)."""
    for name, flag in (("data", "DATA_DIR"), ("validation_data", "--validation-dir")):
        value = arguments.get(name)
        if value is not None and not _is_folder_argument(value):
            raise _fail(f"With worker processes, `{name}` must be a folder of class sub-folders: every worker "
                        "lists and reads the images itself (arrays and tf.data.Datasets stay in this process).",
                        f"{name} of type {type(value).__name__}",
                        "Write the images to a folder (one sub-folder per class), or train without workers")
    manifest = arguments.get("manifest")
    if manifest is not None and not _is_folder_argument(manifest):
        raise _fail("With worker processes, `manifest` must be the path of a manifest JSON file (every worker "
                    "reads it).", f"manifest of type {type(manifest).__name__}", "Pass its path")
    if precision == "float16":
        raise _fail("Worker processes train in float32 or bfloat16: float16's loss scale is not in the "
                    "checkpoint, so a resumed data-parallel run would not match an uninterrupted one.",
                    "precision='float16'", "Pass precision='bfloat16' (GPUs of compute capability 8.0+, "
                    "recent CPUs) or 'float32'")
    batch = arguments["batch_size"]
    if batch % distributed.processes:
        raise _fail("`batch_size` is the global batch and must split evenly across the worker processes "
                    f"({distributed.workers} per host x {distributed.hosts} hosts = {distributed.processes}).",
                    f"batch_size={batch}", f"Pass a multiple of {distributed.processes}")
    if importlib.util.find_spec("jax") is None:
        raise MissingDependencyError(
            "Worker processes train on Keras' JAX backend (keras.distribution.DataParallel), and JAX is not "
            "installed. Received: distributed=" f"{distributed.processes} processes. "
            "Install it: pip install 'resnet-keras[distributed]' (CPU) or JAX for your GPUs.")
