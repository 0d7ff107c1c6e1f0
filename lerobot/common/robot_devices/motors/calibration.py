"""Calibration of joint positions: raw encoder steps <-> degrees (revolute joints) or percent (grippers).

The calibration dict is the file format of the reference implementation, one list entry per motor:
`{"homing_offset": [...], "drive_mode": [...], "start_pos": [...], "end_pos": [...],
"calib_mode": ["DEGREE" | "LINEAR", ...], "motor_names": [...]}`.

Raw positions given to these functions are already "unwrapped" (continuous across encoder turns, see
`MotorsBus`), so a joint whose zero pose sits near the 4095 -> 0 boundary reads continuously.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from enum import Enum
from typing import Any

import numpy as np

# Nominal output ranges are [-180, 180] degrees and [0, 100] %; beyond these bounds a reading is an error
# (after the auto-correction below had its chance).
DEGREE_BOUNDS = (-270.0, 270.0)
LINEAR_BOUNDS = (-10.0, 110.0)

CALIBRATION_KEYS = ("homing_offset", "drive_mode", "start_pos", "end_pos", "calib_mode", "motor_names")


class CalibrationMode(str, Enum):
    DEGREE = "DEGREE"  # revolute joint, output in degrees
    LINEAR = "LINEAR"  # gripper, output in percent of the calibrated travel


class JointOutOfRangeError(ValueError):
    """A calibrated joint reads outside its bounds, even after shifting it by whole encoder turns."""


def validate_calibration(calibration: dict[str, Any], motor_names: Sequence[str]) -> dict[str, list]:
    """Check a calibration dict against the bus's motors and return a normalised deep copy."""
    missing_keys = [key for key in CALIBRATION_KEYS if key not in calibration]
    if missing_keys:
        raise ValueError(f"Calibration lacks the keys {missing_keys}; expected {list(CALIBRATION_KEYS)}.")
    calib = {key: list(copy.deepcopy(calibration[key])) for key in CALIBRATION_KEYS}
    n = len(calib["motor_names"])
    for key in CALIBRATION_KEYS:
        if len(calib[key]) != n:
            raise ValueError(f"Calibration key '{key}' has {len(calib[key])} entries, 'motor_names' has {n}.")
    absent = [name for name in motor_names if name not in calib["motor_names"]]
    if absent:
        raise ValueError(f"Calibration has no entry for motors {absent} (it covers {calib['motor_names']}).")
    for i, name in enumerate(calib["motor_names"]):
        mode = calib["calib_mode"][i]
        try:
            calib["calib_mode"][i] = CalibrationMode(mode).value
        except ValueError:
            raise ValueError(f"Motor '{name}': unknown calib_mode {mode!r} (use DEGREE or LINEAR).") from None
        if calib["drive_mode"][i] not in (0, 1, False, True):
            raise ValueError(f"Motor '{name}': drive_mode must be 0 or 1, got {calib['drive_mode'][i]!r}.")
        for key in ("homing_offset", "drive_mode", "start_pos", "end_pos"):
            calib[key][i] = int(calib[key][i])
        # Equal ends would divide by zero (the "inf %" readings users reported).
        if mode == CalibrationMode.LINEAR.value and calib["start_pos"][i] == calib["end_pos"][i]:
            raise ValueError(f"Motor '{name}': LINEAR calibration needs start_pos != end_pos.")
    return calib


