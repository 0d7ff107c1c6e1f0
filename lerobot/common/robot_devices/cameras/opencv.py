"""OpenCV cameras: webcams by index or /dev/videoN path, and video files standing in for a camera.

A camera delivers a frame every 1/fps seconds and `VideoCapture.read()` blocks until the next one, so a
control loop reading cameras in turn would run at the pace of its slowest camera. `async_read()` instead
returns the newest frame a background thread already holds; the thread keeps only that one frame (a control
loop wants the present, not a backlog) and a camera that stops delivering is reported, never replayed as a
frozen image.

A video file goes through the same code as a device: it plays at its own frame rate and starts over at the
end, like a camera that never runs out, so tests and demos run the real paths on machines without a camera.

Run as a script to list the cameras and save frames from each (to tell which index is which camera):

    python lerobot/common/robot_devices/cameras/opencv.py --images-dir outputs/images_from_opencv_cameras
        [--camera-ids 0 /dev/video2 demo.mp4] [--fps 30 --width 640 --height 480] [--record-time-s 2]
"""

from __future__ import annotations

import contextlib
import logging
import math
import platform
import re
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from lerobot.common.robot_devices.cameras.utils import FIND_CAMERAS_HINT, CameraError
from lerobot.common.robot_devices.motors.utils import (
    RobotDeviceAlreadyConnectedError,
    RobotDeviceNotConnectedError,
)

OPENCV_INSTALL_HINT = "pip install 'lerobot[opencv]' (or: pip install opencv-python)"
COLOR_MODES = ("rgb", "bgr")
ROTATIONS = (None, -90, 90, 180)
# async_read waits this long for the first frame: webcams take up to a second or two to start streaming.
FIRST_FRAME_TIMEOUT_S = 5.0
# A camera whose newest frame is older than this many frame periods (and at least STALE_FRAME_MIN_S) is
# reported dead by async_read instead of handing out the same frame forever.
STALE_FRAME_PERIODS = 10
STALE_FRAME_MIN_S = 5.0
# OpenCV's V4L2 backend gives up on a silent device after 10 s (OPENCV_VIDEOIO_V4L_SELECT_TIMEOUT), so a
# capture thread stuck in read() usually returns within this.
THREAD_JOIN_TIMEOUT_S = 12.0


def import_cv2() -> ModuleType:
    """`cv2`, imported on first use so the package imports without the optional OpenCV dependency."""
    try:
        import cv2
    except ImportError as e:
        raise ImportError(f"OpenCV cameras need the `cv2` module: {OPENCV_INSTALL_HINT}") from e
    # Decoding and colour conversion run beside the control loop and the policy: more threads only compete.
    cv2.setNumThreads(1)
    return cv2


