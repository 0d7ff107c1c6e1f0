"""Timeouts and corrupted packets: bounded retries, then an error naming the motor and the register."""

import numpy as np
import pytest

from lerobot.common.robot_devices.motors.emulator import INST_SYNC_READ, INST_SYNC_WRITE
from lerobot.common.robot_devices.motors.utils import MotorCommunicationError


def _count(emulator, instruction):
    return sum(inst == instruction for inst, _ in emulator.instructions)


def test_default_retry_counts(rig):
    assert rig.make_bus().num_retries == {"dynamixel": 10, "feetech": 20}[rig.brand]


@pytest.mark.parametrize("fault", ["timeout", "corrupt"])
def test_read_recovers_after_faults(rig, fault):
    bus = rig.connected_bus()
    rig.emulator.set_position(5, 777)
    rig.emulator.instructions.clear()
    rig.emulator.inject_fault(fault, motor_id=5, count=3)
    positions = bus.read("Present_Position")
    assert positions[4] == 777
    # Three failed sync reads, then the successful one; the SDK's own packets carry the retries.
    assert _count(rig.emulator, INST_SYNC_READ) == 4


def test_read_recovers_from_mixed_faults_on_several_motors(rig):
    bus = rig.connected_bus()
    rig.emulator.inject_fault("timeout", motor_id=1, count=2)
    rig.emulator.inject_fault("corrupt", motor_id=6, count=2)
    rig.emulator.inject_fault("corrupt", count=1)  # whichever motor answers next
    expected = [rig.emulator.get_register(i, "Present_Position") for i in bus.motor_indices]
    np.testing.assert_array_equal(bus.read("Present_Position"), expected)


@pytest.mark.parametrize(
    ("fault", "message"), [("timeout", "no status packet"), ("corrupt", "Incorrect status packet")]
)
def test_read_gives_up_after_bounded_retries(rig, fault, message):
    bus = rig.connected_bus(num_retries=4)
    rig.emulator.instructions.clear()
    rig.emulator.inject_fault(fault, motor_id=3, count=100)
    model = rig.motors["elbow_flex"][1]
    with pytest.raises(
        MotorCommunicationError,
        match=f"'Present_Position' from motor 'elbow_flex' \\(ID 3, model {model}\\).*5 times.*{message}",
    ) as info:
        bus.read("Present_Position")
    assert (info.value.motor_name, info.value.motor_id, info.value.data_name) == (
        "elbow_flex",
        3,
        "Present_Position",
    )
    assert _count(rig.emulator, INST_SYNC_READ) == 5
    # Once the line is clean again, the bus works without reconnecting.
    rig.emulator._faults.clear()
    assert bus.read("Present_Position").shape == (6,)


def test_default_retries_are_bounded(rig):
    bus = rig.connected_bus()
    rig.emulator.instructions.clear()
    rig.emulator.inject_fault("timeout", motor_id=6, count=1000)
    with pytest.raises(MotorCommunicationError, match="'gripper'"):
        bus.read("Torque_Enable")
    assert _count(rig.emulator, INST_SYNC_READ) == bus.num_retries + 1


def test_write_retries_failed_transmissions(rig):
    bus = rig.connected_bus(num_retries=2)
    rig.emulator.instructions.clear()
    rig.emulator.inject_fault("tx_fail", count=2)
    bus.write("Goal_Position", 1500)
    assert [rig.emulator.get_register(i, "Goal_Position") for i in bus.motor_indices] == [1500] * 6
    assert _count(rig.emulator, INST_SYNC_WRITE) == 1  # the two short writes never made a packet
    rig.emulator.inject_fault("tx_fail", count=3)
    with pytest.raises(MotorCommunicationError, match="Writing 'Goal_Position'.*3 times") as info:
        bus.write("Goal_Position", 1600)
    assert info.value.data_name == "Goal_Position"


def test_connect_retries_pings(rig):
    rig.emulator.inject_fault("timeout", motor_id=2, count=3)
    rig.emulator.inject_fault("corrupt", motor_id=4, count=2)
    bus = rig.connected_bus()
    assert bus.is_connected
