"""What this machine's CPU offers, read without importing TensorFlow (the config check runs
before it loads)."""

from __future__ import annotations

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
