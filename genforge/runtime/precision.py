"""Which floating-point precision to compute in, chosen for the machine.

`auto` (the default for train, sample and eval) takes bf16 where the hardware computes it
natively — a CUDA GPU with bf16 support, or a CPU with AVX-512 BF16 or AMX — and fp32
elsewhere. bf16 asked for on a CPU without those instructions still runs (PyTorch emulates it)
but is often ten times slower: a warning says so, once per process. GENFORGE_AUTO_PRECISION
(fp32 or bf16) overrides what `auto` picks, e.g. for results that must not depend on the
machine (the test suite sets fp32). A run that can only compute in fp32 (DP-SGD: Opacus
checks per-sample gradients in fp32 only) resolves `auto` to fp32 and says why.

Under bf16 only the networks run in bf16 (autocast). What turns their outputs into
probabilities and draws (distributions, log-likelihoods, KL terms, sampler updates) is
computed in fp32: in training accelerate hands each net's outputs back in fp32, and a family's
`sample` casts its nets' outputs with `.float()` before using them.
"""

from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path

import torch

PRECISIONS = ("auto", "fp32", "bf16")
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags the kernel reports (empty where /proc/cpuinfo is not there)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def bf16_native(device: str | torch.device = "cpu") -> tuple[bool, str]:
    """(whether `device` computes bf16 in hardware, the reason in words)."""
    device = torch.device(device)
    if device.type == "cuda":
        ok = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        name = torch.cuda.get_device_name(device) if torch.cuda.is_available() else "no GPU"
        return ok, f"CUDA {name}: bf16 {'supported' if ok else 'not supported'}"
    found = [f for f in BF16_CPU_FLAGS if f in cpu_flags()]
    if found:
        return True, f"CPU with {', '.join(found)}"
    return False, "CPU without avx512_bf16 or amx_bf16 (bf16 would be emulated)"


@functools.cache
def _warn_emulated(reason: str) -> None:
    warnings.warn(f"bf16 on a {reason}: it runs, but often ten times slower than fp32; "
                  "use precision=auto or fp32", RuntimeWarning, stacklevel=3)


def full_precision(device: str | torch.device) -> torch.autocast:
    """A region computed in fp32 inside a bf16 autocast one: autocast would run its matrix
    products in bf16 (sums of probabilities per column, a copula's correlated draws)."""
    return torch.autocast(torch.device(device).type, enabled=False)


def choose_precision(requested: str, device: str | torch.device = "cpu", *,
                     fp32_only: str | None = None) -> tuple[str, str]:
    """(fp32 or bf16, why): `auto` picks bf16 only where the hardware has it, and fp32 where
    `fp32_only` (the reason) says the run cannot use bf16; an explicit bf16 is the caller's
    to refuse."""
    if requested not in PRECISIONS:
        from genforge.errors import ConfigError

        raise ConfigError(f"precision={requested!r}: allowed values are {', '.join(PRECISIONS)}")
    native, reason = bf16_native(device)
    if requested == "auto" and fp32_only:
        return "fp32", f"auto: fp32, {fp32_only} ({reason})"
    if requested == "auto":
        pinned = os.environ.get("GENFORGE_AUTO_PRECISION")
        if pinned in ("fp32", "bf16"):
            return pinned, f"auto: GENFORGE_AUTO_PRECISION={pinned} ({reason})"
        return ("bf16" if native else "fp32"), f"auto: {reason}"
    if requested == "bf16" and not native:
        _warn_emulated(reason)
        return "bf16", f"asked for bf16 on a {reason}"
    return requested, f"asked for {requested} ({reason})"
