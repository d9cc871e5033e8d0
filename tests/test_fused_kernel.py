"""The fused gate kernel (kernel=fused): the same numbers as TensorFlow ops, its build and its
cache, its lock, and what `auto` and `fused` do where it cannot be built."""

from __future__ import annotations

import errno
import shutil
import subprocess
import sys
import time
import types
from pathlib import Path

import mlflow
import numpy as np
import pytest
import tensorflow as tf
from mlflow.tracking import MlflowClient

from lstm_cli.config import compose, schema
from lstm_cli.config.choices import Cell, names
from lstm_cli.data.readings import reading_for
from lstm_cli.fit.loop import fit
from lstm_cli.fit.trainer import Trainer
from lstm_cli.networks import fused_kernel
from lstm_cli.networks.cells import CELLS
from lstm_cli.networks.model import DigitsRNN
from lstm_cli.runtime import hardware
from lstm_cli.runtime.errors import UserError
from tests.helpers import (
    EXPERIMENT,
    assert_one_line_error,
    cli_env,
    held_out,
    run_cli,
    sqlite_uri,
)

HAS_COMPILER = hardware.missing_compiler() is None
FAMILY = ("article", "lstm", "peephole", "cifg", "nig", "nfg", "nog", "niaf")  # the LSTMs
FUSED = (*FAMILY, "gru")  # the cells the kernel serves
# float32 rounds by up to u = 2^-24 (6e-8) of the value. The paths sum the same terms (a
# batch's rows, a gradient's steps) in different orders, the kernel row by row and oneDNN's
# matmuls and TensorFlow's reductions in blocks, so they differ by tens of u of the largest
# value where terms cancel, more over 64 steps than over 8: measured over 20 draws of weights
# and held-out digits, every cell the kernel serves on rows and pixels, at most 8.7e-6 from
# hidden 16 on and 3.1e-5 at hidden 1, where the largest of a few values sets the scale (nfg's
# bias gradient on pixels from zero weights: a float64 run puts the kernel within 3.5e-7 of
# the exact value, the ops within 2.9e-5). One draw of the 20 is no scale at all: the GRU at
# hidden 1 on rows, its unit saturated, whose cell gradients cancel to 1e-3 of the terms, so
# both paths are 1e-3 from the exact value and 6.3e-4 apart; the test's draw is not such a
# one. Allowed: 1e-4. Bugs planted in the kernel's backward pass stand out of it on the test's
# draw, from Glorot's weights (peepholes drawn): a peephole's term left out of dc_prev by
# 6.5e-3 at hidden 1 and 1.6e-2 from hidden 16 on, f's row of dP left out by 9.4e-4 at hidden 1
# and 0.28 from hidden 16 on, five others by 1.0e-2 to 12.
FP32_TOLERANCE = 1e-4
# bfloat16 keeps 8 significant bits: a rounding errs by up to u = 2^-8 of the value, and one
# step between neighbours (an ulp) is u to 2u. The two paths round in different places: the
# ops path rounds each step's x_t @ W_x to bfloat16 (the kernel projects in float32), and W's
# gradient twice (its matmul's operand and result) to the kernel's once; either rounding can
# land one ulp apart. Over the 8 steps of rows they differ by a few u: measured at hidden 200
# on held-out digits, 20 draws x every cell the kernel serves x both inits, at most 7.8e-3
# (2u) of the largest value. Over the 64 steps of pixels those ulps compound through the
# state: at most 4.6e-2 (12u: nig's bias gradient, from Glorot's weights). Allowed: 4u on
# rows, 16u on pixels; the test's own draw stays within 2u on both. Bugs planted in the
# kernel's backward pass stand out of them on that draw (hidden 200, Glorot's weights): the
# least, o's peephole term left out of dc, by 8.6e-2 (22u) on rows and 0.10 (26u) on pixels.
BF16_TOLERANCE = {"rows": 4 * 2**-8, "pixels": 16 * 2**-8}


@pytest.fixture(scope="module")
def fused():
    if not HAS_COMPILER:
        pytest.skip("no C++ compiler here")
    return fused_kernel.load()


@pytest.fixture(scope="module")
def digits(defaults) -> dict[str, tf.Tensor]:
    """37 held-out digits (a batch no vector width divides) as a default run reads them, by
    rows (8 steps of 8 pixels) and by pixels (64 steps of 1): half their pixels are 0, the
    terms the kernel's projection skips."""
    x = held_out(defaults).x_test[:37]  # (37, 8, 8) pixels 0..16
    assert (x == 0).mean() > 0.4
    read = {name: reading_for(name).read(x) for name in ("rows", "pixels")}
    return {name: tf.constant(sequences) for name, sequences in read.items()}


