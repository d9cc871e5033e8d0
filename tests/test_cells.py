"""Every cell's equations: against an independent NumPy implementation (tests.helpers'
`numpy_cell`), against Keras where Keras has the cell (LSTMCell, GRUCell, SimpleRNNCell) given
the same weights, and its gradients against finite differences of the NumPy one."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from lstm_cli.config.choices import Cell, names
from lstm_cli.networks.cells import CELLS, RecurrentCell
from tests.helpers import numpy_cell

INPUT, HIDDEN, BATCH, STEPS = 3, 4, 2, 5


def random_cell(name: str, seed: int = 0) -> tuple[RecurrentCell, np.ndarray]:
    """Cell `name` with random N(0, 0.5) weights (peepholes too) and an input (batch, steps,
    input)."""
    rng = np.random.default_rng(seed)
    cell = CELLS[name](INPUT, HIDDEN, init="zeros", seed=0).build()
    for variable in cell.weights().values():
        variable.assign(rng.normal(0, 0.5, variable.shape).astype(np.float32))
    x = rng.normal(0, 1, (BATCH, STEPS, INPUT)).astype(np.float32)
    return cell, x


def run(cell: RecurrentCell, x: np.ndarray) -> tf.Tensor:
    """Every step's h, (steps, batch, hidden): the inputs projected once, then the steps."""
    w_x, w_h = cell.split_weights()
    state, hs = None, []
    for xw_t in cell.project_inputs(tf.constant(x), w_x):
        h, state, _ = cell.step(xw_t, state, w_h)
        hs.append(h)
    return tf.stack(hs)


def weights_of(cell: RecurrentCell) -> dict[str, np.ndarray]:
    return {name: v.numpy() for name, v in cell.weights().items()}


def test_every_cell_is_registered_under_its_config_name():
    assert list(CELLS) == names(Cell)


