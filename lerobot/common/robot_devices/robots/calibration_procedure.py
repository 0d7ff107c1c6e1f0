"""The guided calibration of an arm, and its JSON file.

Calibration is the most common source of trouble with these arms (swapped IDs, a joint left where it was,
a gripper reading "inf %"), so the procedure checks what it can: every joint must have moved by about a
quarter turn between the "zero" and the "rotated" poses, and the "rest" pose must read inside the joint
bounds with the new calibration. The file is written only once all poses were taken, atomically, so an
interrupted calibration leaves the previous file as it was.

The math (drive mode, homing offset, degrees / percent) is in `motors/calibration.py`; this module only
asks for the poses, reads them, and stores the result in the reference implementation's file format.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lerobot.common.datasets.utils import write_json
from lerobot.common.robot_devices.motors.bus import MotorsBus
from lerobot.common.robot_devices.motors.calibration import (
    CalibrationMode,
    JointOutOfRangeError,
    apply_calibration,
    compute_calibration,
    validate_calibration,
)

Prompt = Callable[[str], Any]

POSES = ("zero", "rotated", "rest")
POSE_HELP = {
    "zero": "every joint at its zero angle, as in the picture",
    "rotated": "every joint turned by +90 degrees from the zero position, as in the picture",
    "rest": "the arm in its resting pose, where it can stay with torque off",
}
# Reference pictures of each pose, published by the LeRobot project.
PICTURE_URL = (
    "https://raw.githubusercontent.com/huggingface/lerobot/main/media/{robot}/{arm_type}_{pose}.webp"
)

# Grippers that move linearly (or are read as an opening) are calibrated in percent of their travel.
LINEAR_MOTORS = {"aloha": ("gripper",), "so100": ("gripper",), "moss": ("gripper",)}

# Between the zero and rotated poses a joint turns by 90 degrees. Less than MIN means it was not moved (or
# the wrong motor answers at that ID); outside the tolerated range the pose is probably wrong.
MIN_MOVE_DEG = 30.0
TOLERATED_MOVE_DEG = (60.0, 120.0)


class CalibrationError(RuntimeError):
    """The guided calibration cannot produce a calibration (the message says which joint and what to do)."""


class CalibrationFileError(ValueError):
    """A calibration file that cannot be used (the message names the file, the problem and the fix)."""


def calibration_path(calibration_dir: str | Path, arm_id: str) -> Path:
    return Path(calibration_dir).expanduser() / f"{arm_id}.json"


def recalibrate_command(robot_type: str, arm_id: str) -> str:
    return (
        f"python lerobot/scripts/control_robot.py calibrate --robot-path lerobot/configs/robot/{robot_type}.yaml "
        f"--arms {arm_id}"
    )


def load_calibration_file(path: Path, motor_names: Sequence[str], robot_type: str, arm_id: str) -> dict:
    """Read and check `<calibration_dir>/<arm_id>.json` for a bus with `motor_names`."""
    fix = f"Recalibrate this arm: `{recalibrate_command(robot_type, arm_id)}`."
    try:
        text = path.read_text()
    except OSError as e:
        raise CalibrationFileError(f"Cannot read the calibration file {path}: {e}. {fix}") from e
    try:
        calibration = json.loads(text)
    except json.JSONDecodeError as e:
        raise CalibrationFileError(f"The calibration file {path} is not valid JSON ({e}). {fix}") from e
    if not isinstance(calibration, dict):
        raise CalibrationFileError(
            f"The calibration file {path} holds a {type(calibration).__name__}, not a calibration mapping. {fix}"
        )
    try:
        return validate_calibration(calibration, motor_names)
    except (ValueError, TypeError) as e:
        raise CalibrationFileError(
            f"The calibration file {path} does not fit arm '{arm_id}': {e} {fix}"
        ) from e


def save_calibration_file(path: Path, calibration: dict) -> None:
    """Write atomically; a file being replaced is kept next to it as `<arm_id>.json.bak`."""
    if path.exists():
        backup = path.with_name(path.name + ".bak")
        shutil.copyfile(path, backup)
        logging.info(f"Replacing the calibration {path} (the previous one is kept as {backup}).")
    write_json(calibration, path)


def _pose_message(robot: str, arm_label: str, arm_type: str, pose: str) -> str:
    picture = PICTURE_URL.format(robot=robot, arm_type=arm_type, pose=pose)
    return (
        f"\nCalibrating the {arm_label} arm: move it to the {pose} position ({POSE_HELP[pose]}).\n"
        f"Reference picture of the {pose} position: {picture}\n"
        "Press Enter when the arm is there..."
    )


def _check_moves(
    zero: np.ndarray,
    rotated: np.ndarray,
    motor_names: Sequence[str],
    resolutions: Sequence[int],
    arm_label: str,
) -> None:
    for name, z, r, res in zip(motor_names, zero, rotated, resolutions):
        moved = abs(int(r) - int(z)) * 360.0 / res
        if moved < MIN_MOVE_DEG:
            raise CalibrationError(
                f"{arm_label}: motor '{name}' turned by only {moved:.1f} degrees between the zero and the rotated "
                "positions (about 90 expected). Check that this joint was moved and that the motor at its ID is "
                "the one on that joint, then run the calibration again."
            )
        if not TOLERATED_MOVE_DEG[0] <= moved <= TOLERATED_MOVE_DEG[1]:
            logging.warning(
                f"{arm_label}: motor '{name}' turned by {moved:.1f} degrees between the zero and the rotated "
                "positions instead of about 90: compare the arm with the reference pictures and recalibrate "
                "if its readings look wrong."
            )


def run_arm_calibration(
    bus: MotorsBus, robot_type: str, picture_robot: str, arm_name: str, arm_type: str, prompt: Prompt
) -> dict[str, list]:
    """Ask for the zero, rotated and rest poses of one arm (torque off) and return its calibration.

    `prompt(message)` returns once the user has put the arm in the pose (default: `input`). Dynamixel arms
    snap the rotated pose to the nearest quarter turn (arms assembled alike get identical calibrations);
    Feetech arms use the raw readings, as the reference does.
    """
    arm_label = f"{robot_type} {arm_name} {arm_type}"
    if (bus.read("Torque_Enable") != 0).any():
        raise CalibrationError(f"{arm_label}: disable the torque of every motor before calibrating the arm.")
    bus.calibration = None  # the poses are read as raw steps
    names = bus.motor_names
    resolutions = [bus.model_resolution[model] for model in bus.motor_models]

    prompt(_pose_message(picture_robot, arm_label, arm_type, "zero"))
    zero = bus.read("Present_Position")
    prompt(_pose_message(picture_robot, arm_label, arm_type, "rotated"))
    rotated = bus.read("Present_Position")
    _check_moves(zero, rotated, names, resolutions, arm_label)

    linear = LINEAR_MOTORS.get(robot_type, ())
    modes = [CalibrationMode.LINEAR.value if n in linear else CalibrationMode.DEGREE.value for n in names]
    calibration = compute_calibration(
        zero, rotated, names, modes, resolutions, round_to_quarter_turn=bus.spec.name == "dynamixel"
    )

    prompt(_pose_message(picture_robot, arm_label, arm_type, "rest"))
    rest = bus.read("Present_Position")
    try:
        # Also lets the auto-correction settle whole-turn offsets before the calibration is stored.
        apply_calibration(rest, names, calibration, resolutions)
    except JointOutOfRangeError as e:
        raise CalibrationError(
            f"{arm_label}: with the new calibration the rest position reads out of range ({e}). The zero or "
            "rotated pose was probably off: compare with the reference pictures and calibrate again."
        ) from e
    logging.info(f"Calibration of the {arm_label} arm done.")
    return calibration