def _model(
    hidden: int, cell: str, init: str = "glorot", precision: str = "fp32", input_size: int = 8
) -> DigitsRNN:
    """A built model; with Glorot's weights its cell's other weights (peepholes P, the GRU's
    recurrent biases BR), which start at 0, are drawn too, so that their terms count."""
    model = DigitsRNN(
        input_size,
        10,
        hidden,
        cell=cell,
        init=init,
        output_activation="tanh",
        seed=3,
        precision=precision,
    ).build()
    if init == "glorot":
        rng = np.random.default_rng(3)
        for name, variable in model.layers[0].weights().items():
            if name not in ("W", "B"):
                variable.assign(rng.normal(0, 0.5, variable.shape).astype(np.float32))
    return model


def _outputs_and_gradients(model: DigitsRNN, x: tf.Tensor, fused) -> dict[str, np.ndarray]:
    """The outputs (batch, classes) and the gradients of their squares' sum, by weight."""
    weights = {**model.layers[0].weights(), "Wv": model.Wv, "bv": model.bv}
    with tf.GradientTape() as tape:
        outputs = model(x, fused)  # (batch, classes)
        loss = tf.reduce_sum(outputs * outputs)
    grads = dict(zip(weights, tape.gradient(loss, list(weights.values())), strict=True))
    return {"outputs": outputs.numpy()} | {k: g.numpy() for k, g in grads.items()}


def _assert_near(ours: dict, theirs: dict, tolerance: float) -> None:
    """Every value within `tolerance` of the largest of its kind (in magnitude)."""
    assert ours.keys() == theirs.keys()
    for name, value in ours.items():
        atol = tolerance * np.abs(theirs[name]).max()
        np.testing.assert_allclose(value, theirs[name], rtol=0, atol=atol, err_msg=name)


def test_the_kernel_serves_every_cell_but_the_rnn_and_says_so_in_its_attrs():
    """The LSTM family and the GRU have their step in the kernel; the tanh RNN (one tanh a
    step) does not. The LSTMs' forms are the kernel's attrs: their blocks and the rest."""
    assert schema.fused_cells() == [name for name in names(Cell) if name != "rnn"]
    forms = {name: CELLS[name](8, 4, init="zeros", seed=0).kernel_form for name in FAMILY}
    assert {name: form["blocks"] for name, form in forms.items()} == {
        "article": "zifo",
        "lstm": "zifo",
        "peephole": "zifo",
        "cifg": "zio",
        "nig": "zfo",
        "nfg": "zio",
        "nog": "zif",
        "niaf": "zifo",
    }
    assert [n for n, f in forms.items() if f["peepholes"]] == [*FAMILY[2:]]
    assert [n for n, f in forms.items() if f["coupled"]] == ["cifg"]
    assert [n for n, f in forms.items() if not f["input_tanh"]] == ["niaf"]
    assert [n for n, f in forms.items() if not f["output_tanh"]] == ["article"]


def test_kernel_fused_is_refused_for_the_rnn_and_stacked_layers(fused):
    for overrides, said in ((["cell=rnn"], "cell=rnn layers=1"), (["layers=2"], "layers=2")):
        with pytest.raises(UserError, match=r"^kernel=fused computes one layer of cell=article/"):
            schema.check(compose.compose(["kernel=fused", *overrides]))
        with pytest.raises(UserError, match=f"{said} runs on TensorFlow's ops"):
            schema.check(compose.compose(["kernel=fused", *overrides]))
    schema.check(compose.compose(["kernel=fused", "cell=gru"]))


@pytest.mark.parametrize("init", ["zeros", "glorot"])
@pytest.mark.parametrize("reading", ["rows", "pixels"])
@pytest.mark.parametrize("hidden", [1, 16, 200])
@pytest.mark.parametrize("cell", FUSED)
def test_fused_steps_give_the_outputs_and_gradients_of_tensorflow_ops(
    fused, digits, cell, hidden, reading, init
):
    """Forward and backward through every step (8 rows, 64 pixels), from the article's zero
    weights and from Glorot's: within float rounding of the ops' values (an exact 0, as the
    gradient of Wv while the zero weights keep h at 0, stays exactly 0)."""
    x = digits[reading]
    model = _model(hidden, cell, init, input_size=x.shape[2])
    assert model.fused
    reference = _outputs_and_gradients(model, x, None)
    # The cell's gradient is checked, not only zeros; but one unit can saturate (tanh(c) = 1
    # exactly: nog on pixels from Glorot's weights) and pass no gradient at all.
    assert hidden == 1 or np.abs(reference["W"]).max() > 0
    _assert_near(_outputs_and_gradients(model, x, fused), reference, FP32_TOLERANCE)


