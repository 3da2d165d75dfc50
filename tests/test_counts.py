"""counts.json, the one record of every model's parameters and MACs, held to the built graphs.

Refresh it with `python -m resnet_keras.architecture.counts [MODEL ...]`.
Small models are built in the fast tier, the rest in the slow one.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from resnet_keras.architecture import catalog, counts
from resnet_keras.architecture.catalog import ENTRIES
from resnet_keras.architecture.specs import SPECS

# Symbolic builds well under a second each on 2 cores.
SMALL = {key for key, spec in SPECS.items() if sum(spec.depths) <= 9}


def test_every_registered_model_is_recorded_for_its_current_spec():
    """Keras-free: a spec edited (or a model added) without refreshing counts.json fails here."""
    assert {key: spec for key, (spec, _) in counts.recorded().items()} == {
        key: repr(entry.spec) for key, entry in ENTRIES.items()
    }
    assert list(counts.recorded()) == list(ENTRIES)  # natural order
    assert {"resnet18", "resnet20", "plain20"} <= SMALL


def test_a_row_recorded_for_another_spec_is_not_used(monkeypatch):
    """resnet20 redefined in this test (wider): its counts come from its own graph."""
    dict(ENTRIES)  # the public modules are registered before the copy
    monkeypatch.setattr(catalog, "_REGISTERED", dict(catalog._REGISTERED))
    del catalog._REGISTERED["resnet20"]
    monkeypatch.setitem(SPECS, "resnet20", dataclasses.replace(SPECS["resnet20"], stem_width=32, widths=(32, 64, 128)))
    wider = catalog.define_builder("ResNet20", SPECS["resnet20"], "a wider ResNet-20")
    assert counts.of("resnet20").params == wider().count_params() > counts.recorded()["resnet20"][1].params


# ResNet1202: tests/test_depth.py counts the one 4,214-layer build it makes for every check.
@pytest.mark.parametrize(
    "key", [k if k in SMALL else pytest.param(k, marks=pytest.mark.slow) for k in SPECS if k != "resnet1202"]
)
def test_recorded_counts_are_the_built_graph(key):
    measured = counts.measure(ENTRIES[key])
    assert counts.recorded()[key] == (repr(SPECS[key]), measured), (
        f"counts.json is stale for {key}: run `python -m resnet_keras.architecture.counts {key}`"
    )


def test_refresh_measures_the_named_models_and_keeps_the_rest(tmp_path, monkeypatch, request):
    spec, shipped = counts.recorded()["resnet20"]  # held to the graph above
    path = tmp_path / "counts.json"
    stale = {key: dict(spec="old", params=1, params_notop=1, trainable_params=1, macs=1) for key in SPECS}
    stale["no_longer_registered"] = stale["resnet20"]
    path.write_text(json.dumps({"models": stale}))
    monkeypatch.setattr(counts, "COUNTS_FILE", path)
    request.addfinalizer(counts.recorded.cache_clear)  # read the shipped file again after the test

    counts.refresh(["resnet20"], path=path)

    written = json.loads(path.read_text())["models"]
    assert list(written) == list(ENTRIES)  # natural order; the unregistered one is dropped
    assert written["resnet20"] == {"spec": spec, **dataclasses.asdict(shipped)}
    assert written["resnet18"] == stale["resnet18"]  # not named: kept as recorded
    assert counts.recorded()["resnet20"] == (spec, shipped)  # re-read after the write


def test_model_info_and_the_cli_read_the_record_without_keras(tmp_path):
    """`info` and `list --counts` need no Keras: the counts come from the file."""
    import subprocess
    import sys

    code = (
        "import sys, resnet_keras;"
        "info = resnet_keras.model_info('resnet152');"
        "from resnet_keras.cli import main; main(['list', 'resnet152', '--counts']);"
        "assert 'keras' not in sys.modules, 'keras was imported';"
        "print(info.params, info.macs)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    _, recorded = counts.recorded()["resnet152"]
    assert f"{recorded.params:,}" in done.stdout and "11.282 G" in done.stdout
    assert done.stdout.split()[-2:] == [str(recorded.params), str(recorded.macs)]
