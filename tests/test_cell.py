"""The cell's equations against an independent NumPy implementation and Keras's LSTMCell."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from lstm_cli.config.choices import Cell, Init, names
from lstm_cli.networks.cell import LSTMCell
from tests.helpers import numpy_lstm

INPUT, HIDDEN, BATCH, STEPS = 3, 4, 2, 5


def random_cell(cell: str, seed: int = 0) -> tuple[LSTMCell, np.ndarray]:
    """A cell with random N(0, 0.5) weights (the same for both cells given `seed`) and an input."""
    rng = np.random.default_rng(seed)
    lstm = LSTMCell(INPUT, HIDDEN, cell=cell, init="zeros", seed=0).build()
    lstm.W.assign(rng.normal(0, 0.5, lstm.W.shape).astype(np.float32))
    lstm.B.assign(rng.normal(0, 0.5, lstm.B.shape).astype(np.float32))
    x = rng.normal(0, 1, (BATCH, STEPS, INPUT)).astype(np.float32)
    return lstm, x


def run_cell(cell: LSTMCell, x: np.ndarray) -> tf.Tensor:
    """The article's form (`__call__` on each step), every h stacked: (steps, batch, hidden)."""
    state = cell.initial_state(x.shape[0])
    hs = []
    for t in range(x.shape[1]):
        h, state = cell(tf.constant(x[:, t]), state)
        hs.append(h)
    return tf.stack(hs)


def test_weights_have_the_articles_shapes():
    cell = LSTMCell(8, 50, cell="seed", init="zeros", seed=0).build()
    assert cell.W.shape == (8 + 50, 4 * 50)
    assert cell.B.shape == (4 * 50,)
    assert not np.any(cell.W.numpy()) and not np.any(cell.B.numpy())


@pytest.mark.parametrize(("key", "choice"), [("cell", Cell), ("init", Init)])
def test_unknown_choice_is_rejected_with_the_allowed_values(key, choice):
    kwargs = {"cell": "seed", "init": "zeros"} | {key: "bogus"}
    with pytest.raises(ValueError, match=f"^{key} must be one of .*'bogus'") as error:
        LSTMCell(8, 4, seed=0, **kwargs)
    for allowed in names(choice):
        assert repr(allowed) in str(error.value)


def test_enum_members_and_their_strings_build_the_same_cell():
    members = LSTMCell(INPUT, HIDDEN, cell=Cell.standard, init=Init.glorot, seed=1).build()
    strings = LSTMCell(INPUT, HIDDEN, cell="standard", init="glorot", seed=1).build()
    x = np.random.default_rng(0).normal(size=(BATCH, STEPS, INPUT)).astype(np.float32)
    np.testing.assert_array_equal(run_cell(members, x).numpy(), run_cell(strings, x).numpy())


@pytest.mark.parametrize("cell", names(Cell))
def test_forward_matches_numpy(cell):
    lstm, x = random_cell(cell)
    expected = numpy_lstm(x, lstm.W.numpy(), lstm.B.numpy(), cell)
    state = lstm.initial_state(BATCH)
    for t in range(STEPS):  # the state too, not only h
        _, state = lstm(tf.constant(x[:, t]), state)
        for got, name in zip(state, ("h", "c"), strict=True):
            np.testing.assert_allclose(got.numpy(), expected[name][t], rtol=1e-5, atol=1e-5)


def test_cells_differ_only_by_the_output_tanh():
    seed_cell, x = random_cell("seed")
    standard_cell, _ = random_cell("standard")  # the same weights
    np.testing.assert_array_equal(seed_cell.W.numpy(), standard_cell.W.numpy())
    rng = np.random.default_rng(1)
    some_state = [tf.constant(rng.normal(size=(BATCH, HIDDEN)), tf.float32) for _ in "hc"]
    for h_tm1, c_tm1 in ((None, None), some_state):  # the zero state, then any state
        steps = []
        for cell in (seed_cell, standard_cell):
            w_x, w_h = cell.split_weights()
            xw_1 = cell.project_inputs(tf.constant(x), w_x)[0]  # (batch, 4*hidden)
            steps.append(cell.step(xw_1, h_tm1, c_tm1, w_h))
        (h_seed, c_seed, gates_seed), (h_standard, c_standard, gates_standard) = steps
        for a, b in zip(gates_seed, gates_standard, strict=True):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
        np.testing.assert_array_equal(c_seed.numpy(), c_standard.numpy())
        c, o = c_seed.numpy(), gates_seed.o.numpy()
        np.testing.assert_allclose(h_seed.numpy(), c * o, rtol=1e-6)
        np.testing.assert_allclose(h_standard.numpy(), np.tanh(c) * o, rtol=1e-6)
        assert not np.allclose(h_seed.numpy(), h_standard.numpy(), atol=1e-3)  # the tanh matters


