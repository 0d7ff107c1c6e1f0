"""Emulated motor buses: a stand-in for the serial port that speaks the servos' protocols.

Used to test (and demo) the buses without hardware through the real SDK code: the SDK's `PortHandler`
builds a `serial.Serial`; inside `emulated_serial_ports(...)` that call returns an `EmulatedSerial` for the
emulated port names, and the rest of the stack (packets, checksums, sync read/write) is unchanged.

- `DynamixelBusEmulator`: protocol 2.0 packets (header FF FF FD 00, byte stuffing, CRC-16).
- `FeetechBusEmulator`: SCS protocol packets (header FF FF, one-byte inverted-sum checksum).

Each emulated motor holds its register memory (model number, ID, baud rate, torque, goal/present position,
...), answers only at its own baud rate, and applies ID/baud changes after answering. Faults can be queued:
a motor that stays silent (timeout), a status packet with a wrong checksum, a short transmission.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from lerobot.common.robot_devices.motors.tables import (
    DYNAMIXEL_EEPROM_END,
    DYNAMIXEL_SPEC,
    FEETECH_SPEC,
    MODEL_RESOLUTION,
    BrandSpec,
)

INST_PING, INST_READ, INST_WRITE, INST_SYNC_READ, INST_SYNC_WRITE = 0x01, 0x02, 0x03, 0x82, 0x83
BROADCAST_ID = 0xFE
DXL_STATUS = 0x55
DXL_ERR_INSTRUCTION, DXL_ERR_ACCESS = 2, 7
FAULT_KINDS = ("timeout", "corrupt", "tx_fail")


def crc16_dynamixel(data: bytes | Sequence[int]) -> int:
    """CRC-16 of protocol 2.0 (polynomial 0x8005, initial value 0, no reflection), bit by bit."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


@dataclass
class EmulatedMotor:
    model: str
    memory: bytearray


@dataclass
class _Fault:
    kind: str
    motor_id: int | None
    remaining: int


class EmulatedSerial:
    """What `serial.Serial(port, baudrate, ...)` returns for an emulated port: a non-blocking byte pipe."""

    def __init__(self, bus: MotorBusEmulator, port: str, baudrate: int):
        self._bus = bus
        self.port = port
        self.baudrate = baudrate
        self.timeout = 0
        self.is_open = True
        self._rx = bytearray()

    @property
    def in_waiting(self) -> int:
        return len(self._rx)

    def read(self, size: int = 1) -> bytes:
        self._check_open()
        data = bytes(self._rx[:size])
        del self._rx[:size]
        return data

    def write(self, data: bytes | Sequence[int]) -> int:
        self._check_open()
        return self._bus._receive(self, bytes(data))

    def reset_input_buffer(self) -> None:
        self._rx.clear()

    def reset_output_buffer(self) -> None:
        pass  # writes are delivered at once: nothing is ever pending

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.is_open = False

    def _check_open(self) -> None:
        if not self.is_open:
            raise OSError(f"Emulated port {self.port} is closed.")


