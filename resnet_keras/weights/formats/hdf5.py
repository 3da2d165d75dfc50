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

The file is read once into memory (`download/snapshot.py`): the bytes that
are hashed (when a hash is known), checked and parsed are those bytes,
whatever happens to the file on disk meanwhile. Everything is read and
checked (bounds on structure, names, chunk and declared sizes first; then
counts, shapes, and each value by the rule every checkpoint reader shares,
`values`) before the first assignment; all problems are reported at once
and the model is left
unchanged when there is any.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

from . import registry, values
from .hdf5_bounds import NameBudget, check_structure, format_error, read_names, unwritten
from ..download import snapshot
from ..._text import first_line
from ...errors import WeightsFormatError, WeightsMismatchError


def _has_layer_names(group) -> bool:
    return any(key == "layer_names" or key.startswith("layer_names") for key in group.attrs)


def _weight_groups(root, file, where):
    """(layer name, [(weight name, dataset)]) for each layer that has weights.

    Linear in the names: each list is bounded before it is read, and a
    group or dataset that two names reach is refused.
    """
    import h5py

    if not _has_layer_names(root):
        weights_root = root.get("model_weights")  # a full-model .h5 (model.save)
        if not isinstance(weights_root, h5py.Group) or not _has_layer_names(weights_root):
            problem = (
                "its `model_weights` is not a group with `layer_names`"
                if "model_weights" in root
                else "it has no `layer_names` attribute"
            )
            raise format_error(where, problem)
        root = weights_root
    budget = NameBudget(where, file)
    layers, reached = [], set()

    def first_visit(obj, what: str) -> None:
        if obj.id in reached:  # "a" and "./a" are one object
            raise format_error(where, f"{what} is an object the file lists twice")
        reached.add(obj.id)

    for layer_name in read_names(root, "layer_names", budget):
        group = root.get(layer_name) if layer_name else None
        if not isinstance(group, h5py.Group):
            raise format_error(where, f"layer {layer_name!r} has no group")
        first_visit(group, f"layer {layer_name!r}")
        weights = []
        for weight_name in read_names(group, "weight_names", budget):
            dataset = group.get(weight_name) if weight_name else None
            if not isinstance(dataset, h5py.Dataset):
                raise format_error(
                    where, f"weight {weight_name!r} of layer {layer_name!r} is missing"
                )
            first_visit(dataset, f"weight {weight_name!r} of layer {layer_name!r}")
            weights.append((weight_name, dataset))
        if weights:
            layers.append((layer_name, weights))
    return layers


def _short_name(weight_name: str) -> str:
    """'conv1_conv/kernel:0' -> 'kernel' (Keras 2) ; 'conv1_conv/kernel' (Keras 3)."""
    return weight_name.rsplit("/", 1)[-1].split(":", 1)[0]


def weighted_layers(model):
    return [layer for layer in model.layers if layer.weights]


def _keras_weight_order(layer):
    # keras' legacy HDF5 reader pairs a layer's arrays with its trainable
    # weights first, then the non-trainable ones (BN moving statistics).
    return list(layer.trainable_weights) + list(layer.non_trainable_weights)


def load_weights(model, path: str | os.PathLike) -> None:
    """Load an HDF5 weights file into `model`, all or nothing.

    Args:
        model: A Keras model whose weighted layers match the file's, in order.
        path: A legacy Keras HDF5 weights file (`save_weights` of Keras 2,
            such as the official keras.applications files, or a full-model
            `.h5`, of which only the weights are read).
    """
    path = Path(path)
    data = snapshot.read_once(path, snapshot.MAX_LOCAL_BYTES)  # read once, parse those bytes
    head = data[: registry.HEAD_BYTES]
    fmt = registry.sniff(head)
    if fmt is None:
        raise registry.format_error(path, registry.describe(head))
    if fmt.name != "hdf5":
        raise registry.format_error(
            path, f"it is {fmt.noun}, not an HDF5 file; load_weights reads only HDF5 weights "
            "files (pass the others as weights= to a builder)"
        )
    load(model, snapshot.as_file(data), path)


def load(model, file: BinaryIO, where, *, adapt_input_channels: bool = False) -> None:
    """Load an HDF5 file object over bytes read once (`snapshot.as_file`), all or nothing.

    The caller has sniffed the file (formats.registry). `adapt_input_channels`:
    a 3-channel stem kernel in the file is adapted to the model's input
    channels (`values.adapt_stem_kernel`).
    """
    import h5py

    file.seek(0)
    try:
        with h5py.File(file, "r") as root:
            check_structure(root, where)
            plan = _plan(model, _weight_groups(root, file, where), where, adapt_input_channels)
    except (WeightsFormatError, WeightsMismatchError):
        raise
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as error:
        # h5py reports damaged files as any of these; all are "unreadable".
        raise format_error(where, f"HDF5 could not read it ({first_line(error)})") from error
    for variable, value in plan:
        variable.assign(value)


def _looks_like_head(datasets) -> bool:
    """A classifier layer: a 2-D kernel and a bias."""
    return len(datasets) == 2 and len(datasets[0][1].shape) == 2


def _count_mismatch(model, model_layers, file_layers, where) -> WeightsMismatchError:
    file_names = [name for name, _ in file_layers]
    model_names = [layer.name for layer in model_layers]
    in_file, in_model = set(file_names), set(model_names)  # linear in both
    extra = [n for n in file_names if n not in in_model]
    missing = [n for n in model_names if n not in in_file]
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
        f"{extra[:values.MAX_REPORTED]}; only in the model: {missing[:values.MAX_REPORTED]}.{hint}"
    )


def _plan(model, file_layers, where, adapt_input_channels: bool = False):
    """Read and check every array; return (variable, value) pairs to assign."""
    model_layers = weighted_layers(model)
    if len(file_layers) != len(model_layers):
        raise _count_mismatch(model, model_layers, file_layers, where)
    plan, unusable, mismatched = [], [], []
    for index, (layer, (file_name, datasets)) in enumerate(zip(model_layers, file_layers)):
        label = layer.name if file_name == layer.name else f"{layer.name} (file: {file_name})"
        variables = _keras_weight_order(layer)
        if len(variables) != len(datasets):
            mismatched.append(
                f"layer {label!r}: expects {len(variables)} weights, "
                f"the file has {len(datasets)}"
            )
            continue
        for variable, (weight_name, dataset) in zip(variables, datasets):
            what = f"{label}/{_short_name(weight_name)}"
            # the stem: the first weighted layer of every model of the zoo
            adaptable = index == 0 and values.can_adapt(dataset.shape, variable.shape)
            if tuple(dataset.shape) != tuple(variable.shape) and not (adapt_input_channels and adaptable):
                mismatched.append(
                    f"{what}: shape {tuple(dataset.shape)} in the file, "
                    f"{tuple(variable.shape)} in the model" + (values.ADAPT_HINT if adaptable else "")
                )
                continue
            try:
                values.check_dtype(dataset.dtype)  # before reading: refused data is never read
                if unwritten(dataset):
                    raise values.UnusableValue(
                        f"dataset {dataset.name} was created but never written (no data stored)"
                    )
                value = values.as_float32(dataset[()])
                if adapt_input_channels and adaptable:
                    value = values.adapt_stem_kernel(value, variable.shape[values.INPUT_AXIS])
                plan.append((variable, values.as_variable_dtype(value, variable.dtype)))
            except values.UnusableValue as problem:
                unusable.append(f"{what}: {problem}")
    values.refuse(where, model.name, unusable, mismatched)
    return plan
