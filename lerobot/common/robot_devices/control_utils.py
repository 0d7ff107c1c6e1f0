"""The real-time loop behind `control_robot.py`: teleoperate, run a policy, or just observe, at a fixed rate.

Every step reads the robot (and the leader arms or the policy), sends an action, optionally hands the frame to
the dataset writer, then waits for the rest of the period. Holding the period matters twice: the dataset
stamps frame i at i / fps, so a slow loop records a sped-up world, and a policy trained at 30 fps misbehaves
when stepped at 20. So the loop waits with `busy_wait` (sleep, then spin the last couple of milliseconds, as
`time.sleep` overshoots by up to a scheduler tick), and `FpsMonitor` warns -- with the target, the achieved
rate and the slowest part of the step -- when it falls behind, instead of silently recording at a lower rate.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from lerobot.common.robot_devices.keyboard import ControlEvents

log = logging.getLogger("lerobot.control")

SPIN_S = 0.002  # the last part of a wait is spent spinning: sleep() may wake up a scheduler tick late
IMAGE_PREFIX = "observation.images."


def busy_wait(seconds: float, clock: Callable[[], float] = time.perf_counter) -> None:
    """Wait `seconds` precisely: sleep most of it, spin the end."""
    if seconds <= 0:
        return
    end = clock() + seconds
    if seconds > SPIN_S:
        time.sleep(seconds - SPIN_S)
    while clock() < end:
        pass


# ------------------------------------------------------------------------------------------- timings


def step_timings(robot_logs: Mapping[str, Any], extra: Mapping[str, float] | None = None) -> dict[str, float]:
    """The durations (seconds) of this step's parts: what the robot put in its `logs`, plus the loop's own.

    A robot's `logs` hold per-step durations in seconds (`read_leader`, `write_follower`, `read_camera_laptop`,
    ...; a `_dt_s` suffix or the buses' `delta_timestamp_s_` prefix is dropped from the name). Wall-clock
    timestamps and non-numbers are left out.
    """
    out: dict[str, float] = {}
    for key, value in robot_logs.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or key.startswith("timestamp"):
            continue
        name = key.removeprefix("delta_timestamp_s_").removesuffix("_dt_s")
        out[name] = float(value)
    for key, value in (extra or {}).items():
        out[key] = float(value)
    return out


def format_step_line(dt_s: float, timings: Mapping[str, float], prefix: str = "") -> str:
    hz = f" ({1 / dt_s:.1f} Hz)" if dt_s > 0 else ""
    parts = [f"{prefix}dt {dt_s * 1e3:.1f} ms{hz}"]
    parts += [f"{name} {seconds * 1e3:.1f}" for name, seconds in timings.items()]
    return " | ".join(parts) + (" ms" if timings else "")


class StepLogger:
    """Logs one step's timing line at most every `interval_s` (a line per step would flood the terminal)."""

    def __init__(self, interval_s: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self.interval_s = interval_s
        self.clock = clock
        self._last: float | None = None

    def maybe_log(self, dt_s: float, timings: Mapping[str, float], prefix: str = "") -> str | None:
        now = self.clock()
        if self._last is not None and now - self._last < self.interval_s:
            return None
        self._last = now
        line = format_step_line(dt_s, timings, prefix)
        log.info(line)
        return line


class FpsMonitor:
    """Warns when the loop runs more than `tolerance` below its target rate over a `window_s` window.

    The warning says by how much and which part of the step took the most time on average, and repeats at most
    every `quiet_s` (counting the slow windows it kept quiet about) so that a slow setup is not a wall of
    warnings. When the rate recovers, one line says so.
    """

    def __init__(
        self, fps: float, window_s: float = 2.0, tolerance: float = 0.10, quiet_s: float = 30.0
    ) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}.")
        self.fps = fps
        self.window_s = window_s
        self.tolerance = tolerance
        self.quiet_s = quiet_s
        self.slow = False
        self.warnings: list[str] = []
        self._last_warning_at: float | None = None
        self._suppressed = 0
        self._reset_window()

    def _reset_window(self) -> None:
        self._steps = 0
        self._elapsed = 0.0
        self._sums: dict[str, float] = {}

    def update(self, now: float, dt_s: float, timings: Mapping[str, float] | None = None) -> str | None:
        """Account one step of `dt_s` seconds ending at `now` (monotonic s); returns a warning if one is due."""
        self._steps += 1
        self._elapsed += dt_s
        for name, seconds in (timings or {}).items():
            self._sums[name] = self._sums.get(name, 0.0) + seconds
        if self._elapsed < self.window_s:
            return None
        achieved = self._steps / self._elapsed
        slowest = max(self._sums.items(), key=lambda kv: kv[1], default=None)
        steps, elapsed = self._steps, self._elapsed
        self._reset_window()
        if achieved >= self.fps * (1 - self.tolerance):
            if self.slow:
                self.slow = False
                log.info("Control loop back at %.1f fps (target %g fps).", achieved, self.fps)
            return None
        self.slow = True
        if self._last_warning_at is not None and now - self._last_warning_at < self.quiet_s:
            self._suppressed += 1
            return None
        message = (
            f"Control loop at {achieved:.1f} fps over the last {elapsed:.1f} s ({steps} steps), below the target "
            f"{self.fps:g} fps by {100 * (1 - achieved / self.fps):.0f}%: {1e3 * elapsed / steps:.1f} ms per "
            f"step for a budget of {1e3 / self.fps:.1f} ms."
        )
        if slowest is not None:
            message += f" Slowest part: {slowest[0]}, {1e3 * slowest[1] / steps:.1f} ms per step on average."
        message += " " + slow_part_hint(slowest[0] if slowest else "")
        if self._suppressed:
            message += f" ({self._suppressed} slow windows not reported since the last warning.)"
        self._suppressed = 0
        self._last_warning_at = now
        self.warnings.append(message)
        log.warning(message)
        return message


