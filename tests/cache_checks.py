"""Helpers shared by the weights fault tests (manifest, download, cache, loading, CLI)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from resnet_keras.weights.download import download, cache
from resnet_keras.weights.manifest.records import WeightsFile

# A tiny V1 net under the "resnet50" key, so that manifest entries for
# resnet50 apply to it: 1 block per stage, width 4, 32x32 inputs.
TINY = dict(name="resnet50", block="bottleneck", depths=(1, 1, 1, 1), widths=(4, 4, 4, 4))


def tiny_spec():
    from resnet_keras.architecture.specs import ResNetSpec

    return ResNetSpec(**TINY)


def build_tiny(include_top: bool = False, weights=None, **kwargs):
    """A tiny ResNet through the real build path (validation, weights, loading)."""
    from resnet_keras.architecture import build as _builder

    args = dict(
        include_top=include_top,
        weights=weights,
        input_tensor=None,
        input_shape=(32, 32, 3),
        pooling=None if include_top else "avg",
        classes=10 if weights is None or not include_top else 1000,
        classifier_activation="softmax",
        name="tiny",
    )
    args.update(kwargs)
    return _builder.create_model(tiny_spec(), **args)


def md5(data: bytes) -> str:
    return "md5:" + hashlib.md5(data).hexdigest()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def payload(size: int = 4096, seed: int = 0) -> bytes:
    """Deterministic bytes that stand for a weights file in transfer tests."""
    return bytes((i * 131 + seed * 17 + (i >> 8)) % 256 for i in range(size))


def weights_file(name: str, data: bytes, urls, **kwargs) -> WeightsFile:
    return WeightsFile(file_name=name, urls=tuple(urls), hash=md5(data), **kwargs)


def leftovers(folder: Path) -> list[str]:
    """Temp, lock or other internal files in the cache folder."""
    if not folder.exists():
        return []
    return sorted(
        p.name
        for p in folder.iterdir()
        if p.name.endswith((cache.TEMP_SUFFIX, ".lock")) or p.name.startswith(".")
    )


def assert_clean_cache(folder: Path, expected: dict[str, bytes] | None = None, aside=()):
    """Only verified files (exact bytes) and the named set-aside files; nothing else."""
    expected = expected or {}
    present = sorted(p.name for p in folder.iterdir()) if folder.exists() else []
    assert present == sorted([*expected, *aside]), f"cache holds {present}"
    for name, data in expected.items():
        assert (folder / name).read_bytes() == data, f"{name} was changed"
    assert leftovers(folder) == []


def user_manifest(path: Path, models: dict) -> Path:
    """Write {"schema_version": 1, "models": models} to `path`."""
    path.write_text(json.dumps({"schema_version": 1, "models": models}))
    return path


def entry(files: dict, **extra) -> dict:
    """A manifest entry; files: kind -> (file_name, urls, hash[, num_params])."""
    out = {}
    for kind, spec in files.items():
        name, urls, digest, *rest = spec
        out[kind] = {"file_name": name, "urls": list(urls), "hash": digest}
        if rest:
            out[kind]["num_params"] = rest[0]
    return {"files": out, **extra}


@pytest.fixture
def fast_network(monkeypatch):
    """Short timeout, no waiting between retries: fault tests stay fast."""
    monkeypatch.setattr(download, "RETRY_WAIT_SECONDS", 0.0)
    monkeypatch.setenv("RESNET_KERAS_TIMEOUT", "0.5")
    return download


def umask_mode(mode: int = 0o666) -> int:
    current = os.umask(0)
    os.umask(current)
    return mode & ~current
