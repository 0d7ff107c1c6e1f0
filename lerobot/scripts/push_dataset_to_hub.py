"""Convert a raw dataset to a LeRobot dataset (format v3.0, with stats); optionally push it to the Hub.

    python lerobot/scripts/push_dataset_to_hub.py --raw-dir data/pusht_raw --raw-format pusht_zarr \
        --repo-id lerobot/pusht --out-dir data/lerobot/pusht [--push-to-hub 0|1] [--video 1|0] [--fps 10] \
        [--episodes 0 1 2] [--force-override 0|1] [--keypoints-only 0|1] [--task "..."]

Raw formats: pusht_zarr (Diffusion Policy PushT zarr), umi_zarr (UMI cup arrangement zarr), aloha_hdf5 (ACT
episode_<i>.hdf5 files), xarm_pkl (FOWM buffer.pkl, read without running any code from the pickle). Cameras
are stored as AV1 mp4 videos with --video 1, as PNG images with --video 0. --keypoints-only 1 (pusht_zarr)
writes the image-free variant, like lerobot/pusht_keypoints. An existing --out-dir is only replaced with
--force-override 1, and only once the new dataset is complete.
"""

from __future__ import annotations

import argparse
import sys

from lerobot.common.datasets.errors import DatasetError
from lerobot.common.datasets.push_dataset_to_hub import RAW_FORMATS
from lerobot.common.datasets.push_dataset_to_hub.convert_raw import convert_raw_dataset


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--raw-dir", required=True, help="folder (or file) holding the raw data")
    parser.add_argument(
        "--raw-format", required=True, help=f"format of the raw data: {', '.join(sorted(RAW_FORMATS))}"
    )
    parser.add_argument("--repo-id", required=True, help="namespace/name of the dataset, e.g. lerobot/pusht")
    parser.add_argument(
        "--out-dir",
        "--local-dir",
        dest="out_dir",
        default=None,
        help="where to write the dataset (default $HF_LEROBOT_HOME/<repo-id>)",
    )
    parser.add_argument(
        "--push-to-hub", type=int, choices=[0, 1], default=0, help="1: upload after converting"
    )
    parser.add_argument("--video", type=int, choices=[0, 1], default=1, help="1: mp4 videos, 0: PNG images")
    parser.add_argument("--fps", type=float, default=None, help="frame rate (default: the format's own)")
    parser.add_argument(
        "--episodes", type=int, nargs="*", default=None, help="convert only these raw episodes"
    )
    parser.add_argument("--force-override", type=int, choices=[0, 1], default=0, help="1: replace --out-dir")
    parser.add_argument(
        "--keypoints-only", type=int, choices=[0, 1], default=0, help="pusht_zarr: 1 drops the images"
    )
    parser.add_argument("--task", default=None, help="task text stored with every frame (default per format)")
    parser.add_argument(
        "--vcodec",
        default="libsvtav1",
        choices=["libsvtav1", "libx264"],
        help="video codec (default libsvtav1)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    fps = args.fps
    if fps is not None and fps.is_integer():
        fps = int(fps)
    try:
        result = convert_raw_dataset(
            args.raw_dir,
            args.raw_format,
            args.repo_id,
            args.out_dir,
            fps=fps,
            video=bool(args.video),
            episodes=args.episodes,
            force_override=bool(args.force_override),
            keypoints_only=bool(args.keypoints_only),
            task=args.task,
            vcodec=args.vcodec,
            push_to_hub=bool(args.push_to_hub),
        )
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cameras = ("videos" if result.video else "PNG images") if result.num_cameras else "none"
    print(
        f"Converted {result.num_episodes} episodes, {result.num_frames} frames ({result.raw_format}, "
        f"{result.fps} fps, cameras: {cameras}) to {result.root} in {result.seconds:.1f} s"
    )
    if result.success_frames is not None:
        print(
            f"next.success: {result.success_frames} frames, {result.success_episodes} of "
            f"{result.num_episodes} episodes reach success"
        )
    if result.url:
        print(f"Pushed to {result.url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
