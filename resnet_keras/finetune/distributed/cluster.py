"""The processes a fine-tuning run trains in, as the training loop sees them.

`Cluster` is one process (plain `fine_tune`): it writes RUN_DIR, and every
method is the identity. `JaxCluster` is one worker of a data-parallel run on
Keras' JAX backend: the trained model lives under
`keras.distribution.DataParallel` (variables replicated on every device, each
global batch split over the devices, XLA all-reducing the gradients), and
everything else runs on a local copy of the model in each process:

- worker 0 is the writer: it alone reads and writes RUN_DIR, and its values
  (restored checkpoint, pretrained backbone, the head's probe) are
  broadcast to every worker before the first step (`share`);
- validation and the probe's features are computed by every worker on its
  own block of images and gathered (`block`, `gather`);
- whatever each worker decided before training (settings, data) is compared
  across workers (`agree`), and an error in one worker stops all of them
  with its message, instead of leaving them waiting in a collective.

Broadcast, gather and the gradient all-reduce are JAX's
(`jax.experimental.multihost_utils`, XLA collectives: gloo on CPUs, NCCL on
GPUs); there is no communication code here.
"""

from __future__ import annotations

import contextlib
import hashlib
from typing import Callable, Sequence, TypeVar

import numpy as np

from ...errors import InvalidArgumentError, ResNetKerasError, WorkerError

T = TypeVar("T")
_MESSAGE_BYTES = 1024


class Cluster:
    """One process, the writer; nothing to share."""

    index, processes, devices = 0, 1, 1

    @property
    def is_writer(self) -> bool:
        return self.index == 0

    @property
    def shard(self) -> tuple[int, int, int] | None:
        """(this process, processes, devices) for the input pipeline; None: the whole batch here."""
        return None if self.processes == 1 else (self.index, self.processes, self.devices)

    def scope(self):
        """Where the trained model is built, compiled and fit."""
        return contextlib.nullcontext()

    def replica(self, model, build: Callable[[], object]):
        """A model of this process alone with `model`'s weights (for predictions, the probe, the writer)."""
        return model

    def refresh(self, replica, model) -> None:
        """`replica` takes `model`'s current weights."""

    def share(self, values: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The writer's `values` on every process (the others pass placeholders of the same shapes)."""
        return list(values)

    def block(self, count: int) -> slice:
        """The rows of `count` (validation, probe) that this process predicts."""
        return slice(0, count)

    def gather(self, block: np.ndarray, count: int) -> np.ndarray:
        """The blocks of every process, in order (`count` rows in all)."""
        return block

    def agree(self, work: Callable[[], T], digest: Callable[[T], str]) -> T:
        """`work()` on every process; the same result everywhere, or the same error everywhere."""
        return work()

    def close(self) -> None:
        """Leave the cluster (every process waits for the others)."""


class JaxCluster(Cluster):
    """This process as one worker of a `jax.distributed` cluster (initialized before)."""

    def __init__(self):
        import jax
        import keras

        self.index, self.processes, self.devices = jax.process_index(), jax.process_count(), jax.device_count()
        self.distribution = keras.distribution.DataParallel(devices=jax.devices(), auto_shard_dataset=False)

    def scope(self):
        return self.distribution.scope()

    @contextlib.contextmanager
    def _local(self):
        import keras

        saved = keras.distribution.distribution()
        keras.distribution.set_distribution(None)
        try:
            yield
        finally:
            keras.distribution.set_distribution(saved)

    def replica(self, model, build):
        with self._local():
            local = build()
        self.refresh(local, model)
        return local

    def refresh(self, replica, model) -> None:
        # Replicated arrays: each process reads its own copy, no communication.
        values = {v.path: np.asarray(v.value) for v in model.variables}
        with self._local():
            for variable in replica.variables:
                variable.assign(values[variable.path])

    def share(self, values):
        from jax.experimental import multihost_utils

        # 32-bit on the wire (JAX runs without 64-bit types), the caller's dtypes back.
        sent = [np.asarray(v, np.int32 if np.asarray(v).dtype.kind in "iub" else np.float32) for v in values]
        got = multihost_utils.broadcast_one_to_all(sent, is_source=self.is_writer)
        return [np.asarray(g).astype(np.asarray(v).dtype) for g, v in zip(got, values)]

    def _bounds(self, count: int) -> np.ndarray:
        return np.linspace(0, count, self.processes + 1).round().astype(int)

    def block(self, count):
        bounds = self._bounds(count)
        return slice(int(bounds[self.index]), int(bounds[self.index + 1]))

    def gather(self, block, count):
        from jax.experimental import multihost_utils

        bounds = self._bounds(count)
        longest = int(np.diff(bounds).max())
        padded = np.zeros((longest, *block.shape[1:]), np.float32)
        padded[:len(block)] = block
        every = np.asarray(multihost_utils.process_allgather(padded, tiled=False))
        return np.concatenate([every[k, :bounds[k + 1] - bounds[k]] for k in range(self.processes)])

    def agree(self, work, digest):
        from jax.experimental import multihost_utils

        result, message = None, b""
        try:
            result = work()
        except (ResNetKerasError, OSError) as error:  # what the command line reports in one line
            message = f"{error}".encode("utf-8", "replace")[:_MESSAGE_BYTES]
        row = np.zeros(_MESSAGE_BYTES + 32, np.uint8)
        row[:len(message)] = np.frombuffer(message, np.uint8)
        if not message:
            row[_MESSAGE_BYTES:] = np.frombuffer(hashlib.sha256(digest(result).encode()).digest(), np.uint8)
        rows = np.asarray(multihost_utils.process_allgather(row[None], tiled=True))
        for k, other in enumerate(rows):
            text = bytes(other[:_MESSAGE_BYTES]).rstrip(b"\0").decode("utf-8", "replace")
            if text:
                raise WorkerError(f"worker {k} of {self.processes}: {text}")
        differ = [k for k, other in enumerate(rows) if bytes(other[_MESSAGE_BYTES:]) != bytes(rows[0][_MESSAGE_BYTES:])]
        if differ:
            raise InvalidArgumentError(
                f"Every worker must train on the same data with the same settings; worker {differ[0]} of "
                f"{self.processes} differs from worker 0 (its options, weights file, or the images it listed "
                "or could read). Received: different digests. Give every host the same command, DATA_DIR "
                "contents and weights.")
        return result

    def close(self) -> None:
        import jax

        jax.distributed.shutdown()  # a barrier: waits for the writer to finish RUN_DIR
