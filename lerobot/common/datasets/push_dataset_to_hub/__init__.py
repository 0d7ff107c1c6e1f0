"""Readers of raw robot-data formats, converted to LeRobot datasets by `convert_raw.convert_raw_dataset`.

`RAW_FORMATS` maps each `--raw-format` name to the class that reads it; adding a format means adding a
`RawSource` subclass and one line here.
"""

from __future__ import annotations

from lerobot.common.datasets.push_dataset_to_hub.aloha_hdf5_format import AlohaHdf5Source
from lerobot.common.datasets.push_dataset_to_hub.pusht_zarr_format import PushTZarrSource
from lerobot.common.datasets.push_dataset_to_hub.umi_zarr_format import UmiZarrSource
from lerobot.common.datasets.push_dataset_to_hub.utils import RawFormatError, RawSource
from lerobot.common.datasets.push_dataset_to_hub.xarm_pkl_format import XarmPklSource

RAW_FORMATS: dict[str, type[RawSource]] = {
    "pusht_zarr": PushTZarrSource,
    "umi_zarr": UmiZarrSource,
    "aloha_hdf5": AlohaHdf5Source,
    "xarm_pkl": XarmPklSource,
}


def get_raw_format(name: str) -> type[RawSource]:
    """The reader class of raw format `name`, or an error listing the known formats."""
    try:
        return RAW_FORMATS[name]
    except KeyError:
        raise RawFormatError(
            f"Unknown raw format {name!r}; known formats: {', '.join(sorted(RAW_FORMATS))}."
        ) from None


__all__ = ["RAW_FORMATS", "RawFormatError", "RawSource", "get_raw_format"]
