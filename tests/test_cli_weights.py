"""`resnet-keras fetch / verify / weights`: exit codes, one-line errors, cache states."""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cache_checks import assert_clean_cache, entry, fast_network, md5, payload, user_manifest  # noqa: F401
from cli_runs import run
from http_mirror import Reply
from resnet_keras import cli
from resnet_keras.cli import registry

pytestmark = pytest.mark.usefixtures("fast_network")

REPO = Path(__file__).resolve().parents[1]
TOP, NOTOP = payload(3000, seed=1), payload(2000, seed=2)


@pytest.fixture
def catalog(mirror, tmp_path, monkeypatch):
    """A user manifest with resnet50 'imagenet' (top + notop) and 'extra' (notop) on the mirror."""
    top_url, notop_url = mirror.add("top.h5", TOP), mirror.add("notop.h5", NOTOP)
    path = user_manifest(tmp_path / "m.json", {
        "resnet50": {
            "imagenet": entry({"top": ("top.h5", [top_url], md5(TOP), 123), "notop": ("notop.h5", [notop_url], md5(NOTOP))}),
            "extra": entry({"notop": ("extra.h5", [mirror.add("extra.h5", NOTOP + b"x")], md5(NOTOP + b"x"))}),
        },
    })
    monkeypatch.setenv("RESNET_KERAS_MANIFEST", str(path))
    return path



def test_fetch_defaults_to_the_file_with_the_head(catalog, capsys, isolated_env):
    status, out, err = run(capsys, "fetch", "resnet50", "--quiet")
    assert status == 0 and err == ""
    assert f"resnet50 weights 'imagenet' (top): {isolated_env / 'top.h5'}" in out
    assert_clean_cache(isolated_env, {"top.h5": TOP})


def test_fetch_both_notop_and_tag(catalog, capsys, isolated_env, mirror):
    assert run(capsys, "fetch", "resnet50", "--both", "--quiet")[0] == 0
    assert run(capsys, "fetch", "resnet50", "--notop", "--quiet")[0] == 0  # cached: no new request
    assert run(capsys, "fetch", "resnet50", "--tag", "extra", "--notop", "--quiet")[0] == 0
    assert mirror.count("notop.h5") == 1
    assert_clean_cache(isolated_env, {"top.h5": TOP, "notop.h5": NOTOP, "extra.h5": NOTOP + b"x"})


def test_fetch_all_with_a_tag_only_takes_models_that_have_it(catalog, capsys, isolated_env, mirror):
    status, out, _ = run(capsys, "fetch", "--all", "--tag", "extra", "--both", "--quiet")
    assert status == 0 and out.count("\n") == 1
    assert mirror.requests == ["/extra.h5"]


def test_fetch_force_downloads_again(catalog, capsys, isolated_env, mirror):
    run(capsys, "fetch", "resnet50", "--quiet")
    assert run(capsys, "fetch", "resnet50", "--quiet", "--force")[0] == 0
    assert mirror.count("top.h5") == 2


@pytest.mark.parametrize("argv, phrase", [
    (["fetch", "resnet5"], "Did you mean 'resnet50'?"),
    (["fetch", "resnet50", "--tag", "imagenett"], "Did you mean 'imagenet'?"),
    (["fetch", "resnet50", "--tag", "extra", "--top"], "have no file for include_top=True"),
    (["fetch"], "fetch needs model names or --all"),
    (["fetch", "resnet50", "--all"], "fetch needs model names or --all"),
    (["fetch", "--all", "--tag", "nothing"], "No model of the manifest has weights tagged 'nothing'"),
])
def test_fetch_errors_are_one_line_and_exit_1(catalog, capsys, isolated_env, mirror, argv, phrase):
    status, out, err = run(capsys, *argv, "--quiet")
    assert status == 1 and out == ""
    assert err.startswith("resnet-keras: error: ") and err.count("\n") == 1 and phrase in err
    assert mirror.requests == [] and not isolated_env.exists()


