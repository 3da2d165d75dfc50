"""torchvision `.pth` and timm `.safetensors` checkpoints, the v1.5 layout, any input channels.

The torch side is `tests/torch_reference.py`, an independent torch.nn
ResNet held to torchvision's published keys and parameter counts here
(torchvision itself does not import next to this torch build). Outputs are
compared as max |keras - torch| / max |torch| on the logits, float32, and
printed as PARITY lines (`-rP` shows them).
"""

from __future__ import annotations

import io
import math
import pickle
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from optional import require

# torch comes with the test-slow extra (tests/conftest.py: NEEDS_SLOW_EXTRA)
pytestmark = pytest.mark.slow
torch = require("torch")
import torch_reference  # noqa: E402 (needs torch)
from cache_checks import build_tiny, sha256  # noqa: E402
from conftest import write_manifest  # noqa: E402

import resnet_keras  # noqa: E402
from resnet_keras.architecture import build  # noqa: E402
from resnet_keras.architecture.specs import SPECS  # noqa: E402
from resnet_keras.errors import (  # noqa: E402
    InvalidArgumentError,
    WeightsFormatError,
    WeightsMismatchError,
)
from resnet_keras.weights.formats import registry  # noqa: E402
from resnet_keras.weights.formats.torch_names import torchvision_key  # noqa: E402

BUILDERS = {
    "resnet18": resnet_keras.ResNet18,
    "resnet34": resnet_keras.ResNet34,
    "resnet50": resnet_keras.ResNet50V1_5,
    "resnet101": resnet_keras.ResNet101V1_5,
    "resnet152": resnet_keras.ResNet152V1_5,
}
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """checkpoints(name) -> (torch reference model, path of its saved state dict), made once."""
    folder = tmp_path_factory.mktemp("torch")
    made = {}

    def make(name: str):
        if name not in made:
            model = torch_reference.randomized(name, seed=len(made))
            path = folder / f"{name}.pth"
            torch.save(model.state_dict(), path)
            made[name] = model, path
        return made[name]

    return make


def relative_error(got, want) -> float:
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


def torch_logits(model, x_nchw: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x_nchw)).numpy()


def keras_outputs(model, x_nchw: np.ndarray) -> np.ndarray:
    return model.predict(x_nchw.transpose(0, 2, 3, 1), verbose=0)


def images(channels: int = 3, size: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(2, channels, size, size)).astype("float32")


def check_parity(name, torch_model, path, size, label="pth"):
    x = images(size=size)
    model = BUILDERS[name](weights=str(path), classifier_activation=None, input_shape=(size, size, 3))
    error = relative_error(keras_outputs(model, x), torch_logits(torch_model, x))
    print(f"PARITY {label} {name} at {size}x{size}: relative error {error:.3e}")
    assert error <= TOLERANCE
    return model


# --------------------------------------------------------------------------
# The reference is torchvision's layout


@pytest.mark.parametrize("name", list(BUILDERS))
@pytest.mark.slow
def test_reference_has_torchvisions_keys_and_parameter_counts(name):
    reference = torch_reference.ResNet(name)
    assert sum(p.numel() for p in reference.parameters()) == torch_reference.TORCHVISION_PARAMS[name]
    model = BUILDERS[name]()
    mapped = {
        torchvision_key(layer.name, weight.name): tuple(weight.shape)
        for layer in model.layers for weight in layer.weights
    }
    state = reference.state_dict()
    keys = {k for k in state if not k.endswith("num_batches_tracked")}
    assert set(mapped) == keys  # one to one
    for key, shape in mapped.items():
        assert math.prod(shape) == state[key].numel(), key
    trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
    assert trainable == torch_reference.TORCHVISION_PARAMS[name]


