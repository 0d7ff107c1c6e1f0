"""Connect, read and write registers of a mixed bus, and the errors users hit first."""

import numpy as np
import pytest

from lerobot.common.robot_devices.motors.emulator import INST_PING, INST_SYNC_READ, INST_SYNC_WRITE
from lerobot.common.robot_devices.motors.utils import (
    MotorModelMismatchError,
    MotorNotRespondingError,
    MotorsBusPortError,
    RobotDeviceAlreadyConnectedError,
    RobotDeviceNotConnectedError,
    UnknownRegisterError,
)
from tests.robot_devices.conftest import BRANDS, make_rig

# Changing these would cut the bus off from the motors (tested in test_motor_configure.py); the model number
# is the motor's identity.
_SKIP_WRITE = {"ID", "Baud_Rate", "Model_Number", "Model", "Torque_Enable"}


def _common_registers(bus) -> list[str]:
    tables = [bus.model_ctrl_table[model] for model in bus.motor_models]
    return [
        name
        for name in tables[0]
        if all(name in table and table[name] == tables[0][name] for table in tables)
    ]


def test_connect_disconnect_and_properties(rig):
    bus = rig.make_bus()
    assert bus.motor_names == list(rig.motors)
    assert bus.motor_indices == [1, 2, 3, 4, 5, 6]
    assert bus.motor_models == [model for _, model in rig.motors.values()]
    with pytest.raises(RobotDeviceNotConnectedError, match="connect"):
        bus.read("Present_Position")
    with pytest.raises(RobotDeviceNotConnectedError):
        bus.write("Goal_Position", 0)
    bus.connect()
    assert bus.is_connected
    with pytest.raises(RobotDeviceAlreadyConnectedError):
        bus.connect()
    # connect() pinged every motor once.
    assert [i for inst, i in rig.emulator.instructions if inst == INST_PING] == bus.motor_indices
    bus.disconnect()
    assert not bus.is_connected
    with pytest.raises(RobotDeviceNotConnectedError):
        bus.disconnect()
    bus.connect()  # again, after a disconnect
    bus.reconnect()
    np.testing.assert_array_equal(bus.read("ID"), bus.motor_indices)


def test_read_every_register_matches_motor_memory(rig):
    bus = rig.connected_bus()
    for i, (_, (motor_id, _)) in enumerate(rig.motors.items()):
        rig.emulator.set_position(motor_id, 1000 + 100 * i)
    registers = _common_registers(bus)
    assert "Present_Position" in registers and "Goal_Position" in registers
    for name in registers:
        expected = [rig.emulator.get_register(motor_id, name) for motor_id in bus.motor_indices]
        np.testing.assert_array_equal(bus.read(name), expected, err_msg=name)