class MotorBusEmulator:
    """The motors on one emulated bus. Subclasses implement the packet framing of their protocol."""

    spec: BrandSpec
    param_width = 1  # bytes per address / length field in READ and SYNC packets

    def __init__(self, motors: dict[int, str] | None = None, baudrate: int | None = None):
        self.motors: list[EmulatedMotor] = []
        self.instructions: list[tuple[int, int]] = []  # (instruction, packet ID) of every packet received
        self._faults: list[_Fault] = []
        self._inbox = bytearray()
        for motor_id, model in (motors or {}).items():
            self.add_motor(motor_id, model, baudrate=baudrate)

    # --- the physical side (what a test, or a hand moving the arm, does) -------------------------------
    def add_motor(self, motor_id: int, model: str, baudrate: int | None = None, position: int = 2048) -> None:
        table = self.spec.control_tables[model]
        motor = EmulatedMotor(model=model, memory=bytearray(256))
        rate = self.spec.default_baudrate if baudrate is None else baudrate
        baud_index = next(i for i, r in self.spec.baudrate_table.items() if r == rate)
        address, size = self.spec.model_number_register
        motor.memory[address : address + size] = self.spec.model_numbers[model].to_bytes(size, "little")
        for name, value in {**self._defaults(), "ID": motor_id, "Baud_Rate": baud_index}.items():
            self._poke(motor, table[name], name, value)
        if self.spec.single_turn_positions:
            position %= MODEL_RESOLUTION[model]
        self._poke(motor, table["Present_Position"], "Present_Position", position)
        self._poke(motor, table["Goal_Position"], "Goal_Position", position)
        self.motors.append(motor)

    def remove_motor(self, motor_id: int) -> None:
        self.motors.remove(self.motor(motor_id))

    def motor(self, motor_id: int) -> EmulatedMotor:
        found = [m for m in self.motors if self._id(m) == motor_id]
        if len(found) != 1:
            raise KeyError(f"{len(found)} emulated motors have ID {motor_id}.")
        return found[0]

    def get_register(self, motor_id: int, name: str) -> int:
        motor = self.motor(motor_id)
        address, size = self.spec.control_tables[motor.model][name]
        return self.spec.decode(name, int.from_bytes(motor.memory[address : address + size], "little"), size)

    def set_register(self, motor_id: int, name: str, value: int) -> None:
        """Set a register directly (bypasses the protocol and the motor's write rules)."""
        motor = self.motor(motor_id)
        self._poke(motor, self.spec.control_tables[motor.model][name], name, value)

    def set_position(self, motor_id: int, steps: int) -> None:
        """Move the joint (by hand): single-turn encoders report it modulo one turn."""
        if self.spec.single_turn_positions:
            steps %= MODEL_RESOLUTION[self.motor(motor_id).model]
        self.set_register(motor_id, "Present_Position", steps)

    def inject_fault(self, kind: str, motor_id: int | None = None, count: int = 1) -> None:
        """Queue `count` faults: "timeout" (the motor does not answer), "corrupt" (its status packet gets a
        wrong checksum), or "tx_fail" (the port accepts one byte less than the packet). `motor_id=None`:
        whichever motor answers next."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"Unknown fault {kind!r}; use one of {FAULT_KINDS}.")
        self._faults.append(_Fault(kind, motor_id, count))

    def open(self, port: str, baudrate: int) -> EmulatedSerial:
        self._inbox.clear()
        return EmulatedSerial(self, port, baudrate)

    # --- the protocol side ------------------------------------------------------------------------------
    def _defaults(self) -> dict[str, int]:
        return {}

    def _id(self, motor: EmulatedMotor) -> int:
        address, _ = self.spec.control_tables[motor.model]["ID"]
        return motor.memory[address]

    def _baudrate(self, motor: EmulatedMotor) -> int:
        address, _ = self.spec.control_tables[motor.model]["Baud_Rate"]
        return self.spec.baudrate_table.get(motor.memory[address], -1)

    def _poke(self, motor: EmulatedMotor, register: tuple[int, int], name: str, value: int) -> None:
        address, size = register
        motor.memory[address : address + size] = self.spec.encode(name, value, size).to_bytes(size, "little")

    def _take_fault(self, kind: str, motor_id: int | None) -> bool:
        for fault in self._faults:
            if fault.kind == kind and fault.remaining > 0 and fault.motor_id in (None, motor_id):
                fault.remaining -= 1
                return True
        return False

    def _receive(self, conn: EmulatedSerial, data: bytes) -> int:
        if self._take_fault("tx_fail", None):
            return len(data) - 1  # the SDK sees a short write and reports a transmit failure
        self._inbox += data
        while (packet := self._next_packet()) is not None:
            motor_id, instruction, params = packet
            self.instructions.append((instruction, motor_id))
            self._execute(conn, motor_id, instruction, params)
        return len(data)

    def _execute(self, conn: EmulatedSerial, packet_id: int, instruction: int, params: bytes) -> None:
        # Motors only decode packets sent at their own baud rate.
        listening = [m for m in self.motors if self._baudrate(m) == conn.baudrate]
        w = self.param_width
        if instruction in (INST_SYNC_READ, INST_SYNC_WRITE):
            address = int.from_bytes(params[:w], "little")
            length = int.from_bytes(params[w : 2 * w], "little")
            body = params[2 * w :]
            if instruction == INST_SYNC_READ:
                for motor_id in body:  # motors answer one after the other, in the requested order
                    for motor in [m for m in listening if self._id(m) == motor_id]:
                        self._reply(conn, motor, 0, bytes(motor.memory[address : address + length]))
            else:
                for k in range(0, len(body) - length, length + 1):
                    for motor in [m for m in listening if self._id(m) == body[k]]:
                        self._write_memory(motor, address, body[k + 1 : k + 1 + length])
            return
        targets = [m for m in listening if packet_id in (self._id(m), BROADCAST_ID)]
        for motor in targets:
            answer = packet_id != BROADCAST_ID or instruction == INST_PING
            if instruction == INST_PING:
                self._reply(conn, motor, 0, self._ping_params(motor))
            elif instruction == INST_READ:
                address = int.from_bytes(params[:w], "little")
                length = int.from_bytes(params[w : 2 * w], "little")
                self._reply(conn, motor, 0, bytes(motor.memory[address : address + length]))
            elif instruction == INST_WRITE:
                address = int.from_bytes(params[:w], "little")
                # The status goes out with the old ID, at the old rate, before a change takes effect.
                error = self._write_error(motor, address)
                if answer:
                    self._reply(conn, motor, error, b"")
                if error == 0:
                    self._write_memory(motor, address, params[w:])
            elif answer:
                self._reply(conn, motor, DXL_ERR_INSTRUCTION, b"")

    def _write_memory(self, motor: EmulatedMotor, address: int, data: bytes) -> None:
        """Store `data` at `address` if the motor's rules allow it (a sync write gets no status to refuse)."""
        if self._write_error(motor, address):
            return
        motor.memory[address : address + len(data)] = data
        table = self.spec.control_tables[motor.model]
        goal_address, goal_size = table["Goal_Position"]
        torque_address, _ = table["Torque_Enable"]
        if address <= goal_address < address + len(data) and motor.memory[torque_address]:
            # Torque on: the emulated servo reaches its goal at once.
            present_address, _ = table["Present_Position"]
            goal = motor.memory[goal_address : goal_address + goal_size]
            motor.memory[present_address : present_address + goal_size] = goal

    def _write_error(self, motor: EmulatedMotor, address: int) -> int:
        """Protocol error code a write at `address` gets (0: accepted)."""
        return 0

    def _reply(self, conn: EmulatedSerial, motor: EmulatedMotor, error: int, params: bytes) -> None:
        motor_id = self._id(motor)
        if self._take_fault("timeout", motor_id):
            return
        packet = bytearray(self._status_packet(motor_id, error, params))
        if self._take_fault("corrupt", motor_id):
            packet[-1] ^= 0xFF
        conn._rx += packet

    # Protocol specifics.
    def _next_packet(self) -> tuple[int, int, bytes] | None:
        raise NotImplementedError

    def _status_packet(self, motor_id: int, error: int, params: bytes) -> bytes:
        raise NotImplementedError

    def _ping_params(self, motor: EmulatedMotor) -> bytes:
        raise NotImplementedError


