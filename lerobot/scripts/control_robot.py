"""Control a real robot: calibrate its arms, teleoperate it, record a dataset, replay an episode.

    python lerobot/scripts/control_robot.py calibrate --robot-path so100 --arms main_follower
    python lerobot/scripts/control_robot.py teleoperate --robot-path so100 --fps 30 --display-cameras 1
    python lerobot/scripts/control_robot.py record --robot-path so100 --fps 30 --repo-id me/so100_test \\
        --single-task "Grasp a lego block and put it in the bin." --num-episodes 10 \\
        --warmup-time-s 5 --episode-time-s 30 --reset-time-s 10
    python lerobot/scripts/control_robot.py replay --robot-path so100 --repo-id me/so100_test --episode 0
    python lerobot/scripts/control_robot.py record --robot-path so100 --repo-id me/eval_act_so100_test \\
        -p outputs/train/act_so100_test/checkpoints/last/pretrained_model --num-episodes 10

`--robot-path` is a robot yaml (default lerobot/configs/robot/koch.yaml) or the name of one in
lerobot/configs/robot/ (so100, koch, ...); `--robot-overrides` changes its keys (`leader_arms.main.port=/dev/ttyACM1`,
`max_relative_target=5`, `~cameras` to drop all cameras).

Recording writes one episode at a time through the dataset writer into `<root>/<repo_id>` (`--root` defaults to
`data`): an interrupted recording keeps every finished episode, and `--resume 1` continues it up to
`--num-episodes` episodes in all. Keys while recording: right arrow (or n) ends the episode or the reset period
early, left arrow (or r) re-records the episode, Esc (or q) stops; they are read with pynput where it works (local
X11, macOS, Windows) and from the terminal otherwise (SSH, Wayland; `--keyboard` chooses). With `-p`, a trained
policy acts instead of the leader arm and the dataset name must start with `eval_`.

Step-by-step guide for the SO-100 arm: examples/7_get_started_with_real_robot.md.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lerobot.common.robot_devices.control_utils import (
    FpsMonitor,
    StepLogger,
    busy_wait,
    close_camera_windows,
    control_loop,
    say,
    step_timings,
)
from lerobot.common.robot_devices.keyboard import MODES, ControlEvents, keyboard_controls
from lerobot.common.robot_devices.recording import camera_display, dataset_folder, record
from lerobot.common.robot_devices.robots.factory import ROBOT_CONFIG_DIR, available_robot_configs, make_robot
from lerobot.common.utils.utils import init_logging

log = logging.getLogger("lerobot.control")

DEFAULT_ROBOT_PATH = "lerobot/configs/robot/koch.yaml"


# ------------------------------------------------------------------------------------------- robot


def resolve_robot_path(robot_path: str) -> Path:
    """A yaml path as given, else the same file name (or a bare robot name) among the package's robot configs,
    so that the documented `lerobot/configs/robot/so100.yaml` also works outside a checkout."""
    path = Path(robot_path).expanduser()
    if path.is_file():
        return path
    name = path.name if path.suffix in (".yaml", ".yml") else f"{path.name}.yaml"
    packaged = ROBOT_CONFIG_DIR / name
    if packaged.is_file():
        return packaged
    raise FileNotFoundError(
        f"Robot config {robot_path!r} not found: neither a file nor one of the robots of {ROBOT_CONFIG_DIR} "
        f"({', '.join(available_robot_configs())}). Pass --robot-path <file.yaml> or one of those names."
    )


def make_robot_from_args(robot_path: str, overrides: list[str] | None = None) -> Any:
    """The robot of `--robot-path` with `--robot-overrides` (`key.sub=value`, `~key` to drop one)."""
    return make_robot(resolve_robot_path(robot_path), list(overrides or []))


def ensure_connected(robot: Any) -> None:
    if not robot.is_connected:
        robot.connect()


# ------------------------------------------------------------------------------------------- calibrate


def calibrate(robot: Any, arms: list[str] | None = None) -> None:
    """Redo the guided calibration of `arms` (ids like `main_follower`; default: every arm), replacing their
    calibration files."""
    robot.calibrate(list(arms) if arms else None)


# ------------------------------------------------------------------------------------------- teleoperate


def teleoperate(
    robot: Any,
    fps: float | None = None,
    display_cameras: bool = False,
    teleop_time_s: float | None = None,
    keyboard: str = "auto",
) -> None:
    """Leader arms drive the followers until `teleop_time_s` passes, Esc/q is pressed, or Ctrl+C."""
    ensure_connected(robot)
    display_cameras = camera_display(display_cameras)
    events = ControlEvents()
    start = time.perf_counter()
    try:
        with keyboard_controls(events, keyboard):
            while True:
                remaining = None if teleop_time_s is None else teleop_time_s - (time.perf_counter() - start)
                if remaining is not None and remaining <= 0:
                    break
                control_loop(
                    robot, remaining, fps, events=events, teleoperate=True, display_cameras=display_cameras
                )
                if events.stop_recording or not events.exit_early:
                    break
                events.exit_early = events.rerecord_episode = False  # only Esc/q mean something here
    finally:
        if display_cameras:
            close_camera_windows()


# ------------------------------------------------------------------------------------------- replay


def replay(
    robot: Any,
    repo_id: str,
    root: str | Path = "data",
    episode: int = 0,
    fps: float | None = None,
    play_sounds: bool = False,
) -> int:
    """Send the recorded actions of `episode` to the robot at the dataset's rate; returns how many were sent."""
    from lerobot.common.datasets.lerobot_dataset import LeRobotDataset

    dataset = LeRobotDataset(repo_id, root=dataset_folder(root, repo_id), episodes=[episode])
    actions = torch.from_numpy(np.asarray(dataset.hf_dataset["action"], dtype=np.float32))
    fps = fps or dataset.fps
    ensure_connected(robot)
    monitor = FpsMonitor(fps)
    step_logger = StepLogger()
    say(f"Replaying episode {episode}", play_sounds, blocking=True)
    for action in actions:
        start = time.perf_counter()
        robot.send_action(action)
        busy_wait(1 / fps - (time.perf_counter() - start))
        dt_s = time.perf_counter() - start
        timings = step_timings(getattr(robot, "logs", {}) or {})
        step_logger.maybe_log(dt_s, timings, prefix=f"replay {episode}: ")
        monitor.update(time.monotonic(), dt_s, timings)
    return len(actions)


