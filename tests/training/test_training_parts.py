"""Training machinery without a training run: sampling order, checkpoints, the online buffer, logging."""

from __future__ import annotations

import json
import os
import random
from itertools import islice

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from lerobot.common.training import checkpoint as ckpt
from lerobot.common.training.logger import TrainLogger, format_train_line
from lerobot.common.training.online import OnlineBuffer
from lerobot.common.training.sampling import ResumableBatchSampler

# ---------------------------------------------------------------------------------------------- sampling


def test_resumed_sampler_continues_the_same_sequence():
    full = list(islice(ResumableBatchSampler(range(10), batch_size=4, seed=3), 12))
    resumed = list(islice(ResumableBatchSampler(range(10), batch_size=4, seed=3, start_step=5), 7))
    assert resumed == full[5:]
    assert [len(b) for b in full[:3]] == [4, 4, 2]  # one process keeps the short last batch of an epoch
    assert sorted(sum(full[:3], [])) == list(range(10)) and full[:3] != full[3:6]  # epochs differ


def test_processes_split_each_global_batch():
    one = list(islice(ResumableBatchSampler(range(20), batch_size=6, seed=0), 6))
    ranks = [
        list(islice(ResumableBatchSampler(range(20), 3, seed=0, rank=r, world_size=2), 6)) for r in (0, 1)
    ]
    # Several processes drop the incomplete last global batch of every epoch (3 full batches of 6 per epoch).
    one_full = [b for b in one if len(b) == 6]
    assert [a + b for a, b in zip(*ranks)][:3] == one_full[:3]
    with pytest.raises(ValueError, match="cannot fill one global batch"):
        ResumableBatchSampler(range(5), batch_size=3, seed=0, rank=0, world_size=2)


# ---------------------------------------------------------------------------------------------- checkpoints


def _model_and_optimizer():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1 / (1 + s))
    for _ in range(3):
        model(torch.randn(4, 3)).sum().backward()
        optimizer.step()
        optimizer.zero_grad()
        scheduler.step()
    return model, optimizer, scheduler


def test_training_state_round_trip_without_pickle(tmp_path):
    model, optimizer, scheduler = _model_and_optimizer()
    random.seed(5)
    np.random.seed(5)
    torch.manual_seed(5)
    ckpt.save_training_state(tmp_path, 3, optimizer, scheduler)
    expected = (random.random(), np.random.rand(), torch.rand(1))
    assert not list(tmp_path.glob("*.pt*"))  # nothing that needs unpickling

    _, fresh_opt, fresh_sched = _model_and_optimizer()
    fresh_opt.state.clear()
    assert ckpt.load_training_state(tmp_path, fresh_opt, fresh_sched) == 3
    assert (random.random(), np.random.rand(), torch.rand(1)) == expected
    saved, loaded = optimizer.state_dict(), fresh_opt.state_dict()
    for pid, values in saved["state"].items():
        for name, value in values.items():
            assert torch.equal(torch.as_tensor(loaded["state"][pid][name]), torch.as_tensor(value))
    assert fresh_sched.state_dict()["last_epoch"] == scheduler.state_dict()["last_epoch"]


def test_training_state_of_another_policy_is_refused(tmp_path):
    _, optimizer, scheduler = _model_and_optimizer()
    ckpt.save_training_state(tmp_path, 3, optimizer, scheduler)
    other = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))])
    with pytest.raises(ckpt.CheckpointError, match="different policy configuration"):
        ckpt.load_training_state(tmp_path, other, None)


class _TinyPolicy(torch.nn.Linear):
    def save_pretrained(self, directory, datasets=()):
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "model.safetensors").write_bytes(b"weights")
        return directory


def test_a_crash_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model, optimizer, scheduler = _model_and_optimizer()
    policy = _TinyPolicy(3, 2)
    cfg = OmegaConf.create({"seed": 1})
    ckpt.save_checkpoint(tmp_path, 10, 20, policy, cfg, optimizer, scheduler)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt, "save_training_state", crash)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(tmp_path, 20, 20, policy, cfg, optimizer, scheduler)
    checkpoints = tmp_path / "checkpoints"
    assert os.readlink(checkpoints / "last") == "000010"
    assert not (checkpoints / "000020").exists()
    assert ckpt.resolve_checkpoint(tmp_path) == (checkpoints / "000010").resolve()


def test_step_names_sort_and_fit_the_run():
    assert ckpt.step_name(5, 1000) == "000005"
    assert ckpt.step_name(5, 12_000_000) == "00000005"


# ---------------------------------------------------------------------------------------------- online buffer


def _episode(n: int, offset: float) -> dict[str, torch.Tensor]:
    return {
        "observation.state": torch.arange(n, dtype=torch.float32)[:, None] + offset,
        "action": torch.arange(n, dtype=torch.float32)[:, None] + offset,
    }


def test_online_buffer_pads_at_episode_edges_like_the_dataset():
    buffer = OnlineBuffer({"observation.state": [-1, 0], "action": [0, 1, 2]})
    buffer.add_episode(_episode(3, 0))
    buffer.add_episode(_episode(2, 100))
    assert len(buffer) == 5 and buffer.num_episodes == 2
    first = buffer[0]
    assert first["observation.state"].squeeze(-1).tolist() == [0, 0]
    assert first["observation.state_is_pad"].tolist() == [True, False]
    last = buffer[4]  # frame 1 of the second episode: nothing leaks in from the first
    assert last["observation.state"].squeeze(-1).tolist() == [100, 101]
    assert last["action"].squeeze(-1).tolist() == [101, 101, 101]
    assert last["action_is_pad"].tolist() == [False, True, True]


def test_online_buffer_drops_whole_old_episodes():
    buffer = OnlineBuffer({"action": [0]}, capacity=4)
    buffer.add_episode(_episode(3, 0))
    buffer.add_episode(_episode(3, 100))
    assert len(buffer) == 3 and buffer[0]["action"].item() == 100
    with pytest.raises(ValueError, match="disagree"):
        buffer.add_episode({"observation.state": torch.zeros(2, 1), "action": torch.zeros(3, 1)})


# ---------------------------------------------------------------------------------------------- logging


def test_logger_truncates_metrics_after_the_resumed_step(tmp_path):
    cfg = OmegaConf.create({"wandb": {"enable": False}})
    logger = TrainLogger(tmp_path, cfg)
    for step in (1, 2, 3, 4):
        logger.log_train({"step": step, "loss": 1.0 / step, "lr": 1e-4})
    TrainLogger(tmp_path, cfg, resume_step=2)
    steps = [
        json.loads(line)["step"] for line in (tmp_path / "metrics" / "train.jsonl").read_text().splitlines()
    ]
    assert steps == [1, 2]
    assert (tmp_path / "metrics" / "train.csv").read_text().splitlines()[0] == "step,loss,lr"
    assert logger.plot().exists()


def test_train_line_reads_like_the_reference():
    line = format_train_line({"step": 2000, "samples": 16000, "epoch": 0.5, "loss": 0.1234, "lr": 1e-5})
    assert line == "step:2K smpl:16K epch:0.50 loss:0.123 lr:1.0e-05"


def test_wandb_without_the_package_explains_itself(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_wandb(name, *args, **kwargs):
        if name == "wandb":
            raise ImportError("No module named 'wandb'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_wandb)
    with pytest.raises(ImportError, match="pip install wandb"):
        TrainLogger(tmp_path, OmegaConf.create({"wandb": {"enable": True}}))
