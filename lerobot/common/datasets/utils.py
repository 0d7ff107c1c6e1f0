"""Small helpers shared by the dataset readers and writers: paths, JSON, atomic writes, dict flattening."""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lerobot.common.datasets.errors import CorruptFileError, InvalidRepoIdError, UnsafePathError

# The newest format we write, and every format we read.
CODEBASE_VERSION = "v3.0"
READABLE_VERSIONS = ("v1.0", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v2.0", "v2.1", "v3.0")
WRITABLE_VERSIONS = ("v2.1", "v3.0")

# Same rule as the Hub's: letters, digits, '-', '_', '.', not starting with '.' or '-' (no '..' anywhere).
_REPO_PART = re.compile(r"^(?!\.)(?!.*\.\.)[A-Za-z0-9_.\-]{1,96}$")


def validate_repo_id(repo_id: str) -> str:
    """Return `repo_id` if it is `namespace/name`, else raise InvalidRepoIdError explaining the rule."""
    if not isinstance(repo_id, str):
        raise InvalidRepoIdError(
            f"repo_id must be a string like 'lerobot/pusht', got {type(repo_id).__name__}."
        )
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(_REPO_PART.match(p) for p in parts):
        raise InvalidRepoIdError(
            f"Invalid repo_id {repo_id!r}: expected 'namespace/name' where each part uses only letters, digits, "
            "'-', '_' and '.', does not start with '.' and contains no '..' (for example 'lerobot/pusht')."
        )
    return repo_id


def safe_join(root: Path, relative: str | os.PathLike) -> Path:
    """Join a path read from metadata onto `root`, refusing anything that would land outside `root`."""
    rel = Path(relative)
    if rel.is_absolute():
        raise UnsafePathError(
            f"Path {str(relative)!r} in the dataset metadata is absolute; it must be relative."
        )
    root_resolved = Path(root).resolve()
    full = (root_resolved / rel).resolve()
    if full != root_resolved and root_resolved not in full.parents:
        raise UnsafePathError(
            f"Path {str(relative)!r} in the dataset metadata escapes the dataset root {root_resolved}."
        )
    return Path(root) / rel


def default_lerobot_home() -> Path:
    """Where datasets live when no `root` is given: $HF_LEROBOT_HOME, else ~/.cache/huggingface/lerobot."""
    if "HF_LEROBOT_HOME" in os.environ:
        return Path(os.environ["HF_LEROBOT_HOME"]).expanduser()
    hf_home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")).expanduser()
    return hf_home / "lerobot"


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` only if the block finishes.

    A crash mid-write leaves the previous file (or no file) in place, never a truncated one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        # mkstemp creates the file readable by its owner only; give it the usual permissions (umask applies),
        # so a dataset written by one user can be read by others, as any other file they write.
        os.chmod(tmp_path, 0o666 & ~_current_umask())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_json(data: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=4, ensure_ascii=False) + "\n")


def load_json(path: Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CorruptFileError(
            f"{path} is not valid JSON ({e}). Restore it from the original dataset."
        ) from e


def write_jsonlines(rows: list[dict], path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def load_jsonlines(path: Path) -> list[dict]:
    path = Path(path)
    rows = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise CorruptFileError(f"{path}, line {lineno}, is not valid JSON ({e}).") from e
    return rows


def flatten_dict(d: dict, sep: str = "/", prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a/b": 1}"""
    out = {}
    for key, value in d.items():
        full = f"{prefix}{sep}{key}" if prefix else key
        if isinstance(value, dict):
            out.update(flatten_dict(value, sep, full))
        else:
            out[full] = value
    return out


def unflatten_dict(d: dict, sep: str = "/") -> dict:
    """{"a/b": 1} -> {"a": {"b": 1}}"""
    out: dict = {}
    for key, value in d.items():
        *parents, leaf = key.split(sep)
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out