@pytest.mark.parametrize("init", ["zeros", "glorot"])
@pytest.mark.parametrize("reading", ["rows", "pixels"])
@pytest.mark.parametrize("cell", FUSED)
def test_fused_steps_under_bf16_matmuls_stay_near_the_ops(fused, digits, cell, reading, init):
    """precision=bf16 (emulated where the CPU lacks it): the recurrent matmul in bfloat16 on
    both paths; the kernel's projection takes the same bfloat16-rounded W_x in float32 (the
    pixels 0..16 are exact in bfloat16). Within `BF16_TOLERANCE` of the largest value."""
    x = digits[reading]
    model = _model(200, cell, init, "bf16", input_size=x.shape[2])
    reference = _outputs_and_gradients(model, x, None)
    _assert_near(_outputs_and_gradients(model, x, fused), reference, BF16_TOLERANCE[reading])


def test_a_step_of_the_wrong_shape_or_form_is_refused_by_the_kernel(fused):
    x, w_x, b, p = tf.zeros([4, 8, 8]), tf.zeros([8, 40]), tf.zeros([40]), tf.zeros([0])
    form = CELLS["article"](8, 10, init="zeros", seed=0).kernel_form
    with pytest.raises(tf.errors.InvalidArgumentError, match="hw must be"):
        fused.lstm_digits_gates(x, w_x, b, p, tf.zeros([4, 12]), tf.zeros([4, 10]), step=0, **form)
    with pytest.raises(tf.errors.InvalidArgumentError, match="step < steps"):
        fused.lstm_digits_gates_first(x, w_x, b, p, step=8, **form)
    with pytest.raises(tf.errors.InvalidArgumentError, match="p must be"):
        fused.lstm_digits_gates_first(x, w_x, b, p, step=0, **(form | {"peepholes": True}))
    with pytest.raises(tf.errors.InvalidArgumentError, match="blocks must be"):
        fused.lstm_digits_gates_first(x, w_x, b, p, step=0, **(form | {"blocks": "zoi"}))
    with pytest.raises(tf.errors.InvalidArgumentError, match="coupled"):
        fused.lstm_digits_gates_first(x, w_x, b, p, step=0, **(form | {"coupled": True}))
    with pytest.raises(tf.errors.InvalidArgumentError, match="h_prev"):
        fused.lstm_digits_gru(
            x,
            tf.zeros([8, 30]),
            tf.zeros([30]),
            tf.zeros([30]),
            tf.zeros([4, 30]),
            tf.zeros([4, 11]),
            step=0,
        )


def test_fused_training_follows_the_ops_history(fused, defaults):
    """Three epochs of the real loop, fused and with ops, from the same seed: the same curves
    to float rounding (a few units in the 6th digit)."""
    digits = held_out(defaults)
    curves = []
    for kernel in (None, fused):
        model = _model(24, "article")
        trainer = Trainer(model, 0.003, 100, seed=1, shuffle=True, kernel=kernel)
        curves.append([list(m.as_dict().values()) for m in fit(trainer, digits, 3).history])
    np.testing.assert_allclose(curves[1], curves[0], rtol=2e-5)


def test_the_vector_instructions_follow_the_cpu():
    avx512 = {"avx512f", "avx512dq", "avx512bw", "avx512vl", "avx2", "fma"}
    assert "-mavx512f" in fused_kernel.isa_flags(avx512)
    assert fused_kernel.isa_flags({"avx2", "fma", "sse4_2"}) == ["-mavx2", "-mfma"]
    assert fused_kernel.isa_flags({"sse2"}) == []


# A stand-in for g++: writes what the build asks for (-o PATH), in a moment and without
# TensorFlow's headers; not a library TensorFlow can load.
FAKE_COMPILER = """#!/bin/sh
while [ $# -gt 0 ]; do
  if [ "$1" = -o ]; then echo 'not a library' > "$2"; fi
  shift
done
"""


