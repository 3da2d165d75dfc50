"""A model is declared in one place: a spec row and one decorated builder.

The registry, `__all__`, docstrings and the preprocessing mode all follow
from `@register_model`; these tests hold that, and add a model (ResNet26,
basic blocks 2-3-4-3) exactly as a newcomer would, without touching the
shipped zoo.
"""

from __future__ import annotations

import numpy as np
import pytest

import resnet_keras
from resnet_keras import _imagenet
from resnet_keras.architecture import catalog
from resnet_keras.architecture.build import create_model
from resnet_keras.architecture.catalog import ENTRIES, builder_names, register_model
from resnet_keras.architecture.specs import SPECS, ResNetSpec
from resnet_keras.weights.manifest import shipped_manifest


@pytest.fixture
def scratch_zoo(monkeypatch):
    """The zoo as it ships, put back after the test: a model added here stays here."""
    dict(ENTRIES)  # the public modules are registered before the copy
    monkeypatch.setattr(catalog, "_REGISTERED", dict(catalog._REGISTERED))
    return monkeypatch


def test_every_spec_has_a_builder_and_every_builder_a_spec():
    assert set(ENTRIES) == set(SPECS)
    for key, entry in ENTRIES.items():
        assert entry.spec is SPECS[key], key


def test_a_builder_needs_its_row_in_specs():
    def ResNet99(name="resnet99"):  # noqa: N802 - a builder-like function
        return name

    stray = ResNetSpec("resnet99", block="basic", depths=(1, 1, 1, 1))
    with pytest.raises(RuntimeError, match=r"not SPECS\['resnet99'\]"):
        register_model(stray, "ResNet-99", "")(ResNet99)
    assert "resnet99" not in ENTRIES


def test_a_builder_is_named_by_its_key(scratch_zoo):
    def ResNet99(name="my_resnet99"):  # noqa: N802 - a builder-like function
        return name

    scratch_zoo.setitem(SPECS, "resnet99", ResNetSpec("resnet99", block="basic", depths=(1, 1, 1, 1)))
    with pytest.raises(RuntimeError, match="default `name` must be its registry key 'resnet99'"):
        register_model(SPECS["resnet99"], "ResNet-99", "")(ResNet99)


@pytest.mark.parametrize("module", catalog.ZOO_MODULES)
def test_the_public_modules_export_what_they_register(module):
    public = getattr(resnet_keras, module)
    registered = [e.builder for e in ENTRIES.values() if e.module == module]
    assert builder_names(public.__name__) == [n for n in public.__all__ if n in registered]
    assert sorted(registered) == sorted(builder_names(public.__name__))


def test_adding_a_model_is_a_spec_row_and_one_decorated_builder(scratch_zoo):
    # 1. a row in SPECS (resnet_keras/architecture/specs.py)
    scratch_zoo.setitem(SPECS, "resnet26", ResNetSpec("resnet26", block="basic", depths=(2, 3, 4, 3)))

    # 2. one decorated builder in a public module
    @register_model(SPECS["resnet26"], "ResNet-26", "Basic blocks, 2-3-4-3.",
                    counts=(19_088_232, 19_074_024, 2_738_917_376))
    def ResNet26(
        include_top=True,
        weights=None,
        input_tensor=None,
        input_shape=None,
        pooling=None,
        classes=1000,
        classifier_activation="softmax",
        name="resnet26",
        *,
        manifest=None,
        offline=None,
    ):
        return create_model(SPECS["resnet26"], **locals())

    # everything else follows from the decorator
    assert resnet_keras.list_models("resnet2?") == ["resnet20", "resnet26"]
    assert builder_names(__name__) == ["ResNet26"]  # the module's __all__
    assert ResNet26.__doc__.startswith("Instantiate ResNet-26.")
    assert ENTRIES["resnet26"].function is ResNet26
    model = resnet_keras.get_model("resnet26", include_top=False, input_shape=(64, 64, 3))
    assert model.output_shape == (None, 2, 2, 512)
    info = resnet_keras.model_info("ResNet26")
    entry = ENTRIES["resnet26"]
    assert (info.builder, info.spec) == (ResNet26, SPECS["resnet26"])
    assert (entry.params, entry.trainable_params, entry.macs) == (info.params, info.trainable_params, info.macs)
    assert set(ENTRIES) == set(SPECS)


def test_the_zoo_is_back_after_adding_a_model():
    assert "resnet26" not in SPECS and "resnet26" not in ENTRIES


# --- the preprocessing mode: SPECS is its one source -------------------------


def test_every_manifest_entry_states_its_specs_preprocessing():
    manifest = shipped_manifest()
    checked = 0
    for model in manifest.entries:
        for tag in manifest.tags(model):
            assert manifest.entry(model, tag).preprocessing == SPECS[model].preprocessing, (model, tag)
            checked += 1
    assert checked >= 6  # the six keras.applications weights at least


@pytest.mark.parametrize("module", ["resnet", "resnet_v2", "resnet_small", "resnet50"])
def test_preprocess_input_uses_the_mode_of_the_modules_specs(module):
    public = getattr(resnet_keras, module)
    x = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    modes = {e.spec.preprocessing for e in ENTRIES.values() if getattr(public, e.builder, None) is e.function}
    assert len(modes) == 1 and None not in modes
    expected = _imagenet.preprocess_input(x.copy(), mode=modes.pop())
    np.testing.assert_array_equal(public.preprocess_input(x.copy()), expected)