@dataclass
class OpenCVCameraConfig:
    """One OpenCV camera.

    camera_index: an index (on Linux, the device /dev/video{index}), a device path (symlinks such as
        /dev/v4l/by-id/... are followed) or the path of a video file that plays like a camera.
    fps, width, height: what to ask the camera for (None: its current setting). connect() fails when the
        camera delivers anything else; a video file cannot change them, so they must match the file.
        width/height are the capture size, before `rotation`.
    color_mode: channel order of the frames, "rgb" (default) or "bgr" (OpenCV's own order).
    rotation: None, 90 (clockwise), -90 (counterclockwise) or 180 degrees, applied to every frame.
    """

    camera_index: int | str
    fps: float | None = None
    width: int | None = None
    height: int | None = None
    color_mode: str = "rgb"
    rotation: int | None = None

    def __post_init__(self) -> None:
        index = self.camera_index
        if isinstance(index, bool) or not isinstance(index, (int, str)) or index == "":
            raise ValueError(
                f"camera_index must be an index, a /dev/videoN path or a video file path, got {index!r}."
            )
        if isinstance(index, int) and index < 0:
            raise ValueError(f"camera_index must be >= 0, got {index}.")
        if self.fps is not None and (
            isinstance(self.fps, bool) or not isinstance(self.fps, (int, float)) or not self.fps > 0
        ):
            raise ValueError(f"fps must be a positive number or None, got {self.fps!r}.")
        for key in ("width", "height"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise ValueError(f"{key} must be a positive integer or None, got {value!r}.")
        if self.color_mode not in COLOR_MODES:
            raise ValueError(f"color_mode must be one of {COLOR_MODES}, got {self.color_mode!r}.")
        if self.rotation not in ROTATIONS:
            raise ValueError(f"rotation must be one of {ROTATIONS} (degrees), got {self.rotation!r}.")


class OpenCVCamera:
    """A camera read through OpenCV; see `OpenCVCameraConfig`.

    `read()` waits for the camera's next frame; `async_read()` returns the newest frame of a background
    thread (started by the first call), with `frame_timestamp` (time.perf_counter() when it was captured)
    and `logs["frame_age_s"]` so a control loop can log how old its camera data is.
    """

    def __init__(self, config: OpenCVCameraConfig, name: str | None = None):
        if not isinstance(config, OpenCVCameraConfig):
            raise TypeError(f"OpenCVCamera takes an OpenCVCameraConfig, got {type(config).__name__}.")
        self.config = config
        self.name = name
        self.label = f"Camera '{name}' ({config.camera_index})" if name else f"Camera {config.camera_index}"
        self.logs: dict[str, Any] = {}
        self.frame_timestamp: float | None = None
        self._cv2: ModuleType | None = None
        self._cap: Any = None
        self._rotate_code: int | None = None
        self._is_video_file = False
        self._fps: float | None = config.fps
        self._capture_size: tuple[int | None, int | None] = (config.width, config.height)
        self._next_frame_due = 0.0  # video files: time.perf_counter() at which the next frame is "shot"
        self._thread: threading.Thread | None = None
        self._stop_event = threading.Event()
        self._frame_ready = threading.Condition()
        self._latest: tuple[np.ndarray, float] | None = None  # (frame, capture time)
        self._frame_count = 0
        self._thread_error: BaseException | None = None

    def __repr__(self) -> str:
        return f"OpenCVCamera({self.config!r}, name={self.name!r})"

    @property
    def is_connected(self) -> bool:
        return self._cap is not None

    @property
    def fps(self) -> float | None:
        return self._fps

    @property
    def width(self) -> int | None:
        width, height = self._capture_size
        return height if self.config.rotation in (-90, 90) else width

    @property
    def height(self) -> int | None:
        width, height = self._capture_size
        return width if self.config.rotation in (-90, 90) else height

    @property
    def channels(self) -> int:
        return 3

    def connect(self) -> None:
        """Open the camera, ask for the configured fps/width/height and check that it delivers them."""
        if self.is_connected:
            raise RobotDeviceAlreadyConnectedError(f"{self.label} is already connected.")
        cv2 = import_cv2()
        source, backend, is_video_file = self._resolve_source(cv2)
        cap = cv2.VideoCapture(source, backend)
        if not cap.isOpened():
            cap.release()
            raise CameraError(
                f"{self.label}: OpenCV could not open {source}. "
                + (
                    "Is it a video file OpenCV can decode?"
                    if is_video_file
                    else "It may be used by another program, need permissions (on Linux: be in the 'video' "
                    "group), or not be a capture device (some /dev/video* nodes only carry metadata). "
                    + FIND_CAMERAS_HINT
                )
            )
        try:
            if not is_video_file:
                # The order matters to some drivers: the frame rate first, then the size.
                for prop, value in (
                    (cv2.CAP_PROP_FPS, self.config.fps),
                    (cv2.CAP_PROP_FRAME_WIDTH, self.config.width),
                    (cv2.CAP_PROP_FRAME_HEIGHT, self.config.height),
                ):
                    if value is not None:
                        cap.set(prop, value)
            fps, width, height = self._check_settings(cv2, cap, source, is_video_file)
        except BaseException:
            cap.release()
            raise
        self._cv2, self._cap, self._is_video_file = cv2, cap, is_video_file
        rotate_codes = {90: cv2.ROTATE_90_CLOCKWISE, -90: cv2.ROTATE_90_COUNTERCLOCKWISE, 180: cv2.ROTATE_180}
        self._rotate_code = rotate_codes.get(self.config.rotation)
        self._fps, self._capture_size = fps, (width, height)
        self._next_frame_due = time.perf_counter()
        self._stop_event = threading.Event()
        self._latest, self._frame_count, self._thread_error = None, 0, None

    def read(self) -> np.ndarray:
        """The camera's next frame, (height, width, 3) uint8, rotated, in `color_mode` order."""
        self._require_connected()
        start = time.perf_counter()
        if self._thread is not None:
            # The thread owns the device now: wait for the next frame it captures.
            frame, timestamp = self._wait_for_frame(new=True, timeout_s=self._stale_limit_s())
        else:
            frame, timestamp = self._capture()
        self.frame_timestamp = timestamp
        self.logs["delta_timestamp_s"] = time.perf_counter() - start
        self.logs["timestamp_utc"] = datetime.now(timezone.utc)
        return frame

    def async_read(self, timeout_s: float | None = None) -> np.ndarray:
        """The newest frame of the background capture thread, started by the first call.

        Waits only until the thread has a first frame (at most `timeout_s`, default FIRST_FRAME_TIMEOUT_S);
        after that it returns at once, possibly the same frame as last time. Raises CameraError when the
        camera stopped delivering frames. The returned array is shared: copy it before changing it.
        """
        self._require_connected()
        start = time.perf_counter()
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._capture_loop, args=(self._stop_event,), name=f"{self.label} capture", daemon=True
            )
            self._thread.start()
        timeout_s = FIRST_FRAME_TIMEOUT_S if timeout_s is None else timeout_s
        frame, timestamp = self._wait_for_frame(new=False, timeout_s=timeout_s)
        age_s = time.perf_counter() - timestamp
        if age_s > self._stale_limit_s():
            raise CameraError(
                f"{self.label} delivered no new frame for {age_s:.1f} s: it stopped streaming "
                "(unplugged, or its USB bandwidth is shared with too many cameras?)."
            )
        self.frame_timestamp = timestamp
        self.logs["frame_age_s"] = age_s
        self.logs["delta_timestamp_s"] = time.perf_counter() - start
        self.logs["timestamp_utc"] = datetime.now(timezone.utc)
        return frame

    def disconnect(self) -> None:
        """Stop and join the capture thread, then release the device."""
        self._require_connected()
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop_event.set()
            thread.join(THREAD_JOIN_TIMEOUT_S)
        cap, self._cap = self._cap, None
        if thread is not None and thread.is_alive():
            # Releasing the device under a thread blocked in read() can crash OpenCV: leave it open.
            logging.warning(f"{self.label}: capture thread still blocked in read(); leaving the device open.")
            return
        cap.release()

    def __del__(self) -> None:
        if getattr(self, "_cap", None) is not None:
            # At interpreter shutdown OpenCV may already be gone: nothing sensible left to do then.
            with contextlib.suppress(Exception):
                self.disconnect()

    def _require_connected(self) -> None:
        if not self.is_connected:
            raise RobotDeviceNotConnectedError(f"{self.label} is not connected: call connect() first.")

    def _resolve_source(self, cv2: ModuleType) -> tuple[int | str, int, bool]:
        """(what to pass to VideoCapture, backend, is a video file)."""
        index = self.config.camera_index
        system = platform.system()
        if isinstance(index, int) and system != "Linux":
            return index, cv2.CAP_AVFOUNDATION if system == "Darwin" else cv2.CAP_ANY, False
        path = Path(f"/dev/video{index}") if isinstance(index, int) else Path(index).expanduser()
        if not path.exists():
            raise CameraError(f"{self.label}: {path} does not exist. {FIND_CAMERAS_HINT}")
        resolved = path.resolve()  # /dev/v4l/by-id/... links -> /dev/videoN
        if resolved.is_char_device():
            return str(resolved), cv2.CAP_V4L2 if system == "Linux" else cv2.CAP_ANY, False
        if resolved.is_file():
            return str(resolved), cv2.CAP_FFMPEG, True
        raise CameraError(f"{self.label}: {path} is neither a camera device nor a video file.")

    def _check_settings(
        self, cv2: ModuleType, cap: Any, source: int | str, is_video_file: bool
    ) -> tuple[float, int, int]:
        """The (fps, width, height) the camera delivers; CameraError if they differ from the requested ones."""
        actual = {
            "fps": float(cap.get(cv2.CAP_PROP_FPS)),
            "width": round(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            "height": round(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        }
        if is_video_file and not actual["fps"] > 0:
            raise CameraError(f"{self.label}: the video file {source} does not say its frame rate.")
        refused = [
            f"{key} {requested} (it delivers {actual[key]:g})"
            for key, requested in (
                ("fps", self.config.fps),
                ("width", self.config.width),
                ("height", self.config.height),
            )
            if requested is not None and not math.isclose(requested, actual[key], rel_tol=1e-3)
        ]
        if refused:
            hint = (
                "A video file plays at its own rate and size: leave fps/width/height unset or use the file's."
                if is_video_file
                else "Use values the camera supports; " + FIND_CAMERAS_HINT
            )
            where = "" if str(source) == str(self.config.camera_index) else f" ({source})"
            raise CameraError(f"{self.label}{where} refused {', '.join(refused)}. {hint}")
        return actual["fps"], actual["width"], actual["height"]

    def _capture(self) -> tuple[np.ndarray, float]:
        """Read one frame from the device: (frame in `color_mode` order and rotated, capture time)."""
        cv2 = self._cv2
        if self._is_video_file:
            self._wait_for_video_frame_time()
        ok, frame = self._cap.read()
        if not ok and self._is_video_file:
            # End of the file: start over, as a camera keeps delivering.
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = self._cap.read()
        timestamp = time.perf_counter()
        if not ok or frame is None:
            raise CameraError(f"{self.label} returned no frame: unplugged, or used by another program?")
        width, height = self._capture_size
        if frame.shape != (height, width, 3):
            raise CameraError(
                f"{self.label} delivered a frame of shape {frame.shape}, expected ({height}, {width}, 3)."
            )
        if self.config.color_mode == "rgb":
            frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        if self._rotate_code is not None:
            frame = cv2.rotate(frame, self._rotate_code)
        return frame, timestamp

    def _wait_for_video_frame_time(self) -> None:
        """Hold back a video file's frames to its frame rate, as a camera delivers them."""
        delay = self._next_frame_due - time.perf_counter()
        if delay > 0:
            self._stop_event.wait(delay)  # disconnect() cuts the wait short
        # A late reader gets a frame at once, but no burst of catch-up frames after it.
        self._next_frame_due = max(self._next_frame_due, time.perf_counter()) + 1 / self._fps

    def _capture_loop(self, stop_event: threading.Event) -> None:
        try:
            while not stop_event.is_set():
                latest = self._capture()
                with self._frame_ready:
                    self._latest = latest
                    self._frame_count += 1
                    self._frame_ready.notify_all()
        except Exception as e:  # noqa: BLE001 -- handed to the reader, who raises it with the camera's name
            with self._frame_ready:
                self._thread_error = e
                self._frame_ready.notify_all()

    def _wait_for_frame(self, new: bool, timeout_s: float) -> tuple[np.ndarray, float]:
        """The newest frame of the thread; with `new`, one captured after this call."""
        deadline = time.perf_counter() + timeout_s
        with self._frame_ready:
            after = self._frame_count if new else 0
            while self._frame_count <= after and self._thread_error is None:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    raise CameraError(
                        f"{self.label} delivered no frame within {timeout_s:g} s. Check that it streams "
                        f"(e.g. with find_cameras.py) and that it is not used by another program."
                    )
                self._frame_ready.wait(remaining)
            if self._thread_error is not None:
                raise CameraError(f"{self.label} stopped delivering frames: {self._thread_error}") from (
                    self._thread_error
                )
            return self._latest

    def _stale_limit_s(self) -> float:
        return max(STALE_FRAME_MIN_S, STALE_FRAME_PERIODS / self._fps if self._fps else 0.0)


def find_cameras(dev_dir: str | Path | None = None, max_index: int = 60) -> list[dict[str, Any]]:
    """The cameras OpenCV can open, each `{"index", "path", "width", "height", "fps"}` at its current settings.

    Looks at the `video<N>` entries of `dev_dir` (default: /dev on Linux) or, without one, tries the indices
    0..max_index-1 (then "path" is None).
    """
    cv2 = import_cv2()
    if dev_dir is None and platform.system() == "Linux":
        dev_dir = "/dev"
    if dev_dir is not None:
        nodes = [(int(p.name[5:]), str(p)) for p in Path(dev_dir).glob("video*") if p.name[5:].isdigit()]
        candidates: list[tuple[int, str | None]] = sorted(nodes)
    else:
        candidates = [(index, None) for index in range(max_index)]
    found = []
    # Every index without a camera makes OpenCV log a warning: keep the scan quiet.
    log_level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    try:
        for index, path in candidates:
            camera = OpenCVCamera(OpenCVCameraConfig(camera_index=index if path is None else path))
            try:
                camera.connect()
            except CameraError:
                continue
            found.append(
                {
                    "index": index,
                    "path": path,
                    "width": camera.width,
                    "height": camera.height,
                    "fps": camera.fps,
                }
            )
            camera.disconnect()
    finally:
        cv2.utils.logging.setLogLevel(log_level)
    return found


def camera_label(camera_index: int | str) -> str:
    """A short name for file names: `02` for index 2 or /dev/video2, the file name's stem otherwise."""
    if isinstance(camera_index, int):
        return f"{camera_index:02d}"
    name = Path(camera_index).name
    if camera_index.startswith("/dev/") and name.startswith("video") and name[5:].isdigit():
        return f"{int(name[5:]):02d}"
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(camera_index).stem) or "camera"


def save_images_from_cameras(
    images_dir: str | Path,
    camera_ids: list[int | str],
    fps: float | None = None,
    width: int | None = None,
    height: int | None = None,
    record_time_s: float = 2.0,
    overwrite: bool = False,
) -> dict[str, int]:
    """Save every new frame of each camera for `record_time_s` as `camera_<label>_frame_<n>.png`.

    Returns the number of frames saved per camera label (at least one each). Refuses a non-empty
    `images_dir` unless `overwrite`, which then replaces only the frames a previous run saved there.
    """
    from lerobot.common.datasets.utils import atomic_path

    images_dir = Path(images_dir)
    if images_dir.is_dir() and any(images_dir.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{images_dir} is not empty: pick another --images-dir, or pass --overwrite to replace the "
            "frames saved there before."
        )
    cameras: dict[str, OpenCVCamera] = {}
    for camera_id in camera_ids:
        label = camera_label(camera_id)
        while label in cameras:  # two files of the same name in different folders
            label += "_"
        # BGR: the order cv2.imencode expects.
        config = OpenCVCameraConfig(camera_id, fps=fps, width=width, height=height, color_mode="bgr")
        cameras[label] = OpenCVCamera(config, name=label)
    cv2 = import_cv2()
    images_dir.mkdir(parents=True, exist_ok=True)
    counts = dict.fromkeys(cameras, 0)
    last_timestamps: dict[str, float | None] = dict.fromkeys(cameras)
    try:
        for camera in cameras.values():
            camera.connect()
        # Only now that every camera works: the previous run's frames are not lost to a failed one.
        for old in images_dir.glob("camera_*_frame_*.png"):
            old.unlink()
        start = time.perf_counter()
        while True:
            for label, camera in cameras.items():
                frame = camera.async_read()
                if camera.frame_timestamp == last_timestamps[label]:
                    continue
                last_timestamps[label] = camera.frame_timestamp
                ok, png = cv2.imencode(".png", frame)
                if not ok:
                    raise CameraError(f"{camera.label}: OpenCV could not encode a frame as PNG.")
                with atomic_path(images_dir / f"camera_{label}_frame_{counts[label]:06d}.png") as tmp:
                    tmp.write_bytes(png.tobytes())
                counts[label] += 1
            if time.perf_counter() - start >= record_time_s:
                break
            time.sleep(0.005)  # poll often enough for any camera rate without spinning a core
    finally:
        for camera in cameras.values():
            if camera.is_connected:
                camera.disconnect()
    return counts


if __name__ == "__main__":
    # The command line lives in the script; this file runs it too, as the reference's camera module did.
    from lerobot.scripts.find_cameras import main

    sys.exit(main())
