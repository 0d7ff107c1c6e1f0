"""Reading the row tables of any format with pyarrow: Arrow IPC streams (v1 `save_to_disk`) and parquet."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from lerobot.common.datasets.errors import CorruptFileError, MissingFileError


def read_table(path: Path, columns: list[str] | None = None) -> pa.Table:
    """Read one data file. Arrow files are memory-mapped (zero copy); parquet is decoded column by column."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(
            f"Data file {path} is missing. Re-download the dataset (delete the folder and load it again) or "
            "restore the file."
        )
    try:
        if path.suffix == ".arrow":
            with pa.memory_map(str(path)) as source:
                try:
                    table = pa.ipc.open_stream(source).read_all()
                except pa.ArrowInvalid:
                    table = pa.ipc.open_file(source).read_all()
            return table.select(columns) if columns is not None else table
        return pq.read_table(path, columns=columns)
    except (pa.ArrowInvalid, OSError) as e:
        raise CorruptFileError(
            f"Cannot read data file {path} ({e}). It is probably truncated or corrupt: re-download the dataset "
            "or restore the file."
        ) from e


def read_schema(path: Path) -> pa.Schema:
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"Data file {path} is missing.")
    try:
        if path.suffix == ".arrow":
            with pa.memory_map(str(path)) as source:
                try:
                    return pa.ipc.open_stream(source).schema
                except pa.ArrowInvalid:
                    return pa.ipc.open_file(source).schema
        return pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise CorruptFileError(
            f"Cannot read the schema of {path} ({e}); the file is truncated or corrupt."
        ) from e
