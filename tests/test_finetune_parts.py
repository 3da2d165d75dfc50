"""The parts of fine_tune, without training: options, split, augmentation, optimizer, schedule."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import resnet_keras
from resnet_keras.errors import InvalidArgumentError
from resnet_keras.finetune import data, optimizer, pipeline
from resnet_keras.finetune.settings import Augmentation

X = np.zeros((8, 16, 16, 3), np.uint8)
Y = np.array([0, 1] * 4)


@pytest.mark.parametrize("option, value, phrase", [
    ("epochs", -1, "`epochs` must be an integer of at least 0"),
    ("batch_size", 0, "`batch_size` must be an integer of at least 1"),
    ("lr", 0.0, "`lr` must be a number in (0, 1]"),
    ("lr", float("nan"), "`lr` must be a number"),
    ("unfreeze", "some", "`unfreeze` must be one of 'all', 'stages', 'none'"),
    ("batchnorm", "train_mode", "`batchnorm` must be one of"),
    ("validation_split", 1.0, "`validation_split` must be a number in [0, 1)"),
    ("label_smoothing", True, "`label_smoothing` must be a number"),
    ("augment", "yes", "`augment` must be True"),
    ("class_weight", [1.0, -1.0], "`class_weight` must be 'balanced', None, or one positive number"),
    ("precision", "int8", "`precision` must be one of"),
    ("preprocessing", "imagenet", "`preprocessing` must be None"),
    ("input_size", 2, "`input_size` must be at least 4"),
])
def test_a_wrong_option_fails_in_one_line_before_anything_is_written(option, value, phrase, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(InvalidArgumentError) as error:
        resnet_keras.fine_tune((X, Y), "resnet20", None, out=out, **{option: value})
    assert phrase in str(error.value) and "Received:" in str(error.value)
    assert "\n" not in str(error.value) and not out.exists()


def test_nothing_to_train_and_a_probe_with_epochs_are_refused():
    with pytest.raises(InvalidArgumentError, match="nothing to train"):
        resnet_keras.fine_tune((X, Y), "resnet20", None, epochs=0, head_epochs=0)
    with pytest.raises(InvalidArgumentError, match="unfreeze='none'"):
        resnet_keras.fine_tune((X, Y), "resnet20", None, unfreeze="none", epochs=2)


def test_unknown_model_and_weights_are_named():
    with pytest.raises(InvalidArgumentError, match=r"`model` must be a registered model.*resnet50"):
        resnet_keras.fine_tune((X, Y), "resnet5O")
    with pytest.raises(ValueError, match="resnet20"):
        resnet_keras.fine_tune((X, Y), "resnet20", "imagenet")  # no weights in the manifest


def test_arrays_labels_and_pixels_are_checked():
    with pytest.raises(InvalidArgumentError, match=r"at least 2 classes"):
        data.from_arrays(X, np.zeros(8, int), None)
    with pytest.raises(InvalidArgumentError, match=r"\[0, 255\].*\[0, 1\]"):
        data.from_arrays(X.astype("float32") / 255 + 0.5 / 255, Y, None)
    with pytest.raises(InvalidArgumentError, match="one label per image"):
        data.from_arrays(X, Y[:5], None)
    with pytest.raises(InvalidArgumentError, match=r"\(n, height, width, 3\)"):
        data.from_arrays(X[..., :2], Y, None)
    examples = data.from_arrays(X[..., :1], np.array(["cat", "dog"] * 4), None)  # grey, string labels
    assert examples.class_names == ("cat", "dog") and examples.pixels.shape[-1] == 3
    one_hot = data.from_arrays(X, np.eye(2)[Y], ["a", "b"])
    np.testing.assert_array_equal(one_hot.labels, Y)


def test_a_dataset_is_read_once_batched_or_not_and_bounded():
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((X, Y))
    for ds in (dataset, dataset.batch(3)):
        examples = data.from_dataset(ds, ["a", "b"], max_bytes=1 << 20)
        np.testing.assert_array_equal(examples.labels, Y)
    with pytest.raises(InvalidArgumentError, match="Pass a folder"):
        data.from_dataset(dataset, None, max_bytes=1000)


def test_split_is_stratified_seeded_and_keeps_a_training_image_per_class():
    labels = np.array([0] * 10 + [1] * 3 + [2] * 1)
    train, val = data.split(labels, 0.2, seed=7)
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(14))
    assert np.bincount(labels[val], minlength=3).tolist() == [2, 1, 0]
    again = data.split(labels, 0.2, seed=7)
    assert np.array_equal(again[1], val) and not np.array_equal(data.split(labels, 0.2, seed=8)[1], val)
    assert len(data.split(labels, 0.0, seed=7)[1]) == 0


def test_crop_parameters_are_per_image_seeded_and_inside_the_image():
    augment = Augmentation(crop_scale=(0.25, 1.0))
    params = pipeline.crop_parameters(3, 5, 2000, augment)
    assert np.array_equal(params, pipeline.crop_parameters(3, 5, 2000, augment))
    assert not np.array_equal(params, pipeline.crop_parameters(3, 6, 2000, augment))
    top, left, bottom, right, flip = params.T
    assert (top >= 0).all() and (left >= 0).all() and (bottom <= 1 + 1e-6).all() and (right <= 1 + 1e-6).all()
    area = (bottom - top) * (right - left)
    assert area.min() >= 0.25 - 1e-5 and 0.4 < flip.mean() < 0.6
    no_flip = pipeline.crop_parameters(3, 5, 100, Augmentation(flip=False))
    assert not no_flip[:, 4].any()
    order = pipeline.epoch_order(3, 5, 50)
    assert sorted(order) == list(range(50)) and np.array_equal(order, pipeline.epoch_order(3, 5, 50))


def test_group_adamw_scales_each_variables_step_not_its_gradient():
    """Adam divides the gradient by its own scale, so a scaled gradient would change nothing;
    the step of a variable with multiplier 0.1 is 0.1 of the step of one with 1.0."""
    a, b = keras.Variable(np.ones(4, "float32"), name="kernel"), keras.Variable(np.ones(4, "float32"), name="bias")
    opt = optimizer.GroupAdamW(learning_rate=0.01, weight_decay=0.0,
                               multipliers={a.path: 1.0, b.path: 0.1})
    opt.build([a, b])
    opt.apply([np.full(4, 3.0, "float32"), np.full(4, 3.0, "float32")], [a, b])
    step_a, step_b = 1 - a.numpy(), 1 - b.numpy()
    np.testing.assert_allclose(step_b / step_a, 0.1, rtol=1e-4)


def test_weight_decay_skips_batchnorm_and_biases():
    model = resnet_keras.get_model("resnet20", weights=None, classes=3, input_shape=(8, 8, 3))
    excluded = {v.path for v in optimizer.no_decay_variables(model)}
    assert "predictions/bias" in excluded and "conv1_bn/gamma" in excluded and "conv1_bn/beta" in excluded
    assert "conv1_conv/kernel" not in excluded and "predictions/kernel" not in excluded
    groups = optimizer.layer_groups(model)
    assert [g[0].name for g in groups] == ["predictions", "conv4_block1_1_conv", "conv3_block1_1_conv",
                                           "conv2_block1_1_conv", "conv1_conv"]
    factors = optimizer.lr_multipliers(groups, 0.5)
    assert (factors["predictions/kernel"], factors["conv4_block1_1_conv/kernel"], factors["conv1_conv/kernel"]) == (
        1.0, 0.5, 0.0625)


@pytest.mark.parametrize("kind", ["cosine", "onecycle"])
def test_schedule_warms_up_then_anneals(kind):
    schedule = optimizer.PhaseSchedule(1e-3, steps=100, warmup=0.1, kind=kind)
    rates = [float(schedule(step)) for step in range(100)]
    peak = int(np.argmax(rates))
    assert rates[0] < rates[peak] and abs(rates[peak] - 1e-3) < 1e-9
    assert all(x <= y + 1e-12 for x, y in zip(rates[:peak], rates[1:peak + 1]))  # rising
    assert all(x >= y - 1e-12 for x, y in zip(rates[peak:], rates[peak + 1:]))  # falling
    assert rates[-1] < 0.02e-3
    assert peak == (9 if kind == "cosine" else 25)


def test_bfloat16_builds_a_float32_head():
    from resnet_keras.architecture.specs import SPECS
    from resnet_keras.finetune.model import classifier

    model = classifier(SPECS["resnet20"], classes=3, input_size=8, precision="bfloat16")
    assert model.get_layer("predictions").compute_dtype == "float32"
    assert model.get_layer("conv1_conv").compute_dtype == "bfloat16"
    assert keras.config.dtype_policy().name == "float32"  # the global is restored


def test_crop_and_resize_gives_tensorflows_numbers():
    import tensorflow as tf

    images = np.random.default_rng(0).uniform(0, 255, (32, 37, 37, 3)).astype("float32")
    boxes = pipeline.crop_parameters(0, 0, 32, Augmentation())[:, :4]
    ours = pipeline.crop_and_resize(tf.constant(images), tf.constant(boxes), 32).numpy()
    reference = tf.image.crop_and_resize(images, boxes, tf.range(32), (32, 32)).numpy()
    np.testing.assert_allclose(ours, reference, atol=0.01)


def test_the_head_starts_as_a_linear_probe_that_matches_scikit_learn():
    """LP-FT: multinomial logistic regression on the frozen features, solved to convergence."""
    from sklearn.linear_model import LogisticRegression

    from resnet_keras.finetune import head

    rng = np.random.default_rng(0)
    # pooled ReLU features: a large common mean, small class differences (what a random head cannot use)
    labels = np.repeat(np.arange(3), 30)
    features = 5.0 + rng.normal(0, 0.3, (90, 16)) + 0.3 * np.eye(3, 16)[labels]
    z = (features - features.mean(0)) / (features.std(0) + 1e-6)
    w, b = head._softmax_regression(z, labels, 3, l2=1e-2)
    reference = LogisticRegression(C=1 / (len(z) * 1e-2), tol=1e-10, max_iter=10_000).fit(z, labels)
    ours = np.exp(z @ w + b)
    ours /= ours.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(ours, reference.predict_proba(z), atol=2e-3)
    kernel, bias = head.linear_probe(features, labels, 3, features[::2], labels[::2])
    folded = (features @ kernel + bias).argmax(axis=1)  # the standardization folded into the layer
    assert (folded == labels).mean() >= reference.score(z, labels) - 0.05


def test_auto_precision_follows_the_hardware(monkeypatch):
    from resnet_keras.finetune import model

    monkeypatch.setattr(model, "_cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    assert model.resolve_precision("auto") == "bfloat16"
    monkeypatch.setattr(model, "_cpu_flags", lambda: {"avx512f"})
    assert model.resolve_precision("auto") == "float32"
    assert model.resolve_precision("float16") == "float16"


def test_checkpoints_replace_each_other_and_a_damaged_one_is_one_line(tmp_path):
    from resnet_keras.finetune import rundir

    key = {"format": rundir.FORMAT, "settings": {"epochs": 2}}
    run = rundir.RunDir.open(tmp_path / "run", key, overwrite=False)
    try:
        for epoch in (0, 1):
            run.save_checkpoint(epoch, {"model:w": np.full(3, epoch, np.float32)}, {"history": []})
        names = sorted(p.name for p in run.folder.iterdir() if not p.name.startswith("."))
        assert names == ["checkpoint-0001.npz", "checkpoint.json", "settings.json"]
        state, arrays = run.load_checkpoint()
        assert state["epoch"] == 1 and arrays["model:w"].tolist() == [1, 1, 1]
        path = run.folder / "checkpoint-0001.npz"
        path.write_bytes(path.read_bytes()[:40])
        with pytest.raises(InvalidArgumentError, match="checkpoint that cannot be read.*--overwrite"):
            run.load_checkpoint()
    finally:
        run.close()
    assert rundir.refusal(tmp_path / "run", {**key, "settings": {"epochs": 3}}, overwrite=False) == (
        f"--out holds a run with other settings or data, which must not be mixed: settings.epochs 2 there, 3 now. "
        f"Received: --out={str(tmp_path / 'run')!r}. Write to a new folder, or pass --overwrite to start the run again.")


def test_the_probe_takes_the_l2_strength_with_the_lowest_validation_loss():
    from resnet_keras.finetune import head

    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(3), 8)  # few, noisy images: the strengths differ on validation
    features = rng.normal(0, 1, (24, 32)) + 0.8 * np.eye(3, 32)[labels]
    val_labels = np.repeat(np.arange(3), 30)
    val_features = rng.normal(0, 1, (90, 32)) + 0.8 * np.eye(3, 32)[val_labels]
    mean, scale = features.mean(0), features.std(0) + 1e-6
    z, zv = (features - mean) / scale, (val_features - mean) / scale
    losses = {l2: head._loss(zv, val_labels, *head._softmax_regression(z, labels, 3, l2)) for l2 in head.STRENGTHS}
    best = min(losses, key=losses.get)
    assert len({round(v, 3) for v in losses.values()}) > 1  # the choice matters here
    w, b = head._softmax_regression(z, labels, 3, best)
    kernel, bias = head.linear_probe(features, labels, 3, val_features, val_labels)
    np.testing.assert_allclose(kernel, w / scale[:, None], rtol=1e-4, atol=1e-6)


def test_without_validation_images_the_probe_of_few_images_takes_a_stronger_l2():
    """1 / images above the middle strength (it once looked that strength up among the fits: KeyError)."""
    from resnet_keras.finetune import head

    rng = np.random.default_rng(2)
    labels = np.repeat(np.arange(2), 32)
    features = rng.normal(0, 1, (64, 8)) + np.eye(2, 8)[labels]
    mean, scale = features.mean(0), features.std(0) + 1e-6
    w, _ = head._softmax_regression((features - mean) / scale, labels, 2, 1 / 64)
    kernel, _ = head.linear_probe(features, labels, 2)
    np.testing.assert_allclose(kernel, w / scale[:, None], rtol=1e-4, atol=1e-6)


def test_images_over_the_memory_budget_are_read_again_with_the_same_pixels(tmp_path):
    """Decoded images that do not fit `budget` are checked once and read again per batch:
    the numbers do not depend on whether they fit."""
    from PIL import Image

    from resnet_keras.finetune import source

    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(tmp_path / label / f"{i}.png")
    (tmp_path / "b" / "bad.png").write_bytes(b"\x89PNG broken")
    examples = data.list_folder(tmp_path)
    positions = np.arange(len(examples))
    cached, skipped = source.decode(examples, positions, 16, budget=1 << 30, progress=False)
    streamed, skipped_again = source.decode(examples, positions, 16, budget=0, progress=False)
    assert cached.cache is not None and streamed.cache is None and len(streamed.files) == 6
    assert skipped == skipped_again and [path for path, _ in skipped] == ["b/bad.png"]
    rows = np.array([5, 0, 3])
    np.testing.assert_array_equal(cached.take(rows), streamed.take(rows))


def test_keep_best_ranks_top1_first_then_the_lower_loss():
    """keep="best" (the default): the epoch whose validation metrics `better` ranks first."""
    from resnet_keras.finetune.metrics import better

    assert better({"top1": 0.5, "loss": 9.0}, None)  # the first epoch
    assert better({"top1": 0.6, "loss": 2.0}, {"top1": 0.5, "loss": 1.0})
    assert better({"top1": 0.5, "loss": 0.9}, {"top1": 0.5, "loss": 1.0})
    assert not better({"top1": 0.5, "loss": 1.0}, {"top1": 0.5, "loss": 1.0})  # a tie keeps the earlier one
    assert not better({"top1": 0.4, "loss": 0.1}, {"top1": 0.5, "loss": 1.0})
