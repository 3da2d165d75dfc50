"""The synthetic task of examples/explain.py (shapes at known places over clutter), for the tests.

One definition: the example that draws docs/explain_overlay.png is the module
the evidence tests train on.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

_PATH = Path(__file__).parents[1] / "examples" / "explain.py"
_spec = importlib.util.spec_from_file_location("explain_example", _PATH)
task = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(task)
