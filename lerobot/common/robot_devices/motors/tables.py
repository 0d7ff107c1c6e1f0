"""Control tables of the supported servos and the per-brand facts the bus and the emulator share.

A control table maps a register name to `(address, size in bytes)`. Names follow the vendors' manuals
(ROBOTIS X-series e-manual, Feetech STS/SCS memory table) so that they match what users read there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

Register = tuple[int, int]

# Registers holding joint positions: converted to int32, tracked across encoder turns and calibrated.
POSITION_REGISTERS = ("Present_Position", "Goal_Position")

# ---------------------------------------------------------------------------------------------------------
# Dynamixel X series, protocol 2.0
# ---------------------------------------------------------------------------------------------------------
X_SERIES_CONTROL_TABLE: dict[str, Register] = {
    "Model_Number": (0, 2),
    "Model_Information": (2, 4),
    "Firmware_Version": (6, 1),
    "ID": (7, 1),
    "Baud_Rate": (8, 1),
    "Return_Delay_Time": (9, 1),
    "Drive_Mode": (10, 1),
    "Operating_Mode": (11, 1),
    "Secondary_ID": (12, 1),
    "Protocol_Type": (13, 1),
    "Homing_Offset": (20, 4),
    "Moving_Threshold": (24, 4),
    "Temperature_Limit": (31, 1),
    "Max_Voltage_Limit": (32, 2),
    "Min_Voltage_Limit": (34, 2),
    "PWM_Limit": (36, 2),
    "Current_Limit": (38, 2),
    "Acceleration_Limit": (40, 4),
    "Velocity_Limit": (44, 4),
    "Max_Position_Limit": (48, 4),
    "Min_Position_Limit": (52, 4),
    "Shutdown": (63, 1),
    "Torque_Enable": (64, 1),
    "LED": (65, 1),
    "Status_Return_Level": (68, 1),
    "Registered_Instruction": (69, 1),
    "Hardware_Error_Status": (70, 1),
    "Velocity_I_Gain": (76, 2),
    "Velocity_P_Gain": (78, 2),
    "Position_D_Gain": (80, 2),
    "Position_I_Gain": (82, 2),
    "Position_P_Gain": (84, 2),
    "Feedforward_2nd_Gain": (88, 2),
    "Feedforward_1st_Gain": (90, 2),
    "Bus_Watchdog": (98, 1),
    "Goal_PWM": (100, 2),
    "Goal_Current": (102, 2),
    "Goal_Velocity": (104, 4),
    "Profile_Acceleration": (108, 4),
    "Profile_Velocity": (112, 4),
    "Goal_Position": (116, 4),
    "Realtime_Tick": (120, 2),
    "Moving": (122, 1),
    "Moving_Status": (123, 1),
    "Present_PWM": (124, 2),
    "Present_Current": (126, 2),
    "Present_Velocity": (128, 4),
    "Present_Position": (132, 4),
    "Velocity_Trajectory": (136, 4),
    "Position_Trajectory": (140, 4),
    "Present_Input_Voltage": (144, 2),
    "Present_Temperature": (146, 1),
}

# The XL430 has no current sensor: no current limit / goal current (so no current-based modes), and
# address 126 reports a load estimate instead of a current.
_XL430_CONTROL_TABLE: dict[str, Register] = {
    name: reg
    for name, reg in X_SERIES_CONTROL_TABLE.items()
    if name not in ("Current_Limit", "Goal_Current", "Present_Current")
} | {"Present_Load": (126, 2)}

DYNAMIXEL_CONTROL_TABLES: dict[str, dict[str, Register]] = {
    "xl330-m077": X_SERIES_CONTROL_TABLE,
    "xl330-m288": X_SERIES_CONTROL_TABLE,
    "xl430-w250": _XL430_CONTROL_TABLE,
    "xm430-w350": X_SERIES_CONTROL_TABLE,
    "xm540-w270": X_SERIES_CONTROL_TABLE,
    "xc430-w150": X_SERIES_CONTROL_TABLE,
}

# What each model answers to a ping (register Model_Number).
DYNAMIXEL_MODEL_NUMBERS: dict[str, int] = {
    "xl330-m077": 1190,
    "xl330-m288": 1200,
    "xl430-w250": 1060,
    "xm430-w350": 1020,
    "xm540-w270": 1120,
    "xc430-w150": 1070,
}

DYNAMIXEL_BAUDRATE_TABLE: dict[int, int] = {
    0: 9_600,
    1: 57_600,
    2: 115_200,
    3: 1_000_000,
    4: 2_000_000,
    5: 3_000_000,
    6: 4_000_000,
}

# Two's complement registers (the others are unsigned).
DYNAMIXEL_SIGNED_REGISTERS = frozenset(
    {
        "Homing_Offset",
        "Goal_PWM",
        "Goal_Current",
        "Goal_Velocity",
        "Goal_Position",
        "Present_PWM",
        "Present_Current",
        "Present_Load",
        "Present_Velocity",
        "Present_Position",
        "Velocity_Trajectory",
        "Position_Trajectory",
    }
)

# Addresses below this are EEPROM on the X series: the motor refuses writes there while torque is on.
DYNAMIXEL_EEPROM_END = 64

# ---------------------------------------------------------------------------------------------------------
# Feetech STS / SCS series ("SCS protocol", little-endian for the STS models)
# ---------------------------------------------------------------------------------------------------------
SCS_SERIES_CONTROL_TABLE: dict[str, Register] = {
    "Model": (3, 2),
    "ID": (5, 1),
    "Baud_Rate": (6, 1),
    "Return_Delay": (7, 1),
    "Response_Status_Level": (8, 1),
    "Min_Angle_Limit": (9, 2),
    "Max_Angle_Limit": (11, 2),
    "Max_Temperature_Limit": (13, 1),
    "Max_Voltage_Limit": (14, 1),
    "Min_Voltage_Limit": (15, 1),
    "Max_Torque_Limit": (16, 2),
    "Phase": (18, 1),
    "Unloading_Condition": (19, 1),
    "LED_Alarm_Condition": (20, 1),
    "P_Coefficient": (21, 1),
    "D_Coefficient": (22, 1),
    "I_Coefficient": (23, 1),
    "Minimum_Startup_Force": (24, 2),
    "CW_Dead_Zone": (26, 1),
    "CCW_Dead_Zone": (27, 1),
    "Protection_Current": (28, 2),
    "Angular_Resolution": (30, 1),
    "Offset": (31, 2),
    "Mode": (33, 1),
    "Protective_Torque": (34, 1),
    "Protection_Time": (35, 1),
    "Overload_Torque": (36, 1),
    "Speed_closed_loop_P_proportional_coefficient": (37, 1),
    "Over_Current_Protection_Time": (38, 1),
    "Velocity_closed_loop_I_integral_coefficient": (39, 1),
    "Torque_Enable": (40, 1),
    "Acceleration": (41, 1),
    "Goal_Position": (42, 2),
    "Goal_Time": (44, 2),
    "Goal_Speed": (46, 2),
    "Torque_Limit": (48, 2),
    "Lock": (55, 1),
    "Present_Position": (56, 2),
    "Present_Speed": (58, 2),
    "Present_Load": (60, 2),
    "Present_Voltage": (62, 1),
    "Present_Temperature": (63, 1),
    "Status": (65, 1),
    "Moving": (66, 1),
    "Present_Current": (69, 2),
    # Not in the published table; used by LeRobot's SO-100 preset to raise the acceleration cap.
    "Maximum_Acceleration": (85, 2),
}

FEETECH_CONTROL_TABLES: dict[str, dict[str, Register]] = {"sts3215": SCS_SERIES_CONTROL_TABLE}
FEETECH_MODEL_NUMBERS: dict[str, int] = {"sts3215": 777}

FEETECH_BAUDRATE_TABLE: dict[int, int] = {
    0: 1_000_000,
    1: 500_000,
    2: 250_000,
    3: 128_000,
    4: 115_200,
    5: 57_600,
    6: 38_400,
    7: 19_200,
}

# Feetech stores signed values as sign-magnitude: the given bit is the sign, the lower bits the magnitude.
FEETECH_SIGN_BITS: dict[str, int] = {"Offset": 11, "Goal_Speed": 15, "Present_Speed": 15}


@dataclass(frozen=True)
class BrandSpec:
    """What differs between the two brands, in one place for the bus and the emulator."""

    name: str
    control_tables: Mapping[str, Mapping[str, Register]]
    model_numbers: Mapping[str, int]
    baudrate_table: Mapping[int, int]
    default_baudrate: int
    model_number_register: Register
    # Bounded retries of a read (or a write) before giving up, as in the reference implementation.
    num_retries: int
    # True when Present_Position is a 12-bit single-turn reading (it jumps 4095 <-> 0 on a full turn).
    single_turn_positions: bool
    twos_complement: frozenset[str] = frozenset()
    sign_magnitude_bits: Mapping[str, int] = field(default_factory=dict)

    def value_range(self, data_name: str, size: int) -> tuple[int, int]:
        """Inclusive range of the values a register of `size` bytes can hold."""
        bits = 8 * size
        if data_name in self.twos_complement:
            return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        if data_name in self.sign_magnitude_bits:
            magnitude = (1 << self.sign_magnitude_bits[data_name]) - 1
            return -magnitude, magnitude
        return 0, (1 << bits) - 1

    def encode(self, data_name: str, value: int, size: int) -> int:
        """Host integer -> the unsigned integer stored in the register (raises if it does not fit)."""
        low, high = self.value_range(data_name, size)
        if not low <= value <= high:
            raise ValueError(
                f"{value} does not fit register '{data_name}' ({size} bytes, range [{low}, {high}])"
            )
        if value < 0 and data_name in self.sign_magnitude_bits:
            return (-value) | (1 << self.sign_magnitude_bits[data_name])
        return value & ((1 << (8 * size)) - 1)

    def decode(self, data_name: str, raw: int, size: int) -> int:
        """Unsigned register content -> host integer."""
        bits = 8 * size
        if data_name in self.twos_complement and raw & (1 << (bits - 1)):
            return raw - (1 << bits)
        if data_name in self.sign_magnitude_bits:
            sign = 1 << self.sign_magnitude_bits[data_name]
            if raw & sign:
                return -(raw & (sign - 1))
        return raw


DYNAMIXEL_SPEC = BrandSpec(
    name="dynamixel",
    control_tables=DYNAMIXEL_CONTROL_TABLES,
    model_numbers=DYNAMIXEL_MODEL_NUMBERS,
    baudrate_table=DYNAMIXEL_BAUDRATE_TABLE,
    default_baudrate=1_000_000,
    model_number_register=(0, 2),
    num_retries=10,
    # X-series motors count turns themselves (Present_Position is a signed 32-bit multi-turn value).
    single_turn_positions=False,
    twos_complement=DYNAMIXEL_SIGNED_REGISTERS,
)

FEETECH_SPEC = BrandSpec(
    name="feetech",
    control_tables=FEETECH_CONTROL_TABLES,
    model_numbers=FEETECH_MODEL_NUMBERS,
    baudrate_table=FEETECH_BAUDRATE_TABLE,
    default_baudrate=1_000_000,
    model_number_register=(3, 2),
    num_retries=20,
    single_turn_positions=True,
    sign_magnitude_bits=FEETECH_SIGN_BITS,
)

# Every supported model resolves 4096 steps per turn.
MODEL_RESOLUTION: dict[str, int] = {
    model: 4096 for model in (*DYNAMIXEL_CONTROL_TABLES, *FEETECH_CONTROL_TABLES)
}
