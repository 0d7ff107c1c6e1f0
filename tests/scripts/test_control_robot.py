"""control_robot.py end to end on an emulated SO-100: record, replay, train, run the policy; crashes; keys.

The arms are Feetech buses emulated behind pseudo-terminals (the vendor SDK runs for real, see
tests/robot_devices/robot_rigs.py) and the camera is a small mp4 written here, played by the real OpenCV camera
code. A thread plays the hand moving the leader arm. Everything goes through `main([...])`, the command line.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from lerobot.common.datasets import hub
from lerobot.common.datasets.errors import DatasetExistsError
from lerobot.common.datasets.lerobot_dataset import LeRobotDataset
from lerobot.common.robot_devices import control_utils, keyboard
from lerobot.common.robot_devices.keyboard import NEXT, RERECORD, STOP, ControlEvents
from lerobot.common.robot_devices.recording import camera_display, dataset_action, record
from lerobot.scripts.control_robot import main, resolve_robot_path

pytest.importorskip("scservo_sdk")
cv2 = pytest.importorskip("cv2")

from tests.markdown import bash_commands  # noqa: E402
from tests.robot_devices.robot_rigs import PosePrompt, RobotRig, emulated_robot  # noqa: E402

FPS, WIDTH, HEIGHT = 10, 64, 48
REPO_ID = "local/so100_test"
EVAL_REPO_ID = "local/eval_so100_test"
# A tiny ACT (a random ResNet-18 still reads the camera) trained for two steps: enough to run it.
TINY_ACT = [
    "policy=act_so100_real",
    "env=so100_real",
    "policy.dim_model=16",
    "policy.n_heads=2",
    "policy.dim_feedforward=32",
    "policy.n_encoder_layers=1",
    "policy.n_decoder_layers=1",
    "policy.n_vae_encoder_layers=1",
    "policy.latent_dim=4",
    "policy.chunk_size=5",
    "policy.n_action_steps=5",
    "policy.pretrained_backbone_weights=null",
    "device=cpu",
    f"fps={FPS}",
    "training.offline_steps=2",
    "training.batch_size=2",
    "training.num_workers=0",
    "training.save_freq=2",
    "training.log_freq=1",
]


@pytest.fixture(autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_camera_video(path: Path, num_frames: int = 20) -> Path:
    """An mp4 that plays as the camera: a bar that moves across the image, frame after frame."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    assert writer.isOpened(), "OpenCV cannot write mp4 here"
    for i in range(num_frames):
        frame = np.full((HEIGHT, WIDTH, 3), 40, np.uint8)
        frame[:, 3 * i : 3 * i + 6] = (0, 200, 255)
        writer.write(frame)
    writer.release()
    return path


@dataclass
class So100:
    rig: RobotRig
    args: list[str]  # --robot-path and --robot-overrides pointing the packaged so100 config at the emulators

    def leader_pose(self, t: float) -> list[float]:
        # Degrees for the five joints, percent for the gripper (the rig calibration's units).
        return [20 * math.sin(t + k) for k in range(5)] + [50 + 30 * math.sin(t)]


@pytest.fixture
def so100(tmp_path) -> Iterator[So100]:
    video = write_camera_video(tmp_path / "camera.mp4")
    with emulated_robot("so100", tmp_path) as rig:
        args = [
            "--robot-path",
            "so100",
            "--robot-overrides",
            f"leader_arms.main.port={rig.ports['main_leader']}",
            f"follower_arms.main.port={rig.ports['main_follower']}",
            f"calibration_dir={rig.calibration_dir}",
            "~cameras.phone",
            f"cameras.laptop.camera_index={video}",
            f"cameras.laptop.fps={FPS}",
            f"cameras.laptop.width={WIDTH}",
            f"cameras.laptop.height={HEIGHT}",
        ]
        yield So100(rig, args)


