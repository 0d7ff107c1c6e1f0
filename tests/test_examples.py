"""The numbered examples run, and write what they promise.

Everything runs in a scratch folder laid out like a checkout (`lerobot/` and `examples/` linked in), where
`outputs/data/pusht` is a small PushT dataset with a camera recorded here in gym-pusht: the path the examples'
docstrings and markdown use for a local PushT copy. So the examples run with the commands they document, from
their default output folders, with tiny budgets added.

Python examples run as subprocesses, in tutorial order where one feeds the next (example 3 trains the policy that
example 2 and advanced/2 load from their default `-p`). Markdown examples: the commands of their ```bash blocks
run as written, with budget overrides appended (CPU, a tiny policy, short evaluations) and step counts divided by
STEP_SCALE, so that "20000 steps, a checkpoint every 10000" becomes "4 steps, a checkpoint every 2".
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import SHARED_DATA
from tests.markdown import bash_commands as markdown_bash_commands
from tests.pusht_recording import record_pusht

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
REPO_ID = "lerobot/pusht"
N_EPISODES, EPISODE_LENGTH, FPS = 3, 20, 10
LOCAL_DATA = Path("outputs/data/pusht")  # where the examples expect a local PushT copy

# Policy config fields that make each policy tiny (a ResNet-18 still reads the camera).
TINY_FIELDS = {
    "act": {
        "dim_model": 16,
        "n_heads": 2,
        "dim_feedforward": 32,
        "n_encoder_layers": 1,
        "n_vae_encoder_layers": 1,
        "latent_dim": 4,
    },
    "diffusion": {
        "down_dims": [16, 32],
        "spatial_softmax_num_keypoints": 4,
        "diffusion_step_embed_dim": 8,
        "num_train_timesteps": 10,
    },
}
# The policy each documented recipe (`policy=<file>`) trains.
RECIPE_POLICY = {"act": "act", "act_pusht": "act", "diffusion": "diffusion"}
STEP_SCALE = 5000
STEP_KEYS = ("training.offline_steps", "training.save_freq", "training.eval_freq")
TRAIN_BUDGET = [
    "device=cpu",
    "training.num_workers=0",
    "training.batch_size=2",
    "training.log_freq=1",
    "eval.n_episodes=1",
    "eval.batch_size=1",
    "eval.max_episodes_rendered=1",
    "env.episode_length=10",
]
EVAL_BUDGET = ["device=cpu", "eval.n_episodes=1", "eval.batch_size=1", "env.episode_length=10"]

pytest.importorskip("gym_pusht", reason="the examples record and evaluate in gym-pusht")


# ------------------------------------------------------------------------------------------------ fixtures


def record_pusht_dataset(root: Path) -> Path:
    """N_EPISODES episodes of a noisy pusher in gym-pusht, with the features of lerobot/pusht (96x96 camera)."""
    return record_pusht(
        root,
        repo_id=REPO_ID,
        obs_type="pixels_agent_pos",
        n_episodes=N_EPISODES,
        episode_length=EPISODE_LENGTH,
        task="Push the T-shaped block onto the T-shaped target.",
        fps=FPS,
    )


@pytest.fixture(scope="session")
def pusht_camera_dataset(tmp_path_factory) -> Path:
    return record_pusht_dataset(tmp_path_factory.mktemp("data") / "pusht")


def make_checkout(path: Path, dataset: Path | None) -> Path:
    """A folder that looks like the repository to the examples' commands, with `dataset` as the local PushT."""
    path.mkdir(parents=True, exist_ok=True)
    for name in ("lerobot", "examples"):
        (path / name).symlink_to(REPO / name, target_is_directory=True)
    if dataset is not None:
        (path / LOCAL_DATA).parent.mkdir(parents=True)
        (path / LOCAL_DATA).symlink_to(dataset, target_is_directory=True)
    return path


@pytest.fixture(scope="session")
def checkout(tmp_path_factory, pusht_camera_dataset) -> Path:
    """The scratch checkout the Python examples run in, one after the other, as a newcomer would."""
    return make_checkout(tmp_path_factory.mktemp("checkout"), pusht_camera_dataset)