@pytest.fixture
def fake_compiler(tmp_path, monkeypatch) -> Path:
    """$CXX: `FAKE_COMPILER`."""
    cxx = tmp_path / "fake-c++"
    cxx.write_text(FAKE_COMPILER)
    cxx.chmod(0o755)
    monkeypatch.setenv("CXX", str(cxx))
    return cxx


@pytest.mark.slow
def test_a_build_says_where_once_and_the_cache_is_read_before_the_compiler(
    fake_compiler, monkeypatch, tmp_path
):
    """A build calls `on_build` with where it goes before it compiles; a build in the cache is
    found without a word and without a compiler."""
    said, cache = [], tmp_path / "kernels"
    built = fused_kernel.build(cache, on_build=said.append)
    assert said == [built] and built.parent == cache and built.suffix == ".so"
    assert [p.name for p in cache.glob("*.partial")] == []  # nothing half-written left
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    assert fused_kernel.build(cache, on_build=said.append) == built
    assert said == [built]
    assert hardware.missing_kernel(cache) is None  # the config check lets kernel=fused run


@pytest.mark.slow
def test_a_run_that_builds_says_so_and_names_a_build_that_does_not_load(
    fake_compiler, monkeypatch, tmp_path, capsys
):
    """The first run's build (about 10 s) shows one note on stderr; a library TensorFlow
    cannot load is named, to be deleted, and `auto` goes on with TensorFlow ops."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    kernel, note = fused_kernel.for_config("auto")
    (built,) = hardware.cache_dir().glob("fused-*.so")
    assert capsys.readouterr().err == (
        f"note: building the fused gate kernel (once, about 10 s) into {built}\n"
    )
    assert kernel is None
    assert note.startswith(
        f"the fused gate kernel is not used: TensorFlow cannot load {built} (delete it to "
        "build it again): "
    )
    fused_kernel.for_config("auto")
    assert capsys.readouterr().err == ""  # in the cache: no second build, no note


def test_without_a_compiler_the_kernel_in_the_cache_is_used(fused, monkeypatch, tmp_path):
    """A compute node without g++ uses the build another machine left in a shared cache (here:
    the one the `fused` fixture loaded)."""
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    schema.check(compose.compose(["kernel=fused"]))  # the config check lets it through
    for gates in ("auto", "fused"):
        kernel, note = fused_kernel.for_config(gates)
        assert note == "" and hasattr(kernel, "lstm_digits_gates")


def test_without_a_compiler_or_a_build_auto_falls_back_and_fused_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    kernel, note = fused_kernel.for_config("auto")
    assert kernel is None and "no C++ compiler" in note and "TensorFlow ops" in note
    with pytest.raises(UserError, match=r"^kernel=fused cannot run here: no C\+\+ compiler"):
        fused_kernel.for_config("fused")
    assert fused_kernel.for_config("ops") == (None, "")
    with pytest.raises(UserError, match=r"^kernel=fused needs the kernel built: no C\+\+ compiler"):
        schema.check(compose.compose(["kernel=fused"]))  # refused before TensorFlow loads


@pytest.mark.slow
def test_a_failed_build_says_why_in_one_line_and_leaves_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv("CXX", shutil.which("false") or "/bin/false")
    with pytest.raises(fused_kernel.KernelUnavailable, match="failed to build it: exit status 1"):
        fused_kernel.build(tmp_path)
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []


# A second process after the same build's lock: says when it asks, touches a file once it holds.
SECOND_HOLDER = """
import sys
from pathlib import Path
from lstm_cli.config import compose, schema
from lstm_cli.networks import fused_kernel
print("asking", flush=True)
with fused_kernel._locked(Path(sys.argv[1])):
    Path(sys.argv[2]).touch()
"""


@pytest.mark.slow
def test_the_build_lock_keeps_a_second_process_waiting(tmp_path):
    """A sweep's workers build once: while one holds the lock, the next waits for it."""
    lock, held = tmp_path / "gates.lock", tmp_path / "held"
    with fused_kernel._locked(lock):
        second = subprocess.Popen(
            [sys.executable, "-c", SECOND_HOLDER, str(lock), str(held)],
            stdout=subprocess.PIPE,
            text=True,
            env=cli_env(),
        )
        assert second.stdout.readline() == "asking\n"
        time.sleep(0.5)
        assert not held.exists()
    assert second.wait(timeout=60) == 0 and held.exists()


