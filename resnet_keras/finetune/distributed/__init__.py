"""Data-parallel fine-tuning in several processes and on several hosts (docs/distributed.md).

- `options`: `Distributed` (workers, hosts, coordinator) and every check
  made before a worker starts; no Keras, no JAX.
- `launch`: starts this machine's workers and stops them all when one fails.
- `worker`: one worker process: joins the JAX cluster and runs `fine_tune`'s
  training under `keras.distribution.DataParallel`.
- `cluster`: what the training loop asks of its processes (`Cluster`: one
  process; `JaxCluster`: a worker).
"""

from .options import Distributed

__all__ = ["Distributed"]