def run(cmd: list[str], cwd: Path, timeout: float = 300) -> str:
    """Run a command with one thread per process and no network; return its stdout + stderr, or fail with them."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"`{shlex.join(cmd)}` (in {cwd}) failed:\n{output[-6000:]}"
    return output


def example(name: str, *args: str, cwd: Path) -> str:
    return run([sys.executable, f"examples/{name}", *args], cwd)


@pytest.fixture(scope="session")
def trained_policy(checkout) -> tuple[Path, str]:
    """Example 3, on episodes 0 and 1 (episode 2 stays held out for the validation-loss example)."""
    fields = [arg for k, v in TINY_FIELDS["act"].items() for arg in ("--set", f"{k}={v}")]
    output = example(
        "3_train_policy.py",
        *("--root", str(LOCAL_DATA), "--episodes", "0", "1", "--steps", "3", "--batch-size", "2"),
        *("--num-workers", "0", "--device", "cpu", "--log-freq", "1", *fields),
        cwd=checkout,
    )
    policy_dir = checkout / "outputs/examples/3_train_policy"
    return policy_dir, output


def decode_video(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


# ------------------------------------------------------------------------------------------------ coverage


def test_every_example_is_tested():
    """A new example needs a test here; one that was removed must be dropped from here."""
    found = sorted(str(p.relative_to(EXAMPLES)) for p in EXAMPLES.rglob("*") if p.suffix in (".py", ".md"))
    assert found == [
        "1_load_lerobot_dataset.py",
        "2_evaluate_pretrained_policy.py",
        "3_train_policy.py",
        "4_train_policy_with_script.md",
        "5_resume_training.md",
        "6_add_image_transforms.py",
        "7_get_started_with_real_robot.md",
        "advanced/1_train_act_pusht/train_act_pusht.md",
        "advanced/2_calculate_validation_loss.py",
        "advanced/3_profile_policy.py",
    ]


# ------------------------------------------------------------------------------------------------ Python examples


def test_1_load_lerobot_dataset(checkout, pusht_camera_dataset):
    output = example(
        "1_load_lerobot_dataset.py", "--root", str(LOCAL_DATA), "--batch-size", "4", cwd=checkout
    )
    assert f"Episodes:            {N_EPISODES} loaded of {N_EPISODES}" in output
    assert "Camera keys:         ['observation.image']" in output
    # delta_timestamps: 3 camera frames (the first two before the episode's start, so padded), 16 actions
    assert "observation.image                (3, 3, 96, 96)  padded: [True, True, False]" in output
    assert "action                           (4, 16, 2)" in output  # a DataLoader batch of 4

    video = checkout / "outputs/examples/1_load_lerobot_dataset/episode_0.mp4"
    frames = decode_video(video)
    assert len(frames) == EPISODE_LENGTH and frames[0].shape == (96, 96, 3)
    # The video shows the camera stream of episode 0, in order, up to compression (a mean error of ~1/255; two
    # different frames of the dataset differ by 2 to 7 on average).
    from lerobot.common.datasets.lerobot_dataset import LeRobotDataset

    dataset = LeRobotDataset(REPO_ID, root=pusht_camera_dataset)
    recorded = np.stack(
        [dataset[i]["observation.image"].permute(1, 2, 0).numpy() * 255 for i in range(len(dataset))]
    )
    errors = np.abs(np.stack(frames).astype(np.float32)[:, None] - recorded[None]).mean(axis=(2, 3, 4))
    assert errors[np.arange(EPISODE_LENGTH), np.arange(EPISODE_LENGTH)].max() < 2
    assert errors[0].argmin() == 0  # the first frame is episode 0's first, not another episode's or the last


def test_3_train_policy(trained_policy):
    policy_dir, output = trained_policy
    assert sorted(p.name for p in policy_dir.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((policy_dir / "config.json").read_text())
    assert config["type"] == "act" and config["dim_model"] == 16
    assert config["input_shapes"] == {"observation.image": [3, 96, 96], "observation.state": [2]}
    # 2 s of actions at the dataset's 10 fps
    assert config["chunk_size"] == 20 and config["n_action_steps"] == 20
    losses = [float(m) for m in re.findall(r"step \d+/3  loss (\S+)", output)]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
    assert "Reloaded; its action for the dataset's first frame" in output


def test_2_evaluate_pretrained_policy(checkout, trained_policy):
    output = example("2_evaluate_pretrained_policy.py", "--max-steps", "10", "--device", "cpu", cwd=checkout)
    assert "using pusht" in output  # example 3's folder has no config.yaml: the PushT default
    out = checkout / "outputs/examples/2_evaluate_pretrained_policy"
    (result,) = json.loads((out / "summary.json").read_text())
    assert result["steps"] == 10 or result["success"]  # 10 steps unless the T reached its target before
    assert math.isfinite(result["sum_reward"]) and isinstance(result["success"], bool)
    assert f"sum reward {result['sum_reward']:.3f}" in output and "Success: " in output
    frames = decode_video(out / "rollout_0.mp4")
    # the first observation, then one per step but the last, which ends the episode (the env then resets)
    assert len(frames) == result["steps"]
    assert frames[0].shape == (384, 384, 3)  # pusht.yaml's visualization size


def test_3_and_2_with_diffusion_policy(checkout):
    """Examples 3 and 2 with the other policy: Diffusion Policy, conditioned on two observations."""
    fields = [arg for k, v in TINY_FIELDS["diffusion"].items() for arg in ("--set", f"{k}={json.dumps(v)}")]
    policy_dir = "outputs/examples/3_train_policy_diffusion"
    example(
        "3_train_policy.py",
        *("--policy", "diffusion", "--root", str(LOCAL_DATA), "--steps", "2", "--batch-size", "2"),
        *("--num-workers", "0", "--device", "cpu", "--output-dir", policy_dir, *fields),
        cwd=checkout,
    )
    config = json.loads((checkout / policy_dir / "config.json").read_text())
    assert config["type"] == "diffusion" and config["n_obs_steps"] == 2
    assert config["output_normalization_modes"] == {"ACTION": "min_max"}

    out = "outputs/examples/2_evaluate_pretrained_policy_diffusion"
    example(
        "2_evaluate_pretrained_policy.py",
        *("-p", policy_dir, "--max-steps", "10", "--device", "cpu", "--output-dir", out),
        cwd=checkout,
    )
    (result,) = json.loads((checkout / out / "summary.json").read_text())
    assert result["steps"] == 10 or result["success"]
    assert len(decode_video(checkout / out / "rollout_0.mp4")) == result["steps"]


def test_6_add_image_transforms(checkout, pusht_camera_dataset):
    tile = 48
    example(
        "6_add_image_transforms.py",
        *("--root", str(LOCAL_DATA), "--frame", "5", "--samples", "2", "--tile-size", str(tile)),
        cwd=checkout,
    )
    sheet = np.asarray(Image.open(checkout / "outputs/examples/6_add_image_transforms/transforms.png"))
    label = 16  # rows are a 16-pixel label band, then the pictures; pictures are 4 pixels apart
    assert sheet.shape[0] == 6 * (label + tile + 4)  # a row per transform (5) and one of random draws

    from lerobot.common.datasets.lerobot_dataset import LeRobotDataset

    frame = LeRobotDataset(REPO_ID, root=pusht_camera_dataset)[5]["observation.image"]
    original = Image.fromarray((frame * 255).round().to(torch.uint8).permute(1, 2, 0).numpy())
    original = np.asarray(original.resize((tile, tile), Image.NEAREST))

    def picture(row: int, col: int) -> np.ndarray:
        y, x = row * (label + tile + 4) + label, col * (tile + 4)
        return sheet[y : y + tile, x : x + tile]

    for row in range(6):
        np.testing.assert_array_equal(picture(row, 0), original)  # each row starts with the original frame
    darker, brighter = picture(0, 1).astype(int), picture(0, 2).astype(int)  # brightness 0.8 and 1.2
    assert darker.sum() < original.astype(int).sum() < brighter.sum()


def test_advanced_2_calculate_validation_loss(checkout, trained_policy):
    output = example(
        "advanced/2_calculate_validation_loss.py",
        *("--root", str(LOCAL_DATA), "--device", "cpu", "--batch-size", "8"),
        cwd=checkout,
    )
    result = json.loads(
        (checkout / "outputs/examples/advanced/2_calculate_validation_loss/validation_loss.json").read_text()
    )
    assert result["train_episodes"] == [0, 1] and result["val_episodes"] == [2]  # the last 10%, rounded up
    # every frame of each split (ACT drops no last frames)
    assert result["train_frames"] == 2 * EPISODE_LENGTH and result["val_frames"] == EPISODE_LENGTH
    assert all(math.isfinite(result[k]) and result[k] > 0 for k in ("train_loss", "val_loss"))
    assert f"val   loss {result['val_loss']:.4f}" in output


def test_advanced_3_profile_policy(checkout):
    overrides = ["policy=act", "env=pusht", f"dataset_repo_id={REPO_ID}", f"dataset_root={LOCAL_DATA}"]
    overrides += ["device=cpu", "training.batch_size=2", "training.num_workers=0"]
    overrides += ["policy.pretrained_backbone_weights=null"]
    overrides += [f"policy.{k}={v}" for k, v in TINY_FIELDS["act"].items()]
    output = example(
        "advanced/3_profile_policy.py",
        *("--steps", "2", "--warmup", "1", "--row-limit", "5", *overrides),
        cwd=checkout,
    )
    out = checkout / "outputs/examples/advanced/3_profile_policy"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["policy"] == "act" and summary["steps"] == 2 and summary["batch_size"] == 2
    # every phase of the recorded steps was measured, and the phases fit in the wall-clock time of a step
    phases = summary["cpu_ms_per_step"]
    assert sorted(phases) == ["backward", "data", "forward", "optimizer"] and min(phases.values()) > 0
    assert sum(phases.values()) <= summary["wall_ms_per_step"] * 1.05
    assert f"{summary['wall_ms_per_step']:.1f} ms per step" in output

    # The Chrome trace holds the 2 recorded steps (not the warm-up one) and the labelled phases inside them.
    events = json.loads((out / "trace.json").read_text())["traceEvents"]
    names = [e.get("name", "") for e in events]
    assert sorted(n for n in names if n.startswith("ProfilerStep")) == ["ProfilerStep#1", "ProfilerStep#2"]
    assert all(names.count(phase) == 2 for phase in ("data", "forward", "backward", "optimizer"))
    assert any(n.startswith("aten::") for n in names)
    # the table printed is the table saved, sorted by self CPU time
    table = (out / "key_averages.txt").read_text()
    assert table in output and "Self CPU" in table and "aten::" in table


# ------------------------------------------------------------------------------------------------ markdown examples


def bash_commands(markdown: Path) -> list[list[str]]:
    """The commands of a markdown file's ```bash blocks (see tests/markdown.py)."""
    return markdown_bash_commands(markdown.read_text(encoding="utf-8"))