class DynamixelBusEmulator(MotorBusEmulator):
    """X-series motors speaking protocol 2.0."""

    spec = DYNAMIXEL_SPEC
    param_width = 2

    def _defaults(self) -> dict[str, int]:
        return {
            "Firmware_Version": 52,
            "Operating_Mode": 3,
            "Max_Position_Limit": 4095,
            "Position_P_Gain": 800,
        }

    def _ping_params(self, motor: EmulatedMotor) -> bytes:
        return bytes(motor.memory[0:2]) + bytes(motor.memory[6:7])  # model number, firmware version

    def _write_error(self, motor: EmulatedMotor, address: int) -> int:
        torque_address, _ = self.spec.control_tables[motor.model]["Torque_Enable"]
        return DXL_ERR_ACCESS if address < DYNAMIXEL_EEPROM_END and motor.memory[torque_address] else 0

    def _next_packet(self) -> tuple[int, int, bytes] | None:
        box = self._inbox
        start = box.find(b"\xff\xff\xfd\x00")
        if start < 0:
            del box[: max(0, len(box) - 3)]
            return None
        del box[:start]
        if len(box) < 7:
            return None
        length = int.from_bytes(box[5:7], "little")
        if len(box) < 7 + length:
            return None
        packet = bytes(box[: 7 + length])
        del box[: 7 + length]
        if crc16_dynamixel(packet[:-2]) != int.from_bytes(packet[-2:], "little"):
            return self._next_packet()  # a real motor drops a packet with a bad CRC
        body = packet[7:-2].replace(b"\xff\xff\xfd\xfd", b"\xff\xff\xfd")  # remove byte stuffing
        return packet[4], body[0], body[1:]

    def _status_packet(self, motor_id: int, error: int, params: bytes) -> bytes:
        # Byte stuffing: an FF FF FD inside the packet gets an extra FD so it is not taken for a header.
        body = (bytes([DXL_STATUS, error]) + params).replace(b"\xff\xff\xfd", b"\xff\xff\xfd\xfd")
        head = b"\xff\xff\xfd\x00" + bytes([motor_id]) + (len(body) + 2).to_bytes(2, "little")
        packet = head + body
        return packet + crc16_dynamixel(packet).to_bytes(2, "little")


