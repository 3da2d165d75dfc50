"""`python -m resnet_keras ...` runs the `resnet-keras` command line."""

import sys

from .cli import main

sys.exit(main())