def scaled(arg: str) -> str:
    key, sep, value = arg.partition("=")
    if sep and key in STEP_KEYS and int(value) > 0:
        return f"{key}={max(1, int(value) // STEP_SCALE)}"
    return arg


def with_budget(command: list[str]) -> list[str] | None:
    """The command to run for a documented one: tiny budgets for the scripts that train or evaluate. None for
    the dataset conversion when ../shared/data is absent (the checkout then links a recorded dataset instead)."""
    assert command[0] == "python", f"Markdown examples must only hold python commands: {shlex.join(command)}"
    script, args = command[1], command[2:]
    # Paths above the repository (../shared/data) are relative to the repository root, not to the checkout.
    args = [str((REPO / a).resolve()) if a.startswith("../") else a for a in args]
    if script == "lerobot/scripts/convert_dataset.py":
        return [sys.executable, script, *args] if SHARED_DATA.exists() else None
    if script == "lerobot/scripts/train.py":
        if "--cfg" in args:  # prints the composed configuration, trains nothing
            return [sys.executable, script, *args]
        if "resume=true" in args:  # the run's saved configuration already has the tiny policy
            return [sys.executable, script, *map(scaled, args), *TRAIN_BUDGET]
        assert any(a.startswith("training.offline_steps=") for a in args), (
            f"A documented training run should say how long it trains: {shlex.join(command)}"
        )
        policy = RECIPE_POLICY[overrides(command)["policy"]]
        tiny = [f"policy.{k}={json.dumps(v)}" for k, v in TINY_FIELDS[policy].items()]
        return [sys.executable, script, *map(scaled, args), *TRAIN_BUDGET, *tiny]
    if script == "lerobot/scripts/eval.py":
        return [sys.executable, script, *args, *EVAL_BUDGET]
    raise AssertionError(f"No budget known for {script}; teach with_budget about it: {shlex.join(command)}")


