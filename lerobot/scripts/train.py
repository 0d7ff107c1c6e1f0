"""Train a policy on a LeRobotDataset, evaluating it in simulation as it learns.

    python lerobot/scripts/train.py policy=act env=aloha env.task=AlohaInsertion-v0 \
        dataset_repo_id=lerobot/aloha_sim_insertion_human device=cpu
    python lerobot/scripts/train.py policy=diffusion_pusht_keypoints env=pusht dataset_root=outputs/data/pusht_keypoints
    python lerobot/scripts/train.py hydra.run.dir=outputs/train/my_run resume=true    # continue a run
    torchrun --nproc_per_node 2 lerobot/scripts/train.py ...                          # data-parallel

Configs: lerobot/configs/default.yaml, env/*.yaml, policy/*.yaml (hydra; any key can be overridden). A run folder
holds `checkpoints/<step>/{pretrained_model, training_state}` and `checkpoints/last`, `metrics/` (JSONL + CSV),
`loss_curve.png` and `eval/` (rollout videos and eval_info.json of each evaluation).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict
from tqdm import tqdm

from lerobot.common.datasets.hub import resolve_dataset_root
from lerobot.common.datasets.lerobot_dataset import LeRobotDataset
from lerobot.common.datasets.metadata import load_metadata
from lerobot.common.datasets.sampler import EpisodeAwareSampler
from lerobot.common.datasets.transforms import ImageTransforms
from lerobot.common.datasets.utils import atomic_path
from lerobot.common.policies.factory import make_policy
from lerobot.common.policies.pretrained import PreTrainedPolicy, load_weights
from lerobot.common.training import distributed
from lerobot.common.training.checkpoint import (
    CHECKPOINTS_DIR,
    PRETRAINED_MODEL,
    RUN_CONFIG_NAME,
    TRAINING_STATE,
    load_training_state,
    resolve_checkpoint,
    save_checkpoint,
)
from lerobot.common.training.factory import apply_stats_overrides, make_policy_config
from lerobot.common.training.logger import TrainLogger
from lerobot.common.training.sampling import ResumableBatchSampler
from lerobot.common.utils.utils import (
    autocast,
    get_device,
    init_logging,
    keep_freed_memory,
    set_global_seed,
)

log = logging.getLogger("lerobot.train")


class RunDirError(FileExistsError):
    """The run folder holds a previous run and resume was not asked for."""


# -------------------------------------------------------------------------------------------- config


def resolve_run_config(
    cfg: DictConfig, run_dir: Path, cli_overrides: list[str]
) -> tuple[DictConfig, Path | None]:
    """The config to train with and, when resuming, the checkpoint to resume from.

    A fresh run refuses a folder that already has checkpoints. A resumed run takes the checkpoint's config (what
    the run was started with) and re-applies the command line's `key.sub=value` overrides on top, e.g. a larger
    `training.offline_steps` to extend it.
    """
    checkpoints = run_dir / CHECKPOINTS_DIR
    if not cfg.resume:
        if checkpoints.exists() and any(checkpoints.iterdir()):
            raise RunDirError(
                f"{run_dir} already holds a training run (it has {CHECKPOINTS_DIR}/). Continue it with "
                "resume=true, or choose a new folder with hydra.run.dir=<path>."
            )
        return cfg, None
    checkpoint = resolve_checkpoint(run_dir)
    saved = OmegaConf.load(checkpoint / PRETRAINED_MODEL / RUN_CONFIG_NAME)
    for item in cli_overrides:
        key, _, value = item.lstrip("+~").partition("=")
        if key.startswith("hydra.") or key in ("resume",):
            continue
        if "." not in key and key in ("env", "policy"):
            if OmegaConf.select(saved, f"{key}.name") != OmegaConf.select(cfg, f"{key}.name"):
                log.warning(
                    "Ignoring %s on resume: the run was started with %s=%s.",
                    item,
                    key,
                    OmegaConf.select(saved, f"{key}.name"),
                )
            continue
        OmegaConf.update(saved, key, OmegaConf.select(cfg, key), force_add=True)
    saved.resume = True
    log.info("Resuming from %s", checkpoint)
    return saved, checkpoint


# -------------------------------------------------------------------------------------------- one update


def update_policy(
    model: torch.nn.Module,
    policy: PreTrainedPolicy,
    batch: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    grad_clip_norm: float,
    scaler: torch.amp.GradScaler,
    device: torch.device,
    use_amp: bool,
) -> dict[str, float]:
    """forward -> backward -> clip -> step -> schedule -> policy.update() (e.g. TD-MPC's EMA target)."""
    with autocast(device, use_amp):
        output = model(batch)
    loss = output["loss"]
    if not torch.isfinite(loss):
        raise FloatingPointError(
            f"The training loss is {loss.item()}; lower the learning rate or check the data."
        )
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), grad_clip_norm)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    if scheduler is not None:
        scheduler.step()
    policy.update()
    metrics = {"loss": loss.item(), "grad_norm": float(grad_norm), "lr": optimizer.param_groups[0]["lr"]}
    for key, value in output.items():  # the policy's own loss terms, e.g. ACT's l1_loss and kld_loss
        if (
            key != "loss"
            and isinstance(value, (int, float, torch.Tensor))
            and torch.as_tensor(value).numel() == 1
        ):
            metrics[key] = float(value)
    return metrics


