"""The fused kernel (`kernel=fused`): a cell's elementwise steps as one C++ op a step, forward
and backward (`fused_kernel.cc`: the LSTM family and the GRU), built on first use with the
machine's C++ compiler against the installed TensorFlow and kept in a cache, then loaded with
its gradients. The cells call it through `lstm_step` and `gru_step`.

Why: with TensorFlow ops a step is about 10 small ops forward and 15 backward, each a pass
over (batch, hidden) or (batch, k*hidden) memory; one kernel makes a pass each way. What it
buys, measured, is in docs/performance.md (bench/RESULTS.md).

The build is cached by what decides what it computes and whether TensorFlow loads it: the
source, TensorFlow's version and flags, and the build's flags (the CPU's vector instructions),
so a shared home on a cluster of different CPUs keeps one build per kind. The cache is looked
up before the compiler, so a machine without one (a compute node, a slim container) uses a
build made elsewhere. `kernel=auto` (the default) falls back to TensorFlow ops, with a note,
where the kernel can be neither found nor built, or a GPU would run the model.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from lstm_cli.config.choices import Kernel
from lstm_cli.runtime import hardware
from lstm_cli.runtime.errors import UserError
from lstm_cli.runtime.hardware import cache_dir, cxx, missing_compiler

SOURCE = Path(__file__).with_name("fused_kernel.cc")
BUILD_SECONDS = 300  # a compile that takes longer has failed
# Vector instructions the build may use, by CPU flag: AVX-512 (the subsets Eigen uses), else
# AVX2 and FMA, else the compiler's default (SSE2 on x86_64). Not -march=native: with GCC 12
# it turns on AVX512-FP16, whose Eigen header does not compile.
ISA = (
    (
        ("avx512f", "avx512dq", "avx512bw", "avx512vl", "avx2", "fma"),
        ["-mavx512f", "-mavx512dq", "-mavx512bw", "-mavx512vl", "-mavx2", "-mfma"],
    ),
    (("avx2", "fma"), ["-mavx2", "-mfma"]),
)


class KernelUnavailable(Exception):
    """The kernel cannot be built or used here; the message says why, in a few words."""


def isa_flags(cpu: set[str] | None = None) -> list[str]:
    """The compiler flags for this CPU's vector instructions (see `ISA`)."""
    cpu = hardware.cpu_flags() if cpu is None else cpu
    return next((flags for needs, flags in ISA if set(needs) <= cpu), [])


def build(directory: Path | None = None, on_build: Callable[[Path], None] | None = None) -> Path:
    """The kernel's shared library for this TensorFlow and CPU: found in `directory` (default
    `cache_dir()`), else built there with the C++ compiler, first calling `on_build` with its
    path. Concurrent callers (a sweep's workers) wait for one build. Raises KernelUnavailable."""
    import tensorflow as tf

    flags = ["-shared", "-fPIC", "-O3", "-DNDEBUG", "-ffp-contract=off", "-w", *isa_flags()]
    tf_flags = [*tf.sysconfig.get_compile_flags(), *tf.sysconfig.get_link_flags()]
    # The key leaves the compiler out, so that a build is found where no compiler is. Which
    # compiler made it does not change its numbers (-ffp-contract=off: every product and sum
    # rounds as written) nor its ABI (TensorFlow's flags set it); g++ 12's build needs of the
    # system GLIBCXX_3.4.21, CXXABI_1.3.9 and GLIBC_2.27 at most (objdump -T), less than
    # TensorFlow 2.21's own libtensorflow_framework (3.4.22, 1.3.11, 2.27). A build that
    # fails to load all the same names itself, to be deleted (`load`).
    digest = hashlib.sha256(SOURCE.read_bytes())
    digest.update("\n".join([tf.__version__, *flags, *tf_flags]).encode())
    directory = cache_dir() if directory is None else directory
    target = directory / f"fused-{digest.hexdigest()[:16]}.so"
    if target.exists():
        return target
    no_compiler = missing_compiler()
    if no_compiler:
        raise KernelUnavailable(no_compiler)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with _locked(directory / f"{target.stem}.lock"):
            if not target.exists():  # else another process built it while this one waited
                if on_build is not None:
                    on_build(target)
                _compile([cxx(), *flags, str(SOURCE), *tf_flags], target)
    except OSError as e:
        raise KernelUnavailable(f"cannot write its build to {directory}: {e.strerror}") from None
    return target