def slow_part_hint(part: str) -> str:
    if "camera" in part:
        return "Lower the camera's fps or resolution, drop a camera, or lower --fps."
    if part == "policy":
        return "Run the policy on a GPU (--policy-overrides device=cuda), or lower --fps."
    if part in ("add_frame", "display"):
        return "Lower the camera resolution, turn off --display-cameras, or lower --fps."
    return "Lower --fps; a slow motor bus may also mean a bad USB cable or hub."


# ------------------------------------------------------------------------------------------- policy


def observation_to_batch(observation: Mapping[str, torch.Tensor], keys: list[str] | None) -> dict:
    """Robot observation -> a batch of one as the policy saw dataset frames (images CHW float in [0, 1])."""
    batch = {}
    for name, value in observation.items():
        if keys is not None and name not in keys:
            continue
        if name.startswith(IMAGE_PREFIX):
            # In numpy: torch spreads such small element-wise ops over threads, which costs milliseconds per
            # step on a machine whose cores are busy (the camera threads, the image writer).
            chw = np.ascontiguousarray(np.asarray(value).transpose(2, 0, 1), dtype=np.float32)
            chw /= 255.0
            value = torch.from_numpy(chw)
        else:
            value = value.to(torch.float32)
        batch[name] = value.unsqueeze(0)
    return batch


def predict_action(
    observation: Mapping[str, torch.Tensor], policy: Any, device: torch.device, use_amp: bool = False
) -> torch.Tensor:
    """One action (float32, on CPU) from the policy for this observation."""
    from lerobot.common.utils.utils import autocast

    keys = list(getattr(policy.config, "input_shapes", {}) or {}) or None
    batch = {k: v.to(device) for k, v in observation_to_batch(observation, keys).items()}
    with torch.inference_mode(), autocast(device, use_amp):
        action = policy.select_action(batch)
    action = action.squeeze(0).to("cpu", torch.float32)
    if not torch.isfinite(action).all():
        raise FloatingPointError("The policy returned a non-finite action; not sending it to the robot.")
    return action


def check_policy_fits_robot(policy: Any, robot_features: Mapping[str, Mapping[str, Any]]) -> None:
    """Refuse to start when the policy needs inputs the robot does not provide, or acts on other motors."""
    config = policy.config
    for key, shape in (getattr(config, "input_shapes", None) or {}).items():
        if key not in robot_features:
            raise ValueError(
                f"The policy needs the input {key!r}, which this robot does not provide (it has "
                f"{sorted(k for k in robot_features if k.startswith('observation'))}). Use the robot config the "
                "policy was trained with (same camera names, e.g. via --robot-overrides)."
            )
        feature = robot_features[key]
        robot_shape = list(feature["shape"])
        if key.startswith(IMAGE_PREFIX):
            robot_shape = [robot_shape[2], robot_shape[0], robot_shape[1]]  # HWC -> CHW as the policy sees it
        if robot_shape != list(shape):
            raise ValueError(
                f"The policy expects {key} with shape {list(shape)}, the robot gives {robot_shape}. Set the "
                "camera's width/height (or the arm's motors) as when the training data was recorded."
            )
    policy_action = (getattr(config, "output_shapes", None) or {}).get("action")
    robot_action = list(robot_features["action"]["shape"]) if "action" in robot_features else None
    if policy_action is not None and robot_action is not None and list(policy_action) != robot_action:
        raise ValueError(
            f"The policy outputs actions of shape {list(policy_action)}, the robot takes {robot_action}."
        )


# ------------------------------------------------------------------------------------------- display / sound


def show_cameras(observation: Mapping[str, torch.Tensor]) -> None:
    import cv2

    for key, image in observation.items():
        if key.startswith(IMAGE_PREFIX):
            cv2.imshow(key, cv2.cvtColor(image.numpy(), cv2.COLOR_RGB2BGR))
    cv2.waitKey(1)


def close_camera_windows() -> None:
    try:
        import cv2

        cv2.destroyAllWindows()
    except Exception:  # no GUI backend (headless OpenCV build): there were no windows
        pass


