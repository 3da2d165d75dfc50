"""A model is declared in one place: a spec row and one line.

The registry, `__all__`, signatures, docstrings and the preprocessing mode
all follow from `define_builder` (or, for the keras drop-ins, `@register_model`
over keras' explicit `def`); these tests hold that, and add models (ResNet10,
and ResNet200 as docs/development.md says) exactly as a newcomer would,
without touching the shipped zoo.
"""

from __future__ import annotations

import inspect
import pydoc

import numpy as np
import pytest

import resnet_keras
from resnet_keras import _imagenet
from resnet_keras.architecture import catalog, signatures
from resnet_keras.architecture.catalog import ENTRIES, builder_names, define_builder, register_model
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


def check_added(key: str, builder, title: str, small_output: tuple) -> None:
    """Everything that follows from the spec row and the one line, for a model of this module."""
    spec = SPECS[key]
    assert builder.__name__ in builder_names(__name__)  # the module's __all__
    assert (builder.__module__, ENTRIES[key].function) == (__name__, builder)
    parameters = inspect.signature(builder).parameters
    assert [(p.name, p.default) for p in parameters.values()][:8] == [
        ("include_top", True), ("weights", None), ("input_tensor", None), ("input_shape", None),
        ("pooling", None), ("classes", 1000), ("classifier_activation", "softmax"), ("name", key),
    ]
    assert builder.__doc__.startswith(f"Instantiate {title}.")
    assert "The shipped manifest has no weights for this model" in builder.__doc__
    assert resnet_keras.list_models(key) == [key] and key in resnet_keras.list_models(pretrained=False)
    model = resnet_keras.get_model(key, include_top=False, input_shape=(64, 64, 3))
    assert model.output_shape == small_output and model.name == key
    with pytest.raises(TypeError, match=f"{builder.__name__}\\(\\) got an unexpected keyword argument 'input_shap'"):
        builder(input_shap=(64, 64, 3))
    info = resnet_keras.model_info(key.upper())
    assert (info.name, info.builder, info.spec, info.weights) == (key, builder, spec, ())
    # not in counts.json yet: counted from its graph (the default model)
    assert info.params == builder().count_params() and 0 < info.trainable_params < info.params
    assert set(ENTRIES) == set(SPECS)


def test_adding_a_model_is_one_spec_row_and_one_line(scratch_zoo):
    # 1. a row in SPECS (resnet_keras/architecture/specs.py)
    scratch_zoo.setitem(SPECS, "resnet10", ResNetSpec("resnet10", block="basic", depths=(1, 1, 1, 1)))
    # 2. one line in a public module
    ResNet10 = define_builder("ResNet10", SPECS["resnet10"], "ResNet-10", "Basic blocks, 1-1-1-1.")

    check_added("resnet10", ResNet10, "ResNet-10", (None, 2, 2, 512))


@pytest.mark.slow  # about 700 layers: seconds per symbolic build
def test_resnet200_is_added_as_the_development_docs_say(scratch_zoo):
    """docs/development.md, "Adding a model", step for step."""
    scratch_zoo.setitem(SPECS, "resnet200", ResNetSpec("resnet200", block="bottleneck", depths=(3, 24, 36, 3)))
    ResNet200 = define_builder("ResNet200", SPECS["resnet200"], "ResNet-200", "Bottleneck blocks, 3-24-36-3.")

    check_added("resnet200", ResNet200, "ResNet-200", (None, 2, 2, 2048))
    assert SPECS["resnet200"].num_layers == 200


def test_the_zoo_is_back_after_adding_a_model():
    for key in ("resnet10", "resnet200"):
        assert key not in SPECS and key not in ENTRIES and key not in resnet_keras.list_models()
    assert builder_names(__name__) == []


def test_a_drop_in_must_keep_the_signature_its_facts_give(scratch_zoo):
    """A `def` under @register_model is held to builder_signature: here a wrong default."""
    scratch_zoo.setitem(SPECS, "resnet10", ResNetSpec("resnet10", block="basic", depths=(1, 1, 1, 1)))

    def ResNet10(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,  # noqa: N802
                 classes=10, classifier_activation="softmax", name="resnet10", *, manifest=None,
                 offline=None, adapt_input_channels=False):
        return name

    with pytest.raises(RuntimeError, match="ResNet10's signature must be .*classes=1000.*Received: .*classes=10"):
        register_model(SPECS["resnet10"], "ResNet-10", "")(ResNet10)
    assert "resnet10" not in ENTRIES


# --- what a builder shows: its real signature, and the weights the manifest offers


@pytest.mark.parametrize("key", list(SPECS))
def test_help_shows_the_real_signature(key):
    builder = ENTRIES[key].function
    weights = inspect.signature(builder).parameters["weights"].default
    text = pydoc.render_doc(builder, renderer=pydoc.plaintext)
    assert f"{builder.__name__}(include_top=True, weights={weights!r}, input_tensor=None" in text
    assert f"name='{key}', *, " in text


@pytest.mark.parametrize("key", list(SPECS))
def test_the_typed_builder_protocol_agrees_with_every_signature(key):
    """What IDEs that read types show (`signatures.Builder`) is what each builder takes."""
    typed = [p for p in inspect.signature(signatures.Builder.__call__).parameters.values()
             if p.name != "self" and p.kind is not p.VAR_KEYWORD]
    real = inspect.signature(ENTRIES[key].function).parameters
    names = {p.name for p in typed}
    assert [(p.name, p.kind) for p in typed] == [(p.name, p.kind) for p in real.values() if p.name in names]
    assert all(real[p.name].default == p.default for p in typed if p.default is not ...)


@pytest.mark.parametrize("key", list(SPECS))
def test_the_weights_line_says_what_the_shipped_manifest_offers(key):
    doc = ENTRIES[key].function.__doc__
    line = " ".join(doc.split("\n    weights: ", 1)[1].split("\n    input_tensor:", 1)[0].split())
    tags = shipped_manifest().tags(key)
    assert ("has no weights for this model" in line) == (not tags)
    for tag in tags:
        assert f'`"{tag}"` ({shipped_manifest().entry(key, tag).source}' in line
    if tags and "imagenet" not in tags:
        assert f'`"imagenet"` selects `"{shipped_manifest().default_tag(key)}"`' in line


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