def test_write_every_register_then_read_back(rig):
    bus = rig.connected_bus()
    for name in _common_registers(bus):
        if name in _SKIP_WRITE:
            continue
        _, size = bus.model_ctrl_table[bus.motor_models[0]][name]
        low, high = bus.spec.value_range(name, size)
        if name in ("Goal_Position", "Present_Position"):
            low, high = 0, 4095
        # Distinct per motor, at both ends of the range (negative ones for signed registers).
        values = np.array([low, high, low + 1, high - 1, (low + high) // 2, max(low, 0) + 7], dtype=np.int64)
        bus.write(name, values)
        np.testing.assert_array_equal(bus.read(name), values, err_msg=name)
        stored = [rig.emulator.get_register(motor_id, name) for motor_id in bus.motor_indices]
        np.testing.assert_array_equal(stored, values, err_msg=name)


def test_read_and_write_by_motor_name(rig):
    bus = rig.connected_bus()
    rig.emulator.set_position(6, 1234)
    rig.emulator.set_position(2, 321)
    assert bus.read("Present_Position", "gripper").tolist() == [1234]
    assert bus.read("Present_Position", ["gripper", "shoulder_lift"]).tolist() == [1234, 321]
    bus.write("Torque_Enable", 1, "gripper")
    assert [rig.emulator.get_register(i, "Torque_Enable") for i in bus.motor_indices] == [0, 0, 0, 0, 0, 1]
    bus.write("Goal_Position", 3000, "gripper")  # torque on: the emulated servo goes there
    assert bus.read("Present_Position", "gripper").tolist() == [3000]
    with pytest.raises(ValueError, match="Unknown motor"):
        bus.read("Present_Position", "elbow")
    with pytest.raises(ValueError, match="3 values for 2 motors"):
        bus.write("Goal_Position", [1, 2, 3], ["gripper", "wrist_roll"])


def test_one_packet_per_group_read_and_write(rig):
    bus = rig.connected_bus()
    rig.emulator.instructions.clear()
    bus.read("Present_Position")
    bus.write("Goal_Position", [100, 200, 300, 400, 500, 600])
    bus.read("Present_Position", ["gripper", "wrist_roll"])
    assert [inst for inst, _ in rig.emulator.instructions] == [
        INST_SYNC_READ,
        INST_SYNC_WRITE,
        INST_SYNC_READ,
    ]
    assert [rig.emulator.get_register(i, "Goal_Position") for i in bus.motor_indices] == [
        100,
        200,
        300,
        400,
        500,
        600,
    ]
    assert {"delta_timestamp_s_read_Present_Position", "timestamp_utc_write_Goal_Position"} <= set(bus.logs)


def test_unknown_register_names_the_model(rig):
    bus = rig.connected_bus()
    foreign = "Lock" if rig.brand == "dynamixel" else "Operating_Mode"
    with pytest.raises(UnknownRegisterError, match=f"'{foreign}'.*model {bus.motor_models[0]}"):
        bus.read(foreign)
    with pytest.raises(UnknownRegisterError):
        bus.write(foreign, 0)


def test_register_missing_on_one_model_of_a_mixed_bus():
    with make_rig("dynamixel") as rig:
        bus = rig.connected_bus()
        # The XL430 (shoulder_pan) has no current sensor: Goal_Current exists on the other five only.
        with pytest.raises(UnknownRegisterError, match="'Goal_Current'.*xl430-w250.*'shoulder_pan'"):
            bus.read("Goal_Current")
        others = bus.motor_names[1:]
        bus.write("Goal_Current", [-5, 10, 20, 30, 40], others)
        assert bus.read("Goal_Current", others).tolist() == [-5, 10, 20, 30, 40]
        assert bus.read("Present_Load", "shoulder_pan").tolist() == [0]


def test_register_at_different_addresses_cannot_be_grouped():
    with make_rig("feetech", {"a": (1, "sts3215"), "b": (2, "sts3215")}) as rig:
        table = dict(rig.emulator.spec.control_tables["sts3215"]) | {"Present_Position": (58, 2)}
        bus = rig.make_bus(
            {"a": (1, "sts3215"), "b": (2, "custom")}, extra_model_control_table={"custom": table}
        )
        bus.connect(check_motors=False)
        with pytest.raises(ValueError, match="different"):
            bus.read("Present_Position")


def test_missing_port_is_named_with_a_hint(rig):
    bus = rig.make_bus(port="/dev/ttyDOES_NOT_EXIST")  # not emulated: pyserial really tries to open it
    with pytest.raises(MotorsBusPortError, match=r"/dev/ttyDOES_NOT_EXIST.*find_motors_bus_port\.py"):
        bus.connect()
    assert not bus.is_connected


def test_motor_not_responding_is_named(rig):
    rig.emulator.remove_motor(6)
    bus = rig.make_bus()
    model = rig.motors["gripper"][1]
    with pytest.raises(
        MotorNotRespondingError, match=f"'gripper' \\(ID 6, model {model}\\).*configure_motor"
    ):
        bus.connect()
    assert not bus.is_connected


def test_wrong_model_number_at_an_id(rig):
    rig.emulator.set_register(3, rig.model_register, 1234)
    bus = rig.make_bus()
    with pytest.raises(MotorModelMismatchError, match="'elbow_flex' at ID 3.*reports model number 1234"):
        bus.connect()
    assert not bus.is_connected


def test_dynamixel_model_swap_names_the_model_found():
    motors = {"shoulder_pan": (1, "xl430-w250"), "gripper": (2, "xl330-m288")}
    with make_rig("dynamixel", motors) as rig:
        rig.emulator.remove_motor(1)
        rig.emulator.add_motor(1, "xl330-m077")
        with pytest.raises(MotorModelMismatchError, match="xl430-w250 .*1060.*1190 \\(xl330-m077\\)"):
            rig.make_bus().connect()


def test_constructor_and_value_checks(rig):
    model = rig.motors["gripper"][1]
    with pytest.raises(ValueError, match="unknown .* model 'xl999'"):
        rig.make_bus({"gripper": (1, "xl999")})
    with pytest.raises(ValueError, match="share an ID"):
        rig.make_bus({"a": (1, model), "b": (1, model)})
    # A YAML/Hydra config gives lists, not tuples.
    bus = rig.make_bus({"gripper": [6, model]})
    bus.connect()
    assert bus.motors == {"gripper": (6, model)}
    with pytest.raises(ValueError, match="'gripper'.*does not fit register 'Torque_Enable'"):
        bus.write("Torque_Enable", 256)
    with pytest.raises(ValueError, match="takes integers"):
        bus.write("Torque_Enable", 0.5)
    with pytest.raises(ValueError, match="baud"):
        bus.set_bus_baudrate(12345)


@pytest.mark.parametrize("brand", list(BRANDS))
def test_find_motor_indices(brand):
    with make_rig(brand) as rig:
        bus = rig.make_bus()
        bus.connect(check_motors=False)
        assert bus.find_motor_indices(range(0, 9), num_retry=0) == [1, 2, 3, 4, 5, 6]
        assert bus.ping(4) == bus.model_number[rig.motors["wrist_flex"][1]]
        assert bus.ping(9, num_retry=0) is None
