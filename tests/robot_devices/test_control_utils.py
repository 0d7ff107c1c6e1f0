"""The pieces of the control loop that need no robot: key decoding and listening, rate keeping, warnings."""

from __future__ import annotations

import logging
import os
import time

import pytest
import torch

from lerobot.common.robot_devices import keyboard
from lerobot.common.robot_devices.control_utils import (
    FpsMonitor,
    StepLogger,
    busy_wait,
    check_policy_fits_robot,
    control_loop,
    format_step_line,
    frame_for_writer,
    observation_to_batch,
    sanity_check_dataset_name,
    step_timings,
)
from lerobot.common.robot_devices.keyboard import (
    NEXT,
    RERECORD,
    STOP,
    ControlEvents,
    TerminalKeyDecoder,
    choose_mode,
    start_keyboard_controls,
)

# ------------------------------------------------------------------------------------------- key decoding


@pytest.mark.parametrize(
    "data, actions",
    [
        (b"\x1b[C", [NEXT]),  # right arrow
        (b"\x1b[D", [RERECORD]),  # left arrow
        (b"\x1bOC", [NEXT]),  # right arrow in application-cursor mode
        (b"\x1bOD", [RERECORD]),
        (b"\x1b[1;5C", [NEXT]),  # ctrl+right
        (b"\x1b[A\x1b[B", []),  # up / down: no meaning
        (b"n", [NEXT]),
        (b"N", [NEXT]),
        (b"r", [RERECORD]),
        (b"q", [STOP]),
        (b"Q", [STOP]),
        (b"xyz 12\n", []),
        (b"n\x1b[Dq", [NEXT, RERECORD, STOP]),  # several keys in one read
        (b"\x1bq", [STOP, STOP]),  # Esc then q, typed fast
    ],
)
def test_decoder_maps_bytes_to_actions(data, actions):
    decoder = TerminalKeyDecoder()
    assert decoder.feed(data) == actions
    assert not decoder.pending


def test_decoder_waits_for_the_rest_of_a_split_sequence():
    decoder = TerminalKeyDecoder()
    assert decoder.feed(b"\x1b") == []
    assert decoder.pending
    assert decoder.feed(b"[") == []
    assert decoder.feed(b"1;2") == []
    assert decoder.feed(b"D") == [RERECORD]
    assert not decoder.pending


def test_decoder_flush_turns_a_lone_esc_into_stop_and_drops_truncated_sequences():
    decoder = TerminalKeyDecoder()
    assert decoder.feed(b"\x1b") == []
    assert decoder.flush() == [STOP]
    assert not decoder.pending
    assert decoder.feed(b"\x1b[") == []
    assert decoder.flush() == []  # half an arrow sequence is not the Esc key
    assert decoder.feed(b"n") == [NEXT]  # and it does not poison what follows


def test_control_events_flags():
    events = ControlEvents()
    events.apply(NEXT)
    assert (events.exit_early, events.rerecord_episode, events.stop_recording) == (True, False, False)
    events = ControlEvents()
    events.apply(RERECORD)
    assert (events.exit_early, events.rerecord_episode, events.stop_recording) == (True, True, False)
    events = ControlEvents()
    events.apply(STOP)
    assert (events.exit_early, events.rerecord_episode, events.stop_recording) == (True, False, True)
    assert events.wait(0) is True  # the change was signalled
    assert events.wait(0) is False
    with pytest.raises(ValueError, match="Unknown control action"):
        events.apply("jump")


# ------------------------------------------------------------------------------------------- listening


def test_auto_mode_is_off_without_a_terminal():
    read_fd, write_fd = os.pipe()
    try:
        assert choose_mode("auto", read_fd) == "off"
        assert choose_mode("auto", None) == "off"
        with pytest.raises(RuntimeError, match="needs stdin to be a terminal"):
            choose_mode("terminal", read_fd)
    finally:
        os.close(read_fd)
        os.close(write_fd)
    with pytest.raises(ValueError, match="not one of"):
        choose_mode("telepathy", None)
    controls = start_keyboard_controls(ControlEvents(), "off")
    assert controls.mode == "off"
    controls.stop()


