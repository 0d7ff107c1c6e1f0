"""Robots of lerobot/configs/robot/ on emulated motor buses, for tests (no hardware).

`emulated_robot("so100", tmp_path)` yields a `RobotRig`: the robot (not connected) built from the packaged
yaml with every port replaced by an emulated one, the emulator of each arm, and calibration files in
`tmp_path` so that connecting needs no guided calibration. The rig calibration reads the emulators' start
position (2048 steps) as 0 degrees (0 % for linear grippers); one step is 360/4096 degree, and a gripper
goes from 0 to 100 % over a quarter turn. `rig.set_positions(arm_id, values)` moves an arm by hand, in
those units; `rig.positions(arm_id)` / `rig.goals(arm_id)` / `rig.torque(arm_id)` read what the motors hold.

`PosePrompt` drives the guided calibration: given as the robot's `prompt`, it moves the arm being calibrated
to the pose each message asks for.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lerobot.common.datasets.utils import write_json
from lerobot.common.robot_devices.motors.calibration import (
    CalibrationMode,
    apply_calibration,
    compute_calibration,
    revert_calibration,
)
from lerobot.common.robot_devices.motors.emulator import (
    DynamixelBusEmulator,
    FeetechBusEmulator,
    MotorBusEmulator,
    emulated_serial_ports,
)
from lerobot.common.robot_devices.robots import ManipulatorRobot, load_robot_config
from lerobot.common.robot_devices.robots.calibration_procedure import LINEAR_MOTORS

HOME = 2048  # where the emulated motors start, and the rig calibration's zero
QUARTER = 1024
EMULATORS = {"dynamixel": DynamixelBusEmulator, "feetech": FeetechBusEmulator}
SDKS = {"dynamixel": "dynamixel_sdk", "feetech": "scservo_sdk"}


def rig_calibration(
    robot_type: str, motor_names: Sequence[str], rotated_sign: Sequence[int] | None = None
) -> dict:
    """The calibration the guided procedure computes when every joint is at HOME in the zero pose and at
    HOME + QUARTER (HOME - QUARTER where `rotated_sign` is -1: a motor mounted inverted) in the rotated pose."""
    n = len(motor_names)
    signs = [1] * n if rotated_sign is None else list(rotated_sign)
    linear = LINEAR_MOTORS.get(robot_type, ())
    modes = [
        CalibrationMode.LINEAR.value if m in linear else CalibrationMode.DEGREE.value for m in motor_names
    ]
    rotated = [HOME + s * QUARTER for s in signs]
    return compute_calibration([HOME] * n, rotated, list(motor_names), modes, [4096] * n, True)


@dataclass
class RobotRig:
    robot: ManipulatorRobot
    emulators: dict[str, MotorBusEmulator]  # by arm id (main_follower, left_leader, ...)
    ports: dict[str, str]
    calibration_dir: Path
    calibrations: dict[str, dict] = field(default_factory=dict)

    def bus(self, arm_id: str) -> Any:
        name, arm_type = arm_id.rsplit("_", 1)
        return (self.robot.follower_arms if arm_type == "follower" else self.robot.leader_arms)[name]

    def _ids(self, arm_id: str) -> list[int]:
        return self.bus(arm_id).motor_indices

    def set_raw(self, arm_id: str, steps: Sequence[int]) -> None:
        for motor_id, value in zip(self._ids(arm_id), steps, strict=True):
            self.emulators[arm_id].set_position(motor_id, int(value))

    def raw(self, arm_id: str, register: str = "Present_Position") -> list[int]:
        return [self.emulators[arm_id].get_register(i, register) for i in self._ids(arm_id)]

    def set_positions(self, arm_id: str, values: Sequence[float]) -> None:
        """Move the arm by hand to `values` (degrees / % in the rig calibration)."""
        bus = self.bus(arm_id)
        steps = revert_calibration(
            np.asarray(values, dtype=np.float64),
            bus.motor_names,
            self.calibrations[arm_id],
            [4096] * len(values),
        )
        self.set_raw(arm_id, steps)

    def _calibrated(self, arm_id: str, register: str) -> np.ndarray:
        bus = self.bus(arm_id)
        raw = np.asarray(self.raw(arm_id, register))
        return apply_calibration(
            raw, bus.motor_names, dict(self.calibrations[arm_id]), [4096] * len(raw), autocorrect=False
        )

    def positions(self, arm_id: str) -> np.ndarray:
        return self._calibrated(arm_id, "Present_Position")

    def goals(self, arm_id: str) -> np.ndarray:
        return self._calibrated(arm_id, "Goal_Position")

    def torque(self, arm_id: str) -> list[int]:
        return self.raw(arm_id, "Torque_Enable")


def rig_calibrations(robot_cfg: dict[str, Any]) -> dict[str, dict]:
    """The rig calibration of every arm of a robot config dict, by arm id."""
    return {
        f"{name}_{arm_type}": rig_calibration(robot_cfg["type"], list(arm["motors"]))
        for arm_type in ("follower", "leader")
        for name, arm in (robot_cfg.get(f"{arm_type}_arms") or {}).items()
    }


def write_rig_calibration_files(robot_cfg: dict[str, Any], calibration_dir: Path) -> dict[str, dict]:
    """Write `<arm_id>.json` for every arm of a robot config dict; return the calibrations by arm id."""
    calibrations = rig_calibrations(robot_cfg)
    for arm_id, calibration in calibrations.items():
        write_json(calibration, Path(calibration_dir) / f"{arm_id}.json")
    return calibrations


@contextmanager
def emulated_robot(
    robot_type: str = "so100",
    tmp_path: Path | None = None,
    calibrated: bool = True,
    prompt: Any = None,
    overrides: Sequence[str] = (),
    **replace: Any,
) -> Iterator[RobotRig]:
    """A robot of the packaged config `robot_type` on emulated buses (no cameras unless `cameras=` is given).

    `calibrated`: write the rig calibration files first (else connecting runs the guided calibration through
    `prompt`; a `PosePrompt` needs `prompt.rig = rig`, or set `rig.robot.prompt = PosePrompt(rig)`).
    `overrides` / `replace` go to `load_robot_config` (e.g. `max_relative_target=5`).
    """
    if tmp_path is None:
        raise ValueError("emulated_robot needs a tmp_path for its calibration files.")
    replace.setdefault("cameras", {})
    replace.setdefault("calibration_dir", str(tmp_path / "calibration"))
    cfg = load_robot_config(robot_type, overrides, **replace)
    emulators: dict[str, MotorBusEmulator] = {}
    ports: dict[str, str] = {}
    for arm_type in ("follower", "leader"):
        for name, arm in (cfg.get(f"{arm_type}_arms") or {}).items():
            pytest.importorskip(SDKS[arm["type"]])
            arm_id = f"{name}_{arm_type}"
            ports[arm_id] = arm["port"] = f"/dev/ttyEMULATED_{robot_type}_{arm_id}"
            emulators[arm_id] = EMULATORS[arm["type"]](
                {int(motor_id): model for motor_id, model in arm["motors"].values()}
            )
    calibration_dir = Path(cfg["calibration_dir"])
    if calibrated:
        calibrations = write_rig_calibration_files(cfg, calibration_dir)
    else:
        calibrations = rig_calibrations(cfg)
    robot = ManipulatorRobot(cfg, prompt=prompt)
    rig = RobotRig(robot, emulators, ports, calibration_dir, calibrations)
    with emulated_serial_ports({ports[arm_id]: emulator for arm_id, emulator in emulators.items()}):
        try:
            yield rig
        finally:
            if robot.is_connected:
                robot.disconnect()


_MESSAGE = re.compile(r"Calibrating the (\S+) (\S+) (follower|leader) arm: move it to the (\w+) position")


class PosePrompt:
    """A `prompt` for the guided calibration that moves the arm to the pose asked for, in raw steps.

    `poses[pose]` gives the steps of every motor (default: HOME for zero and rest, HOME + QUARTER for
    rotated, i.e. the rig calibration). `inverted` motor indices turn the other way in the rotated pose.
    `on_message(arm_id, pose)` may raise (e.g. KeyboardInterrupt) to emulate a user giving up.
    """

    def __init__(
        self,
        rig: RobotRig | None = None,
        poses: dict[str, Sequence[int]] | None = None,
        inverted: Sequence[int] = (),
        on_message: Any = None,
    ):
        self.rig = rig
        self.poses = poses or {}
        self.inverted = set(inverted)
        self.on_message = on_message
        self.messages: list[str] = []
        self.asked: list[tuple[str, str]] = []

    def steps(self, n: int, pose: str) -> list[int]:
        if pose in self.poses:
            return list(self.poses[pose])
        if pose == "rotated":
            return [HOME - QUARTER if i in self.inverted else HOME + QUARTER for i in range(n)]
        return [HOME] * n

    def __call__(self, message: str) -> None:
        self.messages.append(message)
        match = _MESSAGE.search(message)
        if match is None:
            raise AssertionError(f"Unexpected calibration prompt: {message!r}")
        _, name, arm_type, pose = match.groups()
        arm_id = f"{name}_{arm_type}"
        self.asked.append((arm_id, pose))
        if self.on_message is not None:
            self.on_message(arm_id, pose)
        if self.rig is not None:
            self.rig.set_raw(arm_id, self.steps(len(self.rig.bus(arm_id).motor_names), pose))
