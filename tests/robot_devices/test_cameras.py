"""OpenCV cameras against video files the tests write: the same connect/check/read/thread code as a webcam.

Frame i of a test video has a pure red top half and a grey bottom half of level 20 + 25 * i, so a test can
tell the channel order, the rotation and which frame it got (MJPG keeps flat areas within a few levels).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from lerobot.common.robot_devices.cameras import (
    Camera,
    CameraError,
    OpenCVCamera,
    OpenCVCameraConfig,
    find_cameras,
    make_cameras_from_configs,
)
from lerobot.common.robot_devices.cameras import opencv as opencv_module
from lerobot.common.robot_devices.motors.utils import (
    RobotDeviceAlreadyConnectedError,
    RobotDeviceNotConnectedError,
)
from lerobot.scripts import find_cameras as find_cameras_script

cv2 = pytest.importorskip("cv2")

REPO_ROOT = Path(__file__).resolve().parents[2]
FPS, WIDTH, HEIGHT, NUM_FRAMES = 20, 64, 48, 8
DEADLINE_S = 20.0  # bound on polling loops; generous so a loaded CI machine does not fail them


def write_video(path: Path, fps: float = FPS, num_frames: int = NUM_FRAMES) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (WIDTH, HEIGHT))
    assert writer.isOpened()
    for i in range(num_frames):
        frame = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
        frame[: HEIGHT // 2] = (0, 0, 255)  # red, in OpenCV's BGR order
        frame[HEIGHT // 2 :] = 20 + 25 * i
        writer.write(frame)
    writer.release()
    return path


def frame_index(frame: np.ndarray) -> int:
    return round((float(frame[HEIGHT // 2 :].mean()) - 20) / 25)


@pytest.fixture
def video(tmp_path) -> Path:
    return write_video(tmp_path / "demo.avi")


@pytest.fixture
def make_camera():
    """Build cameras; every one still connected at the end of the test is disconnected."""
    cameras: list[OpenCVCamera] = []

    def make(camera_index, name: str | None = None, **kwargs) -> OpenCVCamera:
        camera = OpenCVCamera(OpenCVCameraConfig(camera_index=str(camera_index), **kwargs), name=name)
        cameras.append(camera)
        return camera

    yield make
    for camera in cameras:
        if camera.is_connected:
            camera.disconnect()


class BlockingCapture:
    """Wraps a VideoCapture whose read() hangs until `release_reads` is set, as a frozen USB camera does."""

    def __init__(self, cap):
        self.cap = cap
        self.release_reads = threading.Event()

    def read(self):
        self.release_reads.wait()
        return self.cap.read()

    def set(self, *args):
        return self.cap.set(*args)

    def release(self):
        self.cap.release()


class DeadCapture(BlockingCapture):
    """A VideoCapture of an unplugged camera: read() fails at once."""

    def read(self):
        return False, None


def test_read_gives_rgb_frames_of_the_reported_size(video, make_camera):
    camera = make_camera(video)
    assert camera.fps is None and camera.channels == 3
    camera.connect()
    assert camera.is_connected
    assert (camera.fps, camera.width, camera.height) == (FPS, WIDTH, HEIGHT)
    frame = camera.read()
    assert frame.shape == (HEIGHT, WIDTH, 3) and frame.dtype == np.uint8
    red, green, blue = frame[2, 2]
    assert red > 200 and green < 50 and blue < 50
    assert frame_index(frame) == 0
    assert camera.logs["delta_timestamp_s"] >= 0 and camera.frame_timestamp <= time.perf_counter()


def test_bgr_mode_keeps_opencv_order(video, make_camera):
    camera = make_camera(video, color_mode="bgr")
    camera.connect()
    blue, green, red = camera.read()[2, 2]
    assert red > 200 and green < 50 and blue < 50


@pytest.mark.parametrize("rotation, quarter_turns", [(90, -1), (-90, 1), (180, 2)])
def test_rotation(video, make_camera, rotation, quarter_turns):
    plain, rotated = make_camera(video), make_camera(video, rotation=rotation)
    plain.connect()
    rotated.connect()
    expected = np.rot90(plain.read(), k=quarter_turns)  # k < 0: clockwise
    frame = rotated.read()
    np.testing.assert_array_equal(frame, expected)
    assert (rotated.height, rotated.width) == frame.shape[:2]
    if rotation == 90:  # the red top half turns to the right
        assert frame[:, -1, 0].min() > 200 and frame[:, 0, 0].max() < 100


def test_video_file_plays_at_its_fps_and_loops(video, make_camera):
    camera = make_camera(video)
    camera.connect()
    start = time.perf_counter()
    indices = [frame_index(camera.read()) for _ in range(NUM_FRAMES + 3)]
    elapsed = time.perf_counter() - start
    assert indices == list(range(NUM_FRAMES)) + [0, 1, 2]
    # NUM_FRAMES + 2 frame periods after the first frame; a loaded machine only makes it slower.
    assert elapsed >= 0.9 * (NUM_FRAMES + 2) / FPS


@pytest.mark.parametrize(
    "requested, accepted",
    [
        ({"fps": FPS, "width": WIDTH, "height": HEIGHT}, True),
        ({"fps": FPS * (1 + 5e-4)}, True),  # math.isclose, rel_tol 1e-3
        ({"fps": 30}, False),
        ({"fps": FPS * 1.01}, False),
        ({"width": 32}, False),
        ({"height": 100}, False),
    ],
)
def test_requested_fps_and_size_must_match(video, make_camera, requested, accepted):
    camera = make_camera(video, name="laptop", **requested)
    if accepted:
        camera.connect()
        assert camera.is_connected
        return
    with pytest.raises(CameraError, match=f"Camera 'laptop'.*refused {next(iter(requested))}"):
        camera.connect()
    assert not camera.is_connected


def test_missing_or_unreadable_sources(tmp_path, make_camera):
    with pytest.raises(CameraError, match="nope.mp4 does not exist.*find_cameras"):
        make_camera(tmp_path / "nope.mp4").connect()
    (tmp_path / "notes.txt").write_text("not a video")
    with pytest.raises(CameraError, match="could not open"):
        make_camera(tmp_path / "notes.txt").connect()
    with pytest.raises(CameraError, match="neither a camera device nor a video file"):
        make_camera(tmp_path).connect()
    # An index without a device: /dev/video99 on Linux, an index OpenCV cannot open elsewhere.
    camera = OpenCVCamera(OpenCVCameraConfig(camera_index=99))
    with pytest.raises(CameraError, match="99"):
        camera.connect()
    assert not camera.is_connected


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"camera_index": True}, "camera_index"),
        ({"camera_index": ""}, "camera_index"),
        ({"camera_index": -1}, "camera_index"),
        ({"camera_index": 0, "fps": 0}, "fps"),
        ({"camera_index": 0, "width": 0}, "width"),
        ({"camera_index": 0, "height": 480.5}, "height"),
        ({"camera_index": 0, "color_mode": "rgba"}, "color_mode"),
        ({"camera_index": 0, "rotation": 45}, "rotation"),
    ],
)
def test_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        OpenCVCameraConfig(**kwargs)


def test_async_read_waits_only_for_the_first_frame(tmp_path, make_camera):
    # A slow camera (2 fps): after the first frame, async_read hands out what it has instead of waiting.
    camera = make_camera(write_video(tmp_path / "slow.avi", fps=2), name="slow")
    camera.connect()
    camera.async_read()
    start = time.perf_counter()
    for _ in range(5):
        frame = camera.async_read()
        assert 0 <= camera.logs["frame_age_s"] < opencv_module.STALE_FRAME_MIN_S
        assert camera.frame_timestamp <= time.perf_counter()
    # Waiting for new frames would take 5 periods (2.5 s).
    assert time.perf_counter() - start < 1.0
    assert frame.shape == (HEIGHT, WIDTH, 3)


def test_async_read_returns_the_latest_frame_to_a_slow_reader(tmp_path, make_camera):
    camera = make_camera(write_video(tmp_path / "ten_fps.avi", fps=10))
    camera.connect()
    previous = frame_index(camera.async_read())
    deadline = time.perf_counter() + DEADLINE_S
    # A queue of frames would hand a reader that sleeps 0.35 s the next frame (1 ahead); the latest frame is
    # 3-4 frames ahead. Retried only because a starved capture thread can lag behind once in a while.
    while True:
        time.sleep(0.35)  # the slow reader's own work, not synchronisation
        current = frame_index(camera.async_read())
        if 2 <= (current - previous) % NUM_FRAMES <= 6:
            break
        assert time.perf_counter() < deadline, "async_read never skipped ahead to the newest frame"
        previous = current


def test_read_after_async_read_waits_for_a_new_frame(video, make_camera):
    camera = make_camera(video)
    camera.connect()
    camera.async_read()
    before = camera.frame_timestamp
    start = time.perf_counter()
    camera.read()
    assert camera.frame_timestamp > before and camera.frame_timestamp > start


def test_dead_camera_is_reported_by_async_read(video, make_camera):
    camera = make_camera(video, name="wrist")
    camera.connect()
    camera.async_read()
    camera._cap = DeadCapture(camera._cap)  # unplugged while streaming
    deadline = time.perf_counter() + DEADLINE_S
    with pytest.raises(CameraError, match="Camera 'wrist'.*stopped delivering frames"):
        while time.perf_counter() < deadline:
            camera.async_read()
            time.sleep(0.01)
    with pytest.raises(CameraError, match="stopped delivering frames"):
        camera.async_read()
    with pytest.raises(CameraError, match="stopped delivering frames"):
        camera.read()
    camera.disconnect()
    assert not camera.is_connected


def test_frozen_camera_is_reported_not_replayed(video, make_camera, monkeypatch):
    monkeypatch.setattr(opencv_module, "STALE_FRAME_MIN_S", 0.3)
    camera = make_camera(video, name="phone")
    camera.connect()
    camera.async_read()
    frozen = camera._cap = BlockingCapture(camera._cap)
    try:
        deadline = time.perf_counter() + DEADLINE_S
        with pytest.raises(CameraError, match="Camera 'phone'.*no new frame"):
            while time.perf_counter() < deadline:
                camera.async_read()
                time.sleep(0.01)
    finally:
        frozen.release_reads.set()
    camera.disconnect()


def test_first_frame_timeout_names_the_camera(video, make_camera):
    camera = make_camera(video, name="top")
    camera.connect()
    frozen = camera._cap = BlockingCapture(camera._cap)
    try:
        with pytest.raises(CameraError, match="Camera 'top'.*no frame within 0.2 s"):
            camera.async_read(timeout_s=0.2)
    finally:
        frozen.release_reads.set()
    camera.disconnect()


def test_connect_disconnect_misuse_and_reuse(video, make_camera):
    camera = make_camera(video, name="laptop")
    for use in (camera.read, camera.async_read, camera.disconnect):
        with pytest.raises(RobotDeviceNotConnectedError, match="Camera 'laptop'.*connect"):
            use()
    camera.connect()
    with pytest.raises(RobotDeviceAlreadyConnectedError):
        camera.connect()
    camera.async_read()
    thread = camera._thread
    assert thread.is_alive()
    camera.disconnect()
    assert not thread.is_alive() and not camera.is_connected
    with pytest.raises(RobotDeviceNotConnectedError):
        camera.disconnect()
    with pytest.raises(RobotDeviceNotConnectedError):
        camera.async_read()
    # The same camera connects again and streams from a fresh thread.
    camera.connect()
    assert camera.async_read().shape == (HEIGHT, WIDTH, 3)
    assert camera._thread is not thread
    camera.disconnect()


def test_failed_connect_can_be_retried(tmp_path, make_camera):
    camera = make_camera(tmp_path / "later.avi")
    with pytest.raises(CameraError):
        camera.connect()
    write_video(tmp_path / "later.avi")
    camera.connect()
    assert camera.read().shape == (HEIGHT, WIDTH, 3)


def test_make_cameras_from_configs(video):
    configs = {
        "laptop": {"type": "opencv", "camera_index": str(video), "fps": FPS, "rotation": 180},
        "phone": OpenCVCameraConfig(camera_index=str(video), color_mode="bgr"),
        "hydra": OmegaConf.create({"type": "opencv", "camera_index": str(video), "width": WIDTH}),
    }
    cameras = make_cameras_from_configs(configs)
    assert list(cameras) == ["laptop", "phone", "hydra"]
    for name, camera in cameras.items():
        assert isinstance(camera, OpenCVCamera) and isinstance(camera, Camera)
        assert camera.name == name and not camera.is_connected
    assert cameras["laptop"].config.rotation == 180 and cameras["hydra"].config.width == WIDTH
    assert make_cameras_from_configs({}) == {}


@pytest.mark.parametrize(
    "config, message",
    [
        ({"type": "realsense", "camera_index": 0}, "Camera 'cam': unknown type 'realsense'.*opencv"),
        ({"camera_index": 0}, "Camera 'cam' has no 'type'"),
        ({"type": "opencv", "camera_index": 0, "fsp": 30}, r"unknown field\(s\) \['fsp'\]"),
        ({"type": "opencv"}, "Camera 'cam'.*camera_index"),
        ({"type": "opencv", "camera_index": 0, "rotation": 45}, "Camera 'cam'.*rotation"),
        ([0, 30], "Camera 'cam': expected a mapping"),
    ],
)
def test_make_cameras_from_configs_rejects_bad_configs(config, message):
    with pytest.raises(ValueError, match=message):
        make_cameras_from_configs({"cam": config})


def test_make_cameras_from_configs_needs_a_mapping():
    with pytest.raises(ValueError, match="mapping of camera name"):
        make_cameras_from_configs([{"type": "opencv", "camera_index": 0}])


def test_find_cameras_lists_openable_video_nodes(tmp_path, video):
    dev = tmp_path / "dev"
    dev.mkdir()
    for name in ("video10", "video3", "videoX"):
        (dev / name).write_bytes(video.read_bytes())
    (dev / "video1").write_text("a metadata node OpenCV cannot capture from")
    found = find_cameras(dev_dir=dev)
    assert found == [
        {"index": index, "path": str(dev / f"video{index}"), "width": WIDTH, "height": HEIGHT, "fps": FPS}
        for index in (3, 10)
    ]
    assert find_cameras(dev_dir=tmp_path / "empty") == []


def test_cli_without_cameras_says_so(tmp_path, capsys):
    images_dir = tmp_path / "images"
    code = find_cameras_script.main(["--dev-dir", str(tmp_path), "--images-dir", str(images_dir)])
    assert code == 1
    err = capsys.readouterr().err
    assert "No camera found" in err and str(tmp_path) in err and "--camera-ids" in err
    assert not images_dir.exists()


def test_cli_saves_frames_of_a_video_file(tmp_path, video, capsys):
    images_dir = tmp_path / "images"
    args = ["--images-dir", str(images_dir), "--camera-ids", str(video), "--record-time-s", "0.3"]
    assert find_cameras_script.main(args) == 0
    frames = sorted(images_dir.glob("camera_demo_frame_*.png"))
    assert frames and frames[0].name == "camera_demo_frame_000000.png"
    assert [p.name for p in images_dir.iterdir() if p.name.startswith(".")] == []  # no temp files left
    first = cv2.imread(str(frames[0]))  # BGR
    assert first[2, 2, 2] > 200 and first[2, 2, 0] < 50 and frame_index(first) == 0
    assert f"saved {len(frames)} frame(s)" in capsys.readouterr().out

    # A second run refuses to write into the folder, unless asked; a failed run keeps the old frames.
    (images_dir / "notes.txt").write_text("mine")
    assert find_cameras_script.main(args) == 2
    assert "not empty" in capsys.readouterr().err
    assert find_cameras_script.main([*args, "--overwrite", "--fps", "30"]) == 2
    assert "refused fps" in capsys.readouterr().err
    assert sorted(images_dir.glob("camera_demo_frame_*.png")) == frames
    assert find_cameras_script.main([*args[:-1], "0.01", "--overwrite"]) == 0
    assert len(list(images_dir.glob("camera_demo_frame_*.png"))) >= 1
    assert (images_dir / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(
    "script", ["lerobot/common/robot_devices/cameras/opencv.py", "lerobot/scripts/find_cameras.py"]
)
def test_command_lines_run_as_scripts(tmp_path, script):
    result = subprocess.run(
        [sys.executable, script, "--dev-dir", str(tmp_path), "--images-dir", str(tmp_path / "images")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert "No camera found" in result.stderr


def test_package_imports_without_opencv():
    code = (
        "import sys; sys.modules['cv2'] = None\n"
        "import lerobot.common.robot_devices.cameras as cameras\n"
        "camera = cameras.OpenCVCamera(cameras.OpenCVCameraConfig(camera_index=0))\n"
        "try:\n"
        "    camera.connect()\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "pip install 'lerobot[" in result.stdout and "opencv-python" in result.stdout
