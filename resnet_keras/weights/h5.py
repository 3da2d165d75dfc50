"""Safe, transactional loading of Keras HDF5 weights files.

Reads the legacy layout that Keras 2's `save_weights` writes (the format of
the official keras.applications files): root attribute `layer_names`, one
group per layer with attribute `weight_names`. A full-model `.h5` (from
`model.save`) keeps the same layout under `model_weights`; only that part is
read, never the model config, so no code from a file can run.

Layers are matched as keras matches them: in order, weighted layers only.
The names in the file are used for messages, never for matching, because
the official files were written by another program with other names (the
classifier is `probs` there, `predictions` in Keras 3).

The file is opened once: the bytes that are hashed (when a hash is known),
checked and read are those of one open file, whatever happens to its path
meanwhile. Everything is read and checked (counts, shapes, dtypes,
finiteness, and bounds on structure, chunk and declared sizes) before the
first assignment; all problems are reported at once and the model is left
unchanged when there is any.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np

from ..errors import WeightsFormatError, WeightsMismatchError

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# HDF5 filter ids: deflate (gzip), shuffle, fletcher32. Anything else needs a
# plugin, i.e. code we did not choose, and is refused.
SAFE_FILTERS = {1, 2, 3}
MAX_REPORTED = 20
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


def _format_error(where, problem: str) -> WeightsFormatError:
    return WeightsFormatError(
        f"{where} is not a usable Keras HDF5 weights file: {problem}. "
        "Pass a .h5 file written by `save_weights` (Keras 2 layout), such as "
        "the official keras.applications files."
    )


def _attr_list(group, name: str, where) -> list[str]:
    """A list-of-strings attribute, possibly chunked as name0, name1, ... by Keras."""
    import h5py

    if name in group.attrs:
        parts = [group.attrs[name]]
    else:
        parts, i = [], 0
        while f"{name}{i}" in group.attrs:
            parts.append(group.attrs[f"{name}{i}"])
            i += 1
    values = []
    for part in parts:
        if isinstance(part, h5py.Empty) or not isinstance(part, np.ndarray) or part.ndim != 1:
            raise _format_error(
                where, f"attribute {name!r} of {group.name} is not a list of names"
            )
        for value in part:
            if isinstance(value, (bytes, np.bytes_)):
                try:
                    value = bytes(value).decode("utf-8")
                except UnicodeDecodeError:
                    raise _format_error(
                        where, f"attribute {name!r} of {group.name} is not UTF-8 text"
                    ) from None
            if not isinstance(value, str):
                raise _format_error(
                    where, f"attribute {name!r} of {group.name} holds {value!r}, not a name"
                )
            values.append(value)
    return values


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


def _check_structure(root, where) -> None:
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
        raise _format_error(where, "it contains " + ", ".join(problems[:MAX_REPORTED]))


def _has_layer_names(group) -> bool:
    return any(key == "layer_names" or key.startswith("layer_names") for key in group.attrs)


def _weight_groups(root, where):
    """(layer name, [(weight name, dataset)]) for each layer that has weights."""
    import h5py

    if not _has_layer_names(root):
        weights_root = root.get("model_weights")  # a full-model .h5 (model.save)
        if not isinstance(weights_root, h5py.Group) or not _has_layer_names(weights_root):
            problem = (
                "its `model_weights` is not a group with `layer_names`"
                if "model_weights" in root
                else "it has no `layer_names` attribute"
            )
            raise _format_error(where, problem)
        root = weights_root
    layers = []
    for layer_name in _attr_list(root, "layer_names", where):
        group = root.get(layer_name) if layer_name else None
        if not isinstance(group, h5py.Group):
            raise _format_error(where, f"layer {layer_name!r} has no group")
        weights = []
        for weight_name in _attr_list(group, "weight_names", where):
            dataset = group.get(weight_name) if weight_name else None
            if not isinstance(dataset, h5py.Dataset):
                raise _format_error(
                    where, f"weight {weight_name!r} of layer {layer_name!r} is missing"
                )
            weights.append((weight_name, dataset))
        if weights:
            layers.append((layer_name, weights))
    return layers


def check_signature(path: Path) -> None:
    """Raise unless `path` is a regular file that starts like an HDF5 file."""
    if not path.exists():
        raise missing_file_error(path)
    if path.is_dir():
        raise _format_error(path, "it is a directory")
    if not path.is_file():
        raise _format_error(path, "it is not a regular file")
    with open(path, "rb") as f:
        _check_head(f.read(512), path)


def _check_head(head: bytes, where) -> None:
    if not head.startswith(HDF5_SIGNATURE):
        raise _format_error(where, describe_non_hdf5(head))


def missing_file_error(path: Path, hint: str = "") -> FileNotFoundError:
    # One argument only: with errno/filename set, str() would drop the hint.
    return FileNotFoundError(
        f"Weights file not found: {path}.{hint} Check the path, or pass a "
        "weights tag such as 'imagenet'."
    )


_HTML_STARTS = (b"<!doctype html", b"<html", b"<head", b"<body", b"<?xml")


def looks_like_html(head: bytes) -> bool:
    """True for the start of an HTML or XML page (with or without a UTF-8 BOM)."""
    return head.removeprefix(b"\xef\xbb\xbf").lstrip().lower().startswith(_HTML_STARTS)


def describe_non_hdf5(head: bytes) -> str:
    """Why the first bytes of a file are not those of an HDF5 file."""
    if not head:
        return "it is empty"
    if head.startswith(b"PK"):
        return (
            "it is a zip archive (a .keras model or an .npz?); only HDF5 "
            "weights files are read, so no code or pickle from it runs"
        )
    if head.startswith(b"\x80") or head.startswith(b"\x93NUMPY"):
        return "it is a pickle or NumPy file; those are never loaded (pickle can run code)"
    if looks_like_html(head):
        return "it is an HTML page (a download error or login page?)"
    if HDF5_SIGNATURE[1:4] in head[:8]:
        return "its HDF5 signature is damaged"
    return "it is not an HDF5 file (maybe truncated or another format)"


def _short_name(weight_name: str) -> str:
    """'conv1_conv/kernel:0' -> 'kernel' (Keras 2) ; 'conv1_conv/kernel' (Keras 3)."""
    return weight_name.rsplit("/", 1)[-1].split(":", 1)[0]


def weighted_layers(model):
    return [layer for layer in model.layers if layer.weights]


def _keras_weight_order(layer):
    # keras' legacy HDF5 reader pairs a layer's arrays with its trainable
    # weights first, then the non-trainable ones (BN moving statistics).
    return list(layer.trainable_weights) + list(layer.non_trainable_weights)


def open_regular(path: Path) -> BinaryIO:
    """Open `path` for reading, refusing anything but a regular file.

    O_NONBLOCK: opening a FIFO must not wait for a writer; the check on the
    open descriptor (not the path) is what the rest of the load relies on.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise missing_file_error(path) from None
    except IsADirectoryError:
        raise _format_error(path, "it is a directory") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _format_error(path, "it is not a regular file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def load_weights(model, path: str | os.PathLike) -> None:
    """Load an HDF5 weights file into `model`, all or nothing.

    Args:
        model: A Keras model whose weighted layers match the file's, in order.
        path: A legacy Keras HDF5 weights file (`save_weights` of Keras 2,
            such as the official keras.applications files, or a full-model
            `.h5`, of which only the weights are read).
    """
    path = Path(path)
    with open_regular(path) as file:
        load_from_file(model, file, path)


def load_from_file(model, file: BinaryIO, where, verify: Callable[[BinaryIO], None] | None = None) -> None:
    """Load from an open file: `verify(file)` (a hash check) sees the same bytes h5py reads."""
    import h5py

    if verify is not None:
        verify(file)
    file.seek(0)
    _check_head(file.read(512), where)
    file.seek(0)
    try:
        with h5py.File(file, "r") as root:
            _check_structure(root, where)
            plan = _plan(model, _weight_groups(root, where), where)
    except (WeightsFormatError, WeightsMismatchError):
        raise
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as error:
        # h5py reports damaged files as any of these; all are "unreadable".
        raise _format_error(where, f"HDF5 could not read it ({_first_line(error)})") from error
    for variable, value in plan:
        variable.assign(value)


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0][:200] if lines else type(error).__name__


