"""One worker process of a data-parallel fine-tuning run (started by launch.py).

    python -m resnet_keras.finetune.distributed.worker SPEC_JSON

SPEC_JSON holds `fine_tune`'s arguments (already checked by the launcher),
the coordinator's address, the number of processes and this one's index.
The worker joins the JAX cluster (`jax.distributed.initialize`), checks the
arguments and the data again and compares them with every other worker
(`JaxCluster.agree`), then runs the same training as a single process,
under `keras.distribution.DataParallel`. A typed error ends it with one line
on stderr and in the status file the launcher reads, at once (no waiting
for the others at the exit barrier).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import traceback

from .options import START_TIMEOUT

# How long the other workers wait at the exit barrier for the writer to
# finish RUN_DIR (the final validation, weights, report).
FINISH_TIMEOUT = 6 * 3600


def _die_with_parent(parent: int) -> None:
    """SIGKILL this process when the launcher dies (Linux), so no worker outlives a killed launcher."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the launcher died before prctl
        os._exit(1)


def _fail(spec: dict, message: str) -> None:
    print(f"resnet-keras: worker {spec['process_id']}: {message}", file=sys.stderr, flush=True)
    with open(spec["status"], "w", encoding="utf-8") as f:
        f.write(message)
    os._exit(1)  # not the exit barrier: the launcher stops the others


def _arguments(spec: dict) -> dict:
    from ..settings import Augmentation

    arguments = dict(spec["arguments"])
    if isinstance(arguments["augment"], dict):
        arguments["augment"] = Augmentation(**{k: tuple(v) if isinstance(v, list) else v
                                               for k, v in arguments["augment"].items()})
    return arguments


def _prepare(spec: dict, cluster):
    """`prepare` of the arguments, and the check that needs the devices: the batch splits over them."""
    from ..api import prepare
    from ...errors import InvalidArgumentError

    prepared = prepare(**_arguments(spec))
    batch = prepared.settings.batch_size
    if batch % cluster.devices:
        raise InvalidArgumentError(
            f"`batch_size` is the global batch and must split evenly across the {cluster.devices} devices of "
            f"the {cluster.processes} worker processes. Received: batch_size={batch}. Pass a multiple of "
            f"{cluster.devices}, or one worker per GPU (--workers = GPUs per host).")
    return prepared


def main(argv: list[str]) -> int:
    spec = json.loads(argv[1])
    _die_with_parent(spec["parent"])
    import jax

    jax.distributed.initialize(
        spec["coordinator"], spec["processes"], spec["process_id"], coordinator_bind_address=spec["bind"],
        initialization_timeout=START_TIMEOUT, heartbeat_timeout_seconds=spec["heartbeat_timeout"],
        shutdown_timeout_seconds=FINISH_TIMEOUT)
    from ..api import _run
    from .cluster import JaxCluster
    from ...errors import ResNetKerasError

    try:
        cluster = JaxCluster()
        prepared = cluster.agree(lambda: _prepare(spec, cluster), lambda p: json.dumps(p.key, sort_keys=True))
        _run(prepared, cluster)
    except (ResNetKerasError, OSError) as error:
        _fail(spec, str(error))
    except BaseException as error:
        first = (str(error).splitlines() or [""])[0]
        if isinstance(error, jax.errors.JaxRuntimeError) or "Gloo" in first:  # a collective failed
            _fail(spec, f"lost contact with another worker (killed, failed, or its host unreachable): {first}")
        traceback.print_exc()  # a bug: its traceback, and the launcher stops the others
        _fail(spec, f"{type(error).__name__}: {first}")
    cluster.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