def test_v1_5_differs_from_keras_v1_only_where_the_stride_sits():
    v1, v1_5 = SPECS["resnet50"], SPECS["resnet50_v1_5"]
    assert (v1.stride_on, v1_5.stride_on) == ("first_1x1", "3x3")
    assert v1.bn_epsilon == 1.001e-5 and v1_5.bn_epsilon == 1e-5  # keras' / torch's default
    model = resnet_keras.ResNet50V1_5(input_shape=(64, 64, 3), include_top=False)
    strided = {layer.name: layer.strides for layer in model.layers if getattr(layer, "strides", (1, 1)) != (1, 1)}
    assert strided["conv3_block1_2_conv"] == (2, 2) and "conv3_block1_1_conv" not in strided
    assert "conv3_block1_2_pad" in {layer.name for layer in model.layers}


# --------------------------------------------------------------------------
# Parity with torch


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
@pytest.mark.slow
def test_pth_gives_torch_outputs(checkpoints, name):
    check_parity(name, *checkpoints(name), size=64)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(BUILDERS))
def test_pth_gives_torch_outputs_at_224(checkpoints, name):
    check_parity(name, *checkpoints(name), size=224)


@pytest.mark.slow  # two 224 px models (7 s); test_notop_drops_fc_and_gives_torch_features loads a .pth in the fast tier
def test_a_pt_file_loads_as_a_pth_does(checkpoints, tmp_path):
    """`.pt` is torch.save's other usual suffix: the same zip, read the same way."""
    torch_model, pth = checkpoints("resnet18")
    pt = tmp_path / "resnet18.pt"
    pt.write_bytes(pth.read_bytes())
    check_parity("resnet18", torch_model, pt, size=64, label="pt")
    with pytest.raises(FileNotFoundError, match="Weights file not found: no_such.pt"):
        resnet_keras.ResNet18(weights="no_such.pt")  # its suffix says "a file", not "a tag"


def test_a_legacy_pt_pickle_is_refused_by_its_bytes(checkpoints, tmp_path):
    """torch < 1.6 (or _use_new_zipfile_serialization=False) wrote a plain pickle: never unpickled."""
    marker = tmp_path / "marker"
    state = torch.load(checkpoints("resnet18")[1], weights_only=True)
    state["conv1.weight"] = _Evil(str(marker))
    path = tmp_path / "legacy.pt"
    torch.save(state, path, _use_new_zipfile_serialization=False)
    assert path.read_bytes()[:1] == b"\x80"  # a pickle, not a zip
    with pytest.raises(WeightsFormatError, match=r"pickle or NumPy file.*saved by torch < 1\.6") as info:
        resnet_keras.ResNet18(weights=str(path), include_top=False)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert not marker.exists()


@pytest.mark.slow
def test_timm_safetensors_resnet50_gives_torch_outputs(checkpoints, tmp_path):
    save_file = require("safetensors.torch").save_file
    torch_model, _ = checkpoints("resnet50")
    path = tmp_path / "model.safetensors"
    # timm publishes its state dict as is (BN counters included) in model.safetensors
    save_file({k: v.contiguous() for k, v in torch_model.state_dict().items()}, str(path))
    check_parity("resnet50", torch_model, path, size=64, label="safetensors (timm layout)")


def test_notop_drops_fc_and_gives_torch_features(checkpoints):
    torch_model, path = checkpoints("resnet18")
    x = images()
    model = resnet_keras.ResNet18(weights=str(path), include_top=False, pooling="avg")
    with torch.no_grad():
        want = torch_model.avgpool(torch_model.features(torch.from_numpy(x))).flatten(1).numpy()
    assert relative_error(keras_outputs(model, x), want) <= TOLERANCE


@pytest.mark.slow  # a 224 px model through the mirror (4.5 s)
def test_a_manifest_entry_can_point_at_a_pth(checkpoints, mirror, tmp_path):
    torch_model, path = checkpoints("resnet18")
    data = path.read_bytes()
    url = mirror.add("/resnet18-tv.pth", data)
    manifest = write_manifest(
        tmp_path / "m.json", "resnet18", {"top": ("resnet18-tv.pth", [url], sha256(data))},
        tag="tv", input_size=224, preprocessing="torch",
    )
    model = resnet_keras.ResNet18(weights="tv", manifest=manifest, classifier_activation=None)
    x = images(size=224)
    assert relative_error(keras_outputs(model, x), torch_logits(torch_model, x)) <= TOLERANCE


