"""List the cameras OpenCV can open and save a few seconds of frames from each, to tell them apart.

    python lerobot/scripts/find_cameras.py [--images-dir outputs/images_from_opencv_cameras]
        [--camera-ids 0 /dev/video2 demo.mp4] [--fps 30 --width 640 --height 480] [--record-time-s 2]

Then look at `camera_<index>_frame_*.png` in the images folder to see which index is which camera, and put
that index (or /dev/videoN path) in the robot config. `python lerobot/common/robot_devices/cameras/opencv.py`
runs the same command.
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

from lerobot.common.robot_devices.cameras.opencv import find_cameras, save_images_from_cameras
from lerobot.common.robot_devices.cameras.utils import CameraError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--images-dir", default="outputs/images_from_opencv_cameras", help="folder to save the frames to"
    )
    parser.add_argument(
        "--camera-ids",
        nargs="+",
        default=None,
        help="indices, /dev/videoN paths or video files (default: every camera found)",
    )
    parser.add_argument("--fps", type=float, default=None, help="frame rate to ask every camera for")
    parser.add_argument("--width", type=int, default=None, help="capture width to ask every camera for")
    parser.add_argument("--height", type=int, default=None, help="capture height to ask every camera for")
    parser.add_argument("--record-time-s", type=float, default=2.0, help="how long to save frames for")
    parser.add_argument("--overwrite", action="store_true", help="replace frames a previous run saved")
    parser.add_argument(
        "--dev-dir",
        default=None,
        help="folder whose video<N> entries are scanned (default: /dev on Linux; elsewhere indices 0-59)",
    )
    args = parser.parse_args(argv)
    try:
        if args.camera_ids:
            camera_ids: list[int | str] = [int(t) if t.isdigit() else t for t in args.camera_ids]
        else:
            found = find_cameras(dev_dir=args.dev_dir)
            if not found:
                if args.dev_dir is not None or platform.system() == "Linux":
                    where = f"no video<N> device in {args.dev_dir or '/dev'} that OpenCV can open"
                else:
                    where = "OpenCV can open none of the camera indices 0-59"
                print(
                    f"No camera found: {where}. Plug a camera in and check that you may use it (on Linux: be "
                    "in the 'video' group), or pass --camera-ids with indices, /dev/videoN paths or video files.",
                    file=sys.stderr,
                )
                return 1
            for camera in found:
                print(
                    f"Found camera {camera['path'] or camera['index']}: "
                    f"{camera['width']}x{camera['height']} at {camera['fps']:g} fps"
                )
            camera_ids = [camera["path"] or camera["index"] for camera in found]
        counts = save_images_from_cameras(
            args.images_dir,
            camera_ids,
            fps=args.fps,
            width=args.width,
            height=args.height,
            record_time_s=args.record_time_s,
            overwrite=args.overwrite,
        )
    except (ImportError, CameraError, FileExistsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for label, count in counts.items():
        print(
            f"Camera {label}: saved {count} frame(s) as {Path(args.images_dir) / f'camera_{label}_frame_*.png'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
