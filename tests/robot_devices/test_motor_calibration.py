"""Calibration: degrees and gripper percent, drive mode, homing offset, and the 4096-step wrap-around."""

import copy

import numpy as np
import pytest

from lerobot.common.robot_devices.motors.calibration import (
    JointOutOfRangeError,
    apply_calibration,
    compute_calibration,
    revert_calibration,
    validate_calibration,
)
from tests.robot_devices.conftest import make_rig

STEP_DEG = 360 / 4096
NAMES = ["pan", "lift", "gripper"]
CALIB = {
    "homing_offset": [-2048, 3072, 0],
    "drive_mode": [0, 1, 0],
    "start_pos": [0, 0, 1000],
    "end_pos": [0, 0, 2000],
    "calib_mode": ["DEGREE", "DEGREE", "LINEAR"],
    "motor_names": NAMES,
}


def test_conversions_and_round_trip():
    calib = validate_calibration(CALIB, NAMES)
    raw = np.array([2048 + 1024, 2048, 1250])
    # pan: 1024 steps past its zero = 90 deg; lift is inverted: -2048 + 3072 = 1024 = 90 deg; gripper 25 %.
    np.testing.assert_allclose(apply_calibration(raw, NAMES, calib, [4096] * 3), [90.0, 90.0, 25.0])
    values = np.array([-123.4, 45.6, 87.5])
    back = apply_calibration(revert_calibration(values, NAMES, calib, [4096] * 3), NAMES, calib, [4096] * 3)
    np.testing.assert_allclose(back, values, atol=STEP_DEG / 2 + 1e-4)
    assert calib == validate_calibration(CALIB, NAMES)  # in range: nothing was auto-corrected


def test_autocorrect_shifts_whole_turns():
    calib = validate_calibration(CALIB, NAMES)
    # pan reads 1024 + 4096 steps past zero (a turn too far), the gripper a turn below its travel.
    raw = np.array([2048 + 1024 + 4096, 2048, 1250 - 4096])
    np.testing.assert_allclose(apply_calibration(raw, NAMES, calib, [4096] * 3), [90.0, 90.0, 25.0])
    assert calib["homing_offset"][0] == -2048 - 4096
    assert (calib["start_pos"][2], calib["end_pos"][2]) == (1000 - 4096, 2000 - 4096)
    with pytest.raises(JointOutOfRangeError, match="'gripper' reads .* %"):
        apply_calibration(np.array([3072, 2048, 3500 - 4096]), NAMES, calib, [4096] * 3)
    fresh = validate_calibration(CALIB, NAMES)
    with pytest.raises(JointOutOfRangeError, match="'pan' reads 360.0 degrees"):
        apply_calibration(np.array([2048 + 4096, 2048, 1250]), NAMES, fresh, [4096] * 3, autocorrect=False)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c.pop("drive_mode"), "lacks the keys"),
        (lambda c: c["calib_mode"].__setitem__(0, "RADIAN"), "unknown calib_mode"),
        (lambda c: c["end_pos"].__setitem__(2, 1000), "start_pos != end_pos"),
        (lambda c: c["motor_names"].__setitem__(0, "waist"), "no entry for motors \\['pan'\\]"),
        (lambda c: c["homing_offset"].append(0), "4 entries"),
    ],
)
def test_invalid_calibrations(change, message):
    calib = copy.deepcopy(CALIB)
    change(calib)
    with pytest.raises(ValueError, match=message):
        validate_calibration(calib, NAMES)


def test_compute_calibration_quarter_turn_rounding():
    # Dynamixel procedure: the rotated pose snaps to a quarter turn; the lift motor is mounted inverted.
    calib = compute_calibration(
        [2050, 3000], [3080, 1970], ["pan", "lift"], ["DEGREE", "DEGREE"], [4096] * 2, True
    )
    assert calib["drive_mode"] == [0, 1]
    assert calib["homing_offset"] == [1024 - 3072, 1024 + 2048]
    raw = compute_calibration([2050], [3080], ["pan"], ["DEGREE"], [4096], False)
    assert raw["homing_offset"] == [1024 - 3080]