def say(text: str, play_sounds: bool = False, blocking: bool = False) -> None:
    """Log `text`, and speak it (macOS `say`, Linux `spd-say`, Windows SAPI) when `play_sounds`."""
    log.info(text)
    if not play_sounds:
        return
    if sys.platform == "darwin":
        cmd = ["say", text]
    elif sys.platform == "win32":
        cmd = [
            "PowerShell",
            "-Command",
            "Add-Type -AssemblyName System.Speech; "
            f"(New-Object System.Speech.Synthesis.SpeechSynthesizer).Speak('{text.replace(chr(39), '')}')",
        ]
    else:
        cmd = ["spd-say", *(["--wait"] if blocking else []), text]
    if shutil.which(cmd[0]) is None:
        log.warning("--play-sounds 1: %r is not installed, prompts are only logged.", cmd[0])
        return
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if blocking:
        process.wait()


# ------------------------------------------------------------------------------------------- the loop


def frame_for_writer(observation: Mapping[str, torch.Tensor], action: Mapping[str, torch.Tensor]) -> dict:
    """Observation + action as the writer takes them: numpy arrays, images HWC uint8 as the robot gave them."""
    frame = {}
    for key, value in {**observation, **action}.items():
        frame[key] = value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    return frame


def control_loop(
    robot: Any,
    control_time_s: float | None = None,
    fps: float | None = None,
    *,
    events: ControlEvents | None = None,
    teleoperate: bool = False,
    policy: Any = None,
    device: torch.device | str = "cpu",
    use_amp: bool = False,
    writer: Any = None,
    task: str | None = None,
    display_cameras: bool = False,
    monitor: FpsMonitor | None = None,
    step_logger: StepLogger | None = None,
    label: str = "",
) -> int:
    """Run the robot for `control_time_s` seconds (None: until Esc/Ctrl+C) at `fps` steps per second (None:
    as fast as it goes); returns the number of frames given to `writer`.

    Each step either teleoperates (leaders -> followers), runs `policy` on an observation and sends its action,
    or only observes (both off: keeps cameras streaming, e.g. while the scene is reset). The right arrow (and
    every other control key) ends the loop early; the flags stay set for the caller to act on.
    """
    if teleoperate and policy is not None:
        raise ValueError("control_loop: teleoperate and policy are exclusive (who would move the arm?).")
    if writer is not None and not teleoperate and policy is None:
        raise ValueError("control_loop: recording needs actions, from teleoperation or a policy.")
    device = torch.device(device)
    if monitor is None and fps:
        monitor = FpsMonitor(fps)
    step_logger = step_logger or StepLogger()
    start = time.perf_counter()
    frames = 0
    while control_time_s is None or time.perf_counter() - start < control_time_s:
        step_start = time.perf_counter()
        extra: dict[str, float] = {}
        observed_logs: dict[str, float] = {}
        observation: dict | None = None
        action: dict | None = None
        if teleoperate:
            need_data = writer is not None or display_cameras
            result = robot.teleop_step(record_data=need_data)
            if need_data:
                observation, action = result
        else:
            observation = robot.capture_observation()
            # send_action starts the robot's logs afresh: keep the reads' timings of this step.
            observed_logs = dict(getattr(robot, "logs", {}) or {})
            if policy is not None:
                t = time.perf_counter()
                chosen = predict_action(observation, policy, device, use_amp)
                extra["policy"] = time.perf_counter() - t
                action = {"action": robot.send_action(chosen)}
        if writer is not None:
            t = time.perf_counter()
            writer.add_frame(frame_for_writer(observation, action), task=task)
            extra["add_frame"] = time.perf_counter() - t
            frames += 1
        if display_cameras and observation is not None:
            t = time.perf_counter()
            show_cameras(observation)
            extra["display"] = time.perf_counter() - t
        if fps:
            busy_wait(1 / fps - (time.perf_counter() - step_start))
        dt_s = time.perf_counter() - step_start
        timings = step_timings({**observed_logs, **(getattr(robot, "logs", {}) or {})}, extra)
        step_logger.maybe_log(dt_s, timings, prefix=label)
        if monitor is not None:
            monitor.update(time.monotonic(), dt_s, timings)
        if events is not None and events.exit_early:
            break
    return frames


def sanity_check_dataset_name(repo_id: str, has_policy: bool) -> None:
    """Evaluation datasets (recorded by a policy) are named `eval_*`, and only they, so the two never mix."""
    name = repo_id.split("/")[-1]
    if has_policy and not name.startswith("eval_"):
        raise ValueError(
            f"Recording with a policy (-p) into {repo_id!r}: the dataset name must start with 'eval_' "
            f"(e.g. --repo-id {repo_id.split('/')[0]}/eval_{name}), so that policy runs are never mistaken for "
            "human demonstrations."
        )
    if not has_policy and name.startswith("eval_"):
        raise ValueError(
            f"{repo_id!r} starts with 'eval_', which is reserved for policy runs; pass -p <policy> to run a "
            "policy, or choose a name without the 'eval_' prefix for teleoperated demonstrations."
        )
