"""Loading pickles of plain containers and numpy arrays without letting the file run code.

`pickle.load` imports and calls whatever a file names (`os.system`, `builtins.eval`, ...), so a pickle from
the internet is a program. `load_restricted` only resolves the globals that numpy arrays, numpy scalars and
dtypes need plus a few inert builtins, and refuses anything else before it is imported.
"""

from __future__ import annotations

import builtins
import collections
import importlib
import io
import pickle
from pathlib import Path
from typing import Any

from lerobot.common.datasets.push_dataset_to_hub.utils import RawFormatError


class UnsafePickleError(RawFormatError, pickle.UnpicklingError):
    """The pickle references a global outside the allow-list (it could execute code when loaded)."""


def _numpy_core(submodule: str):
    # numpy >= 2 moved `numpy.core` to `numpy._core`; pickles written by either name both exist in the wild.
    try:
        return importlib.import_module(f"numpy._core.{submodule}")
    except ImportError:
        return importlib.import_module(f"numpy.core.{submodule}")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    import numpy as np

    multiarray, numeric = _numpy_core("multiarray"), _numpy_core("numeric")
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("collections", "OrderedDict"): collections.OrderedDict,
        # Protocol-2 pickles spell bytes as _codecs.encode(text, "latin1").
        ("_codecs", "encode"): _latin1_encode,
    }
    for prefix in ("numpy.core", "numpy._core"):
        allowed[(f"{prefix}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{prefix}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{prefix}.numeric", "_frombuffer")] = numeric._frombuffer
    for name in ("dict", "list", "tuple", "set", "frozenset", "bytes", "bytearray", "str", "int", "float",
                 "complex", "bool", "slice", "range"):  # fmt: skip
        allowed[("builtins", name)] = getattr(builtins, name)
    return allowed


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    if encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError(f"_codecs.encode with encoding {encoding!r} is not allowed in a data pickle.")
    return text.encode("latin1")


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler whose `find_class` only returns allow-listed numpy/builtin globals."""

    def __init__(self, file: io.BufferedIOBase, source: str = "<pickle>") -> None:
        super().__init__(file)
        self.source = source
        self.allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self.source} references {module}.{name}, which a data file has no reason to contain; "
                "refusing to load it (unpickling it could run arbitrary code). Only numpy arrays, numpy "
                "scalars and plain containers are accepted. If you trust the file, re-save its arrays with "
                "numpy.savez."
            ) from None


def load_restricted(path: str | Path) -> Any:
    """Unpickle `path`, accepting only numpy arrays/scalars/dtypes and plain Python containers."""
    path = Path(path)
    with open(path, "rb") as f:
        try:
            return RestrictedUnpickler(f, source=str(path)).load()
        except UnsafePickleError:
            raise
        except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError, IndexError) as e:
            raise RawFormatError(f"{path} is not a readable pickle ({type(e).__name__}: {e}).") from e
