"""Setting the ID and baud rate of a single new motor, as `configure_motor.py` does."""

import pytest

from lerobot.common.robot_devices.motors.utils import MotorNotRespondingError, configure_single_motor
from tests.robot_devices.conftest import BRANDS, make_rig

# A factory-new motor: ID 1 at a baud rate other than the bus's 1 Mbps.
FACTORY = {"dynamixel": ("xl330-m288", 57_600), "feetech": ("sts3215", 500_000)}


@pytest.mark.parametrize("brand", list(BRANDS))
def test_configure_new_motor_then_use_it(brand):
    model, factory_baud = FACTORY[brand]
    with make_rig(brand, {}) as rig:
        rig.emulator.add_motor(1, model, baudrate=factory_baud)
        rig.emulator.set_register(1, "Torque_Enable", 1)  # left on: EEPROM writes need it off first
        bus = rig.make_bus({"gripper": (6, model)})
        with pytest.raises(Exception, match="No answer from motor"):
            bus.connect()  # not configured yet
        bus.connect(check_motors=False)
        result = configure_single_motor(
            bus, target_id=6, target_baudrate=1_000_000, model=model, scan_ids=[1, 2]
        )
        assert result == {"previous_id": 1, "previous_baudrate": factory_baud, "id": 6, "baudrate": 1_000_000}
        assert rig.emulator.get_register(6, "ID") == 6
        assert rig.emulator.spec.baudrate_table[rig.emulator.get_register(6, "Baud_Rate")] == 1_000_000
        if brand == "feetech":
            assert rig.emulator.get_register(6, "Lock") == 1  # locked again after the EEPROM writes
        bus.disconnect()
        # The configured motor now works on a normal bus.
        bus = rig.connected_bus(motors={"gripper": (6, model)})
        assert bus.read("ID").tolist() == [6]


@pytest.mark.parametrize("brand", list(BRANDS))
def test_configure_refuses_zero_or_several_motors(brand):
    model, factory_baud = FACTORY[brand]
    with make_rig(brand, {}) as rig:
        bus = rig.make_bus({"gripper": (6, model)})
        bus.connect(check_motors=False)
        with pytest.raises(MotorNotRespondingError, match="No .* motor answered"):
            configure_single_motor(bus, 6, 1_000_000, model, scan_ids=[1], scan_baudrates=[1_000_000])
        rig.emulator.add_motor(1, model, baudrate=factory_baud)
        rig.emulator.add_motor(2, model)
        with pytest.raises(RuntimeError, match="several motors"):
            configure_single_motor(
                bus, 6, 1_000_000, model, scan_ids=[1, 2], scan_baudrates=[factory_baud, 1_000_000]
            )
        assert rig.emulator.get_register(1, "ID") == 1  # nothing was written
        with pytest.raises(ValueError, match="baud rates"):
            configure_single_motor(bus, 6, 1234, model)


def test_set_bus_baudrate_reaches_motors_at_that_rate():
    with make_rig("dynamixel", {}) as rig:
        rig.emulator.add_motor(3, "xm430-w350", baudrate=2_000_000)
        bus = rig.make_bus({"elbow": (3, "xm430-w350")})
        bus.connect(check_motors=False)
        assert bus.find_motor_indices([3], num_retry=0) == []  # wrong rate: the motor hears noise
        bus.set_bus_baudrate(2_000_000)
        assert bus.find_motor_indices([3], num_retry=0) == [3]
        assert bus.read("Baud_Rate").tolist() == [4]
    with make_rig("dynamixel", {"elbow": (3, "xm430-w350")}) as rig:
        # A bus configured for another rate opens the port at it.
        rig.emulator.set_register(3, "Baud_Rate", 4)
        bus = rig.connected_bus(baudrate=2_000_000)
        assert bus.port_handler.getBaudRate() == 2_000_000
