"""An epoch of training: Adam on softmax cross-entropy, one compiled call per epoch.

The data lives on the device as tensors; each epoch is a single `tf.function` call whose
batch loop runs in the graph, so Python only runs between epochs (the loop and its hooks:
`fit.loop`). Also the state that goes on bit for bit (`TrainState`), the thread and seed
settings, and evaluating a model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from lstm_cli.data.digits import Digits
from lstm_cli.networks.model import DigitsRNN
from lstm_cli.runtime import worker_cache


@dataclass(frozen=True)
class EpochMetrics:
    """One epoch's figures: `train_*` over the epoch's batches, `val_*` on the held-out split."""

    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float

    def as_dict(self) -> dict[str, float]:
        return {k: v for k, v in asdict(self).items() if k != "epoch"}


ONE_THREAD_UP_TO = 128  # hidden units up to which one thread trains fastest (docs/performance.md)


def default_threads(hidden_size: int, cores: int | None = None) -> int | None:
    """Threads for `threads: null`: one for small models, whose ops are too small to split,
    else every core the job may use (`cores`; None: TensorFlow's default). Measured on a quiet
    2-core machine with the fused gate kernel, ms an epoch on 1 and 2 threads: hidden 50 12.8
    vs 17.4, 128 37.5 vs 41.4, 200 82.5 vs 77.2, 256 128 vs 113, 512 492 vs 361
    (bench/RESULTS.md, 2026-12-04)."""
    return 1 if hidden_size <= ONE_THREAD_UP_TO else cores


def configure_threads(threads: int | None) -> int:
    """Set TensorFlow's intra- and inter-op threads (None: TensorFlow's default); return the
    intra-op count in force (0: TensorFlow's default). Takes effect only before the first op
    of the process; later (a reused sweep worker) the earlier setting stays."""
    if threads is not None:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:
            pass  # the runtime is already initialised: its setting stays
    return tf.config.threading.get_intra_op_parallelism_threads()


def set_seed(seed: int) -> None:
    """The one seeding point: Python, NumPy and TensorFlow."""
    tf.keras.utils.set_random_seed(seed)


def loss_and_correct(
    outputs: tf.Tensor, y: tf.Tensor, weights: tf.Tensor | None = None
) -> tuple[tf.Tensor, tf.Tensor]:
    """Softmax cross-entropy averaged over the images, and the number of correct predictions.

    `weights` (batch,) of 0 or 1 leave padding images out of both.
    """
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=outputs)  # (batch,)
    hits = tf.cast(tf.equal(tf.argmax(outputs, 1, output_type=y.dtype), y), tf.float32)
    if weights is None:
        return tf.reduce_mean(losses), tf.reduce_sum(hits)
    return tf.reduce_sum(losses * weights) / tf.reduce_sum(weights), tf.reduce_sum(hits * weights)


class Adam:
    """Adam with TensorFlow's fused kernel: one op per variable and step.

    The update and defaults are Keras's (the article's TF1 AdamOptimizer differs only by its
    epsilon, 1e-8): with t steps taken, lr_t = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t);
    m = beta_1 m + (1 - beta_1) g; v = beta_2 v + (1 - beta_2) g^2;
    var -= lr_t m / (sqrt(v) + epsilon). Keras's own Adam issues about a dozen small ops per
    variable, a tenth of this small model's step.
    """

    def __init__(
        self,
        variables: list[tf.Variable],
        learning_rate: float,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
    ):
        self.variables = variables
        self.learning_rate = learning_rate
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon
        self.m = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]
        self.v = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]
        self.beta_1_power = tf.Variable(1.0, trainable=False)
        self.beta_2_power = tf.Variable(1.0, trainable=False)

    def apply(self, grads: list[tf.Tensor]) -> None:
        """One step: update every variable from its gradient."""
        beta_1_power = self.beta_1_power.assign(self.beta_1_power * self.beta_1)
        beta_2_power = self.beta_2_power.assign(self.beta_2_power * self.beta_2)
        for var, m, v, grad in zip(self.variables, self.m, self.v, grads, strict=True):
            tf.raw_ops.ResourceApplyAdam(
                var=var.handle,
                m=m.handle,
                v=v.handle,
                beta1_power=beta_1_power,
                beta2_power=beta_2_power,
                lr=self.learning_rate,
                beta1=self.beta_1,
                beta2=self.beta_2,
                epsilon=self.epsilon,
                grad=grad,
            )


@dataclass(frozen=True)
class TrainState:
    """A training stopped after `epoch`: everything needed to go on bit for bit."""

    epoch: int
    weights: dict[str, np.ndarray]  # DigitsRNN.get_weights()
    m: list[np.ndarray]  # Adam's first moments, in the order of model.trainable_variables
    v: list[np.ndarray]  # Adam's second moments
    beta_powers: tuple[float, float]  # beta_1^t, beta_2^t: the step count t

    def arrays(self) -> dict[str, np.ndarray]:
        """Every array by a flat name (weights.W, m.0, v.0, ...), to save."""
        arrays = {f"weights.{k}": v for k, v in self.weights.items()}
        arrays |= {f"m.{i}": a for i, a in enumerate(self.m)}
        return arrays | {f"v.{i}": a for i, a in enumerate(self.v)}

    @classmethod
    def from_arrays(
        cls, epoch: int, arrays: dict[str, np.ndarray], beta_powers: tuple[float, float]
    ) -> TrainState:
        """The state `arrays` (as `arrays` named them) hold."""

        def slot(prefix: str) -> list[np.ndarray]:
            count = sum(name.startswith(f"{prefix}.") for name in arrays)
            return [arrays[f"{prefix}.{i}"] for i in range(count)]

        weights = {k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith("weights.")}
        return cls(epoch, weights, slot("m"), slot("v"), tuple(beta_powers))


class Trainer:
    """Trains a built `DigitsRNN` on a `Digits` split, an epoch at a time (`epoch`); the
    loop around the epochs is `fit.loop.fit`.

    Args:
        model: the model to train (built).
        learning_rate: Adam's step size.
        batch_size: images per step; the last batch of an epoch may be smaller.
        seed: seeds the per-epoch shuffles.
        shuffle: reshuffle the training split every epoch.
        jit_compile: compile the epoch with XLA. Off: on CPU, XLA spends 15-25 s compiling the
            epoch's loop (its last batch is smaller) and runs it ~35x slower (`bench --ab`).
        kernel: the fused kernel's ops (`fused_kernel.for_config`), or None: TensorFlow ops
            for the cell's elementwise steps.
    """

    def __init__(
        self,
        model: DigitsRNN,
        learning_rate: float,
        batch_size: int,
        *,
        seed: int,
        shuffle: bool,
        jit_compile: bool = False,
        kernel: Any = None,
    ):
        self.model = model
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.jit_compile = jit_compile
        self.kernel = kernel
        self.optimizer = Adam(model.trainable_variables, learning_rate)
        self._epoch: Callable[..., tf.Tensor] | None = None  # the traced epoch (`_compile`)
        self._data: tuple[Digits, list[tf.Tensor]] | None = None  # the split, as tensors

    def reset(self, weights: dict[str, np.ndarray], seed: int) -> None:
        """Start afresh from `weights` (a new model's initial ones) and `seed`, as a new Trainer
        would: Adam's moments zero, no step taken."""
        self.model.set_weights(weights)
        self.model.seed = self.seed = seed
        adam = self.optimizer
        for variable in (*adam.m, *adam.v):
            variable.assign(tf.zeros_like(variable))
        adam.beta_1_power.assign(1.0)
        adam.beta_2_power.assign(1.0)

    def state(self, epoch: int) -> TrainState:
        """What continues training exactly after `epoch`: the weights and Adam's moments and
        step count (each epoch's shuffle is a function of the seed and the epoch alone)."""
        adam = self.optimizer
        return TrainState(
            epoch=epoch,
            weights={k: np.asarray(v) for k, v in self.model.get_weights().items()},
            m=[v.numpy() for v in adam.m],
            v=[v.numpy() for v in adam.v],
            beta_powers=(float(adam.beta_1_power.numpy()), float(adam.beta_2_power.numpy())),
        )

    def restore(self, state: TrainState) -> None:
        """Continue from `state` (as `state` gave it, for a model of the same shape)."""
        adam = self.optimizer
        self.model.set_weights(state.weights)
        for slot, values in ((adam.m, state.m), (adam.v, state.v)):
            for variable, value in zip(slot, values, strict=True):
                variable.assign(value)
        adam.beta_1_power.assign(state.beta_powers[0])
        adam.beta_2_power.assign(state.beta_powers[1])

    def epoch(self, epoch: int, data: Digits) -> EpochMetrics:
        """Train epoch `epoch` (its shuffle is a function of the seed and the epoch alone: after
        `restore`, the one after the state's) and measure it on the validation split."""
        if self._epoch is None:
            self._epoch = self._compile()
        if self._data is None or self._data[0] is not data:  # to tensors once per split
            tensors = (data.x_train, data.y_train, data.x_val, data.y_val)
            self._data = (data, [tf.constant(t) for t in tensors])  # (n, steps, input), (n,), ...
        values = self._epoch(tf.constant(epoch), tf.constant(self.seed), *self._data[1])
        train_loss, train_acc, val_loss, val_acc = values.numpy()
        return EpochMetrics(
            epoch=epoch,
            train_loss=float(train_loss),
            train_accuracy=float(train_acc),
            val_loss=float(val_loss),
            val_accuracy=float(val_acc),
        )

    def _compile(self) -> Callable[..., tf.Tensor]:
        """One epoch as one graph: (epoch, seed, x_train, y_train, x_val, y_val) -> (train loss,
        train acc, val loss, val acc). The data and the seed are arguments, so the graph is
        traced once per Trainer and data shape (a reused Trainer: see `trainer_for`)."""
        model = self.model
        variables = model.trainable_variables
        optimizer = self.optimizer

        # autograph=False: the loop is written as a graph loop, and tracing skips conversion.
        @tf.function(jit_compile=self.jit_compile, autograph=False)
        def train_epoch(epoch, seed, x_train, y_train, x_val, y_val) -> tf.Tensor:
            n = int(x_train.shape[0])
            batch_size = min(self.batch_size, n)
            n_batches = math.ceil(n / batch_size)
            padding = n_batches * batch_size - n
            # Every batch has the static shape (batch_size, ...): the last one is padded with
            # images of weight 0. Static shapes spare the gradient its dynamic-broadcast ops.
            weights = tf.reshape(
                tf.concat([tf.ones([n]), tf.zeros([padding])], 0), [n_batches, batch_size]
            )  # (batches, batch_size)

            def train_step(b, loss_sum, correct, batches):
                idx, w = batches[b], weights[b]  # (batch_size,) this step's images and weights
                xb, yb = tf.gather(x_train, idx), tf.gather(y_train, idx)
                with tf.GradientTape() as tape:
                    loss, batch_correct = loss_and_correct(model(xb, self.kernel), yb, w)
                grads = tape.gradient(loss, variables)
                optimizer.apply(grads)
                loss_sum += loss * tf.reduce_sum(w)
                return b + 1, loss_sum, correct + batch_correct, batches

            if self.shuffle:
                noise = tf.random.stateless_uniform([n], seed=tf.stack([seed, epoch]))
                order = tf.argsort(noise)  # (n,) a fresh permutation every epoch
            else:
                order = tf.range(n)
            padded = tf.concat([order, order[:padding]], 0)  # (batches * batch_size,)
            batches = tf.reshape(padded, [n_batches, batch_size])
            _, loss_sum, correct, _ = tf.while_loop(  # no Python per step
                lambda b, *_: b < n_batches,
                train_step,
                (tf.constant(0), tf.constant(0.0), tf.constant(0.0), batches),
            )
            val_loss, val_correct = loss_and_correct(model(x_val, self.kernel), y_val)
            # One call per epoch, one transfer back: (train loss, train acc, val loss, val acc).
            return tf.stack(
                [loss_sum / n, correct / n, val_loss, val_correct / float(x_val.shape[0])]
            )

        return train_epoch


def trainer_for(
    model: DigitsRNN,
    learning_rate: float,
    batch_size: int,
    *,
    seed: int,
    shuffle: bool,
    kernel: Any = None,
) -> Trainer:
    """A Trainer for the new `model`, as `Trainer(...)` gives. In a process whose last Trainer
    was for the same architecture and settings (a sweep's jobs in one worker), that one, reset
    to `model`'s initial weights and `seed`: its traced epoch is reused (tracing is 0.5 s of a
    2.5 s default training; see `worker_cache`). Train `trainer.model` (which holds `model`'s
    weights), not `model`."""
    key = (
        model.input_size,
        model.num_classes,
        model.hidden_size,
        model.cell,
        len(model.layers),
        model.output_activation,
        model.init,
        model.precision,
        learning_rate,
        batch_size,
        shuffle,
        kernel is not None,
    )
    trainer = worker_cache.get("trainer", key)
    if trainer is not None:
        trainer.reset(model.get_weights(), seed)
        return trainer
    trainer = Trainer(model, learning_rate, batch_size, seed=seed, shuffle=shuffle, kernel=kernel)
    return worker_cache.put("trainer", trainer, key)


def evaluate(model: DigitsRNN, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Loss and accuracy of `model` on images x (n, steps, input) with labels y (n,)."""
    loss, correct = loss_and_correct(model(tf.constant(x, tf.float32)), tf.constant(y))
    return float(loss), float(correct) / len(y)