def test_without_fcntl_the_build_lock_is_msvcrts(monkeypatch, tmp_path):
    """Windows (no fcntl): msvcrt's LK_LOCK gives up after 10 s (EDEADLK), and a build can take
    longer, so the lock asks again until it holds it; it unlocks on the way out."""
    calls = []

    def locking(fd: int, mode: int, nbytes: int) -> None:
        calls.append(mode)
        if len(calls) == 1:
            raise OSError(errno.EDEADLK, "Resource deadlock avoided")

    monkeypatch.setitem(sys.modules, "fcntl", None)  # as on Windows: `import fcntl` fails
    msvcrt = types.SimpleNamespace(LK_LOCK=1, LK_UNLCK=0, locking=locking)
    monkeypatch.setitem(sys.modules, "msvcrt", msvcrt)
    with fused_kernel._locked(tmp_path / "gates.lock"):
        assert calls == [msvcrt.LK_LOCK, msvcrt.LK_LOCK]
    assert calls == [msvcrt.LK_LOCK, msvcrt.LK_LOCK, msvcrt.LK_UNLCK]


@pytest.mark.slow
@pytest.mark.skipif(not HAS_COMPILER, reason="no C++ compiler here")
def test_train_records_which_gates_ran_and_the_logged_model_needs_no_kernel(trained_run):
    """The default (auto) trains with the fused kernel and tags the run `kernel=fused`; the
    logged model holds TensorFlow's ops only, so it loads where this package is not."""
    run = MlflowClient(trained_run.uri).get_run(trained_run.run_id)
    assert run.data.tags["kernel"] == "fused" and run.data.params["kernel"] == "auto"
    mlflow.set_tracking_uri(trained_run.uri)
    saved = mlflow.artifacts.download_artifacts(f"runs:/{trained_run.run_id}/model")
    graphs = list(Path(saved).rglob("saved_model.pb"))
    assert graphs and all(b"LstmDigits" not in g.read_bytes() for g in graphs)


@pytest.mark.slow
def test_train_without_a_compiler_notes_it_and_trains_with_ops(tmp_path):
    uri = sqlite_uri(tmp_path)
    env = {"CXX": str(tmp_path / "no-such-compiler"), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    result = run_cli(
        "train",
        "epochs=2",
        "hidden_size=8",
        "tracking.log_model=false",
        f"tracking.uri={uri}",
        cwd=tmp_path,
        **env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines() == [
        "note: the fused gate kernel is not used: no C++ compiler "
        f"({env['CXX']} not found; install g++ or set CXX); training with TensorFlow ops"
    ]
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["kernel"] == "ops"
    refused = run_cli("train", "kernel=fused", f"tracking.uri={uri}", cwd=tmp_path, **env)
    assert_one_line_error(refused, 2, "kernel=fused needs the kernel built: no C++ compiler")
    assert len(client.search_runs([run.info.experiment_id])) == 1  # refused before a run


# What a run without a compiler gets of `kernel`, for each of auto and fused.
FOR_CONFIG = """
from lstm_cli.config import compose, schema
from lstm_cli.networks import fused_kernel
from lstm_cli.runtime.process import import_tensorflow, quiet

quiet()
import_tensorflow()
for gates in ("auto", "fused"):
    kernel, note = fused_kernel.for_config(gates)
    print(gates, hasattr(kernel, "lstm_digits_gates"), repr(note))
"""


@pytest.mark.slow
@pytest.mark.skipif(not HAS_COMPILER, reason="no C++ compiler here")
def test_python_m_builds_ahead_and_a_machine_without_a_compiler_uses_its_build(tmp_path):
    """`python -m lstm_cli.networks.fused_kernel` (make install) builds into the cache, saying
    so, and prints where; then a process without a compiler loads that build for `auto` and `fused`,
    without a word and without touching it."""
    env = cli_env(XDG_CACHE_HOME=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-m", "lstm_cli.networks.fused_kernel"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    path = Path(done.stdout.strip().removeprefix("fused kernel: "))
    assert path.exists() and path.parent == tmp_path / "lstm-digits" / "kernels"
    assert done.stderr.splitlines() == [
        f"note: building the fused gate kernel (once, about 10 s) into {path}"
    ]
    stamp = path.stat().st_mtime_ns
    env["CXX"] = str(tmp_path / "no-such-compiler")
    used = subprocess.run(
        [sys.executable, "-c", FOR_CONFIG], env=env, capture_output=True, text=True, timeout=300
    )
    assert used.returncode == 0, used.stderr
    assert used.stdout.splitlines() == ["auto True ''", "fused True ''"]
    assert "building" not in used.stderr and path.stat().st_mtime_ns == stamp