@pytest.fixture
def pty_pair():
    pytest.importorskip("termios")
    master, slave = os.openpty()
    yield master, slave
    os.close(master)
    os.close(slave)


@pytest.mark.parametrize(
    "env, expected",
    [
        ({"SSH_CONNECTION": "1.2.3.4 5 6.7.8.9 22", "DISPLAY": ":0"}, "terminal"),
        ({"WAYLAND_DISPLAY": "wayland-0", "DISPLAY": ":0"}, "terminal"),
        ({}, "terminal"),  # no display at all
    ],
)
def test_auto_mode_uses_the_terminal_where_global_hooks_cannot_hear(pty_pair, monkeypatch, env, expected):
    for name in ("SSH_CONNECTION", "SSH_TTY", "WAYLAND_DISPLAY", "DISPLAY", "XDG_SESSION_TYPE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(keyboard, "pynput_importable", lambda: True)
    monkeypatch.setattr(keyboard.sys, "platform", "linux")
    assert choose_mode("auto", pty_pair[1]) == expected


def test_auto_mode_prefers_pynput_on_a_local_x11_session(pty_pair, monkeypatch):
    for name in ("SSH_CONNECTION", "SSH_TTY", "WAYLAND_DISPLAY", "XDG_SESSION_TYPE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(keyboard.sys, "platform", "linux")
    monkeypatch.setattr(keyboard, "pynput_importable", lambda: True)
    assert choose_mode("auto", pty_pair[1]) == "pynput"
    monkeypatch.setattr(keyboard, "pynput_importable", lambda: False)
    assert choose_mode("auto", pty_pair[1]) == "terminal"
    with pytest.raises(RuntimeError, match="pip install pynput"):
        choose_mode("pynput", pty_pair[1])


def test_no_terminal_controls_for_a_background_job(pty_pair, monkeypatch):
    # Changing the mode of the terminal from a background job (`cmd &`) would stop the process (SIGTTOU).
    for name in ("SSH_CONNECTION", "SSH_TTY", "WAYLAND_DISPLAY", "DISPLAY", "XDG_SESSION_TYPE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(keyboard.os, "tcgetpgrp", lambda fd: os.getpgrp() + 1)
    assert choose_mode("auto", pty_pair[1]) == "off"
    with pytest.raises(RuntimeError, match="foreground"):
        choose_mode("terminal", pty_pair[1])


def test_terminal_listener_reads_keys_and_restores_the_terminal(pty_pair):
    import termios

    master, slave = pty_pair
    before = termios.tcgetattr(slave)
    events = ControlEvents()
    controls = start_keyboard_controls(events, "terminal", stdin_fd=slave)
    try:
        assert controls.mode == "terminal"
        lflag = termios.tcgetattr(slave)[3]
        assert not lflag & termios.ICANON and not lflag & termios.ECHO  # cbreak: keys at once, no echo
        assert lflag & termios.ISIG  # Ctrl+C still interrupts

        os.write(master, b"\x1b[C")
        assert events.wait(30), "the right arrow never reached the events"
        assert events.exit_early and not events.rerecord_episode and not events.stop_recording

        events.exit_early = False
        os.write(master, b"r")
        assert events.wait(30)
        assert events.rerecord_episode and events.exit_early

        os.write(master, b"\x1b")  # a lone ESC: the Esc key, recognised once nothing follows
        assert events.wait(30)
        assert events.stop_recording
    finally:
        controls.stop()
    assert termios.tcgetattr(slave) == before
    controls.stop()  # twice is harmless


# ------------------------------------------------------------------------------------------- rate


def test_busy_wait_waits_at_least_the_time():
    start = time.perf_counter()
    busy_wait(0.03)
    elapsed = time.perf_counter() - start
    assert elapsed >= 0.03
    assert elapsed < 5  # generous: a loaded machine may deschedule us
    start = time.perf_counter()
    busy_wait(-1)
    assert time.perf_counter() - start < 1


def test_fps_monitor_is_quiet_at_the_target_rate(caplog):
    monitor = FpsMonitor(30, window_s=1.0)
    now = 0.0
    with caplog.at_level(logging.WARNING, logger="lerobot.control"):
        for _ in range(300):
            now += 1 / 30
            assert monitor.update(now, 1 / 30, {"read_camera_laptop": 0.01}) is None
        for _ in range(300):  # 5% slow is within the 10% tolerance
            now += 1 / 28.6
            assert monitor.update(now, 1 / 28.6) is None
    assert monitor.warnings == [] and not caplog.records


def test_fps_monitor_warns_with_numbers_and_without_spamming(caplog):
    monitor = FpsMonitor(30, window_s=1.0, quiet_s=10.0)
    now = 0.0
    timings = {"read_leader_main_pos": 0.002, "read_camera_laptop": 0.045}

    def run(seconds: float, dt: float) -> list[str]:
        nonlocal now
        out = []
        for _ in range(round(seconds / dt)):
            now += dt
            message = monitor.update(now, dt, timings)
            if message:
                out.append(message)
        return out

    with caplog.at_level(logging.WARNING, logger="lerobot.control"):
        first = run(1.0, 0.05)  # 20 fps
    assert len(first) == 1
    message = first[0]
    assert "20.0 fps" in message and "target 30 fps" in message and "33% " not in message
    assert "by 33%" in message
    assert "50.0 ms per step" in message and "budget of 33.3 ms" in message
    assert "Slowest part: read_camera_laptop, 45.0 ms per step" in message
    assert "Lower the camera's fps or resolution" in message
    assert [r.levelno for r in caplog.records] == [logging.WARNING]

    assert run(8.0, 0.05) == []  # still slow, but within quiet_s of the last warning
    again = run(3.0, 0.05)
    assert len(again) == 1 and "slow windows not reported" in again[0]

    with caplog.at_level(logging.INFO, logger="lerobot.control"):
        assert run(2.0, 1 / 30) == []
    assert not monitor.slow
    assert any("back at" in r.getMessage() for r in caplog.records)


def test_fps_monitor_rejects_a_non_positive_rate():
    with pytest.raises(ValueError, match="fps must be positive"):
        FpsMonitor(0)


def test_step_logger_logs_at_most_once_per_interval():
    clock = [0.0]
    logger = StepLogger(interval_s=1.0, clock=lambda: clock[0])
    lines = []
    for _ in range(50):
        clock[0] += 0.1
        lines.append(logger.maybe_log(0.1, {"read_follower_main_pos": 0.001}))
    printed = [line for line in lines if line is not None]
    assert 5 <= len(printed) <= 5 + 1
    assert printed[0] == "dt 100.0 ms (10.0 Hz) | read_follower_main_pos 1.0 ms"


def test_step_timings_keep_durations_only():
    logs = {
        "read_leader": 0.002,
        "read_camera_laptop_dt_s": 0.012,
        "delta_timestamp_s_read_Present_Position": 0.003,
        "timestamp_utc_read_Present_Position": 1700000000.0,
        "is_ok": True,
        "note": "text",
    }
    timings = step_timings(logs, {"policy": 0.02})
    assert timings == {
        "read_leader": 0.002,
        "read_camera_laptop": 0.012,
        "read_Present_Position": 0.003,
        "policy": 0.02,
    }
    assert format_step_line(0.0, {}) == "dt 0.0 ms"


# ------------------------------------------------------------------------------------------- the loop


class FakeRobot:
    """Leader copied to follower; every step takes `step_s`; a key is 'pressed' at step `press_at`."""

    leader_arms = {"main": None}

    def __init__(self, events: ControlEvents | None = None, press_at: int | None = None, step_s: float = 0.0):
        self.events, self.press_at, self.step_s = events, press_at, step_s
        self.steps = 0
        self.sent: list[torch.Tensor] = []
        self.logs: dict[str, float] = {}

    def _tick(self) -> None:
        self.steps += 1
        if self.step_s:
            time.sleep(self.step_s)
        self.logs = {"read_camera_top": self.step_s}
        if self.press_at is not None and self.steps == self.press_at:
            self.events.apply(NEXT)

    def _observation(self) -> dict[str, torch.Tensor]:
        image = torch.full((4, 6, 3), self.steps, dtype=torch.uint8)
        return {"observation.state": torch.full((2,), float(self.steps)), "observation.images.top": image}

    def teleop_step(self, record_data: bool = False):
        self._tick()
        action = torch.full((2,), float(self.steps))
        self.sent.append(action)
        return (self._observation(), {"action": action}) if record_data else None

    def capture_observation(self):
        self._tick()
        return self._observation()

    def send_action(self, action: torch.Tensor) -> torch.Tensor:
        self.logs = {"write_follower": 0.001}  # as ManipulatorRobot: each call starts its logs afresh
        self.sent.append(action)
        return action.clamp(-100, 100)


class ListWriter:
    def __init__(self):
        self.frames: list[tuple[dict, str | None]] = []

    def add_frame(self, frame: dict, task: str | None = None) -> None:
        self.frames.append((frame, task))


def test_control_loop_records_teleoperation_and_stops_on_a_key():
    events = ControlEvents()
    robot = FakeRobot(events, press_at=7)
    writer = ListWriter()
    n = control_loop(robot, 600, None, events=events, teleoperate=True, writer=writer, task="wave")
    assert n == 7 == len(writer.frames) == robot.steps
    frame, task = writer.frames[3]
    assert task == "wave"
    assert frame["observation.images.top"].dtype.name == "uint8" and frame[
        "observation.images.top"
    ].shape == (4, 6, 3)
    assert frame["action"].tolist() == [4.0, 4.0]
    assert events.exit_early  # left for the caller to clear


def test_control_loop_holds_the_rate_and_runs_for_its_time():
    robot = FakeRobot()
    start = time.perf_counter()
    control_loop(robot, 0.5, 20, teleoperate=True)
    elapsed = time.perf_counter() - start
    assert elapsed >= 0.5
    # At most 20 fps: never more steps than the time allows (a loaded machine may give fewer).
    assert 1 <= robot.steps <= 0.5 * 20 + 1


def test_control_loop_warns_when_the_robot_is_too_slow(caplog):
    robot = FakeRobot(step_s=0.04)
    monitor = FpsMonitor(50, window_s=0.3)
    with caplog.at_level(logging.WARNING, logger="lerobot.control"):
        control_loop(robot, 0.8, 50, teleoperate=False, monitor=monitor)
    assert monitor.warnings, "a 40 ms step at 50 fps must be reported"
    assert "target 50 fps" in monitor.warnings[0] and "Slowest part: read_camera_top" in monitor.warnings[0]


class ConstantPolicy:
    class config:  # noqa: N801 - mimics a policy's config attribute
        input_shapes = {"observation.state": [2], "observation.images.top": [3, 4, 6]}
        output_shapes = {"action": [2]}

    def __init__(self):
        self.batches = []

    def select_action(self, batch):
        self.batches.append(batch)
        return torch.full((1, 2), 500.0)


class LineCollector(StepLogger):
    def __init__(self):
        super().__init__(interval_s=0.0)
        self.lines: list[str] = []

    def maybe_log(self, dt_s, timings, prefix=""):
        self.lines.append(super().maybe_log(dt_s, timings, prefix))
        return self.lines[-1]


def test_control_loop_runs_a_policy_and_records_the_action_actually_sent():
    events = ControlEvents()
    robot = FakeRobot(events, press_at=3)
    policy = ConstantPolicy()
    writer = ListWriter()
    lines = LineCollector()
    control_loop(robot, 600, None, events=events, policy=policy, writer=writer, task="t", step_logger=lines)
    assert len(writer.frames) == 3
    # The step's timings: the observation's reads, the policy, the write that send_action logged afresh.
    assert all(k in lines.lines[0] for k in ("read_camera_top", "policy", "write_follower", "add_frame"))
    assert writer.frames[0][0]["action"].tolist() == [100.0, 100.0]  # clamped by the robot, as sent
    image = policy.batches[0]["observation.images.top"]
    assert image.shape == (1, 3, 4, 6) and image.dtype == torch.float32 and float(image.max()) <= 1.0
    with pytest.raises(ValueError, match="exclusive"):
        control_loop(robot, 1, None, teleoperate=True, policy=policy)
    with pytest.raises(ValueError, match="needs actions"):
        control_loop(robot, 1, None, writer=writer)


def test_observation_to_batch_and_frame_for_writer():
    observation = {
        "observation.state": torch.tensor([1.0, 2.0]),
        "observation.images.top": torch.full((4, 6, 3), 255, dtype=torch.uint8),
        "observation.images.unused": torch.zeros((4, 6, 3), dtype=torch.uint8),
    }
    batch = observation_to_batch(observation, ["observation.state", "observation.images.top"])
    assert set(batch) == {"observation.state", "observation.images.top"}
    assert (
        batch["observation.images.top"].shape == (1, 3, 4, 6)
        and float(batch["observation.images.top"].min()) == 1
    )
    frame = frame_for_writer(observation, {"action": torch.tensor([0.5, 0.5])})
    assert frame["observation.images.top"].shape == (4, 6, 3) and frame["action"].dtype.name == "float32"


def test_check_policy_fits_robot():
    features = {
        "observation.state": {"dtype": "float32", "shape": (2,)},
        "observation.images.top": {"dtype": "video", "shape": (4, 6, 3)},
        "action": {"dtype": "float32", "shape": (2,)},
    }
    check_policy_fits_robot(ConstantPolicy(), features)
    with pytest.raises(ValueError, match="'observation.images.top'.*does not provide"):
        check_policy_fits_robot(ConstantPolicy(), {k: v for k, v in features.items() if "images" not in k})
    wrong = {**features, "observation.images.top": {"dtype": "video", "shape": (8, 6, 3)}}
    with pytest.raises(ValueError, match=r"shape \[3, 4, 6\], the robot gives \[3, 8, 6\]"):
        check_policy_fits_robot(ConstantPolicy(), wrong)
    with pytest.raises(ValueError, match="actions of shape"):
        check_policy_fits_robot(ConstantPolicy(), {**features, "action": {"dtype": "float32", "shape": (3,)}})


def test_dataset_name_must_say_whether_a_policy_acted():
    sanity_check_dataset_name("me/pick", has_policy=False)
    sanity_check_dataset_name("me/eval_pick", has_policy=True)
    with pytest.raises(ValueError, match="must start with 'eval_'.*--repo-id me/eval_pick"):
        sanity_check_dataset_name("me/pick", has_policy=True)
    with pytest.raises(ValueError, match="reserved for policy runs"):
        sanity_check_dataset_name("me/eval_pick", has_policy=False)


@pytest.mark.parametrize(
    "part, hint",
    [
        ("read_camera_laptop", "camera's fps or resolution"),
        ("policy", "device=cuda"),
        ("add_frame", "camera resolution"),
        ("read_leader", "USB cable"),
    ],
)
def test_the_warning_suggests_a_fix_for_the_slowest_part(part, hint):
    monitor = FpsMonitor(30, window_s=0.5)
    messages = [monitor.update(i * 0.1, 0.1, {part: 0.09}) for i in range(1, 6)]
    assert messages[-1] is not None and hint in messages[-1]
