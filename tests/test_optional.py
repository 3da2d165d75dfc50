"""tests/optional.require: skip on a developer's machine, fail when CI is set."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from optional import require

MISSING = "resnet_keras_no_such_module"


@pytest.mark.parametrize("value", ["true", "1", "yes"])
def test_a_missing_optional_package_fails_in_ci(monkeypatch, value):
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match=f"'{MISSING}' cannot be imported.*CI is set"):
        require(MISSING)


@pytest.mark.parametrize("value", [None, "", "false", "0"])
def test_a_missing_optional_package_skips_elsewhere(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.skip.Exception, match=f"'{MISSING}' cannot be imported"):
        require(MISSING)


def test_a_broken_optional_package_fails_in_ci(monkeypatch, tmp_path):
    """Installed but failing at import (a broken extra) is not 'missing'."""
    (tmp_path / "resnet_keras_broken_extra.py").write_text("raise ImportError('libfoo.so: cannot open')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="libfoo.so: cannot open"):
        require("resnet_keras_broken_extra")


def test_an_installed_package_is_returned(monkeypatch):
    monkeypatch.setenv("CI", "true")
    assert require("json.decoder").__name__ == "json.decoder"



@pytest.mark.parametrize("ci, outcome", [(None, "1 skipped"), ("true", "1 error")])
@pytest.mark.slow
def test_a_module_level_require(tmp_path, ci, outcome):
    """At a module's top: the whole module skips, or (CI) fails to collect."""
    (tmp_path / "test_needs_extra.py").write_text(
        f"from optional import require\nrequire({MISSING!r})\n\ndef test_never_runs():\n    pass\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = str(Path(__file__).parent)
    if ci:
        env["CI"] = ci
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert outcome in done.stdout, done.stdout[-2000:]
    assert "cannot be imported" in done.stdout or ci is None