@pytest.mark.parametrize("cell", names(Cell))
def test_gradients_match_numpy_finite_differences(cell):
    lstm, x = random_cell(cell, seed=3)
    probe = np.random.default_rng(4).normal(size=(STEPS, BATCH, HIDDEN))  # a fixed readout

    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(run_cell(lstm, x) * probe)
    grad_w, grad_b = (g.numpy() for g in tape.gradient(loss, [lstm.W, lstm.B]))

    W, B = lstm.W.numpy().astype(np.float64), lstm.B.numpy().astype(np.float64)

    def numpy_loss(W_: np.ndarray, B_: np.ndarray) -> float:
        return float(np.sum(numpy_lstm(x, W_, B_, cell)["h"] * probe))

    eps = 1e-6
    for grad, param, is_w in ((grad_w, W, True), (grad_b, B, False)):
        numeric = np.zeros_like(param)
        for idx in np.ndindex(param.shape):
            up, down = param.copy(), param.copy()
            up[idx] += eps
            down[idx] -= eps
            args_up = (up, B) if is_w else (W, up)
            args_down = (down, B) if is_w else (W, down)
            numeric[idx] = (numpy_loss(*args_up) - numpy_loss(*args_down)) / (2 * eps)
        np.testing.assert_allclose(grad, numeric, rtol=1e-3, atol=1e-4)


def test_standard_cell_equals_keras_lstmcell():
    cell, x = random_cell("standard", seed=7)
    keras_cell = tf.keras.layers.LSTMCell(HIDDEN)
    keras_cell.build((None, INPUT))
    # Ours: columns z, i, f, o; Keras: i, f, c (our z), o.
    z, i, f, o = np.split(cell.W.numpy(), 4, axis=1)
    bz, bi, bf, bo = np.split(cell.B.numpy(), 4)
    kernel = np.concatenate([i, f, z, o], axis=1)
    keras_cell.set_weights([kernel[:INPUT], kernel[INPUT:], np.concatenate([bi, bf, bz, bo])])
    state = [tf.zeros((BATCH, HIDDEN)), tf.zeros((BATCH, HIDDEN))]
    keras_hs = []
    for t in range(STEPS):
        h, state = keras_cell(tf.constant(x[:, t]), state)
        keras_hs.append(h)
    np.testing.assert_allclose(run_cell(cell, x).numpy(), tf.stack(keras_hs).numpy(), atol=1e-5)


def test_glorot_init_is_seeded_and_opens_the_forget_gate():
    a, b, other = (
        LSTMCell(8, 6, cell="seed", init="glorot", seed=seed).build() for seed in (5, 5, 6)
    )
    np.testing.assert_array_equal(a.W.numpy(), b.W.numpy())
    assert not np.allclose(a.W.numpy(), other.W.numpy())
    limit = np.sqrt(6 / (8 + 6 + 4 * 6))  # Glorot-uniform: U(-limit, limit), fan_in + fan_out
    assert np.abs(a.W.numpy()).max() <= limit and a.W.numpy().std() > limit / 3
    bz, bi, bf, bo = np.split(a.B.numpy(), 4)  # gate order z, i, f, o
    np.testing.assert_array_equal(bf, np.ones(6))
    assert not np.any(np.concatenate([bz, bi, bo]))


def test_project_then_step_equals_the_articles_concat_form():
    cell, x = random_cell("seed", seed=9)
    h, c = cell.initial_state(BATCH)
    w_x, w_h = cell.split_weights()
    for xw_t in cell.project_inputs(tf.constant(x), w_x):  # steps x (batch, 4*hidden)
        h, c, _ = cell.step(xw_t, h, c, w_h)
    np.testing.assert_allclose(h.numpy(), run_cell(cell, x)[-1].numpy(), atol=1e-6)
