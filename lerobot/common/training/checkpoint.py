"""Training checkpoints: the layout the reference implementation writes, without pickle.

    <run_dir>/checkpoints/
        000100/
            pretrained_model/    config.json, config.yaml (the whole run config), model.safetensors, README.md
            training_state/      training_step.json, optimizer_state.safetensors, optimizer_param_groups.json,
                                 scheduler_state.json, rng_state.safetensors, rng_state.json
        last -> 000100

The training state is tensors in safetensors plus plain JSON, so loading it never runs code from the file
(the reference's older `training_state.pth` needed `torch.load` with pickle). A checkpoint is assembled in a
hidden temporary folder and renamed into place, and `last` is re-pointed with an atomic rename, so a crash at any
moment leaves either the previous checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from safetensors.torch import load_file, save_file

from lerobot.common.datasets.utils import atomic_path
from lerobot.common.policies.pretrained import PreTrainedPolicy

CHECKPOINTS_DIR = "checkpoints"
LAST_CHECKPOINT = "last"
PRETRAINED_MODEL = "pretrained_model"
TRAINING_STATE = "training_state"
RUN_CONFIG_NAME = "config.yaml"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete or does not fit the run resuming from it."""


def step_name(step: int, total_steps: int) -> str:
    """Zero-padded step folder name, at least 6 digits, enough for `total_steps` (so folders sort by step)."""
    return f"{step:0{max(6, len(str(total_steps)))}d}"


def last_checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / CHECKPOINTS_DIR / LAST_CHECKPOINT


# ---------------------------------------------------------------------------------------------------- save


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    total_steps: int,
    policy: PreTrainedPolicy,
    cfg: DictConfig,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    datasets: list[str] | None = None,
) -> Path:
    """Write the checkpoint of `step` atomically and point `checkpoints/last` at it; return its folder."""
    checkpoints = Path(run_dir) / CHECKPOINTS_DIR
    checkpoints.mkdir(parents=True, exist_ok=True)
    final = checkpoints / step_name(step, total_steps)
    tmp = checkpoints / f".tmp-{final.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    pretrained = policy.save_pretrained(tmp / PRETRAINED_MODEL, datasets=datasets or [])
    OmegaConf.save(cfg, pretrained / RUN_CONFIG_NAME, resolve=True)
    save_training_state(tmp / TRAINING_STATE, step, optimizer, scheduler)

    if final.exists():  # a re-run of the same step: swap the old folder out only once the new one is complete
        old = checkpoints / f".old-{final.name}-{os.getpid()}"
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old)
    else:
        os.replace(tmp, final)
    _point_last_at(checkpoints, final.name)
    return final


def _point_last_at(checkpoints: Path, name: str) -> None:
    link = checkpoints / LAST_CHECKPOINT
    tmp_link = checkpoints / f".tmp-{LAST_CHECKPOINT}-{os.getpid()}"
    if tmp_link.is_symlink() or tmp_link.exists():
        tmp_link.unlink()
    os.symlink(name, tmp_link)  # relative, so the run folder can be moved
    os.replace(tmp_link, link)


def save_training_state(
    directory: Path,
    step: int,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    _write_json(directory / "training_step.json", {"step": int(step)})

    tensors, plain = _split_tensors(optimizer.state_dict()["state"], prefix="state")
    save_file(tensors, directory / "optimizer_state.safetensors")
    param_groups = optimizer.state_dict()["param_groups"]
    _write_json(directory / "optimizer_param_groups.json", {"param_groups": param_groups, "state": plain})
    if scheduler is not None:
        _write_json(directory / "scheduler_state.json", scheduler.state_dict())

    rng_tensors, rng_plain = rng_state()
    save_file(rng_tensors, directory / "rng_state.safetensors")
    _write_json(directory / "rng_state.json", rng_plain)


def _split_tensors(state: dict[int, dict[str, Any]], prefix: str) -> tuple[dict[str, torch.Tensor], dict]:
    """Optimizer per-parameter state -> (flat tensors "state.<param>.<name>", the non-tensor values)."""
    tensors, plain = {}, {}
    for param_id, values in state.items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{prefix}.{param_id}.{name}"] = value.detach().cpu().contiguous()
            else:
                plain.setdefault(str(param_id), {})[name] = value
    return tensors, plain


def _write_json(path: Path, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=_json_default), encoding="utf-8")