def run_markdown_command(command: list[str], cwd: Path) -> str:
    to_run = with_budget(command)
    if to_run is None:
        return ""
    return run(to_run, cwd)


def overrides(command: list[str]) -> dict[str, str]:
    return dict(a.split("=", 1) for a in command[2:] if "=" in a and not a.startswith("-"))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_4_train_policy_with_script(tmp_path, pusht_camera_dataset):
    convert, show_config, train, train_diffusion, evaluate = bash_commands(
        EXAMPLES / "4_train_policy_with_script.md"
    )
    assert convert[1] == "lerobot/scripts/convert_dataset.py" and "--cfg" in show_config
    # With the real PushT episode, the conversion makes the local copy the other commands train on.
    checkout = make_checkout(tmp_path / "checkout", None if SHARED_DATA.exists() else pusht_camera_dataset)

    run_markdown_command(convert, checkout)
    assert (checkout / LOCAL_DATA / "meta" / "info.json").is_file()
    printed = run_markdown_command(show_config, checkout)
    assert "dataset_repo_id: lerobot/pusht" in printed and "name: act" in printed

    # Every override of the training command is explained in the page's table.
    text = (EXAMPLES / "4_train_policy_with_script.md").read_text(encoding="utf-8")
    table = text.split("| override | what it does |")[1].split("\n\n")[0]
    for key in overrides(train):
        assert f"`{key}=" in table, f"{key} is not explained in the table"

    run_markdown_command(train, checkout)
    run_dir = checkout / overrides(train)["hydra.run.dir"]
    checkpoints = run_dir / "checkpoints"
    # a checkpoint every 10000 of 20000 steps, scaled
    assert sorted(p.name for p in checkpoints.iterdir()) == ["000002", "000004", "last"]
    config = json.loads((checkpoints / "last/pretrained_model/config.json").read_text())
    assert config["chunk_size"] == 20 and config["pretrained_backbone_weights"] is None
    assert [r["step"] for r in read_jsonl(run_dir / "metrics/train.jsonl")] == [1, 2, 3, 4]
    assert [r["step"] for r in read_jsonl(run_dir / "metrics/eval.jsonl")] == [2, 4]
    for path in ("loss_curve.png", "eval/step_000004/eval_info.json", ".hydra/config.yaml", "default.log"):
        assert (run_dir / path).is_file(), path

    printed = run_markdown_command(evaluate, checkout)
    eval_dir = checkout / evaluate[evaluate.index("--out-dir") + 1]
    info = json.loads((eval_dir / "eval_info.json").read_text())
    assert info["aggregated"]["n_episodes"] == 1 and "success" in printed

    run_markdown_command(train_diffusion, checkout)
    run_dir = checkout / overrides(train_diffusion)["hydra.run.dir"]
    # diffusion.yaml saves and evaluates every 25000 steps: this 20000-step run does both at its end only
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["000004", "last"]
    assert [r["step"] for r in read_jsonl(run_dir / "metrics/eval.jsonl")] == [4]
    config = json.loads((run_dir / "checkpoints/last/pretrained_model/config.json").read_text())
    assert config["type"] == "diffusion" and config["input_normalization_modes"]["STATE"] == "min_max"