def _degrees(raw: float, drive_mode: int, homing_offset: int, resolution: int) -> float:
    steps = (-raw if drive_mode else raw) + homing_offset
    return steps / (resolution // 2) * 180.0


def _percent(raw: float, start_pos: int, end_pos: int) -> float:
    return (raw - start_pos) / (end_pos - start_pos) * 100.0


def _autocorrect_one(calib: dict[str, list], idx: int, raw: int, resolution: int) -> None:
    """Shift one motor's calibration by whole turns so that `raw` reads inside the bounds, if it can."""
    name = calib["motor_names"][idx]
    if calib["calib_mode"][idx] == CalibrationMode.DEGREE.value:
        deg = _degrees(raw, calib["drive_mode"][idx], calib["homing_offset"][idx], resolution)
        if DEGREE_BOUNDS[0] <= deg <= DEGREE_BOUNDS[1]:
            return
        # Removing k turns brings the reading into [-180, 180]; a turn is `resolution` steps whatever the
        # drive mode, because the offset is added after the sign flip.
        turns = round(deg / 360.0)
        calib["homing_offset"][idx] -= turns * resolution
        logging.warning(
            f"Motor '{name}' read {deg:.1f} deg: shifted its homing_offset by {-turns} turn(s) "
            f"(now {calib['homing_offset'][idx]}). If the arm is not where you expect, recalibrate."
        )
        return
    start, end = calib["start_pos"][idx], calib["end_pos"][idx]
    pct = _percent(raw, start, end)
    if LINEAR_BOUNDS[0] <= pct <= LINEAR_BOUNDS[1]:
        return
    pct_per_turn = resolution / (end - start) * 100.0
    guess = round((50.0 - pct) / pct_per_turn)
    candidates = [k for k in (guess - 1, guess, guess + 1) if k != 0]
    fitting = [k for k in candidates if LINEAR_BOUNDS[0] <= pct + k * pct_per_turn <= LINEAR_BOUNDS[1]]
    if not fitting:
        return  # nothing to do: apply_calibration raises a JointOutOfRangeError naming the motor
    turns = min(fitting, key=lambda k: abs(pct + k * pct_per_turn - 50.0))
    # Reading raw + k turns with the old ends == reading raw with both ends moved back by k turns.
    calib["start_pos"][idx] -= turns * resolution
    calib["end_pos"][idx] -= turns * resolution
    logging.warning(
        f"Motor '{name}' read {pct:.1f} %: shifted its start/end positions by {-turns} turn(s). "
        "If the gripper is not where you expect, recalibrate."
    )


def apply_calibration(
    raw: np.ndarray,
    motor_names: Sequence[str],
    calibration: dict[str, list],
    resolutions: Sequence[int],
    autocorrect: bool = True,
) -> np.ndarray:
    """Raw (unwrapped) steps -> degrees / percent, float32. With `autocorrect`, `calibration` is updated in
    place when a reading is a whole number of turns off (cable glitch, default calibration file)."""
    out = np.zeros(len(motor_names), dtype=np.float32)
    for i, name in enumerate(motor_names):
        idx = calibration["motor_names"].index(name)
        if autocorrect:
            _autocorrect_one(calibration, idx, int(raw[i]), resolutions[i])
        if calibration["calib_mode"][idx] == CalibrationMode.DEGREE.value:
            value = _degrees(
                float(raw[i]),
                calibration["drive_mode"][idx],
                calibration["homing_offset"][idx],
                resolutions[i],
            )
            low, high, unit = *DEGREE_BOUNDS, "degrees"
        else:
            value = _percent(float(raw[i]), calibration["start_pos"][idx], calibration["end_pos"][idx])
            low, high, unit = *LINEAR_BOUNDS, "%"
        if not low <= value <= high:
            raise JointOutOfRangeError(
                f"Motor '{name}' reads {value:.1f} {unit} (raw {int(raw[i])}), outside [{low}, {high}]. "
                "The calibration does not match this arm: check the motor IDs and recalibrate "
                "(`python lerobot/scripts/control_robot.py calibrate`)."
            )
        out[i] = value
    return out


def revert_calibration(
    values: np.ndarray, motor_names: Sequence[str], calibration: dict[str, list], resolutions: Sequence[int]
) -> np.ndarray:
    """Degrees / percent -> raw (unwrapped) steps, rounded to int64. Exact inverse of `apply_calibration`
    up to the rounding to whole steps."""
    out = np.zeros(len(motor_names), dtype=np.int64)
    for i, name in enumerate(motor_names):
        idx = calibration["motor_names"].index(name)
        value = float(values[i])
        if calibration["calib_mode"][idx] == CalibrationMode.DEGREE.value:
            steps = value / 180.0 * (resolutions[i] // 2) - calibration["homing_offset"][idx]
            raw = -steps if calibration["drive_mode"][idx] else steps
        else:
            start, end = calibration["start_pos"][idx], calibration["end_pos"][idx]
            raw = value / 100.0 * (end - start) + start
        out[i] = round(raw)
    return out


def compute_calibration(
    zero_raw: Sequence[int],
    rotated_raw: Sequence[int],
    motor_names: Sequence[str],
    calib_modes: Sequence[str],
    resolutions: Sequence[int],
    round_to_quarter_turn: bool,
) -> dict[str, list]:
    """Calibration from two poses read with `Present_Position` (unwrapped, uncalibrated): the "zero" pose
    (every joint at 0 deg) and the "rotated" pose (every joint turned +90 deg).

    `round_to_quarter_turn` (the Dynamixel procedure) snaps the rotated position to the nearest multiple of
    a quarter turn before computing the offset, so calibrations of arms assembled alike agree exactly.
    """
    calib: dict[str, list] = {key: [] for key in CALIBRATION_KEYS}
    for zero, rotated, name, mode, resolution in zip(
        zero_raw, rotated_raw, motor_names, calib_modes, resolutions, strict=True
    ):
        quarter = resolution // 4
        drive_mode = int(rotated < zero)
        driven = -int(rotated) if drive_mode else int(rotated)
        if round_to_quarter_turn:
            driven = round(driven / quarter) * quarter
        calib["homing_offset"].append(quarter - driven)
        calib["drive_mode"].append(drive_mode)
        calib["start_pos"].append(int(zero))
        calib["end_pos"].append(int(rotated))
        calib["calib_mode"].append(CalibrationMode(mode).value)
        calib["motor_names"].append(name)
    return calib
