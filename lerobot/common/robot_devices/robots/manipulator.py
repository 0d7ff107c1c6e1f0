"""Arms driven by position-controlled servos: leader arms moved by hand, follower arms that copy them.

`ManipulatorRobot` owns the buses and cameras of one robot and the safety rules around them: every goal
position goes through the `max_relative_target` clamp, the followers' goals are set to where they are before
their torque comes on (so nothing jumps to a stale goal), and torque is switched off when the robot
disconnects, which `with robot:` guarantees on any exception, Ctrl-C included. It offers one step at a time
(`teleop_step`, `capture_observation`, `send_action`): the control loops live in control_robot.py.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from lerobot.common.robot_devices.motors import DynamixelMotorsBus, FeetechMotorsBus
from lerobot.common.robot_devices.motors.bus import MotorsBus
from lerobot.common.robot_devices.motors.calibration import JointOutOfRangeError
from lerobot.common.robot_devices.motors.utils import (
    RobotDeviceAlreadyConnectedError,
    RobotDeviceNotConnectedError,
)
from lerobot.common.robot_devices.robots.calibration_procedure import (
    Prompt,
    calibration_path,
    load_calibration_file,
    run_arm_calibration,
    save_calibration_file,
)
from lerobot.common.robot_devices.robots.configs import RobotConfig, parse_robot_config
from lerobot.common.robot_devices.robots.presets import apply_robot_preset

BUS_CLASSES: dict[str, type[MotorsBus]] = {"dynamixel": DynamixelMotorsBus, "feetech": FeetechMotorsBus}


class RobotDisconnectError(RuntimeError):
    """Some part of the robot could not be shut down cleanly (every other part still was)."""


def _make_cameras(configs: dict[str, Any]) -> dict[str, Any]:
    if not configs:
        return {}
    # Imported here: cameras need OpenCV, an optional dependency a robot without cameras does without.
    from lerobot.common.robot_devices.cameras.utils import make_cameras_from_configs

    return make_cameras_from_configs(configs)


def ensure_safe_goal_position(
    goal: np.ndarray,
    present: np.ndarray,
    max_relative_target: float | Sequence[float],
    motor_names: Sequence[str] | None = None,
    arm_label: str = "arm",
) -> np.ndarray:
    """Clamp `goal` to `present +/- max_relative_target` (per motor); warn about the motors it clamped."""
    goal = np.asarray(goal, dtype=np.float64)
    present = np.asarray(present, dtype=np.float64)
    limit = np.asarray(max_relative_target, dtype=np.float64)
    safe = present + np.clip(goal - present, -limit, limit)
    clamped = np.flatnonzero(np.abs(safe - goal) > 1e-6)
    if clamped.size:
        names = [motor_names[i] for i in clamped] if motor_names is not None else clamped.tolist()
        logging.warning(
            f"Goal positions clamped by max_relative_target on the {arm_label}, motors {names}: "
            f"requested {np.round(goal[clamped], 3).tolist()}, present {np.round(present[clamped], 3).tolist()}, "
            f"sent {np.round(safe[clamped], 3).tolist()}."
        )
    return safe.astype(np.float32)


class ManipulatorRobot:
    """Koch, SO-100, Moss and Aloha arms. Build one with `make_robot("so100")` (see factory.py).

    `prompt(message)` is called by the guided calibration when the user must move an arm (default: `input`).
    """

    def __init__(self, config: RobotConfig | dict[str, Any], prompt: Prompt | None = None):
        self.config = config if isinstance(config, RobotConfig) else parse_robot_config(config)
        self.robot_type = self.config.type
        self.prompt: Prompt = input if prompt is None else prompt
        self.leader_arms = {
            name: self._make_bus(name, "leader", c) for name, c in self.config.leader_arms.items()
        }
        self.follower_arms = {
            name: self._make_bus(name, "follower", c) for name, c in self.config.follower_arms.items()
        }
        self.cameras = _make_cameras(self.config.cameras)
        self.is_connected = False
        self.logs: dict[str, float] = {}

    @staticmethod
    def _make_bus(name: str, arm_type: str, cfg: Any) -> MotorsBus:
        try:
            return BUS_CLASSES[cfg.type](cfg.port, cfg.motors)
        except ValueError as e:
            raise ValueError(f"{arm_type}_arms.{name}: {e}") from e

    # --- description -------------------------------------------------------------------------------------
    @property
    def available_arms(self) -> list[str]:
        """Arm ids, as used for calibration files and `calibrate(arms=...)`."""
        return [f"{n}_follower" for n in self.follower_arms] + [f"{n}_leader" for n in self.leader_arms]

    @property
    def motor_names(self) -> list[str]:
        """Follower motors prefixed by their arm name: the entries of the state and action vectors."""
        return [f"{arm}_{motor}" for arm, bus in self.follower_arms.items() for motor in bus.motor_names]

    @property
    def motor_features(self) -> dict[str, dict]:
        n = len(self.motor_names)
        return {
            key: {"dtype": "float32", "shape": [n], "names": self.motor_names}
            for key in ("action", "observation.state")
        }

    @property
    def camera_features(self) -> dict[str, dict]:
        features = {}
        for name, camera in self.cameras.items():
            if camera.height is None or camera.width is None:
                raise ValueError(
                    f"Camera '{name}' does not know its image size yet: set its width and height in the robot "
                    "config, or connect the robot first."
                )
            features[f"observation.images.{name}"] = {
                "dtype": "video",
                "shape": [int(camera.height), int(camera.width), int(camera.channels)],
                "names": ["height", "width", "channels"],
            }
        return features

    @property
    def features(self) -> dict[str, dict]:
        return {**self.motor_features, **self.camera_features}

    # --- connection --------------------------------------------------------------------------------------
    def _arms(self) -> Iterator[tuple[str, str, MotorsBus]]:
        """(arm id, label, bus) of every arm, followers first (the order the reference connects them)."""
        for arm_type, arms in (("follower", self.follower_arms), ("leader", self.leader_arms)):
            for name, bus in arms.items():
                yield f"{name}_{arm_type}", self._label(name, arm_type), bus

    def _label(self, name: str, arm_type: str) -> str:
        bus = (self.follower_arms if arm_type == "follower" else self.leader_arms)[name]
        return f"{name} {arm_type} arm ({bus.port})"

    @contextlib.contextmanager
    def _on_arm(self, label: str) -> Iterator[None]:
        """Prefix motor errors with the arm they come from (a robot may have four buses)."""
        try:
            yield
        except (ConnectionError, JointOutOfRangeError) as e:
            if e.args and isinstance(e.args[0], str) and not e.args[0].startswith(f"{self.robot_type} "):
                e.args = (f"{self.robot_type} {label}: {e.args[0]}", *e.args[1:])
            raise

    def connect(self) -> None:
        """Open the buses, calibrate (load the files, or run the guided procedure for the arms lacking one),
        write the motor presets, torque the followers on, then connect the cameras."""
        if self.is_connected:
            raise RobotDeviceAlreadyConnectedError(f"The {self.robot_type} robot is already connected.")
        try:
            for _, label, bus in self._arms():
                with self._on_arm(label):
                    bus.connect()
            # The arms are assumed to be at rest: torque off is safe, and needed for calibration and presets.
            for _, label, bus in self._arms():
                with self._on_arm(label):
                    bus.write("Torque_Enable", 0)
            self._load_or_run_calibration()
            apply_robot_preset(self.config, self.leader_arms, self.follower_arms)
            self._enable_torque()
            for _, label, bus in self._arms():
                with self._on_arm(label):
                    bus.read("Present_Position")
            for camera in self.cameras.values():
                camera.connect()
        except BaseException:
            # Ctrl-C during the calibration included: nothing is left open or torqued.
            self._shutdown(raise_errors=False)
            raise
        self.is_connected = True

    def _load_or_run_calibration(self) -> None:
        missing = []
        for arm_id, label, bus in self._arms():
            path = calibration_path(self.config.calibration_dir, arm_id)
            if path.exists():
                bus.set_calibration(load_calibration_file(path, bus.motor_names, self.robot_type, arm_id))
            else:
                logging.info(f"No calibration file {path} for the {label}: running the guided calibration.")
                missing.append(arm_id)
        if missing:
            self._calibrate_arms(missing)

    def _calibrate_arms(self, arm_ids: list[str]) -> None:
        buses = {arm_id: (label, bus) for arm_id, label, bus in self._arms()}
        for arm_id in arm_ids:
            label, bus = buses[arm_id]
            name, arm_type = arm_id.rsplit("_", 1)
            with self._on_arm(label):
                calibration = run_arm_calibration(
                    bus, self.robot_type, self.config.picture_robot, name, arm_type, self.prompt
                )
            save_calibration_file(calibration_path(self.config.calibration_dir, arm_id), calibration)
            bus.set_calibration(calibration)

    def _enable_torque(self) -> None:
        for name, bus in self.follower_arms.items():
            with self._on_arm(self._label(name, "follower")):
                # A servo holds its last goal: torque on would jump there. Hold the present pose instead.
                bus.write("Goal_Position", bus.read("Present_Position"))
                bus.write("Torque_Enable", 1)
        if self.config.gripper_open_degree is not None:
            for name, bus in self.leader_arms.items():
                with self._on_arm(self._label(name, "leader")):
                    bus.write("Torque_Enable", 1, "gripper")
                    bus.write("Goal_Position", self.config.gripper_open_degree, "gripper")

    def calibrate(self, arms: Sequence[str] | None = None) -> None:
        """Run the guided calibration of `arms` (ids from `available_arms`; None: all) and write their files.

        A disconnected robot opens only those buses and closes them afterwards; a connected robot turns
        their torque off for the procedure and back on as `connect()` does.
        """
        arm_ids = self.available_arms if arms is None else list(arms)
        unknown = [arm for arm in arm_ids if arm not in self.available_arms]
        if unknown:
            raise ValueError(
                f"Unknown arm(s) {unknown}; this {self.robot_type} robot has {self.available_arms}."
            )
        buses = {arm_id: (label, bus) for arm_id, label, bus in self._arms() if arm_id in arm_ids}
        if self.is_connected:
            for label, bus in buses.values():
                with self._on_arm(label):
                    bus.write("Torque_Enable", 0)
            self._calibrate_arms(arm_ids)
            self._enable_torque()
            return
        try:
            for label, bus in buses.values():
                with self._on_arm(label):
                    bus.connect()
                    bus.write("Torque_Enable", 0)
            self._calibrate_arms(arm_ids)
        finally:
            for _, bus in buses.values():
                if bus.is_connected:
                    bus.disconnect()

    def disconnect(self) -> None:
        """Torque off the followers (and the koch leader grippers), close the ports and the cameras.
        Does nothing when the robot is not connected."""
        self._shutdown(raise_errors=True)

    def _shutdown(self, raise_errors: bool) -> None:
        errors = []
        for _, label, bus in self._arms():
            if not bus.is_connected:
                continue
            try:
                bus.write("Torque_Enable", 0)
            except Exception as e:  # keep going: every other arm must still be released
                errors.append(f"torque off of the {label}: {e}")
            try:
                bus.disconnect()
            except Exception as e:
                errors.append(f"closing the {label}: {e}")
        for name, camera in self.cameras.items():
            if camera.is_connected:
                try:
                    camera.disconnect()
                except Exception as e:
                    errors.append(f"closing camera '{name}': {e}")
        self.is_connected = False
        if errors:
            message = f"Disconnecting the {self.robot_type} robot: " + "; ".join(errors)
            if raise_errors:
                raise RobotDisconnectError(message)
            logging.error(message)

    def __enter__(self) -> ManipulatorRobot:
        self.connect()
        return self

    def __exit__(self, exc_type: Any, exc: Any, traceback: Any) -> None:
        # With an exception on its way, a failing shutdown is logged rather than raised, not to hide it.
        self._shutdown(raise_errors=exc_type is None)

    # --- one step of control -------------------------------------------------------------------------------
    def _require_connected(self) -> None:
        if not self.is_connected:
            raise RobotDeviceNotConnectedError(
                f"The {self.robot_type} robot is not connected: call `robot.connect()` or use `with robot:`."
            )

    def _read_followers(self) -> dict[str, np.ndarray]:
        start = time.perf_counter()
        positions = {}
        for name, bus in self.follower_arms.items():
            with self._on_arm(self._label(name, "follower")):
                positions[name] = bus.read("Present_Position")
        # Summed over the step: the max_relative_target clamp reads the followers too.
        self.logs["read_follower"] = self.logs.get("read_follower", 0.0) + time.perf_counter() - start
        return positions

    def _write_goals(self, goals: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Clamp (max_relative_target) then write the goals of the follower arms; return what was sent."""
        limit = self.config.max_relative_target
        if limit is not None:
            present = self._read_followers()
            goals = {
                name: ensure_safe_goal_position(
                    goal,
                    present[name],
                    limit,
                    self.follower_arms[name].motor_names,
                    self._label(name, "follower"),
                )
                for name, goal in goals.items()
            }
        start = time.perf_counter()
        for name, goal in goals.items():
            with self._on_arm(self._label(name, "follower")):
                self.follower_arms[name].write("Goal_Position", goal)
        self.logs["write_follower"] = time.perf_counter() - start
        return {name: np.asarray(goal, dtype=np.float32) for name, goal in goals.items()}

    def _read_cameras(self) -> dict[str, torch.Tensor]:
        images = {}
        for name, camera in self.cameras.items():
            start = time.perf_counter()
            images[f"observation.images.{name}"] = torch.from_numpy(np.ascontiguousarray(camera.async_read()))
            self.logs[f"read_camera_{name}"] = time.perf_counter() - start
        return images

    def _observation(self) -> dict[str, torch.Tensor]:
        state = np.concatenate(list(self._read_followers().values())).astype(np.float32)
        return {"observation.state": torch.from_numpy(state), **self._read_cameras()}

    def teleop_step(
        self, record_data: bool = False
    ) -> None | tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Copy the leader arms onto the followers; with `record_data`, return (observation, action)."""
        self._require_connected()
        if not self.leader_arms:
            raise ValueError(f"This {self.robot_type} robot has no leader arms to teleoperate with.")
        self.logs.clear()
        start = time.perf_counter()
        leader_positions = {}
        for name, bus in self.leader_arms.items():
            with self._on_arm(self._label(name, "leader")):
                leader_positions[name] = bus.read("Present_Position")
        self.logs["read_leader"] = time.perf_counter() - start
        sent = self._write_goals({name: leader_positions[name] for name in self.follower_arms})
        if not record_data:
            return None
        observation = self._observation()
        action = {"action": torch.from_numpy(np.concatenate(list(sent.values())).astype(np.float32))}
        return observation, action

    def capture_observation(self) -> dict[str, torch.Tensor]:
        """Follower positions as "observation.state", and the latest frame of every camera."""
        self._require_connected()
        self.logs.clear()
        return self._observation()

    def send_action(self, action: torch.Tensor) -> torch.Tensor:
        """Send goal positions (all follower motors, in `motor_names` order); return what was actually sent
        after the `max_relative_target` clamp (what a dataset should record)."""
        self._require_connected()
        values = np.asarray(torch.as_tensor(action).detach().cpu(), dtype=np.float64)
        n = len(self.motor_names)
        if values.shape != (n,):
            raise ValueError(
                f"An action of the {self.robot_type} robot has {n} values ({self.motor_names}), got shape "
                f"{tuple(values.shape)}."
            )
        if not np.all(np.isfinite(values)):
            raise ValueError(
                f"Refusing to send a non-finite action to the {self.robot_type} robot: {values.tolist()}"
            )
        self.logs.clear()
        goals, start = {}, 0
        for name, bus in self.follower_arms.items():
            goals[name] = values[start : start + len(bus.motor_names)]
            start += len(bus.motor_names)
        sent = self._write_goals(goals)
        return torch.from_numpy(np.concatenate(list(sent.values())).astype(np.float32))

    def __repr__(self) -> str:
        state = "connected" if self.is_connected else "not connected"
        return f"ManipulatorRobot({self.robot_type}, arms {self.available_arms}, cameras {list(self.cameras)}, {state})"
