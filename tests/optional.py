"""Optional packages of the test extras: skipped where missing, required in CI.

`pytest.importorskip` would let a broken extra (onnxruntime that fails to
import, scikit-learn missing from the environment) skip its tests silently.
`require` skips the same way on a developer's machine, but when the
environment variable `CI` is set (as `.ci/run` and CI services do) a
missing or broken optional package fails the test instead.
"""

from __future__ import annotations

import importlib
import os
import types

import pytest

_OFF = {"", "0", "false", "no", "off"}


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in _OFF


def require(module_name: str) -> types.ModuleType:
    """Import `module_name`; if that fails, fail in CI and skip elsewhere."""
    try:
        return importlib.import_module(module_name)
    except ImportError as error:
        message = f"optional package {module_name!r} cannot be imported: {error}"
        if in_ci():
            pytest.fail(
                f"{message}. CI is set ({os.environ['CI']!r}), so the test extras must all "
                'be installed and importable: pip install -e ".[test]" (the fast tier), '
                'pip install -e ".[test,test-slow]" (every tier)',
                pytrace=False,
            )
        pytest.skip(message, allow_module_level=True)  # also at a module's top
