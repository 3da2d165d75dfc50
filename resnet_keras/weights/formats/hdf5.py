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
`registry.as_variable_dtype`) before the first assignment; all problems are
reported at once and the model is left unchanged when there is any. The
bounds come second in this module: what a file's structure may hold, checked
before any data is read.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ...errors import first_line
from ...errors import WeightsFormatError, WeightsMismatchError
from ..download import snapshot
from . import registry
from .registry import MAX_REPORTED


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
    channels (`registry.adapt_stem_kernel`).
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
        f"{extra[:registry.MAX_REPORTED]}; only in the model: {missing[:registry.MAX_REPORTED]}.{hint}"
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
            adaptable = index == 0 and registry.can_adapt(dataset.shape, variable.shape)
            if tuple(dataset.shape) != tuple(variable.shape) and not (adapt_input_channels and adaptable):
                mismatched.append(
                    f"{what}: shape {tuple(dataset.shape)} in the file, "
                    f"{tuple(variable.shape)} in the model" + (registry.ADAPT_HINT if adaptable else "")
                )
                continue
            try:
                registry.check_dtype(dataset.dtype)  # before reading: refused data is never read
                if unwritten(dataset):
                    raise registry.UnusableValue(
                        f"dataset {dataset.name} was created but never written (no data stored)"
                    )
                value = registry.as_float32(dataset[()])
                if adapt_input_channels and adaptable:
                    value = registry.adapt_stem_kernel(value, variable.shape[registry.INPUT_AXIS])
                plan.append((variable, registry.as_variable_dtype(value, variable.dtype)))
            except registry.UnusableValue as problem:
                unusable.append(f"{what}: {problem}")
    registry.refuse(where, model.name, unusable, mismatched)
    return plan


# --------------------------------------------------------------------------
# Bounds on an HDF5 file's structure, checked before any data is read.
#
# A weights file is small and plain: a few levels of groups, float arrays
# stored as they are or gzip-compressed, and lists of names. Links, external
# or virtual storage, filters that need plugins, "bombs" (a declared size, or
# a compressed chunk, far larger than what the file stores), name lists that
# repeat or exceed a budget, and datasets that were never written are
# refused, so a hostile file costs bounded time and memory.
#
# Variable-length string attributes (Keras 3's full-model name lists) are
# references into a global heap that HDF5 materializes entry by entry (20,000
# entries naming one 100 KB string: 2 GB from a 0.9 MB file), so their
# lengths are read from the object header first (`string_lengths`).

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
# The `layer_names` and `weight_names` lists of a whole file: ResNet152's
# hold ~1,500 names in ~50 KB. Each list's size is known before it is read;
# a file may hold at most MAX_NAMES names, MAX_NAME_BYTES long each, in
# MAX_NAME_LIST_BYTES in all (as stored: fixed-length strings, as Keras writes).
MAX_NAMES = MAX_OBJECTS
MAX_NAME_BYTES = 1024
MAX_NAME_LIST_BYTES = 4 << 20
# Keras splits a list above 64 KB into name0, name1, ...: 64 parts hold the budget.
MAX_NAME_PARTS = 256


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
        problems.append(f"unsupported compression filter {sorted(filters - SAFE_FILTERS)} at /{name}")
    itemsize = obj.dtype.itemsize
    declared = int(np.prod(obj.shape or (), dtype=np.float64) * itemsize)
    stored = obj.id.get_storage_size()
    if declared > MAX_DATASET_BYTES or (declared > BOMB_MIN_BYTES and declared > BOMB_RATIO * stored):
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
            deep = f"groups nested more than {MAX_DEPTH} deep"
            problems.append(f"more than {MAX_OBJECTS:,} objects" if count > MAX_OBJECTS else deep)
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


class NameBudget:
    """What the name lists of one file may still hold; charged before each list is read."""

    def __init__(self, where, file: BinaryIO):
        self.where, self.file = where, file
        self.names, self.nbytes = MAX_NAMES, MAX_NAME_LIST_BYTES

    def charge(self, label: str, count: int, nbytes: int = 0, longest: int = 0) -> None:
        if longest > MAX_NAME_BYTES:
            raise format_error(
                self.where, f"{label} holds names of {longest:,} bytes (at most {MAX_NAME_BYTES:,})"
            )
        self.names -= count
        self.nbytes -= nbytes
        if self.names < 0 or self.nbytes < 0:
            raise format_error(
                self.where,
                f"its name lists exceed {MAX_NAMES:,} names or {MAX_NAME_LIST_BYTES:,} bytes "
                f"(at {label})",
            )


