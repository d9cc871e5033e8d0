"""The cell's equations against an independent NumPy implementation and Keras's LSTMCell."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from lstm_cli.cell import LSTMCell

INPUT, HIDDEN, BATCH, STEPS = 3, 4, 2, 5


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def numpy_lstm(x: np.ndarray, W: np.ndarray, B: np.ndarray, variant: str) -> np.ndarray:
    """The article's equations, step by step in float64: returns every h, (steps, batch, hidden)."""
    h = np.zeros((x.shape[0], HIDDEN))
    c = np.zeros((x.shape[0], HIDDEN))
    out = []
    for t in range(x.shape[1]):
        zifo = np.concatenate([x[:, t], h], axis=1) @ W + B
        z, i, f, o = np.split(zifo, 4, axis=1)
        c = c * sigmoid(f) + np.tanh(z) * sigmoid(i)
        h = c * sigmoid(o) if variant == "seed" else np.tanh(c) * sigmoid(o)
        out.append(h)
    return np.stack(out)


def random_cell(variant: str, seed: int = 0) -> tuple[LSTMCell, np.ndarray]:
    rng = np.random.default_rng(seed)
    cell = LSTMCell(INPUT, HIDDEN, variant=variant, init="zeros", seed=0).build()
    cell.W.assign(rng.normal(0, 0.5, cell.W.shape).astype(np.float32))
    cell.B.assign(rng.normal(0, 0.5, cell.B.shape).astype(np.float32))
    x = rng.normal(0, 1, (BATCH, STEPS, INPUT)).astype(np.float32)
    return cell, x


def run_cell(cell: LSTMCell, x: np.ndarray) -> tf.Tensor:
    """The article's form (`__call__` on each step), every h stacked: (steps, batch, hidden)."""
    state = cell.initial_state(x.shape[0])
    hs = []
    for t in range(x.shape[1]):
        h, state = cell(tf.constant(x[:, t]), state)
        hs.append(h)
    return tf.stack(hs)


def test_weights_have_the_articles_shapes():
    cell = LSTMCell(8, 50, variant="seed", init="zeros", seed=0).build()
    assert cell.W.shape == (8 + 50, 4 * 50)
    assert cell.B.shape == (4 * 50,)
    assert not np.any(cell.W.numpy()) and not np.any(cell.B.numpy())


@pytest.mark.parametrize("variant", ["seed", "standard"])
def test_forward_matches_numpy(variant):
    cell, x = random_cell(variant)
    expected = numpy_lstm(x.astype(np.float64), cell.W.numpy(), cell.B.numpy(), variant)
    np.testing.assert_allclose(run_cell(cell, x).numpy(), expected, rtol=1e-5, atol=1e-5)


def test_variants_differ_only_by_the_output_tanh():
    seed_cell, x = random_cell("seed")
    standard_cell, _ = random_cell("standard")
    assert not np.allclose(run_cell(seed_cell, x), run_cell(standard_cell, x))


@pytest.mark.parametrize("variant", ["seed", "standard"])
def test_gradients_match_numpy_finite_differences(variant):
    cell, x = random_cell(variant, seed=3)
    probe = np.random.default_rng(4).normal(size=(STEPS, BATCH, HIDDEN))  # a fixed readout

    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(run_cell(cell, x) * probe)
    grad_w, grad_b = (g.numpy() for g in tape.gradient(loss, [cell.W, cell.B]))

    W, B, x64 = (
        cell.W.numpy().astype(np.float64),
        cell.B.numpy().astype(np.float64),
        x.astype(float),
    )

    def numpy_loss(W_: np.ndarray, B_: np.ndarray) -> float:
        return float(np.sum(numpy_lstm(x64, W_, B_, variant) * probe))

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
    a = LSTMCell(8, 6, variant="seed", init="glorot", seed=5).build()
    b = LSTMCell(8, 6, variant="seed", init="glorot", seed=5).build()
    np.testing.assert_array_equal(a.W.numpy(), b.W.numpy())
    np.testing.assert_array_equal(np.split(a.B.numpy(), 4)[2], np.ones(6))


def test_project_then_step_equals_the_articles_concat_form():
    cell, x = random_cell("seed", seed=9)
    h, c = cell.initial_state(BATCH)
    w_x, w_h = cell.split_kernel()
    for xw_t in cell.project_inputs(tf.constant(x), w_x):  # steps x (batch, 4*hidden)
        h, c, _ = cell.step(xw_t, h, c, w_h)
    np.testing.assert_allclose(h.numpy(), run_cell(cell, x)[-1].numpy(), atol=1e-6)
