"""What robots need from a camera, its error, and building the cameras a robot config names.

A robot config lists its cameras by name (`laptop`, `phone`, ...), each a mapping with a `type` (only
`opencv` so far) and the fields of that type's config dataclass. Robots only use the methods of `Camera`, so
another kind of camera (e.g. Intel RealSense) only has to be added to `camera_types()`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

    from lerobot.common.robot_devices.cameras.opencv import OpenCVCameraConfig

FIND_CAMERAS_HINT = (
    "Run `python lerobot/scripts/find_cameras.py` to list the cameras and save a frame from each."
)


class CameraError(OSError):
    """A camera is missing, cannot be opened, refuses the requested fps/size, or stopped delivering frames."""


@runtime_checkable
class Camera(Protocol):
    """The camera interface robots use: frames are (height, width, channels) uint8 arrays."""

    def connect(self) -> None: ...

    def read(self) -> np.ndarray:
        """The camera's next frame (waits for it)."""
        ...

    def async_read(self) -> np.ndarray:
        """The newest frame a background thread holds (waits only for the very first one)."""
        ...

    def disconnect(self) -> None: ...

    @property
    def is_connected(self) -> bool: ...

    @property
    def fps(self) -> float | None: ...

    @property
    def width(self) -> int | None: ...

    @property
    def height(self) -> int | None: ...

    @property
    def channels(self) -> int: ...


def camera_types() -> dict[str, tuple[type, type]]:
    """The registry: camera `type` name -> (config dataclass, camera class)."""
    # Imported here rather than at the top: the camera modules import CameraError from this module.
    from lerobot.common.robot_devices.cameras.opencv import OpenCVCamera, OpenCVCameraConfig

    return {"opencv": (OpenCVCameraConfig, OpenCVCamera)}


def make_cameras_from_configs(
    configs: Mapping[str, Mapping[str, Any] | OpenCVCameraConfig],
) -> dict[str, Camera]:
    """Cameras, not yet connected, by name: `{"laptop": {"type": "opencv", "camera_index": 0, "fps": 30}}`.

    Each value is a config dataclass instance or a mapping (plain dict, Hydra/OmegaConf DictConfig) with
    `type` and that type's fields. Raises ValueError naming the camera and the bad type, field or value.
    """
    if not isinstance(configs, Mapping):
        raise ValueError(f"Cameras must be a mapping of camera name -> config, got {type(configs).__name__}.")
    types = camera_types()
    cameras: dict[str, Camera] = {}
    for name, config in configs.items():
        name = str(name)
        for config_cls, camera_cls in types.values():
            if isinstance(config, config_cls):
                cameras[name] = camera_cls(config, name=name)
                break
        else:
            parsed, camera_cls = _config_from_mapping(name, config, types)
            cameras[name] = camera_cls(parsed, name=name)
    return cameras


def _config_from_mapping(name: str, config: Any, types: dict[str, tuple[type, type]]) -> tuple[Any, type]:
    """(config instance, camera class) of one camera given as a mapping."""
    if not isinstance(config, Mapping):
        raise ValueError(
            f"Camera '{name}': expected a mapping with a 'type' key or a camera config dataclass, "
            f"got {type(config).__name__}."
        )
    values = dict(config)
    if "type" not in values:
        raise ValueError(f"Camera '{name}' has no 'type'; known camera types: {sorted(types)}.")
    camera_type = values.pop("type")
    if camera_type not in types:
        raise ValueError(
            f"Camera '{name}': unknown type '{camera_type}'; known camera types: {sorted(types)}."
        )
    config_cls, camera_cls = types[camera_type]
    known = [f.name for f in fields(config_cls)]
    unknown = sorted(str(key) for key in values if key not in known)
    if unknown:
        raise ValueError(
            f"Camera '{name}' (type {camera_type}): unknown field(s) {unknown}; the fields are {known}."
        )
    try:
        return config_cls(**values), camera_cls
    except (TypeError, ValueError) as e:
        raise ValueError(f"Camera '{name}' (type {camera_type}): {e}") from e
