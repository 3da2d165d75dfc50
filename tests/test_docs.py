"""Every fenced block of README.md and docs/*.md runs here, so the docs cannot drift from the code.

The pages are parsed at test time (tests/markdown_docs.py). Each fenced
block is one test, named by its page and line:

- ```python blocks run in this process (Keras is loaded anyway), in a
  scratch folder that holds the sample photos; names a snippet uses without
  defining (`images`, `x`, `train_ds`, ...) come from `GIVEN`. Pretrained
  weights come from a user manifest on a loopback mirror that serves files
  in the official format (random weights), as in tests/test_example.py.
- Command blocks (```bash, or plain ``` with `resnet-keras ...` lines) run
  through `resnet_keras.cli.main`. A list of commands runs with the same
  mirrored weights (the weights commands: with every shipped file on the
  mirror) and must succeed. A `$ ` transcript runs with the shipped manifest
  and must print what the page shows, up to what depends on random weights
  (labels and scores of `classify`, the error of `export`) and on where the
  cache is.
- The ```json block is the mirror manifest example: merged over the shipped
  manifest, it must leave `ResNet50()` its `top` file.

A block that cannot run here says why, on the line before its fence:
`<!-- readme-test: skip (reason) -->`; a heavy one is marked
`<!-- readme-test: slow -->` and runs in the slow suite. A new block without
a marker runs, so a snippet that does not work fails this test.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import official_format
from markdown_docs import REPO, Block, all_blocks, commands, is_transcript, kind
from resnet_keras import cli

# Where the transcripts' outputs were captured: root's default keras cache.
README_CACHE = "/root/.keras/models"
# Models whose pretrained weights the snippets and commands load.
MIRRORED = ("resnet50", "resnet50v2")
BLOCKS = all_blocks()


def params(wanted: str):
    out = []
    for block in BLOCKS:
        if block.marker == "skip" or kind(block) != wanted:
            continue
        marks = [pytest.mark.slow] if block.marker == "slow" else []
        out.append(pytest.param(block, id=block.id, marks=marks))
    return out


# --------------------------------------------------------------------------
# The inventory: nothing is left out silently


def test_the_docs_have_the_blocks_we_know_of():
    kinds = [kind(b) for b in BLOCKS]
    assert kinds.count("python") >= 8 and kinds.count("commands") >= 3 and "manifest" in kinds
    assert {b.doc for b in BLOCKS} >= {"README.md", "docs/weights.md", "docs/inference.md", "docs/backends.md"}


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_every_block_runs_or_says_why_not(block):
    if block.marker == "skip":
        assert block.reason, f"{block.where}: a skip marker needs a reason: (...)"
        return
    assert kind(block) != "unknown", (
        f"{block.where}: no runner for this block; make it a python, json or command "
        "block, or put `<!-- readme-test: skip (reason) -->` on the line before the fence"
    )


# --------------------------------------------------------------------------
# Fixtures: a scratch folder, official-format weights on a loopback mirror


@pytest.fixture
def workdir(tmp_path, monkeypatch, isolated_env, restore_keras_globals):
    """A scratch folder with examples/ (the sample photos) as the cwd."""
    (tmp_path / "work").mkdir()
    work = tmp_path / "work"
    (work / "examples").symlink_to(REPO / "examples", target_is_directory=True)
    monkeypatch.chdir(work)
    return work


@pytest.fixture
def mirrored_weights(official_file, mirror, tmp_path, monkeypatch):
    """RESNET_KERAS_MANIFEST: resnet50 and resnet50v2 'imagenet' files on the mirror."""
    models = {}
    for model in MIRRORED:
        files = {}
        for kind_, include_top in (("top", True), ("notop", False)):
            path = official_file(model, include_top)
            url = mirror.add(path.name, path.read_bytes())
            files[kind_] = {"file_name": path.name, "urls": [url], "hash": "md5:" + official_format.md5(path)}
        models[model] = {"imagenet": {"files": files}}
    manifest = tmp_path / "mirror.json"
    manifest.write_text(json.dumps({"schema_version": 1, "models": models}))
    monkeypatch.setenv("RESNET_KERAS_MANIFEST", str(manifest))
    return mirror


# --------------------------------------------------------------------------
# Python blocks


def photos(size: int, layout: str = "nhwc") -> np.ndarray:
    """The sample photos as a float32 batch of RGB pixels in [0, 255]."""
    paths = sorted((REPO / "examples" / "images").glob("*.jpg"))
    x = np.stack([keras.utils.img_to_array(keras.utils.load_img(p, target_size=(size, size))) for p in paths])
    return np.transpose(x, (0, 3, 1, 2)) if layout == "nchw" else x


def tiny_dataset():
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices((photos(224)[:2], np.array([0, 3]))).batch(2)


# What the snippets take from the text around them. Each is made only when
# a snippet uses the name without defining it.
GIVEN = {
    "images": lambda: photos(64),
    "pixels": lambda: photos(224),
    "images_nchw": lambda: photos(224, "nchw"),
    "x": lambda: keras.applications.resnet.preprocess_input(photos(224)),
    "train_ds": tiny_dataset,
    "keras": lambda: keras,
    "tf": lambda: __import__("tensorflow"),
    "ResNet50": lambda: __import__("resnet_keras").ResNet50,
    "preprocess_input": lambda: __import__("resnet_keras").resnet.preprocess_input,
}


def assigned_names(code: str) -> set[str]:
    import ast

    names = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def used_names(code: str) -> set[str]:
    import ast

    return {n.id for n in ast.walk(ast.parse(code)) if isinstance(n, ast.Name)}


def features_npz(workdir: Path, official_file) -> None:
    """features.npz as the docs' `features` command writes it."""
    (workdir / "resnet50_random_notop.h5").symlink_to(official_file("resnet50", False))
    command = next(c for b in BLOCKS for c, _ in commands(b) if c[:2] == ["resnet-keras", "features"])
    status, _, err = run_command(command, workdir)
    assert status == 0, err


