"""What this machine offers, read without importing TensorFlow (the config check runs before it
loads): its CPU's instructions, and whether the fused kernel (`networks.fused_kernel`) is built
or can be."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

# bfloat16 dot products: Intel Cooper Lake and Sapphire Rapids (amx), AMD Zen 4.
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU's feature flags (empty where /proc/cpuinfo is missing: not Linux)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def has_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether the CPU computes bfloat16 matmuls natively (elsewhere they are emulated, slowly)."""
    return any(flag in cpu_flags(cpuinfo) for flag in BF16_FLAGS)


def cache_dir() -> Path:
    """Where builds are kept: $XDG_CACHE_HOME/lstm-digits/kernels (~/.cache by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lstm-digits" / "kernels"


def cxx() -> str:
    """The C++ compiler to build with: $CXX, else g++."""
    return os.environ.get("CXX") or "g++"


def missing_compiler() -> str | None:
    """Why no C++ compiler can build the kernel ($CXX, else g++), or None if there is one."""
    if shutil.which(cxx()) is None:
        return f"no C++ compiler ({cxx()} not found; install g++ or set CXX)"
    return None


def missing_kernel(directory: Path | None = None) -> str | None:
    """Why `kernel=fused` cannot run here, as far as is known without TensorFlow (the config
    check runs before it loads): no compiler and no build at all in `directory` (default
    `cache_dir()`). None otherwise; `load` makes the exact check."""
    directory = cache_dir() if directory is None else directory
    if next(directory.glob("fused-*.so"), None) is not None:
        return None
    return missing_compiler()