class FeetechBusEmulator(MotorBusEmulator):
    """STS-series servos speaking the SCS protocol."""

    spec = FEETECH_SPEC
    param_width = 1

    def _defaults(self) -> dict[str, int]:
        return {"Max_Angle_Limit": 4095, "P_Coefficient": 32, "D_Coefficient": 32, "Lock": 1}

    def _ping_params(self, motor: EmulatedMotor) -> bytes:
        return b""  # the SDK reads the model number with a separate READ

    def _next_packet(self) -> tuple[int, int, bytes] | None:
        box = self._inbox
        start = box.find(b"\xff\xff")
        if start < 0:
            del box[: max(0, len(box) - 1)]
            return None
        del box[:start]
        if len(box) < 4:
            return None
        length = box[3]
        if len(box) < 4 + length:
            return None
        packet = bytes(box[: 4 + length])
        del box[: 4 + length]
        if (~sum(packet[2:-1])) & 0xFF != packet[-1]:
            return self._next_packet()
        return packet[2], packet[4], packet[5:-1]

    def _status_packet(self, motor_id: int, error: int, params: bytes) -> bytes:
        body = bytes([motor_id, len(params) + 2, error]) + params
        return b"\xff\xff" + body + bytes([(~sum(body)) & 0xFF])


@contextmanager
def emulated_serial_ports(buses: dict[str, MotorBusEmulator]) -> Iterator[dict[str, MotorBusEmulator]]:
    """Within this context, `serial.Serial(port=name, ...)` opens the emulator registered for `name`;
    other ports open for real (so a missing port fails as it would on hardware)."""
    import serial

    real_serial = serial.Serial

    def open_port(port: str | None = None, baudrate: int = 9600, **kwargs):
        if port in buses:
            return buses[port].open(port, baudrate)
        return real_serial(port=port, baudrate=baudrate, **kwargs)

    serial.Serial = open_port
    try:
        yield buses
    finally:
        serial.Serial = real_serial
