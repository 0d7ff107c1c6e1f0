"""Recording a dataset on a real robot: the episode loop of `control_robot.py record`, and its safety rules.

A recording session can last an hour and crash at any moment (a USB cable, a camera, Ctrl+C), so the dataset is
written one episode at a time through the dataset writer (each `save_episode` leaves a complete dataset on
disk), an existing dataset is never overwritten unless `--force-override 1` says so, and `--resume 1` continues
an interrupted session up to the same `--num-episodes`. The episode loop itself is `EpisodeRecorder`: warmup,
then per episode record -> reset period -> save, with the keyboard able to cut any period short, re-record
or stop.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from lerobot.common.datasets.errors import DatasetExistsError, FeatureMismatchError
from lerobot.common.datasets.metadata import find_info_file, load_metadata
from lerobot.common.robot_devices.control_utils import (
    FpsMonitor,
    check_policy_fits_robot,
    close_camera_windows,
    control_loop,
    predict_action,
    sanity_check_dataset_name,
    say,
)
from lerobot.common.robot_devices.keyboard import ControlEvents, display_available, keyboard_controls
from lerobot.common.utils.utils import get_device, keep_freed_memory

log = logging.getLogger("lerobot.control")

DEFAULT_TASK = "Teleoperated demonstration"
DEFAULT_POLICY_TASK = "Policy rollout"


def camera_display(requested: bool) -> bool:
    """Whether to show camera windows: only when asked and a display exists (else a warning)."""
    if requested and not display_available():
        log.warning("--display-cameras 1: no display here (no DISPLAY/WAYLAND_DISPLAY), not showing cameras.")
        return False
    return requested


def dataset_folder(root: str | Path, repo_id: str) -> Path:
    """Where a dataset is read from: `<root>/<repo_id>`, or `root` itself when it is a dataset folder.

    (Recording always writes to `<root>/<repo_id>`, so that it cannot add to a dataset of another name.)
    """
    root = Path(root).expanduser()
    return root if find_info_file(root) is not None else root / repo_id


def load_policy_for_recording(
    pretrained: str, overrides: list[str] | None = None
) -> tuple[Any, float | None, torch.device, bool]:
    """(policy, the fps it was trained at, device, use_amp), read as eval.py reads a checkpoint."""
    from lerobot.common.policies.factory import load_policy
    from lerobot.scripts.eval import fetch_config_yaml

    folder = fetch_config_yaml(pretrained, None)
    cfg = OmegaConf.create({})
    if folder is not None and (folder / "config.yaml").exists():
        cfg = OmegaConf.load(folder / "config.yaml")
    cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides or [])))
    device = get_device(cfg.get("device", "auto"))
    if device.type == "cpu":
        keep_freed_memory()  # each policy call re-faults its freed activations otherwise (as in train.py)
    policy_type = OmegaConf.select(cfg, "policy.name")
    policy = load_policy(pretrained, policy_type=policy_type)
    policy.to(device).eval()
    fps = OmegaConf.select(cfg, "fps")
    return policy, (float(fps) if fps is not None else None), device, bool(cfg.get("use_amp", False))


def check_resumable(writer: Any, features: dict, fps: float) -> None:
    """A resumed dataset must have been recorded with the same robot setup and rate."""
    if abs(float(writer.fps) - float(fps)) > 1e-6:
        raise FeatureMismatchError(
            f"{writer.root} was recorded at {writer.fps} fps; resume it with --fps {writer.fps} (asked: {fps})."
        )
    theirs = {k: tuple(writer.features[k]["shape"]) for k in writer.user_keys}
    ours = {k: tuple(v["shape"]) for k, v in features.items()}
    if theirs != ours:
        raise FeatureMismatchError(
            f"{writer.root} holds features {theirs} but the robot now gives {ours}: resume only with the same "
            "arms and cameras (and camera sizes), or record into another --repo-id/--root."
        )


def dataset_action(folder: Path, resume: bool, force_override: bool) -> str:
    """What recording into `folder` will do: "create", "resume" or "override"; refuses to overwrite silently.

    Decided before the robot connects, so that a wrong --repo-id fails at once.
    """
    if not (folder.exists() and any(folder.iterdir())):
        if resume:
            log.info("--resume 1: nothing to resume at %s yet, starting a new dataset.", folder)
        return "create"
    is_dataset = find_info_file(folder) is not None
    if resume and is_dataset:
        return "resume"
    if force_override:
        return "override"
    if is_dataset:
        raise DatasetExistsError(
            f"{folder} already holds a dataset. Add --resume 1 to add episodes to it, choose another --root or "
            "--repo-id, or pass --force-override 1 to delete it and start over."
        )
    raise DatasetExistsError(
        f"{folder} exists and is not a LeRobot dataset (no meta/info.json). Choose another --root or --repo-id, "
        "or pass --force-override 1 to delete it."
    )


def open_writer(
    robot: Any,
    repo_id: str,
    folder: Path,
    fps: float,
    action: str,
    *,
    video: bool,
    image_writer_threads: int = 4,
) -> Any:
    """A writer on a new dataset, or on the existing one when resuming (`action` from `dataset_action`)."""
    from lerobot.common.datasets.lerobot_dataset import LeRobotDataset
    from lerobot.common.datasets.writer import LeRobotDatasetWriter

    features = robot.features
    if action == "resume":
        writer = LeRobotDatasetWriter.resume(repo_id, folder, image_writer_threads=image_writer_threads)
        check_resumable(writer, features, fps)
        writer.clear_episode_buffer()  # PNG frames the interrupted episode left behind
        log.info("Resuming %s: %d episodes already recorded.", folder, writer.num_episodes)
        return writer
    if action == "override":
        log.warning("--force-override 1: deleting the existing %s before recording.", folder)
        shutil.rmtree(folder)
    return LeRobotDataset.create(
        repo_id,
        fps=fps,
        features=features,
        root=folder,
        robot_type=getattr(robot, "robot_type", None),
        use_videos=video,
        image_writer_threads=image_writer_threads,
    )


class EpisodeRecorder:
    """The record loop: warmup, then per episode record -> reset period -> save (or re-record), until done.

    The episode is saved after its reset period so that the left arrow pressed during the reset can still
    discard it; a crash in that period loses it like any other unsaved episode.
    """

    def __init__(
        self,
        robot: Any,
        writer: Any,
        events: ControlEvents,
        *,
        fps: float,
        task: str,
        policy: Any = None,
        device: torch.device | str = "cpu",
        use_amp: bool = False,
        display_cameras: bool = False,
        play_sounds: bool = False,
    ) -> None:
        self.robot, self.writer, self.events = robot, writer, events
        self.fps, self.task = fps, task
        self.policy, self.device, self.use_amp = policy, device, use_amp
        self.display_cameras, self.play_sounds = display_cameras, play_sounds
        self.monitor = FpsMonitor(fps)

    def _loop(self, seconds: float, label: str, teleoperate: bool, record: bool = False) -> None:
        control_loop(
            self.robot,
            seconds,
            self.fps,
            events=self.events,
            teleoperate=teleoperate,
            policy=self.policy if record else None,
            device=self.device,
            use_amp=self.use_amp,
            writer=self.writer if record else None,
            task=self.task,
            display_cameras=self.display_cameras,
            monitor=self.monitor,
            label=label,
        )
        self.events.exit_early = False

    def run(
        self, num_episodes: int, warmup_time_s: float, episode_time_s: float, reset_time_s: float
    ) -> None:
        writer, events, say_ = self.writer, self.events, self._say
        teleop = self.policy is None
        if writer.num_episodes >= num_episodes:
            log.info(
                "%s already has %d episodes (--num-episodes %d).",
                writer.root,
                writer.num_episodes,
                num_episodes,
            )
            return
        if self.policy is not None:
            # The first forward pass is slow (lazy allocations, kernel choice): take it before the clock runs.
            predict_action(self.robot.capture_observation(), self.policy, self.device, self.use_amp)
        if warmup_time_s > 0:
            say_("Warmup")
            self._loop(warmup_time_s, "warmup: ", teleoperate=teleop)
            events.rerecord_episode = False
        while writer.num_episodes < num_episodes and not events.stop_recording:
            index = writer.num_episodes
            say_(f"Recording episode {index}")
            if self.policy is not None:
                self.policy.reset()  # e.g. ACT's queue of actions from the previous episode
            self._loop(episode_time_s, f"episode {index}: ", teleoperate=teleop, record=True)
            last = index == num_episodes - 1 and not events.rerecord_episode
            if reset_time_s > 0 and not events.stop_recording and not last:
                say_("Reset the environment")
                # The leader keeps driving the follower while a person resets, so it does not jump at the next
                # episode; a policy's arm stays where it is.
                self._loop(reset_time_s, "reset: ", teleoperate=teleop and bool(self.robot.leader_arms))
            if events.rerecord_episode:
                say_(f"Re-record episode {index}")
                events.rerecord_episode = False
                writer.clear_episode_buffer()
                continue
            if writer.episode_buffer_size:
                writer.save_episode(task=self.task)
                log.info("Saved episode %d (%d of %d).", index, writer.num_episodes, num_episodes)
        say_("Stop recording")

    def _say(self, text: str) -> None:
        say(text, self.play_sounds)


def record(
    robot: Any,
    repo_id: str = "lerobot/test",
    root: str | Path = "data",
    *,
    single_task: str | None = None,
    fps: float | None = None,
    warmup_time_s: float = 10,
    episode_time_s: float = 60,
    reset_time_s: float = 60,
    num_episodes: int = 50,
    video: bool = True,
    push_to_hub: bool = False,
    tags: list[str] | None = None,
    pretrained_policy_name_or_path: str | None = None,
    policy_overrides: list[str] | None = None,
    resume: bool = False,
    force_override: bool = False,
    display_cameras: bool = False,
    play_sounds: bool = False,
    keyboard: str = "auto",
    image_writer_threads: int = 4,
    events: ControlEvents | None = None,
) -> Path:
    """Record `num_episodes` episodes (in all, counting resumed ones) into `<root>/<repo_id>`; returns the folder.

    Per episode: record `episode_time_s` (teleoperated, or the policy acting), then a reset period of
    `reset_time_s`, then save the episode. Keys can end either period early, re-record the episode, or stop.
    A crash or Ctrl+C loses only the unsaved episode. `events` may be given to drive the session from code
    (a GUI, a test) besides the keyboard.
    """
    has_policy = pretrained_policy_name_or_path is not None
    sanity_check_dataset_name(repo_id, has_policy)
    if num_episodes < 1:
        raise ValueError(f"--num-episodes must be >= 1, got {num_episodes}.")
    if episode_time_s <= 0:
        raise ValueError(f"--episode-time-s must be > 0, got {episode_time_s}.")
    folder = Path(root).expanduser() / repo_id
    action = dataset_action(folder, resume, force_override)
    policy, device, use_amp = None, torch.device("cpu"), False
    if has_policy:
        policy, policy_fps, device, use_amp = load_policy_for_recording(
            pretrained_policy_name_or_path, policy_overrides
        )
        if fps is None:
            fps = policy_fps
        elif policy_fps is not None and abs(fps - policy_fps) > 1e-6:
            log.warning("--fps %g differs from the %g fps the policy was trained at.", fps, policy_fps)
    if fps is None and action == "resume":
        fps = load_metadata(folder).fps  # a resumed recording goes on at its rate
    fps = fps or 30
    display_cameras = camera_display(display_cameras)

    if not robot.is_connected:
        robot.connect()
    if policy is not None:
        check_policy_fits_robot(policy, robot.features)
    writer = open_writer(
        robot, repo_id, folder, fps, action, video=video, image_writer_threads=image_writer_threads
    )
    events = events if events is not None else ControlEvents()
    recorder = EpisodeRecorder(
        robot,
        writer,
        events,
        fps=fps,
        task=single_task or (DEFAULT_POLICY_TASK if has_policy else DEFAULT_TASK),
        policy=policy,
        device=device,
        use_amp=use_amp,
        display_cameras=display_cameras,
        play_sounds=play_sounds,
    )
    try:
        with keyboard_controls(events, keyboard):
            recorder.run(num_episodes, warmup_time_s, episode_time_s, reset_time_s)
    except BaseException as e:
        log.error(
            "Recording stopped by %s: %d episodes are saved in %s, the episode in progress is dropped. Run the same "
            "command with --resume 1 to continue.",
            type(e).__name__,
            writer.num_episodes,
            folder,
        )
        _finalize_quietly(writer)
        raise
    finally:
        if display_cameras:
            close_camera_windows()
    writer.finalize()
    say(f"Done: {folder} holds {writer.num_episodes} episodes.", play_sounds)
    if push_to_hub:
        from lerobot.common.datasets.hub import push_dataset_to_hub

        log.info("Pushing %s to the Hub as %s ...", folder, repo_id)
        log.info("Pushed: %s", push_dataset_to_hub(folder, repo_id, tags=list(tags or [])))
    return folder


def _finalize_quietly(writer: Any) -> None:
    try:
        writer.finalize()
    except Exception:  # the original error matters more; finalize only tidies temporary files
        log.exception("Could not tidy up the dataset's temporary files.")