def _name_parts(group, name: str, where) -> list[str]:
    """`name`, or the parts name0, name1, ... Keras splits a long list into."""
    if name in group.attrs:
        return [name]
    parts = []
    while f"{name}{len(parts)}" in group.attrs and len(parts) <= MAX_NAME_PARTS:
        parts.append(f"{name}{len(parts)}")
    if len(parts) > MAX_NAME_PARTS:
        raise format_error(
            where, f"attribute {name!r} of {group.name} is split into more than {MAX_NAME_PARTS} parts"
        )
    return parts


def read_names(group, name: str, budget: NameBudget) -> list[str]:
    """The list-of-names attribute `name` of `group`, bounded, checked and without repeats."""
    import h5py

    label = f"attribute {name!r} of {group.name}"
    parts = _name_parts(group, name, budget.where)
    attrs = {part: group.attrs.get_id(part) for part in parts}  # shape and dtype: no data read
    stored_elsewhere = {}  # variable-length strings (Keras 3's full-model files) live in a heap
    for part, attr in attrs.items():
        vlen = attr.dtype.kind == "O" and h5py.check_string_dtype(attr.dtype) is not None
        if attr.shape == (0,):  # Keras writes an empty list as np.asarray([]): float64
            continue
        if attr.shape is None or len(attr.shape) != 1 or not (vlen or attr.dtype.kind == "S"):
            raise format_error(budget.where, f"{label} is not a list of names")
        budget.charge(label, attr.shape[0])
        if vlen:
            stored_elsewhere[part] = attr.shape[0]
        else:
            itemsize = attr.dtype.itemsize
            budget.charge(label, 0, attr.shape[0] * itemsize, itemsize)
    if stored_elsewhere:
        try:
            lengths = string_lengths(budget.file, group, stored_elsewhere)
        except Unbounded as reason:
            raise format_error(
                budget.where, f"{label} holds variable-length strings stored with {reason}"
            ) from None
        for part_lengths in lengths.values():
            budget.charge(label, 0, sum(part_lengths), max(part_lengths, default=0))
    arrays = [group.attrs[part] for part in parts if attrs[part].shape != (0,)]
    if len({array.dtype.kind for array in arrays}) > 1:
        raise format_error(budget.where, f"{label} mixes fixed- and variable-length strings")
    names = np.concatenate(arrays) if arrays else np.array([], "S1")
    # Repeats are refused before the names become Python strings: no work per repeat.
    unique, counts = np.unique(names, return_counts=True)
    if len(unique) != len(names):
        repeated = _decoded(unique[counts > 1][0], label, budget.where)
        raise format_error(
            budget.where, f"{label} lists {repeated[:100]!r} more than once ({len(names):,} names)"
        )
    return [_decoded(raw, label, budget.where) for raw in names]


def _decoded(raw, label: str, where) -> str:
    try:
        return raw if isinstance(raw, str) else bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise format_error(where, f"{label} is not UTF-8 text") from None


def unwritten(dataset) -> bool:
    """True for a dataset created but not (fully) written: h5py would read its fill value."""
    import h5py

    if dataset.shape is None or dataset.size == 0:
        return False
    return dataset.id.get_space_status() != h5py.h5d.SPACE_STATUS_ALLOCATED


# --------------------------------------------------------------------------
# Lengths of variable-length string attributes, read before HDF5 reads the strings.
# Only the layout h5py and Keras write is read (8-byte addresses, base address 0,
# object header version 1 or 2, the attribute in the header, not shared); anything
# else raises Unbounded. The entry count and datatype class are cross-checked with
# what HDF5 reports, so a decoy message cannot stand in for the attribute HDF5 reads.

_ATTRIBUTE = 0x000C
_CONTINUATION = 0x0010
_VLEN_CLASS = 9
_RECORD = struct.Struct("<IQI")  # sequence length, heap collection address, object index
MAX_HEADER_BYTES = 16 << 20  # all chunks of one object header
MAX_HEADER_CHUNKS = 1024


class Unbounded(ValueError):
    """The attribute is not stored in a layout whose lengths can be read here."""


def _read(file: BinaryIO, at: int, size: int) -> bytes:
    file.seek(at)
    data = file.read(size)
    if len(data) != size:
        raise Unbounded("its object header lies beyond the end of the file")
    return data


def _base_address(file: BinaryIO) -> int:
    version = _read(file, 8, 1)[0]
    at = {0: 24, 1: 28, 2: 12, 3: 12}.get(version)
    if at is None:
        raise Unbounded(f"superblock version {version}")
    return struct.unpack("<Q", _read(file, at, 8))[0]


def _chunk_messages(chunk: bytes, step: int, layout: struct.Struct):
    at = 0
    while at + step <= len(chunk):
        kind, length, flags = layout.unpack_from(chunk, at)
        yield kind, flags, chunk[at + step:at + step + length]
        at += step + length