def test_5_resume_training(tmp_path, pusht_camera_dataset):
    start, resume, extend = bash_commands(EXAMPLES / "5_resume_training.md")
    assert "resume=true" in resume and "resume=true" in extend
    checkout = make_checkout(tmp_path / "checkout", pusht_camera_dataset)
    run_dir = checkout / overrides(start)["hydra.run.dir"]
    assert (
        overrides(resume)["hydra.run.dir"]
        == overrides(extend)["hydra.run.dir"]
        == overrides(start)["hydra.run.dir"]
    )

    run_markdown_command(start, checkout)
    checkpoints = run_dir / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["000002", "000004", "last"]
    # The page's scenario: the run stops after its first checkpoint. Here: forget the second one, as if the run
    # had been killed before writing it.
    shutil.rmtree(checkpoints / "000004")
    (checkpoints / "last").unlink()
    (checkpoints / "last").symlink_to("000002")

    run_markdown_command(resume, checkout)
    assert os.readlink(checkpoints / "last") == "000004"
    assert [r["step"] for r in read_jsonl(run_dir / "metrics/train.jsonl")] == [
        1,
        2,
        3,
        4,
    ]  # 3, 4 redone once

    run_markdown_command(extend, checkout)
    assert os.readlink(checkpoints / "last") == "000006"
    assert [r["step"] for r in read_jsonl(run_dir / "metrics/train.jsonl")] == [1, 2, 3, 4, 5, 6]