# -------------------------------------------------------------------------------------------- training


def train(cfg: DictConfig, run_dir: str | Path, cli_overrides: list[str] | None = None) -> dict[str, Any]:
    """Run (or resume) the training described by `cfg` in `run_dir`; return a summary dict."""
    run_dir = Path(run_dir)
    dist = distributed.setup()
    cfg, checkpoint = resolve_run_config(cfg, run_dir, list(cli_overrides or []))
    device = dist.device if dist.enabled else get_device(cfg.device)
    set_global_seed(int(cfg.seed))
    use_amp = bool(cfg.use_amp)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True

    # The dataset first (its fps and features shape the policy), then the policy.
    tc = cfg.training
    root = resolve_dataset_root(cfg.dataset_repo_id, cfg.get("dataset_root", None))
    meta = load_metadata(root)
    policy_cfg = make_policy_config(cfg, meta.features)
    transforms = ImageTransforms(OmegaConf.to_container(tc.image_transforms, resolve=True))
    dataset = LeRobotDataset(
        cfg.dataset_repo_id,
        root=root,
        episodes=cfg.get("dataset_episodes", None),
        delta_timestamps=policy_cfg.delta_timestamps(meta.fps),
        image_transforms=transforms if tc.image_transforms.enable else None,
    )
    cameras = [k for k in policy_cfg.input_shapes if k in dataset.camera_keys]
    stats = apply_stats_overrides(dataset.stats, cfg.get("override_dataset_stats", None), cameras)
    policy = make_policy(policy_cfg, dataset_stats=stats)
    if checkpoint is not None:
        from safetensors.torch import load_file

        weights = checkpoint / PRETRAINED_MODEL / "model.safetensors"
        load_weights(policy, load_file(weights), strict=True, source=str(weights))
    policy.to(device)

    total_steps = int(tc.offline_steps) + int(tc.get("online_steps", 0) or 0)
    optimizer = policy.make_optimizer()
    scheduler = policy.make_lr_scheduler(optimizer, total_steps)
    start_step = 0
    if checkpoint is not None:
        start_step = load_training_state(checkpoint / TRAINING_STATE, optimizer, scheduler)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and device.type == "cuda")
    model = dist.wrap(policy)

    frames = EpisodeAwareSampler(
        dataset.episode_data_index, drop_n_last_frames=policy_cfg.drop_n_last_frames
    ).indices
    batch_sampler = ResumableBatchSampler(
        frames,
        int(tc.batch_size),
        seed=int(cfg.seed),
        start_step=min(start_step, int(tc.offline_steps)),
        rank=dist.rank,
        world_size=dist.world_size,
    )
    num_workers = int(tc.num_workers)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=batch_sampler,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=num_workers > 0,
        prefetch_factor=2 if num_workers > 0 else None,
        # Its own generator: creating the loader's iterator must not draw from the global RNG, whose state a
        # resumed run restores from the checkpoint (and worker seeds then depend on the run's seed only).
        generator=torch.Generator().manual_seed(int(cfg.seed)),
    )

    logger = TrainLogger(run_dir, cfg, enabled=dist.is_main, resume_step=start_step if checkpoint else None)
    evaluator = Evaluator(cfg, run_dir, device, use_amp, fps=meta.fps) if dist.is_main else None
    save_checkpoints = tc.save_checkpoint if tc.get("save_model", None) is None else tc.save_model
    n_params = sum(p.numel() for p in policy.parameters())
    if dist.is_main:
        log.info(
            "Training %s (%.2fM parameters) on %s: %d frames in %d episodes at %g fps; %d steps of batch %d%s; "
            "device %s; output %s",
            policy.name,
            n_params / 1e6,
            cfg.dataset_repo_id,
            dataset.num_samples,
            dataset.num_episodes,
            meta.fps,
            total_steps,
            int(tc.batch_size),
            f" x {dist.world_size} processes" if dist.enabled else "",
            device,
            run_dir,
        )

    def on_step_end(step: int, metrics: dict[str, float] | None) -> None:
        if metrics is not None and dist.is_main:
            bar.write(logger.log_train(metrics))
        if save_checkpoints and (step % int(tc.save_freq) == 0 or step == total_steps):
            if dist.is_main:
                save_checkpoint(
                    run_dir,
                    step,
                    total_steps,
                    policy,
                    cfg,
                    optimizer,
                    scheduler,
                    datasets=[cfg.dataset_repo_id],
                )
                logger.plot()
            dist.barrier()
        if evaluator is not None and evaluator.due(step, total_steps):
            bar.write(logger.log_eval(step, evaluator.run(policy, step)))
            logger.plot()

    bar = tqdm(
        total=total_steps,
        initial=start_step,
        desc="training",
        unit="step",
        disable=not dist.is_main,
        dynamic_ncols=True,
    )
    policy.train()
    step = start_step
    data_iter = iter(loader)
    samples_per_step = int(tc.batch_size) * dist.world_size
    while step < int(tc.offline_steps):
        t0 = time.perf_counter()
        batch = next(data_iter)
        batch = {
            k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()
        }
        t1 = time.perf_counter()
        metrics = update_policy(
            model, policy, batch, optimizer, scheduler, float(tc.grad_clip_norm), scaler, device, use_amp
        )
        step += 1
        bar.update(1)
        log_now = step % int(tc.log_freq) == 0 or step == int(tc.offline_steps)
        if log_now:
            samples = step * samples_per_step
            metrics.update(
                step=step,
                samples=samples,
                episodes=samples / dataset.num_samples * dataset.num_episodes,
                epoch=samples / dataset.num_samples,
                update_s=time.perf_counter() - t1,
                data_s=t1 - t0,
            )
            metrics = dist.average(metrics)
        on_step_end(step, metrics if log_now else None)

    if step < total_steps:  # TD-MPC's online phase: rollouts of the current policy feed the replay buffer
        from lerobot.common.training.online import train_online

        step = train_online(
            cfg,
            policy,
            model,
            dataset,
            optimizer,
            scheduler,
            scaler,
            device,
            step,
            total_steps,
            update_policy,
            on_step_end,
            bar,
        )
    bar.close()
    if evaluator is not None:
        evaluator.close()
    logger.close()
    summary = {
        "run_dir": str(run_dir),
        "steps": step,
        "last_checkpoint": str(run_dir / CHECKPOINTS_DIR / "last"),
        "last_eval": evaluator.last_info["aggregated"] if evaluator and evaluator.last_info else None,
    }
    if dist.is_main:
        log.info("Done: %d steps. Run folder %s", step, run_dir)
    dist.cleanup()
    return summary