def _compile(command: list[str], target: Path) -> None:
    """Run `command` with `-o` a temporary file beside `target`, then move it into place (a
    reader never sees a half-written library)."""
    fd, partial = tempfile.mkstemp(dir=target.parent, suffix=".so.partial")
    os.close(fd)
    try:
        done = subprocess.run(
            [*command, "-o", partial], capture_output=True, text=True, timeout=BUILD_SECONDS
        )
        if done.returncode != 0:
            lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
            said = [line for line in lines if "error" in line] or lines[-1:]
            why = said[0] if said else f"exit status {done.returncode}"
            raise KernelUnavailable(f"{command[0]} failed to build it: {why[:200]}")
        os.replace(partial, target)
    except subprocess.TimeoutExpired:
        raise KernelUnavailable(f"{command[0]} took over {BUILD_SECONDS} s") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the file `path` while inside, waiting for as long as another
    process holds it (a build: seconds to minutes). POSIX's flock, else Windows's msvcrt,
    imported here so that the module (which the cell imports) imports on either."""
    with open(path, "ab") as lock:  # "a": created if need be, never truncated under a holder
        try:
            import fcntl
        except ImportError:
            import msvcrt

            # LK_LOCK gives up after 10 tries a second apart (EDEADLK); a build takes longer.
            while True:
                try:
                    msvcrt.locking(lock.fileno(), msvcrt.LK_LOCK, 1)
                    break
                except OSError as e:
                    if e.errno != errno.EDEADLK:
                        raise
            try:
                yield
            finally:
                msvcrt.locking(lock.fileno(), msvcrt.LK_UNLCK, 1)
        else:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield  # closing the file releases the lock


def load(directory: Path | None = None, on_build: Callable[[Path], None] | None = None) -> Any:
    """The kernel's ops (built if need be, see `build`), with their gradients registered.
    Raises KernelUnavailable."""
    import tensorflow as tf

    library = build(directory, on_build)
    try:
        ops = tf.load_op_library(str(library))
    except tf.errors.NotFoundError as e:  # a library TensorFlow cannot load (symbols, ABI)
        raise KernelUnavailable(
            f"TensorFlow cannot load {library} (delete it to build it again): {e.message[:120]}"
        ) from None
    _register_gradients(ops)
    return ops


def for_config(choice: str) -> tuple[Any, str]:
    """The kernel for the config's `kernel` (`choice`: "auto", "fused" or "ops"), and a note
    for the user: the ops (or None: TensorFlow ops) and "" or why "auto" runs TensorFlow ops. A
    build (the first run on a machine) says so on stderr. Raises UserError where "fused" cannot
    run."""
    if choice == Kernel.ops:
        return None, ""
    import tensorflow as tf

    try:
        if tf.config.list_physical_devices("GPU"):
            raise KernelUnavailable("a GPU runs the model, and the kernel is for the CPU")
        return load(on_build=_note_build), ""
    except KernelUnavailable as e:
        if choice == Kernel.fused:
            raise UserError(f"kernel=fused cannot run here: {e}; use kernel=auto or ops") from None
        return None, f"the fused gate kernel is not used: {e}; training with TensorFlow ops"


def _note_build(target: Path) -> None:
    """The line a run shows while it builds the kernel, which is otherwise silent for 10 s."""
    from lstm_cli.views import (
        console,  # here: the cell and the model import this module, not rich
    )

    console.note(f"building the fused gate kernel (once, about 10 s) into {target}")


def lstm_step(
    ops: Any,
    x: Any,
    t: int,
    w_x: Any,
    b: Any,
    p: Any,
    hw: Any,
    c_tm1: Any,
    form: dict[str, Any],
) -> tuple[Any, Any]:
    """Step `t` of an LSTM of the family, fused: x (batch, steps, input) the images, w_x
    (input, k*hidden) and b (k*hidden,) the input weights, p the peepholes (3, hidden) (any
    tensor without), hw = h_tm1 @ W_h (batch, k*hidden) (hw and c_tm1 None for the zero
    state), `form` the kernel's attrs (blocks, coupled, peepholes, input_tanh, output_tanh:
    `LSTM.kernel_form`) -> h_t, c_t (batch, hidden)."""
    if c_tm1 is None:
        h_t, c_t, _ = ops.lstm_digits_gates_first(x, w_x, b, p, step=t, **form)
    else:
        h_t, c_t, _ = ops.lstm_digits_gates(x, w_x, b, p, hw, c_tm1, step=t, **form)
    return h_t, c_t


def gru_step(ops: Any, x: Any, t: int, w_x: Any, b: Any, br: Any, hw: Any, h_tm1: Any) -> Any:
    """Step `t` of the GRU, fused: as `lstm_step`, with br (3*hidden,) the recurrent biases and
    hw = h_tm1 @ R (batch, 3*hidden), without them (None) from the zero state -> h_t."""
    if h_tm1 is None:
        return ops.lstm_digits_gru_first(x, w_x, b, br, step=t)[0]
    return ops.lstm_digits_gru(x, w_x, b, br, hw, h_tm1, step=t)[0]


LSTM_ATTRS = ("blocks", "coupled", "peepholes", "input_tanh", "output_tanh", "step")


def _register_gradients(ops: Any) -> None:
    """The gradients of the forward ops, by the backward ops. TensorFlow's registry is the
    process's: a second load (a later job) finds them registered already."""
    import tensorflow as tf

    def zeros_if_none(grad: Any, like: Any) -> Any:
        return tf.zeros_like(like) if grad is None else grad

    def lstm(op: Any, dh: Any, dc: Any, _gates: Any) -> tuple[Any, ...]:
        h, c, gates = op.outputs
        dh = zeros_if_none(dh, h)  # (batch, hidden)
        dc = zeros_if_none(dc, c)  # (batch, hidden): from the next step
        x, w_x, b, p = op.inputs[:4]
        attrs = {name: op.get_attr(name) for name in LSTM_ATTRS}
        if op.type == "LstmDigitsGatesFirst":
            _, dw_x, db, dp = ops.lstm_digits_gates_first_grad(
                x, w_x, b, p, dh, dc, gates, c, **attrs
            )
            return None, dw_x, db, dp
        dpre, dw_x, db, dp, dc_tm1 = ops.lstm_digits_gates_grad(
            x, w_x, b, p, dh, dc, gates, c, op.inputs[5], **attrs
        )
        return None, dw_x, db, dp, dpre, dc_tm1  # x, w_x, b, p, hw (batch, k*hidden), c_tm1

    def gru(op: Any, dh: Any, _gates: Any) -> tuple[Any, ...]:
        h, gates = op.outputs
        dh = zeros_if_none(dh, h)
        x, w_x, b, br = op.inputs[:4]
        step = op.get_attr("step")
        if op.type == "LstmDigitsGruFirst":
            _, dw_x, db, dbr = ops.lstm_digits_gru_first_grad(x, w_x, b, br, dh, gates, step=step)
            return None, dw_x, db, dbr
        dhw, dw_x, db, dbr, dh_tm1 = ops.lstm_digits_gru_grad(
            x, w_x, b, br, dh, gates, op.inputs[5], step=step
        )
        return None, dw_x, db, dbr, dhw, dh_tm1  # ..., hw (batch, 3*hidden), h_tm1 (u * h_tm1)

    for names, gradient in (
        (("LstmDigitsGates", "LstmDigitsGatesFirst"), lstm),
        (("LstmDigitsGru", "LstmDigitsGruFirst"), gru),
    ):
        for name in names:
            with contextlib.suppress(KeyError):  # registered by an earlier load in this process
                tf.RegisterGradient(name)(gradient)


if __name__ == "__main__":  # `python -m lstm_cli.networks.fused_kernel`: build ahead (make install)
    from lstm_cli.runtime.process import import_tensorflow, quiet

    quiet()
    import_tensorflow()
    try:
        print(f"fused kernel: {build(on_build=_note_build)}")
    except KernelUnavailable as e:
        print(f"fused kernel not built: {e} (training uses TensorFlow ops)", file=sys.stderr)
