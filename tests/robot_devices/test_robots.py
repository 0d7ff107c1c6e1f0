"""Robots from their yaml configs, on emulated buses: connection and presets, teleoperation, actions,
max_relative_target, torque off on errors and Ctrl-C, and motor faults reported at the robot level."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from lerobot.common.robot_devices.motors.utils import (
    MotorCommunicationError,
    MotorModelMismatchError,
    MotorNotRespondingError,
    RobotDeviceAlreadyConnectedError,
    RobotDeviceNotConnectedError,
)
from lerobot.common.robot_devices.robots import (
    ManipulatorRobot,
    RobotConfigError,
    available_robot_configs,
    load_robot_config,
    make_robot,
)
from lerobot.common.robot_devices.robots.factory import ROBOT_CONFIG_DIR
from tests.robot_devices.robot_rigs import emulated_robot

ROBOTS = ["koch", "koch_bimanual", "so100", "moss", "aloha"]
SO100_MOTORS = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]


# --------------------------------------------------------------------------------------------- configs
@pytest.mark.parametrize("name", ROBOTS)
def test_packaged_configs(name):
    assert set(ROBOTS) <= set(available_robot_configs())
    text = (ROBOT_CONFIG_DIR / f"{name}.yaml").read_text()
    assert "_target_" not in text and text.startswith("# @package robot")
    robot = make_robot(name, cameras={})
    n_arms = 2 if name in ("koch_bimanual", "aloha") else 1
    n_motors = 9 if name == "aloha" else 6
    assert robot.robot_type == name
    assert len(robot.follower_arms) == len(robot.leader_arms) == n_arms
    assert robot.features == robot.motor_features
    for key in ("action", "observation.state"):
        assert robot.features[key]["shape"] == [n_arms * n_motors]
        assert robot.features[key]["dtype"] == "float32"
    assert robot.motor_names[0] == (
        "left_waist" if name == "aloha" else f"{next(iter(robot.follower_arms))}_shoulder_pan"
    )
    assert not robot.is_connected
    expected_limit = 5.0 if name == "aloha" else None
    assert robot.config.max_relative_target == expected_limit
    assert robot.config.gripper_open_degree == (35.156 if name.startswith("koch") else None)
    # Cameras are part of the packaged configs of koch and so100 (built, not opened, here).
    if name != "aloha":
        pytest.importorskip("cv2")
        assert set(make_robot(name).cameras) == {"laptop", "phone"}


def test_hydra_compose_puts_the_robot_under_robot():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROBOT_CONFIG_DIR.parent), version_base="1.2"):
        cfg = compose("default", overrides=["+robot=so100", "robot.max_relative_target=7", "~robot.cameras"])
    assert cfg.robot.type == "so100"
    robot = make_robot(cfg)  # a whole hydra config: its robot section is used
    assert robot.robot_type == "so100" and robot.config.max_relative_target == 7.0 and robot.cameras == {}
    assert make_robot(cfg.robot).robot_type == "so100"


def test_yaml_path_and_overrides(tmp_path):
    cfg = load_robot_config(
        str(ROBOT_CONFIG_DIR / "so100.yaml"),
        ["~cameras", "max_relative_target=[1,2,3,4,5,6]", "follower_arms.main.port=/dev/ttyUSB7"],
    )
    assert "cameras" not in cfg and cfg["follower_arms"]["main"]["port"] == "/dev/ttyUSB7"
    robot = ManipulatorRobot(cfg)
    assert robot.config.max_relative_target == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert robot.follower_arms["main"].port == "/dev/ttyUSB7"
    assert load_robot_config("koch", ["cameras={}"])["cameras"] == {}
    with pytest.raises(RobotConfigError, match="no such key"):
        load_robot_config("koch", ["~nothing"])
    with pytest.raises(RobotConfigError, match="Unknown robot 'kochh'.*'koch'"):
        make_robot("kochh")
    bad = tmp_path / "bad.yaml"
    bad.write_text("type: [koch\n")
    with pytest.raises(RobotConfigError, match="bad.yaml is not valid yaml"):
        make_robot(str(bad))


def test_reference_format_config_is_read_without_importing_anything():
    cfg = {
        "_target_": "lerobot.common.robot_devices.robots.manipulator.ManipulatorRobot",
        "robot_type": "so100",
        "calibration_dir": ".cache/calibration/so100",
        "max_relative_target": None,
        "leader_arms": {},
        "follower_arms": {
            "main": {
                "_target_": "lerobot.common.robot_devices.motors.feetech.FeetechMotorsBus",
                "port": "/dev/ttyACM0",
                "motors": {"gripper": [6, "sts3215"]},
            }
        },
        "cameras": {},
    }
    robot = make_robot(cfg)
    assert robot.robot_type == "so100" and robot.follower_arms["main"].spec.name == "feetech"
    cfg["follower_arms"]["main"]["_target_"] = "os.system"
    with pytest.raises(RobotConfigError, match="never name code"):
        make_robot(cfg)


def _so100(**changes):
    cfg = load_robot_config("so100", cameras={})
    cfg.update(changes)
    return cfg


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (_so100(typo=1), r"unknown key\(s\) \['typo'\]"),
        (_so100(type="ur5"), "robot.type must be one of"),
        (_so100(calibration_dir=None), "calibration_dir must be a folder"),
        (_so100(follower_arms={}), "needs at least one follower arm"),
        (_so100(max_relative_target=-1), "max_relative_target must be a positive number"),
        (_so100(max_relative_target=[5, 5]), "2 values but follower arm 'main' has 6 motors"),
        (_so100(max_relative_target=[5, 5, 5, 5, 5, "x"]), r"max_relative_target\[5\]"),
        (_so100(gripper_open_degree=35), "gripper_open_degree is a koch feature"),
        (_so100(leader_arms={"left": load_robot_config("so100")["leader_arms"]["main"]}), "same names"),
        (
            _so100(
                follower_arms={"main": {"type": "dynamixel", "port": "/dev/x", "motors": {"pan": [1, "x"]}}}
            ),
            "same motor names",
        ),
        (
            _so100(leader_arms={}, follower_arms={"main": {"type": "can", "port": "/dev/x", "motors": {}}}),
            r"follower_arms.main.type must be one of",
        ),
        (
            _so100(leader_arms={}, follower_arms={"main": {"type": "feetech", "port": "", "motors": {}}}),
            "find_motors_bus_port.py",
        ),
        (
            _so100(
                leader_arms={}, follower_arms={"main": {"type": "feetech", "port": "/d", "motors": {"a": 1}}}
            ),
            r"follower_arms.main.motors.a must be `\[id, model\]`",
        ),
        (_so100(cameras={"laptop": {"camera_index": 0}}), "cameras.laptop needs a `type`"),
    ],
)
def test_invalid_configs(cfg, message):
    with pytest.raises(RobotConfigError, match=message):
        ManipulatorRobot(cfg)


def test_unknown_motor_model_names_the_arm():
    cfg = _so100(leader_arms={})
    cfg["follower_arms"]["main"]["motors"]["gripper"] = [6, "sts9999"]
    with pytest.raises(
        ValueError, match="follower_arms.main: Motor 'gripper': unknown feetech model 'sts9999'"
    ):
        ManipulatorRobot(cfg)


# --------------------------------------------------------------------------------------------- connect
def test_connect_so100_sets_presets_and_torque(tmp_path):
    with emulated_robot("so100", tmp_path) as rig:
        robot = rig.robot
        with pytest.raises(RobotDeviceNotConnectedError, match="robot.connect"):
            robot.teleop_step()
        robot.connect()
        assert robot.is_connected
        with pytest.raises(RobotDeviceAlreadyConnectedError):
            robot.connect()
        follower, leader = rig.emulators["main_follower"], rig.emulators["main_leader"]
        expected = {
            "Mode": 0,
            "P_Coefficient": 16,
            "I_Coefficient": 0,
            "D_Coefficient": 32,
            "Lock": 0,
            "Maximum_Acceleration": 254,
            "Acceleration": 254,
        }
        for register, value in expected.items():
            assert [follower.get_register(i, register) for i in range(1, 7)] == [value] * 6, register
        assert [leader.get_register(i, "P_Coefficient") for i in range(1, 7)] == [32] * 6  # leader untouched
        assert rig.torque("main_follower") == [1] * 6 and rig.torque("main_leader") == [0] * 6
        # The followers hold where they are: goal == present (the rig calibration reads it as 0).
        np.testing.assert_allclose(rig.goals("main_follower"), np.zeros(6))
        robot.disconnect()
        assert rig.torque("main_follower") == [0] * 6
        assert not robot.is_connected and not any(b.is_connected for b in robot.follower_arms.values())
        robot.disconnect()  # a second disconnect does nothing


def test_connect_koch_sets_presets_and_leader_gripper_trigger(tmp_path):
    with emulated_robot("koch", tmp_path) as rig:
        rig.robot.connect()
        follower, leader = rig.emulators["main_follower"], rig.emulators["main_leader"]
        assert [follower.get_register(i, "Operating_Mode") for i in range(1, 7)] == [4, 4, 4, 4, 4, 5]
        assert [leader.get_register(i, "Operating_Mode") for i in range(1, 7)] == [4, 4, 4, 4, 4, 5]
        gains = [follower.get_register(3, f"Position_{g}_Gain") for g in "PID"]
        assert gains == [1500, 0, 600]
        assert follower.get_register(2, "Position_P_Gain") == 800  # only the elbow gets stiffer
        assert rig.torque("main_follower") == [1] * 6
        assert rig.torque("main_leader") == [0, 0, 0, 0, 0, 1]  # the gripper trigger
        assert rig.goals("main_leader")[5] == pytest.approx(35.156, abs=0.1)
        rig.robot.disconnect()
        assert rig.torque("main_leader") == [0] * 6


def test_connect_aloha_sets_shadows_and_velocity_limit(tmp_path):
    with emulated_robot("aloha", tmp_path) as rig:
        rig.robot.connect()
        for arm_id, emulator in rig.emulators.items():
            assert emulator.get_register(3, "Secondary_ID") == 2, arm_id  # shoulder_shadow follows shoulder
            assert emulator.get_register(5, "Secondary_ID") == 4, arm_id  # elbow_shadow follows elbow
            if arm_id.endswith("follower"):
                assert [emulator.get_register(i, "Velocity_Limit") for i in range(1, 10)] == [131] * 9
                assert [emulator.get_register(i, "Operating_Mode") for i in range(1, 10)] == [4] * 8 + [5]
        assert rig.robot.features["action"]["shape"] == [18]


# --------------------------------------------------------------------------------------------- control
@pytest.mark.parametrize("robot_type", ["so100", "koch", "koch_bimanual"])
def test_teleoperation_copies_the_leaders(tmp_path, robot_type):
    with emulated_robot(robot_type, tmp_path) as rig, rig.robot as robot:
        targets = {}
        for k, name in enumerate(robot.leader_arms):
            targets[name] = np.array([10.0, -20.0, 30.0, -40.0, 50.0, 60.0]) + k
            rig.set_positions(f"{name}_leader", targets[name])
        assert robot.teleop_step() is None
        for name in robot.leader_arms:
            np.testing.assert_allclose(rig.positions(f"{name}_follower"), targets[name], atol=0.1)
        observation, action = robot.teleop_step(record_data=True)
        assert set(observation) == {"observation.state"} and set(action) == {"action"}
        state, sent = observation["observation.state"], action["action"]
        assert state.dtype == sent.dtype == torch.float32
        assert state.shape == sent.shape == (6 * len(robot.follower_arms),)
        expected = np.concatenate([targets[name] for name in robot.follower_arms])
        np.testing.assert_allclose(sent.numpy(), expected, atol=0.1)
        np.testing.assert_allclose(state.numpy(), expected, atol=0.1)
        assert {"read_leader", "write_follower", "read_follower"} <= set(robot.logs)
        assert all(isinstance(v, float) and v >= 0 for v in robot.logs.values())


def test_send_action_and_capture_observation(tmp_path):
    with emulated_robot("so100", tmp_path) as rig, rig.robot as robot:
        action = torch.tensor([5.0, -5.0, 12.5, 90.0, -90.0, 40.0])
        sent = robot.send_action(action)
        assert sent.dtype == torch.float32
        np.testing.assert_allclose(sent.numpy(), action.numpy())
        np.testing.assert_allclose(rig.positions("main_follower"), action.numpy(), atol=0.1)
        observation = robot.capture_observation()
        np.testing.assert_allclose(observation["observation.state"].numpy(), action.numpy(), atol=0.1)
        assert "read_follower" in robot.logs
        with pytest.raises(ValueError, match=r"has 6 values .*got shape \(5,\)"):
            robot.send_action(torch.zeros(5))
        with pytest.raises(ValueError, match="non-finite"):
            robot.send_action(torch.tensor([0.0, 0, 0, float("nan"), 0, 0]))
        np.testing.assert_allclose(rig.goals("main_follower"), action.numpy(), atol=0.1)  # nothing was sent


def test_no_leader_arms_cannot_teleoperate(tmp_path):
    with emulated_robot("so100", tmp_path, leader_arms={}) as rig, rig.robot as robot:
        assert list(rig.emulators) == ["main_follower"]
        with pytest.raises(ValueError, match="no leader arms"):
            robot.teleop_step()
        robot.send_action(torch.full((6,), 3.0))


# --------------------------------------------------------------------------------------------- safety
def test_max_relative_target_scalar_clamps_teleop_and_actions(tmp_path, caplog):
    with emulated_robot("so100", tmp_path, max_relative_target=5) as rig, rig.robot as robot:
        rig.set_positions("main_leader", [30.0, -30.0, 3.0, 0.0, 0.0, 30.0])
        with caplog.at_level(logging.WARNING):
            _, action = robot.teleop_step(record_data=True)
        np.testing.assert_allclose(action["action"].numpy(), [5.0, -5.0, 3.0, 0.0, 0.0, 5.0], atol=0.1)
        np.testing.assert_allclose(rig.goals("main_follower"), action["action"].numpy(), atol=0.1)
        warning = next(r.getMessage() for r in caplog.records if "clamped" in r.getMessage())
        assert "main follower arm" in warning
        assert "['shoulder_pan', 'shoulder_lift', 'gripper']" in warning  # elbow_flex moved 3: not clamped
        # The next steps keep closing the gap, 5 at most each time.
        robot.teleop_step()
        np.testing.assert_allclose(rig.positions("main_follower")[:2], [10.0, -10.0], atol=0.2)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            sent = robot.send_action(torch.tensor([10.0, -10.0, 3.0, 0.0, 0.0, 10.0]))
        assert not [r for r in caplog.records if "clamped" in r.getMessage()]  # nothing to clamp
        sent = robot.send_action(torch.tensor([100.0, -10.0, 3.0, 0.0, 0.0, 10.0]))
        assert sent[0].item() == pytest.approx(15.0, abs=0.2)


def test_max_relative_target_per_motor(tmp_path, caplog):
    limits = [1, 2, 3, 4, 5, 6]
    with emulated_robot("koch", tmp_path, max_relative_target=limits) as rig, rig.robot as robot:
        with caplog.at_level(logging.WARNING):
            sent = robot.send_action(torch.tensor([50.0, -50.0, 50.0, -50.0, 2.0, 50.0]))
        np.testing.assert_allclose(sent.numpy(), [1.0, -2.0, 3.0, -4.0, 2.0, 6.0], atol=0.1)
        np.testing.assert_allclose(rig.goals("main_follower"), sent.numpy(), atol=0.1)
        assert any(
            "wrist_flex" in r.getMessage() and "wrist_roll" not in r.getMessage() for r in caplog.records
        )


@pytest.mark.parametrize("interrupt", [RuntimeError("policy crashed"), KeyboardInterrupt()])
def test_torque_off_when_the_control_code_fails(tmp_path, interrupt):
    with emulated_robot("so100", tmp_path) as rig:
        with pytest.raises(type(interrupt)), rig.robot as robot:
            robot.send_action(torch.full((6,), 20.0))
            assert rig.torque("main_follower") == [1] * 6
            raise interrupt
        assert rig.torque("main_follower") == [0] * 6
        assert not rig.robot.is_connected
        assert not any(
            bus.is_connected for bus in [*robot.follower_arms.values(), *robot.leader_arms.values()]
        )
        # The robot can be used again afterwards.
        with rig.robot:
            assert rig.torque("main_follower") == [1] * 6


# --------------------------------------------------------------------------------------------- faults
def test_motor_that_stops_answering_is_named_and_torque_goes_off(tmp_path):
    with emulated_robot("so100", tmp_path) as rig:
        with pytest.raises(MotorCommunicationError) as info, rig.robot as robot:
            robot.teleop_step()
            for bus in robot.leader_arms.values():
                bus.num_retries = 2  # fail fast
            rig.emulators["main_leader"].inject_fault("timeout", motor_id=3, count=1000)
            robot.teleop_step()
        message = str(info.value)
        assert message.startswith("so100 main leader arm (/dev/ttyEMULATED_so100_main_leader): ")
        assert "'Present_Position' from motor 'elbow_flex' (ID 3" in message
        assert info.value.motor_name == "elbow_flex"
        assert rig.torque("main_follower") == [0] * 6


def test_corrupted_packets_are_retried_then_reported(tmp_path):
    with emulated_robot("koch", tmp_path) as rig, rig.robot as robot:
        rig.set_positions("main_leader", [10.0, 0, 0, 0, 0, 35.0])
        rig.emulators["main_leader"].inject_fault("corrupt", motor_id=1, count=3)
        robot.teleop_step()
        assert rig.positions("main_follower")[0] == pytest.approx(10.0, abs=0.1)
        robot.follower_arms["main"].num_retries = 2
        rig.emulators["main_follower"].inject_fault("corrupt", motor_id=6, count=1000)
        with pytest.raises(
            MotorCommunicationError, match="koch main follower arm .*'gripper'.*Incorrect status"
        ):
            robot.capture_observation()


def test_missing_motor_at_connect(tmp_path):
    with emulated_robot("so100", tmp_path) as rig:
        rig.emulators["main_follower"].remove_motor(4)
        buses = [*rig.robot.follower_arms.values(), *rig.robot.leader_arms.values()]
        for bus in buses:
            bus.num_retries = 1  # fail fast
        with pytest.raises(MotorNotRespondingError, match=r"so100 main follower arm .*'wrist_flex' \(ID 4"):
            rig.robot.connect()
        assert not rig.robot.is_connected
        assert not any(bus.is_connected for bus in rig.robot.follower_arms.values())
        rig.emulators["main_follower"].add_motor(4, "sts3215")
        for bus in buses:
            bus.num_retries = bus.spec.num_retries
        rig.robot.connect()  # plugged back in: works without rebuilding the robot
        assert rig.robot.is_connected


def test_wrong_motor_model_at_connect(tmp_path):
    with emulated_robot("koch", tmp_path) as rig:
        # An xl330-m288 where the follower's shoulder_pan should be an xl430-w250.
        rig.emulators["main_follower"].remove_motor(1)
        rig.emulators["main_follower"].add_motor(1, "xl330-m288")
        with pytest.raises(
            MotorModelMismatchError,
            match=r"koch main follower arm .*'shoulder_pan' at ID 1 is configured as xl430-w250.*1200 \(xl330-m288\)",
        ):
            rig.robot.connect()
        assert not any(bus.is_connected for bus in rig.robot.follower_arms.values())


# --------------------------------------------------------------------------------------------- cameras
def _write_video(path: Path, width: int, height: int, n_frames: int, fps: int) -> None:
    cv2 = pytest.importorskip("cv2")
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    assert writer.isOpened(), "OpenCV cannot write the test video"
    for i in range(n_frames):
        frame = np.full((height, width, 3), (i * 40) % 256, dtype=np.uint8)
        writer.write(frame)
    writer.release()


def test_video_file_camera_in_observations(tmp_path):
    pytest.importorskip("lerobot.common.robot_devices.cameras.utils")
    video = tmp_path / "laptop.avi"
    _write_video(video, width=64, height=48, n_frames=30, fps=30)
    camera = {"type": "opencv", "camera_index": str(video), "fps": 30, "width": 64, "height": 48}
    with emulated_robot("so100", tmp_path, cameras={"laptop": camera}) as rig:
        robot = rig.robot
        assert robot.features["observation.images.laptop"] == {
            "dtype": "video",
            "shape": [48, 64, 3],
            "names": ["height", "width", "channels"],
        }
        with robot:
            observation, _ = robot.teleop_step(record_data=True)
            image = observation["observation.images.laptop"]
            assert image.dtype == torch.uint8 and image.shape == (48, 64, 3)
            assert "read_camera_laptop" in robot.logs
            assert robot.capture_observation()["observation.images.laptop"].shape == (48, 64, 3)
        assert not robot.cameras["laptop"].is_connected