# ------------------------------------------------------------------------------------------- CLI


def flag(value: str) -> bool:
    if value not in ("0", "1"):
        raise argparse.ArgumentTypeError(f"expected 0 or 1, got {value!r}")
    return value == "1"


def build_parser() -> argparse.ArgumentParser:
    base = argparse.ArgumentParser(add_help=False)
    base.add_argument(
        "--robot-path",
        default=DEFAULT_ROBOT_PATH,
        help="Robot yaml, or a robot name of lerobot/configs/robot/ (so100, koch, ...). Default: %(default)s.",
    )
    base.add_argument(
        "--robot-overrides",
        nargs="*",
        default=[],
        help="key=value changes to the robot config (e.g. leader_arms.main.port=/dev/ttyACM0), ~key removes one.",
    )
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    modes = parser.add_subparsers(dest="mode", required=True)

    p = modes.add_parser("calibrate", parents=[base], help="(Re)calibrate arms.")
    p.add_argument(
        "--arms", nargs="*", help="Arm ids to calibrate, e.g. main_follower main_leader (default: all)."
    )

    keyboard_help = "Key controls: auto (pynput if usable, else the terminal), pynput, terminal, off."
    p = modes.add_parser("teleoperate", parents=[base], help="Leader arms drive the followers.")
    p.add_argument("--fps", type=float, default=None, help="Steps per second (default: as fast as possible).")
    p.add_argument("--display-cameras", type=flag, default=False, help="1: show the cameras in windows.")
    p.add_argument(
        "--teleop-time-s", type=float, default=None, help="Stop after this long (default: Esc/Ctrl+C)."
    )
    p.add_argument("--keyboard", choices=MODES, default="auto", help=keyboard_help)

    p = modes.add_parser("record", parents=[base], help="Record episodes into a dataset.")
    p.add_argument(
        "--fps", type=float, default=None, help="Frames per second (default: the policy's, else 30)."
    )
    p.add_argument(
        "--root", default="data", help="Parent folder of the dataset: it goes to <root>/<repo-id>."
    )
    p.add_argument("--repo-id", default="lerobot/test", help="Dataset id 'user/name'.")
    p.add_argument("--single-task", default=None, help="What the episodes show, stored with each of them.")
    p.add_argument(
        "--warmup-time-s", type=float, default=10, help="Unrecorded time first, to warm up devices."
    )
    p.add_argument("--episode-time-s", type=float, default=60, help="Length of each episode.")
    p.add_argument(
        "--reset-time-s", type=float, default=60, help="Time to reset the scene after each episode."
    )
    p.add_argument(
        "--num-episodes", type=int, default=50, help="Episodes in the dataset (resumed ones count)."
    )
    p.add_argument("--video", type=flag, default=True, help="1: encode cameras as mp4; 0: PNG images.")
    p.add_argument(
        "--push-to-hub", type=flag, default=False, help="1: upload to the Hugging Face Hub at the end."
    )
    p.add_argument("--tags", nargs="*", default=[], help="Tags of the dataset on the Hub.")
    p.add_argument("-p", "--pretrained-policy-name-or-path", default=None, help="Let this policy act.")
    p.add_argument(
        "--policy-overrides", nargs="*", default=[], help="key=value overrides of its config.yaml."
    )
    p.add_argument("--resume", type=flag, default=False, help="1: add episodes to an existing dataset.")
    p.add_argument("--force-override", type=flag, default=False, help="1: delete an existing dataset first.")
    p.add_argument("--display-cameras", type=flag, default=False, help="1: show the cameras in windows.")
    p.add_argument("--play-sounds", type=flag, default=False, help="1: speak the prompts (say / spd-say).")
    p.add_argument("--keyboard", choices=MODES, default="auto", help=keyboard_help)
    p.add_argument("--num-image-writer-threads", type=int, default=4, help="Threads writing camera frames.")

    p = modes.add_parser("replay", parents=[base], help="Send the actions of a recorded episode again.")
    p.add_argument("--fps", type=float, default=None, help="Frames per second (default: the dataset's).")
    p.add_argument("--root", default="data", help="Parent folder of the dataset (or the dataset folder).")
    p.add_argument("--repo-id", default="lerobot/test", help="Dataset id 'user/name'.")
    p.add_argument("--episode", type=int, default=0, help="Index of the episode to replay.")
    p.add_argument("--play-sounds", type=flag, default=False, help="1: speak the prompts.")
    return parser