def test_fetch_download_failure_is_one_line_per_file(catalog, capsys, isolated_env, mirror):
    mirror.script("top.h5", [Reply(404)])
    status, out, err = run(capsys, "fetch", "resnet50", "--both", "--quiet")
    assert status == 1
    assert err.count("\n") == 1 and "top.h5" in err and "HTTP 404" in err
    assert "notop.h5" in out
    assert_clean_cache(isolated_env, {"notop.h5": NOTOP})


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["fetch", "resnet50", "--top", "--notop"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        cli.main([])
    assert info.value.code == 2


def test_verify_ok_then_corrupt(catalog, capsys, isolated_env):
    run(capsys, "fetch", "resnet50", "--both", "--quiet")
    status, out, err = run(capsys, "verify")
    assert status == 0 and "2 verified, 0 bad" in out and err == ""
    (isolated_env / "notop.h5").write_bytes(NOTOP[:-1])
    stale = isolated_env / ".top.h5.00000000-1-x.part"
    stale.write_bytes(b"")
    os.utime(stale, (0, 0))
    status, out, err = run(capsys, "verify")
    assert status == 1
    assert f"CORRUPT    {isolated_env / 'notop.h5'}" in out and "1 verified, 1 bad" in out
    assert f"STALE      {stale}" in out
    assert err.startswith("resnet-keras: error: ") and err.count("\n") == 1
    assert (isolated_env / "notop.h5").read_bytes() == NOTOP[:-1]  # verify only reports


def test_verify_with_an_empty_cache(catalog, capsys, isolated_env):
    status, out, _ = run(capsys, "verify")
    assert status == 0 and "0 verified, 0 bad" in out and not isolated_env.exists()


def test_weights_table_shows_cached_missing_corrupt(catalog, capsys, isolated_env):
    run(capsys, "fetch", "resnet50", "--quiet")
    isolated_env.joinpath("notop.h5").write_bytes(b"junk")
    status, out, _ = run(capsys, "weights")
    assert status == 0
    lines = {tuple(line.split()[:3]): line.split() for line in out.splitlines()}
    # merged per file over the shipped entry, which stays the default tag (*)
    assert lines[("resnet50", "imagenet*", "top")][3:5] == ["123", "cached"]
    assert lines[("resnet50", "imagenet*", "notop")][3:5] == ["-", "corrupt"]
    assert lines[("resnet50", "extra", "notop")][4] == "missing"
    assert lines[("resnet101", "imagenet*", "top")][3:5] == ["44,707,176", "missing"]
    assert f"cache: {isolated_env}" in out


def test_manifest_option(tmp_path, capsys, mirror, isolated_env):
    # manifest keys are models of the zoo: own weights for resnet18, a new tag
    path = user_manifest(tmp_path / "own.json", {"resnet18": {"v1": entry({"top": ("mine.h5", [mirror.add("mine.h5", TOP)], md5(TOP))}, default=True)}})
    status, out, err = run(capsys, "fetch", "resnet18", "--manifest", str(path), "--quiet")
    assert status == 0 and "resnet18 weights 'v1' (top)" in out, err
    status, out, _ = run(capsys, "info", "resnet18", "--manifest", str(path))
    assert status == 0 and "v1 (default)" in out and "mine.h5 (cached)" in out
    status, out, _ = run(capsys, "list", "resnet1*", "--pretrained", "--manifest", str(path))
    assert status == 0 and [line.split()[0] for line in out.splitlines()[1:]] == [
        "resnet18", "resnet101", "resnet101_v1_5", "resnet101v2", "resnet152", "resnet152_v1_5", "resnet152v2"]
    assert out.splitlines()[1].split()[-1] == "v1"


def test_subcommands_are_registered_and_duplicates_refused():
    assert {"fetch", "verify", "weights"} <= set(registry.COMMANDS)
    with pytest.raises(ValueError, match="registered twice"):
        registry.command("fetch", help="again")(lambda args: 0)


def test_console_script_is_declared():
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    assert "resnet-keras = resnet_keras.cli:main" in config["options.entry_points"]["console_scripts"]
    assert "filelock" in config["options"]["install_requires"]


def test_python_dash_m_runs_the_cli(catalog, isolated_env):
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-m", "resnet_keras", "fetch", "resnet5"], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    error_lines = [line for line in done.stderr.splitlines() if line.startswith("resnet-keras:")]
    assert len(error_lines) == 1 and "Did you mean 'resnet50'?" in error_lines[0]


# --------------------------------------------------------------------------
# weights convert: convert_checkpoint with flags


@pytest.mark.slow  # builds ResNet18 (224x224) and writes its 45 MB twice
@pytest.mark.parametrize("suffix, flags, head", [(".pth", [], "top"), (".pt", ["--notop"], "notop")])
def test_convert_writes_the_h5_and_says_its_hash_and_size(suffix, flags, head, tmp_path, capsys):
    import hashlib

    import numpy as np

    from optional import require

    torch = require("torch")
    import resnet_keras
    import torch_reference

    src = tmp_path / f"resnet18{suffix}"
    torch.save(torch_reference.randomized("resnet18").state_dict(), src)  # .pt is read as .pth is
    dst = tmp_path / "resnet18.h5"
    status, out, err = run(capsys, "weights", "convert", src, dst, "--model", "resnet18", *flags)
    assert status == 0 and err == "", err
    data = dst.read_bytes()
    assert out.splitlines() == [
        f"{dst}: sha256:{hashlib.sha256(data).hexdigest()}, {len(data):,} bytes (resnet18, {head})"]
    x = np.random.default_rng(0).uniform(-1, 1, (1, 64, 64, 3)).astype("float32")
    top = head == "top"
    converted = resnet_keras.ResNet18(weights=str(dst), include_top=top, input_shape=(64, 64, 3))
    direct = resnet_keras.ResNet18(weights=str(src), include_top=top, input_shape=(64, 64, 3))
    np.testing.assert_array_equal(converted.predict_on_batch(x), direct.predict_on_batch(x))
    status, out, err = run(capsys, "weights", "convert", src, dst, "--model", "resnet18", *flags)
    assert status == 1 and "DST exists already" in err and "Pass --overwrite" in err


CONVERT_REFUSALS = [
    (["no.pth", "o.h5", "--model", "resnet18"], "No such checkpoint: no.pth. SRC must be a torch checkpoint file"),
    (["{pkl}", "o.h5", "--model", "resnet18"], "is a pickle"),
    (["{pth}", "o.h5", "--model", "resnet50"], "`--model` must be a model in torchvision's layout"),
    (["{pth}", "o.h5", "--model", "resnt18"], "Did you mean 'resnet18'"),
    (["{pth}", "o.txt", "--model", "resnet18"], "DST must end in .h5"),
    (["{pth}", "{existing}", "--model", "resnet18"], "DST exists already. Received: DST="),
]


def test_convert_refusals_are_one_line_without_keras_and_write_nothing(tmp_path):
    (tmp_path / "a.pkl").write_bytes(b"\x80\x04K\x01.")
    (tmp_path / "a.pth").write_bytes(b"PK\x03\x04 not read")
    (tmp_path / "old.h5").write_bytes(b"keep")
    lines = [[a.format(pkl="a.pkl", pth="a.pth", existing="old.h5") for a in argv] for argv, _ in CONVERT_REFUSALS]
    probe = ("import json, sys\nfrom resnet_keras.cli import main\nfor argv in json.loads(sys.argv[1]):\n"
             "    print('STATUS', main(['weights', 'convert', *argv]))\nprint('KERAS', 'keras' in sys.modules)")
    import json

    done = subprocess.run([sys.executable, "-c", probe, json.dumps(lines)], capture_output=True, text=True,
                          cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=120)
    errors = [line for line in done.stderr.splitlines() if line.startswith("resnet-keras: error: ")]
    assert done.stdout.splitlines() == ["STATUS 1"] * len(lines) + ["KERAS False"], done.stderr
    for line, (_, phrase) in zip(errors, CONVERT_REFUSALS, strict=True):
        assert phrase in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pkl", "a.pth", "old.h5"]
    assert (tmp_path / "old.h5").read_bytes() == b"keep"


def test_convert_help_names_pt_beside_pth(capsys):
    with pytest.raises(SystemExit):
        cli.main(["weights", "convert", "--help"])
    out = capsys.readouterr().out
    assert ".pth" in out and ".pt" in out and ".safetensors" in out
