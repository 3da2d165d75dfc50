"""Which resnet_keras modules a call runs code in: the layout's budget (issue 20).

`modules_entered(call)` runs `call()` under a profiler and returns, in order of
first entry, the modules of this package whose functions ran. Module bodies
(imports, registration at import time) are not counted: a module counts when
the call's own work enters it. Building the graph (`architecture.graph` and
what it calls: the blocks) is one job, not a trip through the weights path,
so it counts as one module: the graph module itself.
"""

from __future__ import annotations

import sys
from typing import Callable

PACKAGE = "resnet_keras"
GRAPH = "resnet_keras.architecture.graph"


def modules_entered(call: Callable[[], object]) -> list[str]:
    entered: dict[str, None] = {}
    depth_in_graph = 0

    def profile(frame, event, arg):
        nonlocal depth_in_graph
        if event not in ("call", "return"):
            return
        module = frame.f_globals.get("__name__") or ""
        if not module.startswith(PACKAGE) or frame.f_code.co_name == "<module>":
            return
        if module == GRAPH:
            if event == "call":
                depth_in_graph += 1
                entered.setdefault(module)
            else:
                depth_in_graph -= 1
            return
        if event == "call" and depth_in_graph == 0:
            entered.setdefault(module)

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        call()
    finally:
        sys.setprofile(previous)
    return list(entered)