def _calibrate_through_bus(rig, bus, zero, rotated, quarter_turns):
    """The calibration procedure: read the zero pose, then the rotated pose, through the bus."""
    for motor_id, steps in zip(bus.motor_indices, zero):
        rig.emulator.set_position(motor_id, steps)
    zero_raw = bus.read("Present_Position")
    # Move the joints to the rotated pose in small steps, reading as a teleoperation loop would.
    for t in np.linspace(0, 1, 9)[1:]:
        for motor_id, a, b in zip(bus.motor_indices, zero, rotated):
            rig.emulator.set_position(motor_id, round(a + t * (b - a)))
        rotated_raw = bus.read("Present_Position")
    modes = ["DEGREE"] * (len(zero) - 1) + ["LINEAR"]
    resolutions = [4096] * len(zero)
    return compute_calibration(zero_raw, rotated_raw, bus.motor_names, modes, resolutions, quarter_turns)


@pytest.mark.parametrize("brand", ["dynamixel", "feetech"])
def test_calibrate_then_read_and_write_in_degrees(brand):
    motors = {"pan": (1, "xl430-w250"), "lift": (2, "xm430-w350"), "gripper": (3, "xl330-m288")}
    if brand == "feetech":
        motors = {name: (motor_id, "sts3215") for name, (motor_id, _) in motors.items()}
    with make_rig(brand, motors) as rig:
        bus = rig.connected_bus()
        # pan: zero pose 10 steps past a quarter turn; lift: inverted, its zero pose 10 steps above 0, so
        # the rotated pose (-1014) is past the 0 -> 4095 boundary of a single-turn encoder (3082);
        # gripper: opens across the boundary too (3900 -> 4800, i.e. raw 704).
        zero, rotated = [2058, 10, 3900], [3082, 10 - 1024, 3900 + 900]
        calib = _calibrate_through_bus(rig, bus, zero, rotated, quarter_turns=brand == "dynamixel")
        assert calib["drive_mode"] == [0, 1, 0]
        bus.set_calibration(calib)

        positions = bus.read("Present_Position")  # still at the rotated pose
        assert positions.dtype == np.float32
        # The Dynamixel procedure snaps the rotated pose to a quarter turn: the 10 steps off stay visible.
        snap = 10 * STEP_DEG if brand == "dynamixel" else 0
        np.testing.assert_allclose(positions, [90.0 + snap, 90.0 - snap, 100.0], atol=1e-4)

        # Drive the joints (torque on: the emulated servos reach their goals) and read back.
        bus.write("Torque_Enable", 1)
        for target in ([0.0, 0.0, 0.0], [-30.0, 45.5, 50.0], [120.0, -20.0, 12.5], [0.0, 89.0, 99.0]):
            bus.write("Goal_Position", np.array(target))
            np.testing.assert_allclose(bus.read("Present_Position"), target, atol=STEP_DEG)
            np.testing.assert_allclose(bus.read("Goal_Position"), target, atol=STEP_DEG)
        # Back to the zero pose, whatever number of turns the raw values went through.
        bus.write("Goal_Position", [0.0, 0.0, 0.0])
        expected_zero = [2048, 0, 3900] if brand == "dynamixel" else zero
        assert [rig.emulator.get_register(i, "Present_Position") for i in (1, 2, 3)] == expected_zero


