"""The model around the cell, the data, and the training loop (in process, small budgets)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from lstm_cli.config.choices import Cell, OutputActivation, names
from lstm_cli.data.digits import scale_pixels
from lstm_cli.fit.hooks.base import Hook
from lstm_cli.fit.hooks.finite_loss import FiniteLoss
from lstm_cli.fit.loop import fit
from lstm_cli.fit.trainer import Trainer, set_seed, trainer_for
from lstm_cli.networks.model import ACTIVATIONS, DigitsRNN
from lstm_cli.networks.serving import predict_proba
from lstm_cli.runtime.errors import Diverged
from tests.helpers import held_out, numpy_cell

# `OutputActivation` in NumPy, to check the model's outputs against.
NUMPY_ACTIVATIONS = {
    "tanh": np.tanh,
    "linear": lambda v: v,
    "sigmoid": lambda v: 1 / (1 + np.exp(-v)),
    "relu": lambda v: np.maximum(v, 0),
}


@pytest.fixture(scope="module")
def digits(defaults):
    return held_out(defaults)


def test_digits_are_read_row_by_row_with_the_articles_split(digits):
    assert digits.x_train.shape == (1437, 8, 8)  # 80% of 1797 images, 8 rows of 8 pixels
    assert digits.x_val.shape == (360, 8, 8)
    assert (digits.input_size, digits.steps, digits.num_classes) == (8, 8, 10)
    assert digits.x_train.dtype == np.float32 and digits.y_train.dtype == np.int32
    assert digits.x_train.max() == 16.0  # raw pixels, as the article


def test_split_is_the_articles_and_scaling_only_rescales(defaults):
    from sklearn import datasets
    from sklearn.model_selection import train_test_split

    images = datasets.load_digits().images
    expected_val = train_test_split(images, test_size=0.2, random_state=42)[1]
    unit = held_out(defaults, scaling="unit")
    np.testing.assert_allclose(unit.x_val * 16.0, expected_val)
    assert scale_pixels(np.array([[16]]), "unit").item() == 1.0


def build(hidden=12, **kwargs) -> DigitsRNN:
    args = {"cell": "article", "init": "zeros", "output_activation": "tanh", "seed": 0} | kwargs
    return DigitsRNN(input_size=8, num_classes=10, hidden_size=hidden, **args).build()


def test_activations_are_the_choices():
    assert list(ACTIVATIONS) == names(OutputActivation) == list(NUMPY_ACTIVATIONS)


def test_unknown_activation_is_rejected_with_the_allowed_values():
    with pytest.raises(ValueError, match=r"^output_activation must be one of .*'softmax'") as error:
        build(output_activation="softmax")
    for allowed in names(OutputActivation):
        assert repr(allowed) in str(error.value)


@pytest.mark.parametrize("activation", names(OutputActivation))
def test_outputs_are_the_activation_of_the_linear_head(digits, activation):
    model = build(init="glorot", output_activation=activation)
    x = tf.constant(digits.x_val[:7])
    w = {k: v.astype(np.float64) for k, v in model.get_weights().items()}
    head = model.trace(x)["h"][-1].numpy() @ w["Wv"] + w["bv"]  # (7, 10) before the activation
    # Values of both signs and beyond +-1, where every pair of activations differs.
    assert head.min() < -1 and head.max() > 1
    out = model(x).numpy()
    assert out.shape == (7, 10)
    np.testing.assert_allclose(out, NUMPY_ACTIVATIONS[activation](head), rtol=1e-5, atol=1e-6)


def test_zero_init_is_the_articles(digits):
    model = build(hidden=50)
    assert not np.any(model.layers[0].W.numpy()) and not np.any(model.layers[0].B.numpy())
    wv, bv = model.Wv.numpy(), model.bv.numpy()
    assert wv.shape == (50, 10) and bv.shape == (10,)
    # N(0, 0.01) truncated at two standard deviations: std 0.0088, every value within 0.02.
    assert 0.008 < wv.std() < 0.0096 and abs(wv.mean()) < 0.001
    assert np.abs(wv).max() <= 0.02 and np.abs(bv).max() <= 0.02 and np.any(bv)


def test_trace_ends_where_the_forward_pass_ends(digits):
    model = build(init="glorot")
    x = tf.constant(digits.x_val[:5])
    trace = model.trace(x)
    assert trace["h"].shape == (8, 5, 12) and trace["f"].shape == (8, 5, 12)
    np.testing.assert_allclose(model.head(trace["h"][-1]).numpy(), model(x).numpy(), atol=1e-6)


def test_weights_round_trip(digits):
    a, b = build(init="glorot", seed=1), build(init="glorot", seed=2)
    b.set_weights(a.get_weights())
    x = digits.x_val[:10]
    np.testing.assert_array_equal(predict_proba(a, x), predict_proba(b, x))


def train(digits, epochs=3, lr=1e-2, seed=0, hooks=(), **model_kwargs):
    """The loop as a notebook calls it: a trainer, the data, the epochs, hooks or none."""
    set_seed(seed)
    model = build(seed=seed, **model_kwargs)
    return fit(Trainer(model, lr, 100, seed=seed, shuffle=True), digits, epochs, hooks).history


def test_training_learns(digits):
    history = train(digits, epochs=5)
    assert [m.epoch for m in history] == [1, 2, 3, 4, 5]
    assert history[-1].train_loss < history[0].train_loss
    assert history[-1].val_accuracy > 0.5  # 10 classes: chance is 0.1


def test_same_seed_same_metrics_different_seed_different_metrics(digits):
    a, b = train(digits, seed=4), train(digits, seed=4)
    assert a == b
    assert train(digits, seed=5) != a


def test_the_finite_loss_hook_stops_a_diverged_training(digits):
    said = []
    with pytest.raises(Diverged, match="NaN or infinite at epoch 1"):
        train(digits, epochs=3, lr=1e38, hooks=[FiniteLoss(1e38, said.append)])
    assert said == [1]
    assert len(train(digits, epochs=2, lr=1e38)) == 2  # no hook: the loop does not look


def test_every_training_image_counts_once_padding_none(digits):
    model = build(init="glorot")
    expected = np.mean(predict_proba(model, digits.x_train).argmax(axis=1) == digits.y_train)
    # 1437 images in batches of 100: the last batch holds 37 real images and 63 padding ones.
    # Learning rate 0: the weights stay those `expected` was computed with.
    epoch = Trainer(model, 0.0, 100, seed=0, shuffle=True).epoch(1, digits)
    assert epoch.train_accuracy == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("cell", names(Cell))
def test_forward_pass_matches_numpy(digits, cell):
    model = build(init="glorot", cell=cell, seed=3)
    w = {k: v.astype(np.float64) for k, v in model.get_weights().items()}
    x = digits.x_val[:6] / 16.0  # (6, 8, 8)
    h_last = numpy_cell(x, w, cell)["h"][-1]  # (6, hidden)
    expected = np.tanh(h_last @ w["Wv"] + w["bv"])  # `build`'s activation
    np.testing.assert_allclose(model(tf.constant(x)).numpy(), expected, atol=1e-5)


def test_adam_matches_keras_adam():
    from lstm_cli.fit.trainer import Adam

    rng = np.random.default_rng(0)
    start = rng.normal(size=(5, 3)).astype(np.float32)
    ours, theirs = tf.Variable(start), tf.Variable(start)
    adam = Adam([ours], learning_rate=0.01)
    keras_adam = tf.keras.optimizers.Adam(learning_rate=0.01)
    for _ in range(20):
        grad = tf.constant(rng.normal(size=(5, 3)).astype(np.float32))
        adam.apply([grad])
        keras_adam.apply_gradients([(grad, theirs)])
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), atol=1e-5)


def test_training_resumed_from_a_state_is_bit_for_bit_the_uninterrupted_one(digits):
    def trainer() -> Trainer:
        set_seed(3)
        return Trainer(build(seed=3), 1e-2, 100, seed=3, shuffle=True)

    class Stop(Hook):  # keeps every epoch's state, stops hard after epoch 4
        def __init__(self, trainer: Trainer) -> None:
            self.trainer, self.states = trainer, {}

        def on_epoch_end(self, loop, metrics) -> None:
            self.states[metrics.epoch] = self.trainer.state(metrics.epoch)
            if metrics.epoch == 4:
                raise KeyboardInterrupt

    straight = trainer()
    history = fit(straight, digits, 6).history
    first = trainer()
    stop = Stop(first)
    with pytest.raises(KeyboardInterrupt):  # stopped after epoch 4, last state saved at 2
        fit(first, digits, 6, [stop])
    resumed = trainer()
    resumed.restore(stop.states[2])
    rest = fit(resumed, digits, 6, first_epoch=3).history
    assert [m.epoch for m in rest] == [3, 4, 5, 6]
    assert rest == history[2:]  # every metric of the replayed and the new epochs
    for name, value in straight.model.get_weights().items():
        np.testing.assert_array_equal(resumed.model.get_weights()[name], value)


def test_a_reused_trainer_trains_bit_for_bit_as_a_new_one(digits):
    # A sweep's worker reuses its last Trainer (and its traced epoch) for the same settings.
    def train(make, seed: int, **model_kwargs):
        set_seed(seed)
        trainer = make(build(seed=seed, **model_kwargs), 1e-2, 100, seed=seed, shuffle=True)
        return trainer, fit(trainer, digits, 3).history, trainer.model.get_weights()

    first, _, _ = train(trainer_for, 0)
    reused, history, weights = train(trainer_for, 1)
    assert reused is first  # same settings: the same Trainer, its epoch traced once
    _, new_history, new_weights = train(Trainer, 1)
    assert history == new_history
    for name, value in new_weights.items():
        np.testing.assert_array_equal(weights[name], value)
    other, _, _ = train(trainer_for, 1, hidden=9)
    assert other is not first  # another architecture: another Trainer


def test_a_served_module_is_kept_for_its_model_and_saves_the_weights_it_has_then(tmp_path):
    from lstm_cli.data.readings import reading_for
    from lstm_cli.networks.serving import serving_function

    rows, columns = reading_for("rows"), reading_for("columns")
    model = build(hidden=8)
    served = serving_function(model, 1.0, rows)
    assert serving_function(model, 1.0, rows) is served  # a sweep worker's next job
    assert serving_function(model, 1 / 16, rows) is not served
    assert serving_function(model, 1.0, columns) is not served
    assert serving_function(build(hidden=8), 1.0, rows) is not served
    served = serving_function(model, 1.0, rows)
    images = np.random.default_rng(0).uniform(0, 16, (5, 8, 8))  # (n, 8, 8) raw
    saved = []
    for step in range(2):
        if step:
            model.set_weights(
                {k: w * 0.5 + 0.1 for k, w in model.get_weights().items()}
            )  # next job
        tf.saved_model.save(served, str(tmp_path / str(step)))
        saved.append(tf.saved_model.load(str(tmp_path / str(step)))(images).numpy())
        np.testing.assert_allclose(saved[-1], served.__call__(images).numpy(), rtol=1e-6)
    assert not np.allclose(saved[0], saved[1])


@pytest.mark.parametrize("name", ["columns", "pixels", "permuted"])
def test_a_served_model_takes_the_image_and_reads_it_as_it_was_trained_to(name):
    from lstm_cli.data.readings import reading_for
    from lstm_cli.networks.serving import predict_proba, serving_function

    reading = reading_for(name, permutation_seed=3)
    model = DigitsRNN(
        input_size=reading.shape[1],
        num_classes=10,
        hidden_size=6,
        cell="gru",
        init="glorot",
        output_activation="linear",
        seed=1,
    ).build()
    images = np.random.default_rng(0).integers(0, 17, (4, 8, 8)).astype(np.float64)
    served = serving_function(model, 1 / 16, reading).__call__(images).numpy()  # (4, classes)
    read = reading.read((images / 16).astype(np.float32))  # (4, steps, features)
    np.testing.assert_allclose(served, predict_proba(model, read), rtol=1e-5, atol=1e-7)


def test_bf16_matmuls_stay_near_fp32_and_fp32_is_the_default(digits):
    """precision=bf16 (emulated where the CPU lacks it: a test of the numbers, not the speed)
    gives the fp32 outputs to bfloat16's 8 bits of mantissa, and trains alike."""
    fp32 = build(init="glorot")
    assert fp32.precision == "fp32" and fp32.layers[0].compute_dtype == tf.float32
    bf16 = build(init="glorot", precision="bf16")
    x = tf.constant(digits.x_val[:50])
    out32, out16 = fp32(x).numpy(), bf16(x).numpy()
    assert bf16(x).dtype == tf.float32
    np.testing.assert_allclose(out16, out32, atol=0.05)
    assert not np.array_equal(out16, out32)  # the matmuls did run in bfloat16
    loss32 = train(digits, epochs=2, init="glorot")[-1].train_loss
    loss16 = train(digits, epochs=2, init="glorot", precision="bf16")[-1].train_loss
    assert abs(loss16 - loss32) < 0.05 * loss32
    with pytest.raises(ValueError, match="precision must be one of"):
        build(precision="fp16")