def test_advanced_1_train_act_pusht(tmp_path, pusht_camera_dataset):
    markdown = EXAMPLES / "advanced/1_train_act_pusht/train_act_pusht.md"
    show_config, train = bash_commands(markdown)
    checkout = make_checkout(tmp_path / "checkout", pusht_camera_dataset)

    printed = run_markdown_command(show_config, checkout)
    for line in ("dataset_repo_id: lerobot/pusht", "override_dataset_stats: null", "chunk_size: 20"):
        assert line in printed

    run_markdown_command(train, checkout)
    pretrained = checkout / overrides(train)["hydra.run.dir"] / "checkpoints/last/pretrained_model"
    config = json.loads((pretrained / "config.json").read_text())
    # The recipe's four changes reached the trained policy.
    assert config["chunk_size"] == 20 and config["n_action_steps"] == 20
    assert config["pretrained_backbone_weights"] is None
    assert config["input_shapes"] == {"observation.image": [3, 96, 96], "observation.state": [2]}
    run_config = (pretrained / "config.yaml").read_text()
    assert "dataset_repo_id: lerobot/pusht" in run_config and "name: pusht" in run_config


# ------------------------------------------------------------------------------------------------ real robot guide


def start_emulated_bus(cwd: Path) -> tuple[subprocess.Popen, str]:
    """The guide's `python -m ...motors.emulator` command, running; returns the process and the port it prints."""
    cmd = [
        sys.executable,
        "-m",
        "lerobot.common.robot_devices.motors.emulator",
        "--brand",
        "feetech",
        "--motors",
        "6",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines = []
    for line in proc.stdout:  # the port line comes first; a crash ends the loop
        lines.append(line)
        match = re.search(r" on (/dev/\S+)", line)
        if match:
            return proc, match.group(1)
    proc.wait(timeout=10)
    raise AssertionError(f"the emulator printed no port:\n{''.join(lines)}")


def test_7_real_robot_guide_section_10_runs_on_emulated_arms(tmp_path):
    """Section 10 of the SO-100 guide, command by command as a user would run it, on two emulated buses.

    Sections 2-9 need hardware; tests/scripts/test_control_robot.py checks that their commands parse."""
    pytest.importorskip("scservo_sdk")
    pytest.importorskip("cv2")
    guide = (EXAMPLES / "7_get_started_with_real_robot.md").read_text(encoding="utf-8")
    section = guide[guide.index("## 10.") :]
    section = section[: section.index("\n## ", 1)]
    checkout = make_checkout(tmp_path / "checkout", None)
    buses = []
    try:
        buses = [start_emulated_bus(checkout) for _ in range(2)]
        ports = {"/dev/pts/3": buses[0][1], "/dev/pts/4": buses[1][1]}  # the guide's leader and follower
        commands = []
        for args in markdown_bash_commands(section):
            if args[:3] != ["python", "-m", "lerobot.common.robot_devices.motors.emulator"]:
                for guide_port, port in ports.items():
                    args = [a.replace(guide_port, port) for a in args]
                assert args[0] == "python", shlex.join(args)
                commands.append([sys.executable, *args[1:]])
        # calibration files, teleoperate, camera video, record, replay, train, record -p
        assert len(commands) == 7
        for cmd in commands:
            run(cmd, checkout, timeout=600)
    finally:
        for proc, _ in buses:
            proc.terminate()
            proc.wait(timeout=10)
    from lerobot.common.datasets.lerobot_dataset import LeRobotDataset

    recorded = LeRobotDataset("local/so100_emulated", root=checkout / "data/local/so100_emulated")
    evaluated = LeRobotDataset("local/eval_so100_emulated", root=checkout / "data/local/eval_so100_emulated")
    assert recorded.num_episodes == 2 and evaluated.num_episodes == 1
    assert "observation.images.laptop" in recorded.camera_keys and evaluated.num_samples > 0