def _looks_like_head(datasets) -> bool:
    """A classifier layer: a 2-D kernel and a bias."""
    return len(datasets) == 2 and len(datasets[0][1].shape) == 2


def _count_mismatch(model, model_layers, file_layers, where) -> WeightsMismatchError:
    file_names = [name for name, _ in file_layers]
    model_names = [layer.name for layer in model_layers]
    extra = [n for n in file_names if n not in model_names]
    missing = [n for n in model_names if n not in file_names]
    hint = ""
    surplus = len(file_layers) - len(model_layers)
    if surplus == 1 and _looks_like_head(file_layers[-1][1]):
        hint = " The file has a classifier head: build with include_top=True."
    elif surplus == -1 and _looks_like_head([(w.name, w) for w in model_layers[-1].weights]):
        hint = " The file has no classifier head: build with include_top=False."
    return WeightsMismatchError(
        f"{where} holds weights for {len(file_layers)} layers but model "
        f"{model.name!r} has {len(model_layers)} layers with weights (layers "
        f"are matched in order, as keras does). Only in the file: "
        f"{extra[:MAX_REPORTED]}; only in the model: {missing[:MAX_REPORTED]}.{hint}"
    )


def _plan(model, file_layers, where):
    """Read and check every array; return (variable, value) pairs to assign."""
    model_layers = weighted_layers(model)
    if len(file_layers) != len(model_layers):
        raise _count_mismatch(model, model_layers, file_layers, where)
    plan, problems = [], []
    for layer, (file_name, datasets) in zip(model_layers, file_layers):
        label = layer.name if file_name == layer.name else f"{layer.name} (file: {file_name})"
        variables = _keras_weight_order(layer)
        if len(variables) != len(datasets):
            problems.append(
                f"layer {label!r}: expects {len(variables)} weights, "
                f"the file has {len(datasets)}"
            )
            continue
        for variable, (weight_name, dataset) in zip(variables, datasets):
            what = f"{label}/{_short_name(weight_name)}"
            if tuple(dataset.shape) != tuple(variable.shape):
                problems.append(
                    f"{what}: shape {tuple(dataset.shape)} in the file, "
                    f"{tuple(variable.shape)} in the model"
                )
            elif dataset.dtype.kind != "f":
                problems.append(f"{what}: dtype {dataset.dtype} is not floating point")
            else:
                value = dataset[()]
                if not np.all(np.isfinite(value)):
                    problems.append(f"{what}: contains NaN or Inf")
                else:
                    plan.append((variable, value))
    if problems:
        listed = "; ".join(problems[:MAX_REPORTED])
        more = len(problems) - MAX_REPORTED
        raise WeightsMismatchError(
            f"{where} does not fit model {model.name!r} ({len(problems)} "
            f"problems, model unchanged): {listed}"
            + (f"; and {more} more" if more > 0 else "")
        )
    return plan
