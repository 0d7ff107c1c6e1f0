"""Cameras of real robots, read through OpenCV (webcams, or a video file standing in for one).

OpenCV (`cv2`) is an optional dependency imported when a camera connects, so this package imports without
it; robots build their cameras with `make_cameras_from_configs` and only use the `Camera` methods.
"""

from lerobot.common.robot_devices.cameras.opencv import OpenCVCamera, OpenCVCameraConfig, find_cameras
from lerobot.common.robot_devices.cameras.utils import Camera, CameraError, make_cameras_from_configs

__all__ = [
    "Camera",
    "CameraError",
    "OpenCVCamera",
    "OpenCVCameraConfig",
    "find_cameras",
    "make_cameras_from_configs",
]
