"""The results of a run: contender labels and per-repeat summaries.

Every measurement is a list with one value per repeat; both libraries ran
back to back within a repeat, so ratios are taken per repeat (paired) and
reported as min / median / max.
"""

from __future__ import annotations

import statistics

OURS, THEIRS = "resnet_keras", "keras"


def summary(values) -> dict:
    values = list(values)
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def med(values) -> float:
    return statistics.median(values)


def ratios(ours, theirs):
    """ours / keras per repeat (paired: both ran back to back), summarized."""
    return summary(a / b for a, b in zip(ours, theirs))



def restore(results: dict) -> dict:
    """JSON turned the batch keys into strings; make them ints again."""
    for key in ("calls", "path_calls"):
        results[key] = {int(b): n for b, n in results[key].items()}
    for table in [m["throughput"] for m in results["models"]] + [results["paths"]["throughput"]]:
        for b in list(table):
            table[int(b)] = table.pop(b)
    return results
