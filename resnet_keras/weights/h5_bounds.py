"""Bounds on an HDF5 file's structure, checked before any data is read.

A weights file is small and plain: a few levels of groups, float arrays
stored as they are or gzip-compressed. Links, external or virtual storage,
filters that need plugins, and "bombs" (a declared size, or a compressed
chunk, far larger than what the file stores) are refused, so a hostile file
costs bounded time and memory.
"""

from __future__ import annotations

import numpy as np

from ..errors import WeightsFormatError

# HDF5 filter ids: deflate (gzip), shuffle, fletcher32. Anything else needs a
# plugin, i.e. code we did not choose, and is refused.
SAFE_FILTERS = {1, 2, 3}
# A dataset may declare far more data than the file stores (unwritten chunks
# read back as the fill value, or extreme compression): a "shape bomb" that
# makes a reader allocate gigabytes from a tiny file. The largest tensor of
# any ResNet is below 200 MB (a 2048 x 21843 ImageNet-21k head), so refuse
# declared sizes above MAX_DATASET_BYTES, and above BOMB_MIN_BYTES when the
# declared size is more than BOMB_RATIO times what is stored.
MAX_DATASET_BYTES = 1 << 32
BOMB_MIN_BYTES = 16 << 20
BOMB_RATIO = 100
# HDF5 inflates a whole chunk at a time, whatever part of it is read: one
# chunk far larger than its dataset (3x3x3x2^23 for a 3x3x3x16 kernel) makes
# a 2 MB file cost gigabytes. A chunk may not exceed its dataset's own size
# (or a small allowance for tiny datasets).
CHUNK_ALLOWANCE_BYTES = 1 << 20
# Keras writes root/layer/weight (root/model_weights/... in a full-model file,
# a level more for nested models): anything much deeper, or a file with more
# objects than the largest ResNet has weights, is not a weights file.
MAX_DEPTH = 8
MAX_OBJECTS = 100_000
MAX_REPORTED = 20  # problems listed in one message


def format_error(where, problem: str) -> WeightsFormatError:
    return WeightsFormatError(
        f"{where} is not a usable Keras HDF5 weights file: {problem}. "
        "Pass a .h5 file written by `save_weights` (Keras 2 layout), such as "
        "the official keras.applications files."
    )


def _dataset_problems(obj, name: str) -> list[str]:
    plist = obj.id.get_create_plist()
    problems = []
    if plist.get_external_count() > 0:
        problems.append(f"external dataset /{name}")
    if obj.is_virtual:
        problems.append(f"virtual dataset /{name}")
    filters = {plist.get_filter(i)[0] for i in range(plist.get_nfilters())}
    if filters - SAFE_FILTERS:
        problems.append(
            f"unsupported compression filter {sorted(filters - SAFE_FILTERS)} at /{name}"
        )
    itemsize = obj.dtype.itemsize
    declared = int(np.prod(obj.shape or (), dtype=np.float64) * itemsize)
    stored = obj.id.get_storage_size()
    if declared > MAX_DATASET_BYTES or (
        declared > BOMB_MIN_BYTES and declared > BOMB_RATIO * stored
    ):
        problems.append(
            f"dataset /{name} declares shape {obj.shape} ({declared:,} "
            f"bytes) but stores {stored:,} bytes (a shape bomb?)"
        )
    if obj.chunks:
        chunk = int(np.prod(obj.chunks, dtype=np.float64) * itemsize)
        if chunk > max(declared, CHUNK_ALLOWANCE_BYTES):
            problems.append(
                f"dataset /{name} of {declared:,} bytes is stored in chunks of "
                f"{chunk:,} bytes {obj.chunks} (a decompression bomb?)"
            )
    return problems


def check_structure(root, where) -> None:
    """Refuse links, external storage, unknown filters and bombs before reading data."""
    import h5py

    problems = []
    count = 0

    def visit(name, link):
        nonlocal count
        count += 1
        if count > MAX_OBJECTS or name.count("/") >= MAX_DEPTH:
            what = f"more than {MAX_OBJECTS:,} objects" if count > MAX_OBJECTS else (
                f"groups nested more than {MAX_DEPTH} deep"
            )
            problems.append(what)
            return True  # stop the walk here: bounded work
        if isinstance(link, (h5py.SoftLink, h5py.ExternalLink)):
            problems.append(f"{type(link).__name__} at /{name}")
            return None
        obj = root.get(name)
        if isinstance(obj, h5py.Dataset):
            problems.extend(_dataset_problems(obj, name))
        return None

    root.visititems_links(visit)
    if problems:
        raise format_error(where, "it contains " + ", ".join(problems[:MAX_REPORTED]))
