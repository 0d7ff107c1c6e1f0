"""Small helpers the scripts share: devices, seeding, logging setup."""

from __future__ import annotations

import logging
import os
import random
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
