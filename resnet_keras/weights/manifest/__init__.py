"""The manifest: which weights a tag names, where their files are, how they are verified.

- `records.py`: the frozen records (`Manifest`, `WeightsEntry`, `WeightsFile`),
  the URL policy (which URLs a manifest and a redirect may name), and the JSON
  read, validated and merged: the shipped and the active manifest;
- `hashes.py`: the one table of hash kinds (md5, sha256, sha256-prefix).
"""

from .records import (
    Manifest, WeightsEntry, WeightsFile, active_manifest, parse_manifest, read_manifest, shipped_manifest,
)

__all__ = [
    "Manifest", "WeightsEntry", "WeightsFile", "active_manifest", "parse_manifest",
    "read_manifest", "shipped_manifest",
]
