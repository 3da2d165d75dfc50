"""Safe, transactional loading of Keras HDF5 weight files.

Reads the legacy layout that Keras 2's `save_weights` writes (the format of
the official keras.applications files): root attribute `layer_names`, one
group per layer with attribute `weight_names`. A full-model `.h5` (from
`model.save`) keeps the same layout under `model_weights`; only that part is
read, never the model config, so no code from a file can run.

Everything is read and checked (names, counts, shapes, dtypes, finiteness)
before the first assignment; all problems are reported at once and the
model is left unchanged when there is any.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import WeightsFormatError, WeightsMismatchError

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


def _format_error(path: Path, problem: str) -> WeightsFormatError:
    return WeightsFormatError(
        f"{path} is not a usable Keras HDF5 weights file: {problem}. "
        "Pass a .h5 file written by `save_weights` (Keras 2 layout), such as "
        "the official keras.applications files."
    )


def _decode(values) -> list[str]:
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]


def _attr_list(group, name: str) -> list[str]:
    """Read a list attribute, possibly chunked as name0, name1, ... by Keras."""
    if name in group.attrs:
        return _decode(group.attrs[name])
    values, i = [], 0
    while f"{name}{i}" in group.attrs:
        values.extend(_decode(group.attrs[f"{name}{i}"]))
        i += 1
    return values


def _check_structure(root, path: Path) -> None:
    """Refuse links, external storage and unknown filters before reading data."""
    import h5py

    problems = []

    def visit(name, link):
        if isinstance(link, (h5py.SoftLink, h5py.ExternalLink)):
            problems.append(f"{type(link).__name__} at /{name}")
            return
        obj = root.get(name)
        if isinstance(obj, h5py.Dataset):
            plist = obj.id.get_create_plist()
            if plist.get_external_count() > 0:
                problems.append(f"external dataset /{name}")
            if obj.is_virtual:
                problems.append(f"virtual dataset /{name}")
            filters = {plist.get_filter(i)[0] for i in range(plist.get_nfilters())}
            if filters - SAFE_FILTERS:
                problems.append(
                    f"unsupported compression filter {sorted(filters - SAFE_FILTERS)} at /{name}"
                )
            declared = int(np.prod(obj.shape, dtype=np.float64) * obj.dtype.itemsize)
            stored = obj.id.get_storage_size()
            if declared > MAX_DATASET_BYTES or (
                declared > BOMB_MIN_BYTES and declared > BOMB_RATIO * stored
            ):
                problems.append(
                    f"dataset /{name} declares shape {obj.shape} ({declared:,} "
                    f"bytes) but stores {stored:,} bytes (a shape bomb?)"
                )

    root.visititems_links(visit)
    if problems:
        raise _format_error(path, "it contains " + ", ".join(problems[:MAX_REPORTED]))


def _weight_groups(root, path: Path):
    """(layer name, [(weight name, dataset)]) for each layer that has weights."""
    import h5py

    if "layer_names" not in root.attrs and not any(
        k.startswith("layer_names") for k in root.attrs
    ):
        if "model_weights" in root:
            return _weight_groups(root["model_weights"], path)
        raise _format_error(path, "it has no `layer_names` attribute")
    layers = []
    for layer_name in _attr_list(root, "layer_names"):
        group = root.get(layer_name)
        if not isinstance(group, h5py.Group):
            raise _format_error(path, f"layer {layer_name!r} has no group")
        weights = []
        for weight_name in _attr_list(group, "weight_names"):
            dataset = group.get(weight_name)
            if not isinstance(dataset, h5py.Dataset):
                raise _format_error(
                    path, f"weight {weight_name!r} of layer {layer_name!r} is missing"
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
        head = f.read(512)
    if not head.startswith(HDF5_SIGNATURE):
        raise _format_error(path, describe_non_hdf5(head))


def missing_file_error(path: Path, hint: str = "") -> FileNotFoundError:
    # One argument only: with errno/filename set, str() would drop the hint.
    return FileNotFoundError(
        f"Weights file not found: {path}.{hint} Check the path, or pass a "
        "weights tag such as 'imagenet'."
    )


def describe_non_hdf5(head: bytes) -> str:
    """Why the first bytes of a file are not those of an HDF5 file."""
    text = head.lstrip().lower()
    if not head:
        return "it is empty"
    if head.startswith(b"PK"):
        return (
            "it is a zip archive (a .keras model or an .npz?); only HDF5 "
            "weights files are read, so no code or pickle from it runs"
        )
    if head.startswith(b"\x80") or head.startswith(b"\x93NUMPY"):
        return "it is a pickle or NumPy file; those are never loaded (pickle can run code)"
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<?xml")):
        return "it is an HTML page (a download error or login page?)"
    if HDF5_SIGNATURE[1:4] in head[:8]:
        return "its HDF5 signature is damaged"
    return "it is not an HDF5 file (maybe truncated or another format)"


def _short_name(weight_name: str) -> str:
    """'conv1_conv/kernel:0' -> 'kernel' (Keras 2) ; 'conv1_conv/kernel' (Keras 3)."""
    return weight_name.rsplit("/", 1)[-1].split(":", 1)[0]


def weighted_layers(model):
    return [layer for layer in model.layers if layer.weights]


def load_weights(model, path: str | Path) -> None:
    """Load an HDF5 weights file into `model`, all or nothing."""
    import h5py

    path = Path(path)
    check_signature(path)
    try:
        with h5py.File(path, "r") as root:
            _check_structure(root, path)
            file_layers = _weight_groups(root, path)
            plan = _plan(model, file_layers, path)
    except OSError as error:
        raise _format_error(path, f"HDF5 could not read it ({error})") from error
    for variable, value in plan:
        variable.assign(value)


def _plan(model, file_layers, path: Path):
    """Read and check every array; return (variable, value) pairs to assign."""
    model_layers = weighted_layers(model)
    problems = []
    if len(file_layers) != len(model_layers):
        file_names = [name for name, _ in file_layers]
        model_names = [layer.name for layer in model_layers]
        extra = [n for n in file_names if n not in model_names]
        missing = [n for n in model_names if n not in file_names]
        hint = ""
        if extra == ["predictions"]:
            hint = " The file has a classifier head: build with include_top=True."
        elif missing == ["predictions"]:
            hint = " The file has no classifier head: build with include_top=False."
        raise WeightsMismatchError(
            f"{path} holds weights for {len(file_layers)} layers but model "
            f"{model.name!r} has {len(model_layers)} layers with weights. Only "
            f"in the file: {extra[:MAX_REPORTED]}; only in the model: "
            f"{missing[:MAX_REPORTED]}.{hint}"
        )
    plan = []
    for layer, (file_name, datasets) in zip(model_layers, file_layers):
        if layer.name != file_name:
            problems.append(f"layer {layer.name!r}: the file has {file_name!r} here")
            continue
        variables = layer.weights
        if len(variables) != len(datasets):
            problems.append(
                f"layer {layer.name!r}: expects {len(variables)} weights, "
                f"the file has {len(datasets)}"
            )
            continue
        for variable, (weight_name, dataset) in zip(variables, datasets):
            where = f"{layer.name}/{_short_name(weight_name)}"
            if _short_name(weight_name) != variable.name:
                problems.append(f"{where}: expected weight {variable.name!r}")
            elif tuple(dataset.shape) != tuple(variable.shape):
                problems.append(
                    f"{where}: shape {tuple(dataset.shape)} in the file, "
                    f"{tuple(variable.shape)} in the model"
                )
            elif dataset.dtype.kind != "f":
                problems.append(f"{where}: dtype {dataset.dtype} is not floating point")
            else:
                value = dataset[()]
                if not np.all(np.isfinite(value)):
                    problems.append(f"{where}: contains NaN or Inf")
                else:
                    plan.append((variable, value))
    if problems:
        listed = "; ".join(problems[:MAX_REPORTED])
        more = len(problems) - MAX_REPORTED
        raise WeightsMismatchError(
            f"{path} does not fit model {model.name!r} ({len(problems)} "
            f"problems, model unchanged): {listed}"
            + (f"; and {more} more" if more > 0 else "")
        )
    return plan