def test_feetech_positions_stay_continuous_across_the_encoder_boundary():
    with make_rig("feetech", {"wrist": (1, "sts3215")}) as rig:
        bus = rig.connected_bus()
        # Uncalibrated: raw steps keep counting past 4095 and below 0 (the servo itself reports 4, 100, 4086).
        for steps in [4090, 4100, 4196, 4000, 3000, 2000, 1000, 100, -10, -100, 1000]:
            rig.emulator.set_position(1, steps)
            assert bus.read("Present_Position").tolist() == [steps]
        # A new session counts from the servo's reading again.
        bus.reconnect()
        rig.emulator.set_position(1, 3772)
        assert bus.read("Present_Position").tolist() == [3772]
        calib = {
            "homing_offset": [-4000],
            "drive_mode": [0],
            "start_pos": [0],
            "end_pos": [1],
            "calib_mode": ["DEGREE"],
            "motor_names": ["wrist"],
        }
        bus.set_calibration(calib)
        # Sweep from -20 deg to +70 deg: raw 3772 ... 4095, 0 ... 700. Readings must be continuous.
        readings = []
        for steps in range(3772, 4000 + 797, 25):
            rig.emulator.set_position(1, steps)
            readings.append(float(bus.read("Present_Position")[0]))
        np.testing.assert_allclose(np.diff(readings), 25 * STEP_DEG, atol=1e-4)
        assert bus.calibration["homing_offset"] == [
            -4000
        ]  # continuity came from turn tracking, no correction
        # Back down across the boundary, and a write just past it lands at the right physical angle.
        for steps in range(4000 + 797, 3900, -200):
            rig.emulator.set_position(1, steps)
            bus.read("Present_Position")
        bus.write("Torque_Enable", 1)
        bus.write("Goal_Position", 5.0)
        assert rig.emulator.get_register(1, "Goal_Position") == (4000 + 57) % 4096
        bus.write("Goal_Position", -5.0)
        assert rig.emulator.get_register(1, "Goal_Position") == 4000 - 57


def test_fresh_connection_past_the_boundary_is_autocorrected():
    # A new session starts with the joint past the boundary (raw 100 = 196 steps after a zero at 4000):
    # the raw reading says -383 deg, auto-correction takes it back by a whole turn.
    with make_rig("feetech", {"wrist": (1, "sts3215")}) as rig:
        rig.emulator.set_position(1, 100)
        bus = rig.connected_bus()
        bus.set_calibration(
            {
                "homing_offset": [-4000],
                "drive_mode": [0],
                "start_pos": [0],
                "end_pos": [1],
                "calib_mode": ["DEGREE"],
                "motor_names": ["wrist"],
            }
        )
        np.testing.assert_allclose(bus.read("Present_Position"), [196 * STEP_DEG], atol=1e-4)
        assert bus.calibration["homing_offset"] == [-4000 + 4096]


def test_dynamixel_multi_turn_positions_and_negative_values():
    # X-series motors count turns themselves: signed 32-bit values, used as they come.
    with make_rig("dynamixel", {"wrist": (1, "xm430-w350")}) as rig:
        bus = rig.connected_bus()
        bus.write("Operating_Mode", 4)  # extended position (EEPROM: torque is still off)
        bus.write("Torque_Enable", 1)
        for goal in [4095, 4096, 4097, -1, -4097, 100_000, -131_073]:  # -131073 is FF FF FD FF on the wire
            bus.write("Goal_Position", goal)
            assert rig.emulator.get_register(1, "Present_Position") == goal
            assert bus.read("Present_Position").tolist() == [goal]
        bus.set_calibration(
            {
                "homing_offset": [-4096],
                "drive_mode": [1],
                "start_pos": [0],
                "end_pos": [1],
                "calib_mode": ["DEGREE"],
                "motor_names": ["wrist"],
            }
        )
        # Inverted: -raw - 4096 steps. Raw -8192 reads +4096 steps = 360 deg: auto-corrected to 0 deg.
        rig.emulator.set_position(1, -8192)
        np.testing.assert_allclose(bus.read("Present_Position"), [0.0])
        bus.write("Goal_Position", -90.0)
        assert rig.emulator.get_register(1, "Goal_Position") == -8192 + 1024
