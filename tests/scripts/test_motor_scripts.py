"""configure_motor.py (against emulated buses) and find_motors_bus_port.py (with an injected port listing)."""

from __future__ import annotations

import platform

import pytest

from lerobot.common.robot_devices.motors.emulator import (
    DynamixelBusEmulator,
    FeetechBusEmulator,
    emulated_serial_ports,
)
from lerobot.scripts import configure_motor, find_motors_bus_port

PORT = "/dev/ttyEMULATED_setup"
# A factory-new motor of each brand: ID 1, at a baud rate other than the 1 Mbps the arms use.
NEW_MOTOR = {
    "dynamixel": (DynamixelBusEmulator, "dynamixel_sdk", "xl330-m077", 57_600),
    "feetech": (FeetechBusEmulator, "scservo_sdk", "sts3215", 500_000),
}


def _emulator(brand: str):
    emulator_cls, sdk, model, baudrate = NEW_MOTOR[brand]
    pytest.importorskip(sdk)
    emulator = emulator_cls()
    emulator.add_motor(1, model, baudrate=baudrate, position=300)
    return emulator, model


@pytest.mark.parametrize("brand", list(NEW_MOTOR))
def test_configure_motor_cli(brand, capsys):
    emulator, model = _emulator(brand)
    if brand == "feetech":
        emulator.set_register(1, "Offset", 25)
        emulator.set_register(1, "Maximum_Acceleration", 10)
    argv = ["--port", PORT, "--brand", brand, "--model", model, "--ID", "4", "--scan-ids", "0-3"]
    with emulated_serial_ports({PORT: emulator}):
        assert configure_motor.main(argv) == 0
    assert "ID 1 -> 4" in capsys.readouterr().out
    assert emulator.get_register(4, "ID") == 4
    assert emulator.spec.baudrate_table[emulator.get_register(4, "Baud_Rate")] == 1_000_000
    assert emulator.get_register(4, "Torque_Enable") == 0
    if brand == "feetech":
        assert emulator.get_register(4, "Offset") == 0
        assert emulator.get_register(4, "Maximum_Acceleration") == 254
        assert emulator.get_register(4, "Lock") == 1
        assert emulator.get_register(4, "Present_Position") == 2048  # centred for assembly
    else:
        assert emulator.get_register(4, "Present_Position") == 300  # Dynamixel motors are not moved


def test_configure_motor_refuses_several_motors(capsys):
    emulator, model = _emulator("feetech")
    emulator.add_motor(2, model)
    argv = ["--port", PORT, "--brand", "feetech", "--model", model, "--ID", "4", "--scan-ids", "1,2"]
    with emulated_serial_ports({PORT: emulator}):
        assert configure_motor.main(argv) == 1
    assert "several motors" in capsys.readouterr().err
    assert emulator.get_register(1, "ID") == 1 and emulator.get_register(2, "ID") == 2  # nothing written


def test_configure_motor_no_motor_and_bad_arguments(capsys):
    emulator, model = _emulator("dynamixel")
    emulator.remove_motor(1)
    argv = ["--port", PORT, "--brand", "dynamixel", "--model", model, "--ID", "4", "--scan-ids", "1"]
    with emulated_serial_ports({PORT: emulator}):
        assert configure_motor.main(argv) == 1
    assert "No dynamixel motor answered" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        configure_motor.main(["--port", PORT, "--brand", "dynamixel", "--model", "sts3215", "--ID", "1"])
    assert "not a dynamixel model" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        configure_motor.main(["--port", PORT, "--brand", "feetech", "--model", "sts3215", "--ID", "300"])
    assert "--ID must be between 0 and 252" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        configure_motor.main(
            ["--port", PORT, "--brand", "feetech", "--model", "sts3215", "--ID", "1", "--scan-ids", "x"]
        )
    assert "IDs must look like" in capsys.readouterr().err
    argv = ["--port", "/dev/does-not-exist-42", "--brand", "feetech", "--model", "sts3215", "--ID", "1"]
    assert configure_motor.main(argv) == 1
    assert "find_motors_bus_port.py" in capsys.readouterr().err
    assert configure_motor.parse_ids("1-3,7") == [1, 2, 3, 7]


def _lister(*listings):
    calls = iter(listings)
    last = []

    def list_ports():
        nonlocal last
        last = next(calls, last)
        return last

    return list_ports


def test_find_port_reports_the_unplugged_port():
    prompts, out = [], []
    port = find_motors_bus_port.find_port(
        _lister(["/dev/ttyACM0", "/dev/ttyACM1", "/dev/ttyS0"], ["/dev/ttyACM0", "/dev/ttyS0"]),
        prompt=prompts.append,
        output=out.append,
    )
    assert port == "/dev/ttyACM1"
    assert "Remove the USB cable" in prompts[0]
    assert "The port of this motor bus is '/dev/ttyACM1'" in out


def test_find_port_waits_for_the_port_to_disappear():
    # The device file goes away only at the third listing after Enter.
    lister = _lister(["/dev/ttyACM0"], ["/dev/ttyACM0"], ["/dev/ttyACM0"], [])
    assert (
        find_motors_bus_port.find_port(lister, prompt=lambda _: None, output=lambda _: None) == "/dev/ttyACM0"
    )


@pytest.mark.parametrize(
    ("after", "message"),
    [(["/dev/ttyACM0", "/dev/ttyACM1"], "no port disappeared"), ([], "several ports disappeared")],
)
def test_find_port_failures(after, message):
    with pytest.raises(OSError, match=message):
        find_motors_bus_port.find_port(
            _lister(["/dev/ttyACM0", "/dev/ttyACM1"], after),
            prompt=lambda _: None,
            settle_timeout_s=0.0,
            output=lambda _: None,
        )


@pytest.mark.skipif(platform.system() == "Windows", reason="Windows lists COM ports")
def test_find_available_ports_lists_ttys():
    ports = find_motors_bus_port.find_available_ports()
    assert ports == sorted(ports) and all(p.startswith("/dev/tty") for p in ports)