@contextmanager
def hand_on_leader(so100: So100) -> Iterator[None]:
    """A thread moving the leader arm smoothly, as a person teleoperating would."""
    stop = threading.Event()

    def move() -> None:
        t = 0.0
        while not stop.wait(0.02):
            t += 0.1
            so100.rig.set_positions("main_leader", so100.leader_pose(t))

    so100.rig.set_positions("main_leader", so100.leader_pose(0.0))
    thread = threading.Thread(target=move, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(30)


def record_args(so100: So100, root: Path, repo_id: str, *extra: str) -> list[str]:
    return [
        "record",
        *so100.args,
        "--root",
        str(root),
        "--repo-id",
        repo_id,
        "--warmup-time-s",
        "0",
        "--reset-time-s",
        "0",
        "--num-image-writer-threads",
        "1",
        *extra,
    ]


def episode_column(dataset: LeRobotDataset, key: str, episode: int) -> np.ndarray:
    frm, to = (int(dataset.episode_data_index[k][episode]) for k in ("from", "to"))
    return np.asarray(dataset.hf_dataset[key][frm:to], dtype=np.float32)


def test_record_replay_train_and_run_the_policy(so100, tmp_path, monkeypatch):
    root = tmp_path / "data"
    with hand_on_leader(so100):
        folder = main(
            record_args(
                so100, root, REPO_ID, "--fps", str(FPS), "--episode-time-s", "1", "--num-episodes", "2"
            )
        )
    assert folder == root / REPO_ID
    assert so100.rig.torque("main_follower") == [0] * 6  # the script let go of the arm

    dataset = LeRobotDataset(REPO_ID, root=root)
    assert dataset.num_episodes == 2 and dataset.fps == FPS
    assert dataset.features["observation.images.laptop"]["dtype"] == "video"
    assert tuple(dataset.features["observation.images.laptop"]["shape"]) == (HEIGHT, WIDTH, 3)
    assert tuple(dataset.features["observation.state"]["shape"]) == (6,)
    assert tuple(dataset.features["action"]["shape"]) == (6,)
    assert dataset.meta.robot_type == "so100"
    assert set(dataset.tasks.values()) == {"Teleoperated demonstration"}
    lengths = (dataset.episode_data_index["to"] - dataset.episode_data_index["from"]).tolist()
    assert all(2 <= n <= FPS + 1 for n in lengths), lengths  # ~1 s at 10 fps (fewer on a loaded machine)
    item = dataset[0]
    assert item["observation.images.laptop"].shape == (3, HEIGHT, WIDTH)
    actions = episode_column(dataset, "action", 0)
    states = episode_column(dataset, "observation.state", 0)
    assert np.ptp(actions, axis=0).max() > 1, "the leader moved: the actions must too"
    # The follower goes where it is told at once (emulator), so each state is that step's action.
    np.testing.assert_allclose(states, actions, atol=0.2)

    # Replay episode 0: the follower receives the recorded actions, one per step, in order.
    received = []
    from lerobot.common.robot_devices.robots.manipulator import ManipulatorRobot

    original = ManipulatorRobot.send_action

    def spy(robot, action):
        sent = original(robot, action)
        received.append(so100.rig.goals("main_follower"))
        return sent

    monkeypatch.setattr(ManipulatorRobot, "send_action", spy)
    assert main(["replay", *so100.args, "--root", str(root), "--repo-id", REPO_ID, "--episode", "0"]) == len(
        actions
    )
    np.testing.assert_allclose(np.stack(received), actions, atol=0.2)  # 1 step = 0.09 deg / 0.1 %
    monkeypatch.undo()

    # Train a tiny ACT on the recording.
    from tests.scripts.conftest import run_train

    run_dir = tmp_path / "train"
    run_train([*TINY_ACT, f"dataset_repo_id={REPO_ID}", f"dataset_root={root}"], run_dir)
    policy_dir = run_dir / "checkpoints" / "last" / "pretrained_model"
    assert (policy_dir / "model.safetensors").exists()

    # Run it on the robot: record -p into an eval_ dataset; the recorded actions are the policy's.
    predicted = []
    original_predict = control_utils.predict_action

    def predict_spy(*args, **kwargs):
        action = original_predict(*args, **kwargs)
        predicted.append(action.clone())
        return action

    monkeypatch.setattr(control_utils, "predict_action", predict_spy)
    monkeypatch.setenv("LEROBOT_KEEP_FREED_MEMORY", "0")  # record -p runs in this process: leave malloc alone
    so100.rig.set_positions(
        "main_leader", [0, 0, 0, 0, 0, 50]
    )  # the leader rests: it must not drive anything
    main(
        record_args(
            so100, root, EVAL_REPO_ID, "-p", str(policy_dir), "--episode-time-s", "1", "--num-episodes", "1"
        )
    )
    evaluation = LeRobotDataset(EVAL_REPO_ID, root=root)
    assert evaluation.num_episodes == 1 and evaluation.fps == FPS  # the policy's rate, from its config
    assert set(evaluation.tasks.values()) == {"Policy rollout"}
    eval_actions = episode_column(evaluation, "action", 0)
    assert len(eval_actions) == len(predicted) >= 2
    np.testing.assert_allclose(eval_actions, torch.stack(predicted).numpy(), atol=1e-5)


def test_a_crash_keeps_saved_episodes_and_the_recording_resumes(so100, tmp_path, monkeypatch):
    from lerobot.common.datasets.writer import LeRobotDatasetWriter
    from lerobot.common.robot_devices.robots.manipulator import ManipulatorRobot

    root = tmp_path / "data"
    saved = []
    original_save = LeRobotDatasetWriter.save_episode
    original_step = ManipulatorRobot.teleop_step
    steps_after_save = [0]

    def save_spy(writer, *args, **kwargs):
        saved.append(original_save(writer, *args, **kwargs))
        return saved[-1]

    def step_spy(robot, *args, **kwargs):
        if saved:
            steps_after_save[0] += 1
            if steps_after_save[0] == 3:  # mid-way through the second episode
                raise RuntimeError("USB cable unplugged")
        return original_step(robot, *args, **kwargs)

    monkeypatch.setattr(LeRobotDatasetWriter, "save_episode", save_spy)
    monkeypatch.setattr(ManipulatorRobot, "teleop_step", step_spy)
    args = record_args(
        so100, root, REPO_ID, "--fps", str(FPS), "--episode-time-s", "0.5", "--num-episodes", "3"
    )
    with hand_on_leader(so100), pytest.raises(RuntimeError, match="USB cable unplugged"):
        main(args)
    monkeypatch.undo()
    assert so100.rig.torque("main_follower") == [0] * 6

    folder = root / REPO_ID
    dataset = LeRobotDataset(REPO_ID, root=root)
    assert dataset.num_episodes == 1 and saved == [0]
    first_episode = episode_column(dataset, "action", 0)
    assert not (folder / "images").exists()  # the interrupted episode's frames were tidied away

    with pytest.raises(DatasetExistsError, match="--resume 1"):
        main(args)

    args[args.index("--num-episodes") + 1] = "2"
    with hand_on_leader(so100):
        main([*args, "--resume", "1"])
    dataset = LeRobotDataset(REPO_ID, root=root)
    assert dataset.num_episodes == 2
    np.testing.assert_array_equal(episode_column(dataset, "action", 0), first_episode)  # untouched
    assert dataset[len(dataset) - 1]["observation.images.laptop"].shape == (3, HEIGHT, WIDTH)


def test_teleoperate_and_calibrate(so100, monkeypatch):
    rig = so100.rig
    pose = [10.0, -20.0, 30.0, -40.0, 50.0, 60.0]
    rig.set_positions("main_leader", pose)
    main(["teleoperate", *so100.args, "--fps", str(FPS), "--teleop-time-s", "0.5"])
    np.testing.assert_allclose(rig.goals("main_follower"), pose, atol=0.2)
    assert rig.torque("main_follower") == [0] * 6

    calibration_file = rig.calibration_dir / "main_follower.json"
    calibration_file.write_text("{}")  # a broken file, replaced by the guided calibration
    prompt = PosePrompt(rig)
    monkeypatch.setattr("builtins.input", prompt)
    main(["calibrate", *so100.args, "--arms", "main_follower"])
    assert [pose for _, pose in prompt.asked] == ["zero", "rotated", "rest"]
    assert {arm for arm, _ in prompt.asked} == {"main_follower"}
    assert '"homing_offset"' in calibration_file.read_text()
    with pytest.raises(ValueError, match="main_follower"):
        main(["calibrate", *so100.args, "--arms", "left_follower"])


# ------------------------------------------------------------------------------------------- no hardware


class ScriptedRobot:
    """A robot whose 'operator' presses keys at given global step numbers (teleop or observe steps)."""

    robot_type = "scripted"
    leader_arms = {"main": None}

    def __init__(self, events: ControlEvents, keys: dict[int, str]):
        self.events, self.keys = events, keys
        self.is_connected = False
        self.steps = 0
        self.logs: dict[str, float] = {}
        self.features = {
            "observation.state": {"dtype": "float32", "shape": (2,), "names": None},
            "action": {"dtype": "float32", "shape": (2,), "names": None},
        }

    def connect(self) -> None:
        self.is_connected = True

    def _tick(self) -> None:
        self.steps += 1
        if self.steps in self.keys:
            self.events.apply(self.keys[self.steps])

    def teleop_step(self, record_data: bool = False):
        self._tick()
        value = torch.full((2,), float(self.steps))
        return ({"observation.state": value}, {"action": value}) if record_data else None

    def capture_observation(self):
        self._tick()
        return {"observation.state": torch.full((2,), float(self.steps))}


def test_keys_end_re_record_and_stop_episodes(tmp_path, monkeypatch):
    # Steps: warmup 1-2 (next) | episode 0: 3-7 (re-record) | reset 8-9 (next) | episode 0 again: 10-13 (next)
    # | reset 14 (next) | episode 1: 15-17 (stop: saved as it is, no reset, no more episodes).
    events = ControlEvents()
    keys = {2: NEXT, 7: RERECORD, 9: NEXT, 13: NEXT, 14: NEXT, 17: STOP}
    pushed = []
    monkeypatch.setattr(
        hub, "push_dataset_to_hub", lambda *args, **kwargs: pushed.append((args, kwargs)) or "url"
    )
    robot = ScriptedRobot(events, keys)
    folder = record(
        robot,
        "local/keys",
        tmp_path,
        fps=200,
        warmup_time_s=600,
        episode_time_s=600,
        reset_time_s=600,
        num_episodes=5,
        keyboard="off",
        single_task="Press keys.",
        events=events,
        push_to_hub=True,
        tags=["tutorial"],
    )
    dataset = LeRobotDataset("local/keys", root=folder)
    assert dataset.num_episodes == 2
    assert episode_column(dataset, "action", 0)[:, 0].tolist() == [10, 11, 12, 13]
    assert episode_column(dataset, "action", 1)[:, 0].tolist() == [15, 16, 17]
    assert robot.steps == 17
    assert pushed == [((folder, "local/keys"), {"tags": ["tutorial"]})]
    assert set(dataset.tasks.values()) == {"Press keys."}

    # Resuming goes on at the dataset's rate when --fps is not given, up to --num-episodes in all.
    events = ControlEvents()
    robot = ScriptedRobot(events, {3: NEXT})
    record(
        robot,
        "local/keys",
        tmp_path,
        warmup_time_s=0,
        episode_time_s=600,
        reset_time_s=0,
        num_episodes=3,
        keyboard="off",
        resume=True,
        events=events,
    )
    dataset = LeRobotDataset("local/keys", root=folder)
    assert dataset.num_episodes == 3 and dataset.fps == 200
    assert episode_column(dataset, "action", 2)[:, 0].tolist() == [1, 2, 3]


def test_dataset_checks_before_any_robot_moves(tmp_path, monkeypatch):
    folder = tmp_path / "me" / "demo"
    assert dataset_action(folder, resume=True, force_override=False) == "create"  # nothing to resume yet
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(DatasetExistsError, match="not a LeRobot dataset.*--force-override 1"):
        dataset_action(folder, resume=True, force_override=False)
    assert dataset_action(folder, resume=False, force_override=True) == "override"
    with pytest.raises(ValueError, match="must start with 'eval_'"):
        record(object(), "me/demo", tmp_path, pretrained_policy_name_or_path="some/policy")
    with pytest.raises(ValueError, match="reserved for policy runs"):
        record(object(), "me/eval_demo", tmp_path)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(keyboard.sys, "platform", "linux")
    assert camera_display(True) is False and camera_display(False) is False
    assert resolve_robot_path("so100").name == "so100.yaml"
    assert resolve_robot_path("lerobot/configs/robot/koch.yaml").name == "koch.yaml"
    with pytest.raises(FileNotFoundError, match="so100"):
        resolve_robot_path("so1000")


GUIDE = Path(__file__).resolve().parents[2] / "examples" / "7_get_started_with_real_robot.md"


def guide_commands(script: str) -> list[list[str]]:
    """The guide's commands of `script` (```bash blocks), ${HF_USER} set to local."""
    text = GUIDE.read_text(encoding="utf-8").replace("${HF_USER}", "local")
    return [args[2:] for args in bash_commands(text) if args[:2] == ["python", script]]


def test_the_guide_commands_are_accepted_by_the_script():
    from lerobot.common.robot_devices.robots import load_robot_config
    from lerobot.scripts.control_robot import build_parser

    commands = guide_commands("lerobot/scripts/control_robot.py")
    modes = {args[0] for args in commands}
    assert modes == {"calibrate", "teleoperate", "record", "replay"}, modes
    for args in commands:
        parsed = build_parser().parse_args(args)
        config = load_robot_config(
            resolve_robot_path(parsed.robot_path), parsed.robot_overrides
        )  # valid edits
        assert config["type"] == "so100"
        if parsed.mode == "record":
            has_policy = parsed.pretrained_policy_name_or_path is not None
            assert parsed.repo_id.split("/")[1].startswith("eval_") == has_policy
