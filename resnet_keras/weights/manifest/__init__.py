"""The manifest: which weights a tag names, where their files are, how they are verified.

- `records.py`: the frozen records (`Manifest`, `WeightsEntry`, `WeightsFile`);
- `hashes.py`: the one table of hash kinds (md5, sha256, sha256-prefix);
- `parse.py`: JSON read, validated and merged; the shipped and the active manifest;
- `urls.py`: the URL policy (which URLs a manifest and a redirect may name).
"""

from .records import active_manifest, parse_manifest, read_manifest, shipped_manifest
from .records import Manifest, WeightsEntry, WeightsFile

__all__ = [
    "Manifest", "WeightsEntry", "WeightsFile", "active_manifest", "parse_manifest",
    "read_manifest", "shipped_manifest",
]
