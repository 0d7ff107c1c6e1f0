"""Small helpers the scripts share: devices, seeding, logging setup."""

from __future__ import annotations

import ctypes
import logging
import os
import random
import sys
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch


def get_device(name: str | None) -> torch.device:
    """`auto` (or None) picks cuda, then mps, then cpu; an explicit device that is missing is an error."""
    name = "auto" if name is None else str(name).lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind = name.split(":")[0]
    if kind == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"device={name} was asked for but this machine has no CUDA device (torch {torch.__version__}). "
            "Use device=cpu (or device=auto)."
        )
    if kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise RuntimeError(f"device={name} was asked for but MPS is not available here. Use device=cpu.")
    if kind not in ("cpu", "cuda", "mps"):
        raise ValueError(f"Unknown device {name!r}; use auto, cpu, cuda, cuda:<index> or mps.")
    return torch.device(name)


def autocast(device: torch.device, enabled: bool) -> Any:
    """Mixed precision where asked (`use_amp`): float16 on CUDA, bfloat16 elsewhere."""
    if not enabled:
        return nullcontext()
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


def cpu_autocast_dtype() -> torch.dtype | None:
    """The dtype of the CPU autocast in effect, or None."""
    try:
        enabled, dtype = torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")
    except TypeError:  # torch < 2.4
        enabled, dtype = torch.is_autocast_cpu_enabled(), torch.get_autocast_cpu_dtype()
    return dtype if enabled else None


def env_flag(name: str, default: bool) -> bool:
    """A yes/no environment variable: 1/true/yes/on or 0/false/no/off (any case); `default` if unset or else."""
    value = os.environ.get(name, "").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    return default


# glibc's mallopt parameters (malloc.h), and the values keep_freed_memory gives them.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
KEPT_MMAP_MAX = 0  # no block gets its own mmap: large blocks come from the heap
KEPT_TRIM_THRESHOLD = 2**31 - 1  # the heap top is not given back below 2 GB
KEEP_FREED_MEMORY_ENV = "LEROBOT_KEEP_FREED_MEMORY"
# The same setting for a process started from outside python, through glibc's environment variables.
KEEP_FREED_MEMORY_MALLOC_ENV = {
    "MALLOC_MMAP_MAX_": str(KEPT_MMAP_MAX),
    "MALLOC_TRIM_THRESHOLD_": str(KEPT_TRIM_THRESHOLD),
}


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse instead of handing it back to the kernel.

    A CPU training step allocates and frees hundreds of MB of activations (B x 64 x 240 x 320 float32 maps
    for a 480x640 camera). By default glibc serves every block over 32 MB with its own `mmap` and unmaps it
    when freed, so each step faults all those pages in again, and on a virtual machine whose freed pages go
    back to the host a fault costs microseconds: ACT at 480x640 and batch 64 took 36.5 s per step with this
    instead of 60.9 s (at batch 8 the difference was within run-to-run noise).

    The cost is memory: the process keeps its peak (up to 2 GB of free heap top is retained) until it exits,
    as CUDA's caching allocator does, and the heap fragments (that ACT run peaked at 19.1 GB instead of 14.8).
    Called by train.py for CPU training; set `LEROBOT_KEEP_FREED_MEMORY=0` to leave malloc alone. Returns
    whether the setting was applied (glibc only).
    """
    if os.environ.get(KEEP_FREED_MEMORY_ENV, "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, ...)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_MMAP_MAX, KEPT_MMAP_MAX) == 1 and mallopt(M_TRIM_THRESHOLD, KEPT_TRIM_THRESHOLD) == 1


def set_global_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def init_logging(level: int = logging.INFO) -> None:
    """One readable format for the scripts' messages; quiet the chattier libraries."""
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S", force=True
    )
    for noisy in ("urllib3", "huggingface_hub", "filelock", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0