@pytest.mark.parametrize("block", params("python"))
@pytest.mark.slow
def test_python_block_runs(block, workdir, mirrored_weights, official_file, capsys):
    code = block.text
    if "features.npz" in code:
        features_npz(workdir, official_file)
    if "os.dup2" in code:  # the quiet-import recipe: only a fresh process shows it works
        done = subprocess.run([sys.executable, "-c", code + "\nprint(keras.__name__)"], cwd=workdir,
                              capture_output=True, text=True, timeout=300,
                              env={k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"})
        assert done.returncode == 0 and done.stdout == "keras\n", done.stderr
        assert done.stderr == "", f"TensorFlow still printed:\n{done.stderr}"
        return
    namespace = {"__name__": "__readme__"}
    for name in sorted((used_names(code) - assigned_names(code)) & set(GIVEN)):
        namespace[name] = GIVEN[name]()
    exec(compile(code, f"{block.doc}:{block.line}", "exec"), namespace)  # noqa: S102 - our own docs
    if "decode_predictions" in code:
        printed = capsys.readouterr().out
        assert re.search(r"\('n\d{8}', '\w+', ", printed), printed  # a list of (wordnet id, name, score)


# --------------------------------------------------------------------------
# Command blocks


def run_command(command: list[str], cwd: Path) -> tuple[int, str, str]:
    """Run `[VAR=value ...] resnet-keras ARGS` through cli.main; (status, stdout, stderr)."""
    env = {}
    while command and re.match(r"^[A-Z_]+=", command[0]):
        name, value = command[0].split("=", 1)
        env[name] = value
        command = command[1:]
    if command[:3] == ["python", "-m", "resnet_keras"]:
        command = ["resnet-keras", *command[3:]]
    assert command[0] == "resnet-keras", f"not a resnet-keras command: {command}"
    argv = []
    for arg in command[1:]:
        matches = sorted(glob.glob(arg, root_dir=cwd)) if any(c in arg for c in "*?[") else []
        argv.extend(matches or [arg])
    out, err = _Capture(), _Capture()
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                status = cli.main(argv)
            except SystemExit as exit_:
                status = exit_.code
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return status, out.getvalue(), err.getvalue()


class _Capture:
    def __init__(self):
        self.parts = []

    def write(self, text):
        self.parts.append(text)
        return len(text)

    def flush(self):
        pass

    def isatty(self):
        return False

    def getvalue(self):
        return "".join(self.parts)


def normalize(lines: list[str], cache: Path) -> list[str]:
    """What a transcript promises, less random-weight numbers and the cache's place."""
    result = []
    for line in filter(str.strip, lines):  # blank lines (a progress bar's last \r) aside
        line = line.replace(str(cache), README_CACHE).rstrip()
        line = re.sub(r"^(  \d+\. )\S+\s+\d\.\d{4}$", r"\1LABEL SCORE", line)  # classify, random weights
        line = re.sub(r"outputs within \S+ of Keras", "outputs within ERROR of Keras", line)
        result.append(line)
    return result


@pytest.mark.parametrize("block", params("commands"))
@pytest.mark.slow
def test_command_block_runs_and_prints_what_the_page_shows(
    block, workdir, official_file, mirror, isolated_env, tmp_path, monkeypatch, request
):
    (workdir / "resnet50_random.h5").symlink_to(official_file("resnet50", True))
    (workdir / "resnet50_random_notop.h5").symlink_to(official_file("resnet50", False))
    fetches = [argv for argv, _ in commands(block) if argv[1:2] == ["fetch"]]
    if fetches:  # the weights commands download: every shipped file, small, on the mirror
        monkeypatch.setenv("RESNET_KERAS_MANIFEST", str(mirror_of_the_shipped_manifest(mirror, tmp_path)))
    elif not is_transcript(block):  # default weights, as a user gets them (a transcript prints the shipped URLs)
        request.getfixturevalue("mirrored_weights")
    for argv, expected in commands(block):
        status, out, err = run_command(argv, workdir)
        shown = " ".join(argv)
        if expected is None:
            assert status == 0, f"$ {shown}\n{out}{err}"
            continue
        actual = [line for line in (out + err).splitlines()
                  if not re.match(r"^resnet-keras: warning: |^\S+ features: +\d+%", line)]
        assert normalize(actual, isolated_env) == normalize(expected, isolated_env), f"$ {shown}"
        assert status == (1 if any(line.startswith("resnet-keras: error:") for line in expected) else 0)


def mirror_of_the_shipped_manifest(mirror, tmp_path) -> Path:
    """The shipped entries with every file replaced by small bytes on the mirror."""
    from resnet_keras.weights.manifest import shipped_manifest

    models = {}
    for entry in (e for m in shipped_manifest().models() for e in shipped_manifest().entries[m].values()):
        files = {}
        for kind_, wfile in entry.files.items():
            data = f"stand-in for {wfile.file_name}".encode()
            url = mirror.add(f"mirror-{wfile.file_name}", data)
            files[kind_] = {"file_name": f"mirror-{wfile.file_name}", "urls": [url],
                            "hash": "md5:" + __import__("hashlib").md5(data).hexdigest()}
        models.setdefault(entry.model, {})[entry.tag] = {"files": files}
    path = tmp_path / "shipped-on-mirror.json"
    path.write_text(json.dumps({"schema_version": 1, "models": models}))
    return path


# --------------------------------------------------------------------------
# The mirror manifest example


@pytest.mark.parametrize("block", params("manifest"))
def test_manifest_example_keeps_the_quick_start_working(block, tmp_path, isolated_env):
    from resnet_keras.architecture.specs import SPECS
    from resnet_keras.architecture.build import active_manifest, resolve

    example = json.loads(block.text)
    path = tmp_path / "mirror.json"
    path.write_text(block.text)
    merged, shipped = active_manifest(path), active_manifest()
    for model, tags in example["models"].items():
        for tag, entry in tags.items():
            listed = set(entry["files"])
            for kind_ in ("top", "notop"):
                got = merged.entry(model, tag).files[kind_]
                if kind_ in listed:
                    assert list(got.urls) == entry["files"][kind_]["urls"]  # the mirror first
                else:
                    assert got == shipped.entry(model, tag).files[kind_]  # the shipped file stays
    # ResNet50() (include_top=True, weights="imagenet") still finds its file
    source = resolve(SPECS["resnet50"], "imagenet", include_top=True, manifest=path)
    assert source.file == shipped.entry("resnet50", "imagenet").file(True)
    notop = resolve(SPECS["resnet50"], "imagenet", include_top=False, manifest=path)
    assert notop.file.urls[0].startswith("https://mirror.example.com/")