class Evaluator:
    """Evaluates in the sim env every `training.eval_freq` steps; writes eval/<step>/eval_info.json + videos."""

    def __init__(self, cfg: DictConfig, run_dir: Path, device: torch.device, use_amp: bool, fps: float):
        self.cfg, self.run_dir, self.device, self.use_amp, self.fps = cfg, run_dir, device, use_amp, fps
        self.freq = int(cfg.training.eval_freq)
        self.enabled = self.freq > 0 and cfg.env.name != "real_world"
        self.env = None
        self.last_info: dict[str, Any] | None = None

    def due(self, step: int, total_steps: int) -> bool:
        return self.enabled and (step % self.freq == 0 or step == total_steps)

    def run(self, policy: PreTrainedPolicy, step: int) -> dict[str, Any]:
        from lerobot.common.envs.factory import make_env
        from lerobot.scripts.eval import eval_policy

        ev = self.cfg.eval
        if self.env is None:
            self.env = make_env(self.cfg, n_envs=int(ev.batch_size), use_async_envs=bool(ev.use_async_envs))
        out_dir = self.run_dir / "eval" / f"step_{step:06d}"
        info = eval_policy(
            self.env,
            policy,
            int(ev.n_episodes),
            device=self.device,
            start_seed=int(self.cfg.seed),
            max_episodes_rendered=int(ev.get("max_episodes_rendered", 4)),
            videos_dir=out_dir / "videos",
            fps=self.fps,
            use_amp=self.use_amp,
            max_steps=self.cfg.env.get("episode_length", None),
            progress=False,
        )
        out_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(out_dir / "eval_info.json") as tmp:
            tmp.write_text(json.dumps(info, indent=2), encoding="utf-8")
        policy.train()
        self.last_info = info
        return info

    def close(self) -> None:
        if self.env is not None:
            self.env.close()