def _json_default(value: Any) -> Any:
    if isinstance(value, (tuple, set)):
        return list(value)
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    raise TypeError(
        f"Cannot store {type(value).__name__} in a training-state JSON file; optimizer and scheduler states "
        "must hold tensors, numbers, strings and lists."
    )


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Every random generator training uses: (tensors, JSON-able values)."""
    version, mt_state, gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    tensors = {"torch": torch.get_rng_state(), "numpy_keys": torch.from_numpy(np_keys.astype(np.int64))}
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = state
    plain = {
        "python": {"version": version, "state": list(mt_state), "gauss": gauss},
        "numpy": {
            "kind": np_kind,
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
    }
    return tensors, plain


def set_rng_state(tensors: dict[str, torch.Tensor], plain: dict[str, Any]) -> None:
    py = plain["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    npy = plain["numpy"]
    keys = tensors["numpy_keys"].numpy().astype(np.uint32)
    np.random.set_state((npy["kind"], keys, npy["pos"], npy["has_gauss"], npy["gauss"]))
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("cuda.")]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


# ---------------------------------------------------------------------------------------------------- load


def resolve_checkpoint(run_dir: str | Path) -> Path:
    """The checkpoint folder `checkpoints/last` points at, checked to be complete."""
    last = last_checkpoint_dir(run_dir)
    if not last.exists():
        raise CheckpointError(
            f"Cannot resume: {last} does not exist. Point hydra.run.dir at the folder of a run that saved a "
            "checkpoint (it has checkpoints/last), or start a new run without resume=true."
        )
    folder = last.resolve()
    for needed in (PRETRAINED_MODEL, TRAINING_STATE):
        if not (folder / needed).is_dir():
            raise CheckpointError(f"Checkpoint {folder} is incomplete: it has no {needed}/ folder.")
    return folder


def load_training_state(
    directory: Path,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
) -> int:
    """Restore optimizer, scheduler and RNG states saved by `save_training_state`; return the step."""
    try:
        step = json.loads((directory / "training_step.json").read_text())["step"]
        groups = json.loads((directory / "optimizer_param_groups.json").read_text())
        flat = load_file(directory / "optimizer_state.safetensors")
    except (OSError, KeyError, ValueError) as e:
        raise CheckpointError(f"Cannot read the training state in {directory}: {e}") from e

    state: dict[int, dict[str, Any]] = {}
    for key, tensor in flat.items():
        _, param_id, name = key.split(".", 2)
        state.setdefault(int(param_id), {})[name] = tensor
    for param_id, values in groups.get("state", {}).items():
        state.setdefault(int(param_id), {}).update(values)
    saved_sizes = [len(g["params"]) for g in groups["param_groups"]]
    sizes = [len(g["params"]) for g in optimizer.param_groups]
    if saved_sizes != sizes:
        raise CheckpointError(
            f"The optimizer state in {directory} has parameter groups of sizes {saved_sizes}, this policy's "
            f"optimizer {sizes}: the checkpoint belongs to a different policy configuration."
        )
    optimizer.load_state_dict({"state": state, "param_groups": groups["param_groups"]})

    scheduler_file = directory / "scheduler_state.json"
    if scheduler is not None:
        if not scheduler_file.exists():
            raise CheckpointError(f"{directory} has no scheduler_state.json but this run uses a scheduler.")
        scheduler.load_state_dict(json.loads(scheduler_file.read_text()))

    rng_file = directory / "rng_state.safetensors"
    if rng_file.exists():
        set_rng_state(load_file(rng_file), json.loads((directory / "rng_state.json").read_text()))
    return int(step)
