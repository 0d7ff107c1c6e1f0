"""The guided calibration (driven by moving the emulated arms from the prompt callback) and the calibration
files: written atomically in the reference format, validated on load with an error saying how to fix it."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from lerobot.common.robot_devices.robots import CalibrationError, CalibrationFileError
from lerobot.common.robot_devices.robots.calibration_procedure import (
    load_calibration_file,
    recalibrate_command,
    save_calibration_file,
)
from tests.robot_devices.robot_rigs import HOME, QUARTER, PosePrompt, emulated_robot, rig_calibration

KEYS = {"homing_offset", "drive_mode", "start_pos", "end_pos", "calib_mode", "motor_names"}


@pytest.mark.parametrize("robot_type", ["so100", "koch"])
def test_guided_calibration_at_first_connection(tmp_path, robot_type):
    with emulated_robot(robot_type, tmp_path, calibrated=False) as rig:
        # The lift and the wrist roll are mounted inverted; the rotated pose is a little off a quarter turn.
        prompt = PosePrompt(rig, inverted=[1, 4])
        prompt.poses["rotated"] = [
            HOME + 1040,
            HOME - 1010,
            HOME + 1030,
            HOME + 1024,
            HOME - 1024,
            HOME + 1000,
        ]
        rig.robot.prompt = prompt
        rig.robot.connect()
        assert prompt.asked == [
            (arm, pose) for arm in ("main_follower", "main_leader") for pose in ("zero", "rotated", "rest")
        ]
        first = prompt.messages[0]
        assert f"{robot_type} main follower arm" in first and "zero position" in first
        assert f"media/{robot_type}/follower_zero.webp" in first
        assert "rotated position" in prompt.messages[1] and "rest position" in prompt.messages[2]
        for arm_id in ("main_follower", "main_leader"):
            calibration = json.loads((rig.calibration_dir / f"{arm_id}.json").read_text())
            assert set(calibration) == KEYS
            assert calibration["motor_names"] == rig.bus(arm_id).motor_names
            assert calibration["drive_mode"] == [0, 1, 0, 0, 1, 0]
            assert calibration["start_pos"] == [HOME] * 6
            gripper_mode = "LINEAR" if robot_type == "so100" else "DEGREE"
            assert calibration["calib_mode"] == ["DEGREE"] * 5 + [gripper_mode]
            if robot_type == "koch":  # Dynamixel: the rotated pose snaps to the quarter turn
                assert calibration["homing_offset"] == [-2048, 2048, -2048, -2048, 2048, -2048]
            else:  # Feetech: raw readings
                assert calibration["homing_offset"][:2] == [QUARTER - HOME - 1040, QUARTER + HOME - 1010]
        # The arms are at rest (HOME), the zero pose: about 0 degrees on every joint (Feetech offsets come from
        # the rotated pose, which was up to 24 steps off).
        state = rig.robot.capture_observation()["observation.state"][:5].numpy()
        np.testing.assert_allclose(state, np.zeros(5), atol=0.01 if robot_type == "koch" else 24 * 360 / 4096)
        rig.robot.disconnect()
        # Next time the files are loaded: nothing is asked.
        prompt.asked.clear()
        rig.robot.connect()
        assert prompt.asked == []


def test_bimanual_pictures_are_the_koch_ones(tmp_path):
    with emulated_robot("koch_bimanual", tmp_path, calibrated=False) as rig:
        rig.robot.prompt = prompt = PosePrompt(rig)
        rig.robot.calibrate(["right_leader"])
        assert prompt.asked == [
            ("right_leader", "zero"),
            ("right_leader", "rotated"),
            ("right_leader", "rest"),
        ]
        assert "koch_bimanual right leader arm" in prompt.messages[0]
        assert "media/koch/leader_zero.webp" in prompt.messages[0]
        assert [p.name for p in rig.calibration_dir.iterdir()] == ["right_leader.json"]


def test_calibrate_disconnected_robot_replaces_one_file_and_keeps_a_backup(tmp_path):
    with emulated_robot("so100", tmp_path) as rig:
        path = rig.calibration_dir / "main_follower.json"
        old = path.read_text()
        leader_old = (rig.calibration_dir / "main_leader.json").read_text()
        rig.robot.prompt = prompt = PosePrompt(rig, inverted=[0])
        rig.robot.calibrate(["main_follower"])
        assert [arm for arm, _ in prompt.asked] == ["main_follower"] * 3
        assert json.loads(path.read_text())["drive_mode"][0] == 1
        assert (rig.calibration_dir / "main_follower.json.bak").read_text() == old
        assert (rig.calibration_dir / "main_leader.json").read_text() == leader_old
        assert not rig.robot.is_connected
        assert not any(bus.is_connected for bus in rig.robot.follower_arms.values())
        with pytest.raises(
            ValueError, match=r"Unknown arm\(s\) \['main'\].*\['main_follower', 'main_leader'\]"
        ):
            rig.robot.calibrate(["main"])


def test_calibrate_connected_robot_turns_torque_off_then_on(tmp_path):
    with emulated_robot("so100", tmp_path) as rig, rig.robot as robot:
        torque_seen = []
        robot.prompt = PosePrompt(rig, on_message=lambda arm, pose: torque_seen.append(rig.torque(arm)))
        robot.calibrate(["main_follower"])
        assert torque_seen == [[0] * 6] * 3
        assert rig.torque("main_follower") == [1] * 6
        assert robot.is_connected
        robot.teleop_step()  # still usable


def test_interrupted_calibration_leaves_no_file_and_no_torque(tmp_path):
    def give_up(arm_id, pose):
        if pose == "rotated":
            raise KeyboardInterrupt

    with emulated_robot("so100", tmp_path, calibrated=False) as rig:
        (rig.calibration_dir).mkdir(parents=True)
        rig.robot.prompt = PosePrompt(rig, on_message=give_up)
        with pytest.raises(KeyboardInterrupt):
            rig.robot.connect()
        assert list(rig.calibration_dir.iterdir()) == []
        assert rig.torque("main_follower") == [0] * 6
        assert not any(bus.is_connected for bus in rig.robot.follower_arms.values())


def test_joint_not_moved_is_refused(tmp_path):
    with emulated_robot("so100", tmp_path, calibrated=False) as rig:
        prompt = PosePrompt(rig)
        prompt.poses["rotated"] = [HOME + QUARTER] * 2 + [HOME + 100] + [HOME + QUARTER] * 3
        rig.robot.prompt = prompt
        with pytest.raises(CalibrationError, match="motor 'elbow_flex' turned by only 8.8 degrees"):
            rig.robot.connect()
        assert not rig.calibration_dir.exists() or not any(rig.calibration_dir.iterdir())
        assert not any(bus.is_connected for bus in rig.robot.leader_arms.values())


def test_unusual_rotation_is_a_warning(tmp_path, caplog):
    with emulated_robot("so100", tmp_path, calibrated=False) as rig:
        prompt = PosePrompt(rig)
        prompt.poses["rotated"] = [HOME + QUARTER] * 3 + [HOME + 570] + [HOME + QUARTER] * 2
        rig.robot.prompt = prompt
        with caplog.at_level(logging.WARNING):
            rig.robot.calibrate(["main_follower"])
        assert any("'wrist_flex' turned by 50.1 degrees" in r.getMessage() for r in caplog.records)


def test_rest_pose_out_of_range_is_refused(tmp_path):
    with emulated_robot("so100", tmp_path, calibrated=False) as rig:
        prompt = PosePrompt(rig)
        prompt.poses["rest"] = [HOME] * 5 + [HOME - 2000]  # gripper far below its closed position
        rig.robot.prompt = prompt
        with pytest.raises(CalibrationError, match="rest position reads out of range.*'gripper'"):
            rig.robot.calibrate(["main_leader"])
        assert not (rig.calibration_dir / "main_leader.json").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "holds a list"),
        (json.dumps({"homing_offset": [0] * 6}), "lacks the keys"),
        (
            json.dumps(rig_calibration("so100", ["a", "b", "c", "d", "e", "f"])),
            r"no entry for motors \['shoulder_pan'",
        ),
    ],
)
def test_bad_calibration_file_names_the_file_and_the_fix(tmp_path, content, message):
    with emulated_robot("so100", tmp_path) as rig:
        path = rig.calibration_dir / "main_leader.json"
        path.write_text(content)
        with pytest.raises(CalibrationFileError, match=message) as info:
            rig.robot.connect()
        text = str(info.value)
        assert str(path) in text
        assert recalibrate_command("so100", "main_leader") in text
        assert (
            "control_robot.py calibrate --robot-path lerobot/configs/robot/so100.yaml --arms main_leader"
            in text
        )
        assert not rig.robot.is_connected
        assert not any(bus.is_connected for bus in rig.robot.follower_arms.values())
        assert rig.torque("main_follower") == [0] * 6
        assert path.read_text() == content  # never rewritten behind the user's back


def test_calibration_file_round_trip(tmp_path):
    names = ["pan", "gripper"]
    calibration = rig_calibration("so100", names, rotated_sign=[-1, 1])
    path = tmp_path / "cal" / "main_follower.json"
    save_calibration_file(path, calibration)
    assert [p.name for p in path.parent.iterdir()] == ["main_follower.json"]  # no temp file left
    assert load_calibration_file(path, names, "so100", "main_follower") == calibration
    with pytest.raises(CalibrationFileError, match="Cannot read"):
        load_calibration_file(tmp_path / "missing.json", names, "so100", "main_follower")