@hydra.main(version_base="1.2", config_path="../configs", config_name="default")
def train_cli(cfg: DictConfig) -> None:
    init_logging()
    if get_device(cfg.device).type == "cpu":
        keep_freed_memory()  # a CPU step re-faults its freed activations otherwise (see the docstring)
    hydra_cfg = HydraConfig.get()
    with open_dict(cfg):
        cfg.job_name = hydra_cfg.job.name
    train(cfg, Path(hydra_cfg.runtime.output_dir), list(hydra_cfg.overrides.task))


# Sections whose keys are not all spelled out in yaml: the policy's fields live in its dataclass (and are
# validated there, with suggestions for typos), statistics overrides are free-form.
OPEN_SECTIONS = ("policy.", "override_dataset_stats.")


def open_section_overrides(argv: list[str]) -> list[str]:
    """`policy.dim_model=64` -> `++policy.dim_model=64`, so hydra adds keys the yaml does not list."""
    return [f"++{a}" if a.startswith(OPEN_SECTIONS) and "=" in a else a for a in argv]


def compose_run_config(overrides: list[str]) -> tuple[DictConfig, list[str]]:
    """The config the CLI would build from `overrides` (without hydra's run folder), for calling `train` from
    Python; returns it with the overrides as `train` expects them (for re-applying on resume)."""
    from hydra import compose, initialize_config_dir

    overrides = open_section_overrides(overrides)
    with initialize_config_dir(
        config_dir=str(Path(__file__).resolve().parents[1] / "configs"), version_base="1.2"
    ):
        return compose("default", overrides=overrides), overrides


def main() -> None:
    """Console script `lerobot-train`."""
    sys.argv = [sys.argv[0], *open_section_overrides(sys.argv[1:])]
    train_cli()


if __name__ == "__main__":
    main()