@pytest.mark.parametrize("name", names(Cell))
def test_forward_matches_numpy(name):
    cell, x = random_cell(name)
    expected = numpy_cell(x, weights_of(cell), name)
    np.testing.assert_allclose(run(cell, x).numpy(), expected["h"], rtol=1e-5, atol=1e-5)
    w_x, w_h = cell.split_weights()  # the gates it shows, step by step
    state = None
    for t, xw_t in enumerate(cell.project_inputs(tf.constant(x), w_x)):
        _, state, shown = cell.step(xw_t, state, w_h)
        assert list(shown) == list(cell.shown)
        for gate, value in shown.items():
            np.testing.assert_allclose(value.numpy(), expected[gate][t], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", names(Cell))
def test_gradients_match_numpy_finite_differences(name):
    cell, x = random_cell(name, seed=3)
    probe = np.random.default_rng(4).normal(size=(STEPS, BATCH, HIDDEN))  # a fixed readout
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(run(cell, x) * probe)
    variables = cell.weights()
    grads = dict(zip(variables, tape.gradient(loss, list(variables.values())), strict=True))
    params = {k: v.astype(np.float64) for k, v in weights_of(cell).items()}

    def numpy_loss(changed: dict[str, np.ndarray]) -> float:
        return float(np.sum(numpy_cell(x, params | changed, name)["h"] * probe))

    eps = 1e-6
    for key, param in params.items():
        numeric = np.zeros_like(param)
        for idx in np.ndindex(param.shape):
            up, down = param.copy(), param.copy()
            up[idx] += eps
            down[idx] -= eps
            numeric[idx] = (numpy_loss({key: up}) - numpy_loss({key: down})) / (2 * eps)
        np.testing.assert_allclose(grads[key].numpy(), numeric, rtol=1e-3, atol=1e-4, err_msg=key)


def keras_steps(keras_cell, x: np.ndarray, state: list) -> np.ndarray:
    hs = []
    for t in range(x.shape[1]):
        h, state = keras_cell(tf.constant(x[:, t]), state)
        hs.append(h)
    return tf.stack(hs).numpy()


def test_lstm_equals_keras_lstmcell():
    cell, x = random_cell("lstm", seed=7)
    keras_cell = tf.keras.layers.LSTMCell(HIDDEN)
    keras_cell.build((None, INPUT))
    # Ours: columns z, i, f, o; Keras: i, f, c (our z), o.
    z, i, f, o = np.split(cell.W.numpy(), 4, axis=1)
    bz, bi, bf, bo = np.split(cell.B.numpy(), 4)
    kernel = np.concatenate([i, f, z, o], axis=1)
    keras_cell.set_weights([kernel[:INPUT], kernel[INPUT:], np.concatenate([bi, bf, bz, bo])])
    zeros = [tf.zeros((BATCH, HIDDEN)), tf.zeros((BATCH, HIDDEN))]
    np.testing.assert_allclose(run(cell, x).numpy(), keras_steps(keras_cell, x, zeros), atol=1e-5)


def test_gru_equals_keras_grucell_with_reset_after():
    cell, x = random_cell("gru", seed=8)
    keras_cell = tf.keras.layers.GRUCell(HIDDEN)  # reset_after=True: Keras's default
    keras_cell.build((None, INPUT))
    assert keras_cell.reset_after
    # Ours: W = [W; R] with blocks u, r, n; Keras: kernel, recurrent kernel with z, r, h.
    w = cell.W.numpy()
    bias = np.stack([cell.B.numpy(), cell.BR.numpy()])  # (2, 3*hidden): input, recurrent
    keras_cell.set_weights([w[:INPUT], w[INPUT:], bias])
    zeros = [tf.zeros((BATCH, HIDDEN))]
    np.testing.assert_allclose(run(cell, x).numpy(), keras_steps(keras_cell, x, zeros), atol=1e-5)


def test_rnn_equals_keras_simplernncell():
    cell, x = random_cell("rnn", seed=9)
    keras_cell = tf.keras.layers.SimpleRNNCell(HIDDEN)
    keras_cell.build((None, INPUT))
    w = cell.W.numpy()
    keras_cell.set_weights([w[:INPUT], w[INPUT:], cell.B.numpy()])
    zeros = [tf.zeros((BATCH, HIDDEN))]
    np.testing.assert_allclose(run(cell, x).numpy(), keras_steps(keras_cell, x, zeros), atol=1e-5)


def test_the_article_and_lstm_differ_only_by_the_output_tanh():
    article, x = random_cell("article")
    lstm, _ = random_cell("lstm")  # the same weights
    rng = np.random.default_rng(1)
    some_state = tuple(tf.constant(rng.normal(size=(BATCH, HIDDEN)), tf.float32) for _ in "hc")
    for state in (None, some_state):  # the zero state, then any state
        steps = []
        for cell in (article, lstm):
            w_x, w_h = cell.split_weights()
            xw_1 = cell.project_inputs(tf.constant(x), w_x)[0]  # (batch, 4*hidden)
            steps.append(cell.step(xw_1, state, w_h))
        (h_a, (_, c_a), shown_a), (h_l, (_, c_l), shown_l) = steps
        for gate in shown_a:
            np.testing.assert_array_equal(shown_a[gate].numpy(), shown_l[gate].numpy())
        np.testing.assert_array_equal(c_a.numpy(), c_l.numpy())
        c, o = c_a.numpy(), shown_a["o"].numpy()
        np.testing.assert_allclose(h_a.numpy(), c * o, rtol=1e-6)
        np.testing.assert_allclose(h_l.numpy(), np.tanh(c) * o, rtol=1e-6)
        assert not np.allclose(h_a.numpy(), h_l.numpy(), atol=1e-3)  # the tanh matters


def test_weights_have_the_articles_shapes_and_the_variants_theirs():
    article = CELLS["article"](8, 50, init="zeros", seed=0).build()
    assert article.W.shape == (8 + 50, 4 * 50) and article.B.shape == (4 * 50,)
    assert not np.any(article.W.numpy()) and not np.any(article.B.numpy())
    shapes = {name: CELLS[name](8, 5, init="zeros", seed=0).build() for name in CELLS}
    assert {name: c.W.shape[1] // 5 for name, c in shapes.items()} == {
        "article": 4,
        "lstm": 4,
        "peephole": 4,
        "cifg": 3,
        "nig": 3,
        "nfg": 3,
        "nog": 3,
        "niaf": 4,
        "gru": 3,
        "rnn": 1,
    }
    with_peepholes = {name for name, c in shapes.items() if "P" in c.weights()}
    assert with_peepholes == {"peephole", "cifg", "nig", "nfg", "nog", "niaf"}


@pytest.mark.parametrize("name", ["lstm", "peephole", "nig", "gru"])
def test_glorot_init_is_seeded_and_opens_the_forget_gate(name):
    a, b, other = (
        CELLS[name](8, 6, init="glorot", seed=seed, forget_bias=1.0).build() for seed in (5, 5, 6)
    )
    np.testing.assert_array_equal(a.W.numpy(), b.W.numpy())
    assert not np.allclose(a.W.numpy(), other.W.numpy())
    blocks = dict(zip(a.blocks, np.split(a.B.numpy(), len(a.blocks)), strict=True))
    for block, bias in blocks.items():  # the forget gate's bias is forget_bias, the rest 0
        np.testing.assert_array_equal(bias, np.full(6, 1.0 if block == "f" else 0.0))


def test_cifgs_forget_gate_starts_at_the_forget_bias():
    cell = CELLS["cifg"](8, 6, init="zeros", seed=0, forget_bias=2.0).build()
    _, b_i, _ = np.split(cell.B.numpy(), 3)  # z, i, o
    np.testing.assert_allclose(1 - 1 / (1 + np.exp(-b_i)), 1 / (1 + np.exp(-2.0)), rtol=1e-6)


def test_the_articles_one_step_form_equals_the_projected_steps():
    cell, x = random_cell("article", seed=9)
    state = None
    for t in range(STEPS):
        h, state = cell(tf.constant(x[:, t]), state)
    np.testing.assert_allclose(h.numpy(), run(cell, x)[-1].numpy(), atol=1e-6)