def test_keras_conv_biases_the_checkpoint_lacks_are_zero(checkpoints):
    torch_model, path = checkpoints("resnet18")
    import dataclasses

    spec = dataclasses.replace(SPECS["resnet18"], conv_bias=True)
    model = build.create_model(
        spec, include_top=True, weights=str(path), input_tensor=None, input_shape=(64, 64, 3),
        pooling=None, classes=1000, classifier_activation=None, name="biased",
    )
    biases = [l.bias for l in model.layers if l.name.endswith("_conv")]
    assert biases and all(not np.any(b.numpy()) for b in biases)
    x = images()
    assert relative_error(keras_outputs(model, x), torch_logits(torch_model, x)) <= TOLERANCE


# --------------------------------------------------------------------------
# Conversion to HDF5


@pytest.mark.slow  # convert, then load in a fresh model (4 s)
def test_converted_h5_loads_without_torch(checkpoints, tmp_path, monkeypatch):
    torch_model, path = checkpoints("resnet18")
    converted = resnet_keras.convert_checkpoint(path, tmp_path / "resnet18.h5", "resnet18")
    assert "sha256:" + converted.sha256 == sha256(converted.path.read_bytes())
    x = images()
    want = torch_logits(torch_model, x)
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "torch", None)  # `import torch` now fails
        model = resnet_keras.ResNet18(weights=str(converted.path), classifier_activation=None,
                                      input_shape=(64, 64, 3))
        assert relative_error(keras_outputs(model, x), want) <= TOLERANCE
    with pytest.raises(InvalidArgumentError, match="exists already"):
        resnet_keras.convert_checkpoint(path, converted.path, "resnet18")
    with pytest.raises(InvalidArgumentError, match="torchvision's layout"):
        resnet_keras.convert_checkpoint(path, tmp_path / "x.h5", "resnet50")  # keras' V1


# --------------------------------------------------------------------------
# Any number of input channels


