"""Exceptions raised by the dataset code.

Every error names the file, key or value at fault and says what to do about it. They all derive from
`DatasetError` so a caller can catch the whole family, and from the closest built-in exception so code written
against the reference implementation (which raised ValueError / FileNotFoundError) keeps working.
"""

from __future__ import annotations


class DatasetError(Exception):
    """Base class of every dataset error."""


class InvalidRepoIdError(DatasetError, ValueError):
    """A repo id that is not `namespace/name` or tries to escape its folder."""


class UnsafePathError(DatasetError, ValueError):
    """A path from metadata that points outside the dataset root."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """No dataset at the given root and the Hub could not (or must not) be asked."""


class MissingFileError(DatasetError, FileNotFoundError):
    """A file the metadata promises is absent."""


class CorruptFileError(DatasetError, ValueError):
    """A file exists but cannot be parsed (truncated parquet, broken mp4, bad JSON)."""


class MetadataError(DatasetError, ValueError):
    """`info.json` (or its older equivalents) lacks a key or holds an impossible value."""


class BackwardCompatibilityError(DatasetError, ValueError):
    """The dataset is in a format this operation does not handle; the message says how to convert it."""


class ForwardCompatibilityError(DatasetError, ValueError):
    """The dataset was written by a newer codebase version than this library understands."""


class InvalidDeltaTimestampsError(DatasetError, ValueError):
    """`delta_timestamps` names an unknown key or a delta that is not a multiple of 1/fps."""


class TimestampSyncError(DatasetError, ValueError):
    """Timestamps inside an episode are not spaced by 1/fps, or a video frame is missing at a timestamp."""


class VideoDecodingError(DatasetError, RuntimeError):
    """A video file could not be decoded at the requested timestamps."""


class EpisodeNotFoundError(DatasetError, IndexError):
    """An episode index that the dataset does not hold."""


class DatasetExistsError(DatasetError, FileExistsError):
    """Refusing to overwrite an existing dataset without being asked to."""


class FeatureMismatchError(DatasetError, ValueError):
    """A frame given to the writer does not match the declared features."""