def _messages(file: BinaryIO, address: int):
    """(type, flags, body) of every message of an object header, version 1 or 2 ("OHDR")."""
    head = _read(file, address, 6)
    if head[:4] == b"OHDR" and head[4] == 2:
        flags = head[5]
        at = address + 6 + (16 if flags & 0x20 else 0) + (4 if flags & 0x10 else 0)
        width = 1 << (flags & 0x03)
        size = int.from_bytes(_read(file, at, width), "little")
        step, layout = (6 if flags & 0x04 else 4), struct.Struct("<BHB")
        chunks = [(at + width, size, b"")]
    elif head[0] == 1:
        size = struct.unpack_from("<I", _read(file, address + 8, 4))[0]
        step, layout = 8, struct.Struct("<HHB")
        chunks = [(address + 16, size, None)]
    else:
        raise Unbounded("an object header of an unknown version")
    total = visited = 0
    while chunks:
        start, size, signature = chunks.pop(0)
        total, visited = total + size, visited + 1
        if total > MAX_HEADER_BYTES or visited > MAX_HEADER_CHUNKS:
            raise Unbounded("an object header that is too large")
        chunk = _read(file, start, size)
        if signature:  # a version 2 continuation chunk: "OCHK", messages, checksum
            if chunk[:4] != signature:
                raise Unbounded("a damaged object header chunk")
            chunk = chunk[4:-4]
        for kind, flags, body in _chunk_messages(chunk, step, layout):
            if kind == _CONTINUATION:
                offset, length = struct.unpack_from("<QQ", body)
                chunks.append((offset, length, None if signature is None else b"OCHK"))
            yield kind, flags, body


def _padded(size: int, version: int) -> int:
    return (size + 7) & ~7 if version == 1 else size


def _attribute(body: bytes, counts: dict[str, int]):
    """(name, records) of an attribute message if it is one of `counts`, else None."""
    version, flags, name_size, type_size, space_size = struct.unpack_from("<BBHHH", body)
    if version not in (1, 2, 3):
        return None  # not one HDF5 could read as ours either
    at = 8 + (1 if version == 3 else 0)
    name = body[at:at + name_size].removesuffix(b"\0").decode("utf-8", "replace")
    if name not in counts:
        return None
    count = counts[name]
    if version > 1 and flags:
        raise Unbounded("a shared datatype or dataspace")
    at += _padded(name_size, version)
    if body[at] & 0x0F != _VLEN_CLASS:
        raise Unbounded("a datatype that is not variable-length")
    at += _padded(type_size, version)
    space_version, rank = body[at], body[at + 1]
    dims_at = at + (8 if space_version == 1 else 4)
    if rank != 1 or struct.unpack_from("<Q", body, dims_at)[0] != count:
        raise Unbounded("a dataspace other than the one HDF5 reports")
    at += _padded(space_size, version)
    if len(body) - at < count * _RECORD.size:
        raise Unbounded("data shorter than its entries")
    return name, [_RECORD.unpack_from(body, at + i * _RECORD.size) for i in range(count)]


def string_lengths(file: BinaryIO, obj, counts: dict[str, int]) -> dict[str, list[int]]:
    """Lengths of the strings of each vlen attribute of `obj` named in `counts` (name: entries).

    Raises Unbounded where they cannot be read, and where two entries refer
    to one stored string: reading them would copy it once per entry.
    """
    try:
        return _string_lengths(file, obj, counts)
    except Unbounded:
        raise
    except (struct.error, IndexError, OverflowError, OSError, ValueError) as error:
        # a message or chunk cut short, an offset past what a file can seek to
        raise Unbounded(f"a damaged object header ({type(error).__name__})") from error


def _string_lengths(file: BinaryIO, obj, counts: dict[str, int]) -> dict[str, list[int]]:
    import h5py

    if obj.file.id.get_create_plist().get_sizes() != (8, 8):
        raise Unbounded("addresses that are not 8 bytes")
    if _base_address(file) != 0:
        raise Unbounded("a base address other than 0")
    found: dict[str, list] = {}
    for kind, flags, body in _messages(file, h5py.h5o.get_info(obj.id).addr):
        attribute = _attribute(body, counts) if kind == _ATTRIBUTE and len(body) >= 8 else None
        if attribute is None:
            continue
        name, records = attribute
        if flags & 0x02 or name in found:
            raise Unbounded("a shared or repeated attribute message")
        found[name] = records
    if set(found) != set(counts):
        raise Unbounded("a place outside its object header")
    references = [(heap, index) for records in found.values() for _, heap, index in records]
    if len(set(references)) != len(references):
        raise Unbounded("entries that refer to one stored string")
    return {name: [length for length, _, _ in records] for name, records in found.items()}
