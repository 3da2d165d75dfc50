"""Run `resnet-keras ARGS...` and kill -9 this very process in the middle of an epoch.

    python tests/finetune_kill.py EPOCH BATCH -- finetune DATA --out RUN ...

SIGKILL arrives after batch BATCH (0-based) of epoch EPOCH (0-based, over
the whole run) has finished: no handler, no flush, no cleanup runs, as with
`kill -9` from outside, but at a known point of the run.
"""

from __future__ import annotations

import os
import signal
import sys

from resnet_keras import cli
from resnet_keras.finetune import train

epoch, batch = int(sys.argv[1]), int(sys.argv[2])
real = train._EpochBar.on_train_batch_end


def kill_at_the_point(self, index, logs=None):
    real(self, index, logs)
    if (self.epoch, index) == (epoch, batch):
        os.kill(os.getpid(), signal.SIGKILL)


train._EpochBar.on_train_batch_end = kill_at_the_point
sys.exit(cli.main(sys.argv[sys.argv.index("--") + 1:]))
