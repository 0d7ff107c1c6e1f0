"""The emulator against the SDKs' own packet code (over a pty): checksums, byte stuffing, status errors,
baud rates, faults."""

import random

import pytest

from lerobot.common.robot_devices.motors.emulator import (
    DynamixelBusEmulator,
    FeetechBusEmulator,
    crc16_dynamixel,
    emulated_serial_ports,
)

dxl = pytest.importorskip("dynamixel_sdk")
scs = pytest.importorskip("scservo_sdk")

PORT = "/dev/ttyEMULATED1"


def _open(sdk, handler, baudrate=1_000_000):
    port = sdk.PortHandler(PORT)
    assert port.setBaudRate(baudrate)  # the SDK's PortHandler builds serial.Serial(...): the emulator here
    return port, handler


def test_crc_matches_the_sdk():
    sdk_crc = dxl.Protocol2PacketHandler().updateCRC
    rng = random.Random(0)
    for n in (1, 7, 64, 300):
        data = [rng.randrange(256) for _ in range(n)]
        assert crc16_dynamixel(data) == sdk_crc(0, data, n)


def test_dynamixel_status_stuffing_and_errors():
    emulator = DynamixelBusEmulator({1: "xm430-w350"})
    with emulated_serial_ports({PORT: emulator}):
        port, ph = _open(dxl, dxl.PacketHandler(2.0))
        assert ph.ping(port, 1)[:2] == (1020, dxl.COMM_SUCCESS)
        emulator.set_register(1, "Present_Position", -131_073)  # FF FF FD FF: must be stuffed on the wire
        conn = port.ser
        value, comm, error = ph.read4ByteTxRx(port, 1, 132)
        assert (comm, error) == (dxl.COMM_SUCCESS, 0)
        assert value == (-131_073) & 0xFFFFFFFF
        # EEPROM (Operating_Mode) is refused with torque on: the status carries the access error (7).
        assert ph.write1ByteTxRx(port, 1, 64, 1) == (dxl.COMM_SUCCESS, 0)
        assert ph.write1ByteTxRx(port, 1, 11, 4) == (dxl.COMM_SUCCESS, 7)
        assert emulator.get_register(1, "Operating_Mode") == 3
        # An unknown instruction gets an instruction error.
        assert ph.reboot(port, 1) == (dxl.COMM_SUCCESS, 2)
        # A packet with a wrong CRC is dropped by the motor: no answer.
        conn.reset_input_buffer()
        conn.write(bytes([0xFF, 0xFF, 0xFD, 0x00, 1, 3, 0, 1, 0x00, 0x00]))
        assert conn.in_waiting == 0


def test_dynamixel_stuffed_status_on_the_wire():
    emulator = DynamixelBusEmulator({1: "xm430-w350"})
    packet = emulator._status_packet(1, 0, bytes([0xFF, 0xFF, 0xFD, 0xFF]))
    assert b"\xff\xff\xfd\xfd\xff" in packet
    assert int.from_bytes(packet[5:7], "little") == len(packet) - 7


def test_feetech_checksum_and_model_read():
    emulator = FeetechBusEmulator({7: "sts3215"})
    with emulated_serial_ports({PORT: emulator}):
        port, ph = _open(scs, scs.PacketHandler(0))
        assert ph.ping(port, 7)[:2] == (777, scs.COMM_SUCCESS)
        emulator.inject_fault("corrupt", motor_id=7)
        assert ph.read2ByteTxRx(port, 7, 56)[1] == scs.COMM_RX_CORRUPT
        port.ser.reset_input_buffer()
        assert ph.read2ByteTxRx(port, 7, 56)[:2] == (2048, scs.COMM_SUCCESS)
        emulator.inject_fault("timeout", motor_id=7)
        assert ph.read2ByteTxRx(port, 7, 56)[1] == scs.COMM_RX_TIMEOUT


def test_motors_answer_only_at_their_baud_rate():
    emulator = FeetechBusEmulator({1: "sts3215"}, baudrate=115_200)
    with emulated_serial_ports({PORT: emulator}):
        port, ph = _open(scs, scs.PacketHandler(0))
        assert ph.ping(port, 1)[1] == scs.COMM_RX_TIMEOUT
        assert port.setBaudRate(115_200)
        assert ph.ping(port, 1)[:2] == (777, scs.COMM_SUCCESS)
        # A new baud rate takes effect after the motor acknowledged the write (at the old rate).
        assert ph.write1ByteTxRx(port, 1, 6, 0) == (scs.COMM_SUCCESS, 0)
        assert ph.ping(port, 1)[1] == scs.COMM_RX_TIMEOUT
        assert port.setBaudRate(1_000_000)
        assert ph.ping(port, 1)[:2] == (777, scs.COMM_SUCCESS)


def test_emulator_input_checks():
    emulator = DynamixelBusEmulator({1: "xl330-m077"})
    with pytest.raises(ValueError, match="Unknown fault"):
        emulator.inject_fault("garbage")
    with pytest.raises(KeyError):
        emulator.motor(2)
    with pytest.raises(ValueError, match="does not fit"):
        emulator.set_register(1, "ID", 300)
    with pytest.raises(ValueError, match="Unknown dynamixel model 'sts3215'"):
        emulator.add_motor(2, "sts3215")
    with pytest.raises(ValueError, match="not 128000"):
        emulator.add_motor(2, "xl330-m077", baudrate=128_000)
    with pytest.raises(ValueError, match="count must be at least 1"):
        emulator.inject_fault("timeout", count=0)


def test_port_name_redirect_accepts_positional_arguments_and_other_ports():
    import serial

    emulator = FeetechBusEmulator({1: "sts3215"})
    with emulated_serial_ports({PORT: emulator}):
        with serial.Serial(PORT, 1_000_000, timeout=0) as conn:  # positional, as pyserial allows
            assert conn.port.startswith("/dev/") and conn.baudrate == 1_000_000
            conn.write(bytes([0xFF, 0xFF, 1, 2, 1, 0xFB]))  # ping ID 1
            assert conn.read(6) == bytes([0xFF, 0xFF, 1, 2, 0, 0xFC])
        with pytest.raises(serial.SerialException, match="ttyNOT_EMULATED"):
            serial.Serial("/dev/ttyNOT_EMULATED", 1_000_000)


def test_tx_fail_and_clear_faults_over_the_pty():
    emulator = FeetechBusEmulator({7: "sts3215"})
    with emulated_serial_ports({PORT: emulator}):
        port, ph = _open(scs, scs.PacketHandler(0))
        emulator.inject_fault("tx_fail", count=2)
        assert ph.ping(port, 7)[1] == scs.COMM_TX_FAIL
        emulator.clear_faults()
        assert ph.ping(port, 7)[:2] == (777, scs.COMM_SUCCESS)
        assert emulator.instructions.count((0x01, 7)) == 1  # the failed write never reached the motor