def main(argv: list[str] | None = None) -> Any:
    args = build_parser().parse_args(argv)
    init_logging()
    robot = make_robot_from_args(args.robot_path, args.robot_overrides)
    try:
        return run_mode(robot, args)
    except KeyboardInterrupt:
        if args.mode == "teleoperate":  # the normal way to end it
            log.info("Teleoperation stopped (Ctrl+C).")
            return None
        log.error("Interrupted (Ctrl+C).")
        raise SystemExit(130) from None
    finally:
        if robot.is_connected:
            robot.disconnect()


def run_mode(robot: Any, args: argparse.Namespace) -> Any:
    if args.mode == "calibrate":
        return calibrate(robot, args.arms)
    if args.mode == "teleoperate":
        return teleoperate(robot, args.fps, args.display_cameras, args.teleop_time_s, args.keyboard)
    if args.mode == "replay":
        return replay(robot, args.repo_id, args.root, args.episode, args.fps, args.play_sounds)
    return record(
        robot,
        args.repo_id,
        args.root,
        single_task=args.single_task,
        fps=args.fps,
        warmup_time_s=args.warmup_time_s,
        episode_time_s=args.episode_time_s,
        reset_time_s=args.reset_time_s,
        num_episodes=args.num_episodes,
        video=args.video,
        push_to_hub=args.push_to_hub,
        tags=args.tags,
        pretrained_policy_name_or_path=args.pretrained_policy_name_or_path,
        policy_overrides=args.policy_overrides,
        resume=args.resume,
        force_override=args.force_override,
        display_cameras=args.display_cameras,
        play_sounds=args.play_sounds,
        keyboard=args.keyboard,
        image_writer_threads=args.num_image_writer_threads,
    )


if __name__ == "__main__":
    main()
