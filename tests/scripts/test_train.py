"""train.py: checkpoints, metrics, evaluation, exact resume, refusing to clobber a run, bad configs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lerobot.common.policies.factory import available_policies, make_policy_config
from lerobot.common.policies.pretrained import PolicyConfigError
from lerobot.common.training.checkpoint import CheckpointError
from lerobot.common.training.factory import RunConfigError
from lerobot.scripts.train import RunDirError
from tests.scripts.conftest import (
    NEEDS_CAMERA,
    TINY_TRAIN_OVERRIDES,
    base_overrides,
    pixels_overrides,
    run_train,
)

REPO = Path(__file__).resolve().parents[2]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_policy_has_tiny_train_overrides():
    assert set(TINY_TRAIN_OVERRIDES) == set(available_policies())


def test_training_run_layout(pusht_state_dataset, tmp_path):
    run = tmp_path / "run"
    summary = run_train(base_overrides(pusht_state_dataset) + TINY_TRAIN_OVERRIDES["act"], run)
    assert summary["steps"] == 6
    ckpts = run / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["000003", "000006", "last"]
    assert os.readlink(ckpts / "last") == "000006"
    pretrained = ckpts / "last" / "pretrained_model"
    assert sorted(p.name for p in pretrained.iterdir()) == [
        "README.md",
        "config.json",
        "config.yaml",
        "model.safetensors",
    ]
    config = json.loads((pretrained / "config.json").read_text())
    assert config["type"] == "act" and config["dim_model"] == 16
    assert config["input_shapes"] == {"observation.environment_state": [16], "observation.state": [2]}
    state = ckpts / "last" / "training_state"
    assert json.loads((state / "training_step.json").read_text()) == {"step": 6}
    assert (state / "optimizer_state.safetensors").exists() and (state / "rng_state.safetensors").exists()

    train_log = read_jsonl(run / "metrics" / "train.jsonl")
    assert [r["step"] for r in train_log] == [1, 2, 3, 4, 5, 6]
    assert {"loss", "grad_norm", "lr", "update_s", "data_s", "samples", "epoch"} <= set(train_log[0])
    assert (run / "metrics" / "train.csv").read_text().startswith("step,samples,")
    assert (run / "loss_curve.png").read_bytes()[:4] == b"\x89PNG"

    eval_info = json.loads((run / "eval" / "step_000006" / "eval_info.json").read_text())
    assert [e["seed"] for e in eval_info["per_episode"]] == [1, 2]
    agg = eval_info["aggregated"]
    assert {"avg_sum_reward", "avg_max_reward", "pc_success", "eval_s", "success_beta_posterior"} <= set(agg)
    assert len(eval_info["video_paths"]) == 1 and Path(eval_info["video_paths"][0]).stat().st_size > 0
    assert read_jsonl(run / "metrics" / "eval.jsonl")[0]["step"] == 6


def test_refuses_to_reuse_a_run_folder(pusht_state_dataset, tmp_path):
    run = tmp_path / "run"
    overrides = (
        base_overrides(pusht_state_dataset, steps=3) + TINY_TRAIN_OVERRIDES["act"] + ["training.eval_freq=0"]
    )
    run_train(overrides, run)
    with pytest.raises(RunDirError, match="resume=true"):
        run_train(overrides, run)
    with pytest.raises(CheckpointError, match="checkpoints/last"):
        run_train(overrides + ["resume=true"], tmp_path / "never_ran")


def test_resume_continues_exactly(pusht_state_dataset, tmp_path):
    """(3 steps, stop, resume, 3 more) logs the same losses and ends with the same weights as 6 straight steps."""
    common = base_overrides(pusht_state_dataset) + TINY_TRAIN_OVERRIDES["act"] + ["training.eval_freq=0"]
    run_train(common, tmp_path / "straight")
    run_train(common + ["training.offline_steps=3"], tmp_path / "split")
    run_train(common + ["training.offline_steps=6", "resume=true"], tmp_path / "split")

    straight = read_jsonl(tmp_path / "straight" / "metrics" / "train.jsonl")
    split = read_jsonl(tmp_path / "split" / "metrics" / "train.jsonl")
    assert [r["step"] for r in split] == [1, 2, 3, 4, 5, 6]
    assert [r["loss"] for r in split] == [r["loss"] for r in straight]
    a = load_file(tmp_path / "straight" / "checkpoints" / "last" / "pretrained_model" / "model.safetensors")
    b = load_file(tmp_path / "split" / "checkpoints" / "last" / "pretrained_model" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_config_errors(pusht_state_dataset, tmp_path):
    common = base_overrides(pusht_state_dataset, steps=1) + ["training.eval_freq=0"]
    with pytest.raises(PolicyConfigError, match="did you mean 'chunk_size'"):
        run_train(common + ["policy=act", "policy.chunk_sizee=5"], tmp_path / "a")
    with pytest.raises(RunConfigError, match="observation.image"):  # the env would observe images
        run_train([o for o in common if "obs_type" not in o] + ["policy=act"], tmp_path / "b")
    single_lr = [
        n for n in TINY_TRAIN_OVERRIDES if not hasattr(make_policy_config(n), "optimizer_lr_backbone")
    ]
    if single_lr:  # e.g. Diffusion Policy has one learning rate
        with pytest.raises(RunConfigError, match="training.lr_backbone"):
            run_train(
                common + [*TINY_TRAIN_OVERRIDES[single_lr[0]], "training.lr_backbone=1e-4"], tmp_path / "c"
            )


def test_training_lr_sets_the_policy_optimizer(pusht_state_dataset, tmp_path):
    run_train(
        base_overrides(pusht_state_dataset, steps=1)
        + TINY_TRAIN_OVERRIDES["act"]
        + ["training.eval_freq=0", "training.lr=3e-4"],
        tmp_path / "run",
    )
    config = json.loads((tmp_path / "run/checkpoints/last/pretrained_model/config.json").read_text())
    assert config["optimizer_lr"] == 3e-4


@pytest.mark.parametrize("name", available_policies())
def test_every_policy_trains_resumes_and_evaluates(name, pusht_state_dataset, tmp_path, request, monkeypatch):
    monkeypatch.setenv("LEROBOT_KEEP_FREED_MEMORY", "0")  # eval.py runs in this process: leave malloc alone
    if name not in TINY_TRAIN_OVERRIDES:
        pytest.fail(f"No tiny training overrides for {name}")
    run = tmp_path / "run"
    if name in NEEDS_CAMERA:
        common = pixels_overrides(request.getfixturevalue("pusht_pixels_dataset"), steps=4)
    else:
        common = base_overrides(pusht_state_dataset, steps=4)
    common += TINY_TRAIN_OVERRIDES[name]
    run_train(common + ["training.offline_steps=2", "training.save_freq=2"], run)
    summary = run_train(common + ["resume=true", "training.save_freq=2"], run)
    assert summary["steps"] == 4 and summary["last_eval"] is not None
    from lerobot.scripts.eval import main as eval_main

    info = eval_main(
        [
            "-p",
            str(run / "checkpoints/last/pretrained_model"),
            "--out-dir",
            str(tmp_path / "eval"),
            "eval.n_episodes=2",
            "eval.batch_size=1",
            "--max-videos",
            "0",
        ]
    )
    assert len(info["per_episode"]) == 2 and (tmp_path / "eval" / "eval_info.json").exists()


def test_cli_runs_as_the_readme_shows(pusht_state_dataset, tmp_path):
    run = tmp_path / "cli_run"
    cmd = [
        sys.executable,
        "lerobot/scripts/train.py",
        *base_overrides(pusht_state_dataset, steps=2),
        *TINY_TRAIN_OVERRIDES["act"],
        "training.eval_freq=0",
        f"hydra.run.dir={run}",
        "hydra.job.name=cli",
    ]
    result = subprocess.run(
        cmd, cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "step:2 " in result.stdout + result.stderr
    assert (run / "checkpoints" / "last" / "pretrained_model" / "model.safetensors").exists()


def test_two_processes_match_one_process_on_the_same_global_batch(pusht_state_dataset, tmp_path):
    """DDP over gloo with batch 2 per process = one process with batch 4 (deterministic policy: no dropout/VAE)."""
    deterministic = TINY_TRAIN_OVERRIDES["act"] + ["policy.dropout=0.0", "policy.use_vae=false"]
    common = [*base_overrides(pusht_state_dataset, steps=3), *deterministic, "training.eval_freq=0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run(
        [
            sys.executable,
            "lerobot/scripts/train.py",
            *common,
            "training.batch_size=4",
            f"hydra.run.dir={tmp_path / 'one'}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert single.returncode == 0, single.stderr[-3000:]
    ddp = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--master_port=29517",
            "lerobot/scripts/train.py",
            *common,
            "training.batch_size=2",
            f"hydra.run.dir={tmp_path / 'two'}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    a = load_file(tmp_path / "one" / "checkpoints" / "last" / "pretrained_model" / "model.safetensors")
    b = load_file(tmp_path / "two" / "checkpoints" / "last" / "pretrained_model" / "model.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=key)
    losses_one = [r["loss"] for r in read_jsonl(tmp_path / "one" / "metrics" / "train.jsonl")]
    losses_two = [r["loss"] for r in read_jsonl(tmp_path / "two" / "metrics" / "train.jsonl")]
    assert losses_one == pytest.approx(losses_two, rel=1e-4)


def test_online_phase_trains_on_its_own_rollouts(pusht_state_dataset, tmp_path):
    run = tmp_path / "run"
    online = [
        "training.online_steps=3",
        "training.online_steps_between_rollouts=2",
        "training.online_buffer_capacity=100",
        "training.online_env_seed=500",
        "training.eval_freq=0",
        "training.save_freq=5",
    ]
    summary = run_train(
        base_overrides(pusht_state_dataset, steps=2) + TINY_TRAIN_OVERRIDES["act"] + online, run
    )
    assert summary["steps"] == 5
    logged = [r for r in read_jsonl(run / "metrics" / "train.jsonl") if "online_frames" in r]
    assert [r["step"] for r in logged] == [3, 4, 5]
    assert [r["online_episodes"] for r in logged] == [1, 1, 2]  # a rollout every 2 online steps
    assert logged[0]["online_frames"] == 20  # env.episode_length
    assert os.readlink(run / "checkpoints" / "last") == "000005"
