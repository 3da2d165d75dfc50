"""Model subcommands: list, info (keras-free: they read the catalog and the manifest)."""

from __future__ import annotations

import argparse

from .common import active_manifest, add_manifest_option
from .output import print_table
from .registry import EXIT_OK, command
from ..architecture import counts
from ..architecture.catalog import ENTRIES, PREPROCESSING_TEXT, list_models
from ..architecture.specs import model_key
from ..architecture.specs import SPECS
from ..errors import InvalidArgumentError

_BLOCK_TEXT = {
    "bottleneck": "bottleneck (V1, post-activation)",
    "bottleneck_v1.5": "bottleneck (v1.5: stride on the 3x3 conv, post-activation)",
    "preact_bottleneck": "pre-activation bottleneck (V2)",
    "basic": "basic (two 3x3 convs)",
    "plain": "plain (basic block without shortcut)",
}


def _configure_list(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "pattern", nargs="?", default="*", metavar="PATTERN",
        help="fnmatch pattern such as 'resnet*v2'; a word without *?[ matches as a "
        "substring, e.g. 'plain' (default: all models)",
    )
    parser.add_argument(
        "--pretrained", action="store_true",
        help="only models with weights in the manifest (shipped + RESNET_KERAS_MANIFEST)",
    )
    parser.add_argument(
        "--counts", action="store_true",
        help="add parameter and multiply-add counts (as `info` shows them)",
    )
    add_manifest_option(parser)


@command("list", help="table of the registered models", configure=_configure_list)
def run_list(args: argparse.Namespace) -> int:
    pattern = args.pattern if any(c in args.pattern for c in "*?[") else f"*{args.pattern}*"
    names = list_models(pattern)
    manifest = active_manifest(args)
    if args.pretrained:  # with --manifest too
        names = [name for name in names if manifest.tags(name)]
    if not names:
        raise InvalidArgumentError(
            f"PATTERN must match a registered model. Received: PATTERN={args.pattern!r}"
            f"{' with --pretrained' if args.pretrained else ''}. "
            "Run `resnet-keras list` to see them all."
        )
    header = ["MODEL", "BUILDER", "BLOCK", "DEPTHS", "INPUT", "CLASSES", "PREPROCESSING"]
    if args.counts:
        header += ["PARAMS", "MACS"]
    rows = [header + ["WEIGHTS"]]
    for name in names:
        spec = SPECS[name]
        row = [
            name,
            ENTRIES[name].builder,
            spec.block_name,
            "-".join(map(str, spec.depths)),
            f"{spec.default_size}x{spec.default_size}",
            str(spec.classes),
            spec.preprocessing or "-",
        ]
        if args.counts:
            counted = counts.of(name)
            row += [f"{counted.params:,}", counts.format_macs(counted.macs)]
        rows.append(row + [", ".join(manifest.tags(name)) or "-"])
    print_table(rows)
    return EXIT_OK


def _configure_info(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="a registered model, e.g. resnet50")
    add_manifest_option(parser)


@command(
    "info",
    help="one model: architecture, parameters, MACs, input, preprocessing, weights",
    configure=_configure_info,
)
def run_info(args: argparse.Namespace) -> int:
    key = model_key(args.model)
    spec, listed, counted = SPECS[key], ENTRIES[key], counts.of(key)
    size = f"{spec.default_size}x{spec.default_size}"
    shortcut = {"A": "A (zero-padded identity)", "B": "B (1x1 projection)"}[spec.shortcut]
    rows = [
        ("model", f"{key} (resnet_keras.{listed.builder}, from resnet_keras.{listed.module})"),
        ("blocks", f"{_BLOCK_TEXT[spec.block_name]}, shortcut option {shortcut}"),
        ("stages", f"depths {'-'.join(map(str, spec.depths))}, widths "
                   f"{'-'.join(map(str, spec.widths))}, {spec.num_layers} weighted layers"),
        ("parameters", f"{counted.params:,} with the top ({counted.trainable_params:,} trainable)"),
        ("MACs", f"{counts.format_macs(counted.macs)} per image at {size}"),
        ("input", f"{size}x3 RGB (any size >= {spec.min_size} without the top)"),
        ("preprocessing", PREPROCESSING_TEXT[spec.preprocessing]),
        ("classes", str(spec.classes)),
    ]
    from ..weights.download import cache

    manifest = active_manifest(args)
    folder = cache.cache_dir()
    tags = manifest.tags(key)
    if not tags:
        rows.append(("weights", "none (random initialization only; --weights PATH loads an .h5 file)"))
    for tag in tags:
        entry = manifest.entry(key, tag)
        metrics = ", ".join(f"{k} {v}" for k, v in entry.metrics.items())
        about = f"{tag}{' (default)' if entry.default else ''}: source {entry.source or '-'}"
        rows.append(("weights", about + (f"; {metrics}" if metrics else "")))
        for kind, wfile in entry.files.items():
            state = cache.cache_state(wfile, folder)
            rows.append(("", f"  {kind:5} {wfile.file_name} ({state})"))
    print_table(rows)
    return EXIT_OK