def timm_rule_by_hand(weight: torch.Tensor, channels: int) -> torch.Tensor:
    """timm's adapt_input_conv, written out on a torch (out, in, h, w) kernel."""
    if channels == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = -(-channels // 3)
    return weight.repeat(1, repeats, 1, 1)[:, :channels] * (3 / channels)


def adapted_reference(torch_model, name: str, channels: int):
    other = torch_reference.ResNet(name, in_chans=channels).eval()
    state = dict(torch_model.state_dict())
    state["conv1.weight"] = timm_rule_by_hand(state["conv1.weight"], channels)
    other.load_state_dict(state)
    return other


@pytest.mark.parametrize("channels", [1, 2, 4])
@pytest.mark.slow
def test_adapted_stem_equals_the_timm_rule(checkpoints, channels):
    torch_model, path = checkpoints("resnet18")
    model = resnet_keras.ResNet18(weights=str(path), classifier_activation=None,
                                  input_shape=(64, 64, channels), adapt_input_channels=True)
    x = images(channels)
    want = torch_logits(adapted_reference(torch_model, "resnet18", channels), x)
    error = relative_error(keras_outputs(model, x), want)
    print(f"PARITY adapt_input_channels resnet18 {channels} channels: relative error {error:.3e}")
    assert error <= TOLERANCE


@pytest.mark.slow  # two adapted builds (4 s); test_adaptation_of_a_keras_v1_file stays fast
def test_adaptation_works_for_keras_hdf5_files_and_channels_first(checkpoints, tmp_path):
    import keras

    torch_model, path = checkpoints("resnet18")
    h5 = resnet_keras.convert_checkpoint(path, tmp_path / "r18.h5", "resnet18").path
    want = timm_rule_by_hand(torch_model.state_dict()["conv1.weight"], 4).numpy().transpose(2, 3, 1, 0)
    for data_format, shape in [("channels_last", (64, 64, 4)), ("channels_first", (4, 64, 64))]:
        keras.config.set_image_data_format(data_format)  # restored by conftest
        # channels_first needs nothing else: Keras kernels are (h, w, in, out) in both formats
        model = resnet_keras.ResNet18(weights=str(h5), input_shape=shape, adapt_input_channels=True)
        np.testing.assert_allclose(model.get_layer("conv1_conv").kernel.numpy(), want, rtol=1e-6)


def test_adaptation_of_a_keras_v1_file(tmp_path):
    import official_format

    source = build_tiny()
    official_format.randomize(source, seed=3)
    path = official_format.write_keras2_weights(source, tmp_path / "tiny.h5")
    model = build_tiny(weights=str(path), input_shape=(32, 32, 1), adapt_input_channels=True)
    rgb = source.get_layer("conv1_conv").kernel.numpy()
    np.testing.assert_allclose(model.get_layer("conv1_conv").kernel.numpy(), rgb.sum(2, keepdims=True), rtol=1e-6)
    np.testing.assert_array_equal(model.get_layer("conv1_conv").bias.numpy(), source.get_layer("conv1_conv").bias.numpy())


def test_without_the_opt_in_other_channels_are_refused_and_the_option_named(checkpoints):
    _, path = checkpoints("resnet18")
    with pytest.raises(InvalidArgumentError, match="adapt_input_channels=True"):
        build.normalize_input_shape(
            (224, 224, 4), default_size=224, min_size=32, include_top=False, pretrained=True,
            data_format="channels_last",
        )
    with pytest.raises(WeightsMismatchError, match="conv1.weight.*adapt_input_channels=True"):
        resnet_keras.ResNet18(weights=str(path), include_top=False, input_shape=(64, 64, 4))
    with pytest.raises(InvalidArgumentError, match="needs `weights`"):
        resnet_keras.ResNet18(input_shape=(64, 64, 4), adapt_input_channels=True)
    with pytest.raises(InvalidArgumentError, match="adapt_input_channels"):
        resnet_keras.ResNet18(weights=str(path), adapt_input_channels="yes")


# --------------------------------------------------------------------------
# Hostile and wrong files: typed errors, nothing assigned


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def _unchanged(model):
    before = [w.numpy().copy() for w in model.weights]
    return lambda: all(np.array_equal(a, w.numpy()) for a, w in zip(before, model.weights))


def _load(model, path, spec_name="resnet18"):
    with open(path, "rb") as file:
        build.load_file(model, SPECS[spec_name], file, path)


def test_pickle_with_code_in_a_pth_never_runs(checkpoints, tmp_path):
    marker = tmp_path / "marker"
    _, good = checkpoints("resnet18")
    state = torch.load(good, weights_only=True)
    state["conv1.weight"] = _Evil(str(marker))
    path = tmp_path / "evil.pth"
    torch.save(state, path)  # a real torch zip whose data.pkl carries the payload
    legacy = tmp_path / "legacy.pth"
    legacy.write_bytes(pickle.dumps(_Evil(str(marker))))
    with pytest.raises(WeightsFormatError, match="weights_only=True"):
        resnet_keras.ResNet18(weights=str(path), include_top=False)
    with pytest.raises(WeightsFormatError, match="pickle"):
        resnet_keras.ResNet18(weights=str(legacy), include_top=False)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # control: the payload works
    assert marker.exists()


def test_wrong_keys_and_shapes_are_named_and_nothing_is_assigned(checkpoints, tmp_path):
    _, good = checkpoints("resnet18")
    model = resnet_keras.ResNet18(input_shape=(64, 64, 3))
    unchanged = _unchanged(model)
    state = torch.load(good, weights_only=True)
    renamed = dict(state)
    renamed["module.conv1.weight"] = renamed.pop("conv1.weight")
    torch.save(renamed, tmp_path / "keys.pth")
    with pytest.raises(WeightsMismatchError, match=r"conv1.weight: missing.*module.conv1.weight") as info:
        _load(model, tmp_path / "keys.pth")
    assert "model unchanged" in str(info.value)
    reshaped = dict(state, **{"fc.weight": torch.zeros(10, 512), "layer1.0.bn1.running_var": torch.ones(32)})
    torch.save(reshaped, tmp_path / "shapes.pth")
    with pytest.raises(WeightsMismatchError, match=r"2 problems.*layer1.0.bn1.running_var: shape \(32,\).*fc.weight"):
        _load(model, tmp_path / "shapes.pth")
    nan = dict(state, **{"bn1.bias": torch.full((64,), float("nan"))})
    torch.save(nan, tmp_path / "nan.pth")
    with pytest.raises(WeightsFormatError, match="bn1.bias: contains NaN"):
        _load(model, tmp_path / "nan.pth")
    assert unchanged()


def test_a_torch_checkpoint_is_refused_by_keras_v1_models(checkpoints):
    _, path = checkpoints("resnet18")
    with pytest.raises(WeightsMismatchError, match="torchvision's layout.*ResNet50V1_5"):
        build_tiny(weights=str(path))


def test_zip_bombs_and_huge_files_are_refused_before_parsing(checkpoints, tmp_path, monkeypatch):
    _, good = checkpoints("resnet18")
    model = resnet_keras.ResNet18(input_shape=(64, 64, 3))
    unchanged = _unchanged(model)
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load reached"))
    # a deflated entry of 200 MB of zeros in about 200 KB
    bomb = tmp_path / "bomb.pth"
    bomb.write_bytes(good.read_bytes())
    folder = zipfile.ZipFile(good).namelist()[0].split("/")[0]
    with zipfile.ZipFile(bomb, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open(f"{folder}/data/999", "w", force_zip64=True) as entry:
            for _ in range(200):
                entry.write(bytes(1 << 20))
    assert bomb.stat().st_size < 2 * good.stat().st_size
    with pytest.raises(WeightsFormatError, match="compressed entries"):
        _load(model, bomb)
    # many entries
    crowd = tmp_path / "crowd.pth"
    with zipfile.ZipFile(crowd, "w") as archive:
        archive.writestr(f"{folder}/data.pkl", b"")
        for i in range(5000):
            archive.writestr(f"{folder}/data/{i}", b"")
    with pytest.raises(WeightsFormatError, match="5,001 entries"):
        _load(model, crowd)
    # a 10 GB file (sparse: no disk used) is refused by its size, before a byte is read
    huge = tmp_path / "huge.pth"
    with open(huge, "wb") as f:
        f.write(registry.ZIP_LOCAL_HEADER)
        f.truncate(10 << 30)
    with pytest.raises(WeightsFormatError, match="10,737,418,240 bytes, more than"):
        _load(model, huge)
    assert unchanged()


def test_truncated_and_damaged_files_are_refused(checkpoints, tmp_path):
    _, good = checkpoints("resnet18")
    model = resnet_keras.ResNet18(input_shape=(64, 64, 3))
    unchanged = _unchanged(model)
    data = good.read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsFormatError, match="not a complete zip archive"):
        _load(model, tmp_path / "cut.pth")
    save_file = require("safetensors.torch").save_file
    save_file(torch.load(good, weights_only=True), str(tmp_path / "m.safetensors"))
    st = (tmp_path / "m.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(st[: len(st) // 2])
    with pytest.raises(WeightsFormatError, match=r"lies beyond the file's [\d,]+ bytes of data \(truncated\?\)"):
        _load(model, tmp_path / "cut.safetensors")
    claim = (1 << 40).to_bytes(8, "little") + st[8:]
    (tmp_path / "claim.safetensors").write_bytes(claim)
    with pytest.raises(WeightsFormatError, match="header claims"):
        _load(model, tmp_path / "claim.safetensors")
    assert unchanged()
    keras_zip = io.BytesIO()
    with zipfile.ZipFile(keras_zip, "w") as archive:
        archive.writestr("config.json", "{}")
    (tmp_path / "model.pth").write_bytes(keras_zip.getvalue())
    with pytest.raises(WeightsFormatError, match="not a torch checkpoint"):
        _load(model, tmp_path / "model.pth")
