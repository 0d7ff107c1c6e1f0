"""Evaluate a policy in its simulation environment.

    python lerobot/scripts/eval.py -p lerobot/diffusion_pusht eval.n_episodes=10 eval.batch_size=10
    python lerobot/scripts/eval.py -p outputs/train/<run>/checkpoints/last/pretrained_model device=cpu

`-p` is a Hub repo id or a local `pretrained_model` folder. The env comes from the `config.yaml` saved beside the
weights (every checkpoint of train.py has one); overrides in `key=value` form change it (`env.episode_length=100`,
`eval.n_episodes=50`, `env=aloha` for a checkpoint without config.yaml). Writes `eval_info.json` and up to
`--max-videos` rollout videos under `--out-dir`.

Metrics follow the reference implementation: per episode the sum and max of the reward up to the first `done`
and whether the env reported success; overall their means and the success rate, plus the Beta-posterior mean
and 68% interval of the success rate that its model cards report.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from lerobot.common.datasets.utils import atomic_path
from lerobot.common.envs.factory import make_env
from lerobot.common.envs.utils import preprocess_observation
from lerobot.common.policies.pretrained import PreTrainedPolicy
from lerobot.common.utils.utils import autocast, get_device, init_logging, keep_freed_memory, set_global_seed

log = logging.getLogger("lerobot.eval")
CONFIGS_DIR = Path(__file__).resolve().parents[1] / "configs"


# ------------------------------------------------------------------------------------------------ rollouts


def _successes(info: dict[str, Any], done: np.ndarray) -> np.ndarray:
    """Per env: did it report success at this step? (gymnasium 0.29 vector convention: a finished env's last
    info is in `final_info`, the others report `is_success` directly when they do at all.)"""
    success = np.zeros(len(done), dtype=bool)
    if "is_success" in info:
        mask = info.get("_is_success", np.ones(len(done), dtype=bool))
        success |= np.asarray(info["is_success"], dtype=bool) & mask
    if "final_info" in info:
        for i, final in enumerate(info["final_info"]):
            if final is not None and done[i]:
                success[i] = bool(final.get("is_success", False))
    return success


def _render(env: Any, n: int) -> list[np.ndarray]:
    if n <= 0:
        return []
    if hasattr(env, "envs"):  # SyncVectorEnv: render only the envs that are filmed
        return [env.envs[i].render() for i in range(n)]
    return list(env.call("render"))[:n]


@torch.no_grad()
def rollout(
    env: Any,
    policy: PreTrainedPolicy,
    seeds: list[int],
    device: torch.device,
    *,
    render_n: int = 0,
    use_amp: bool = False,
    max_steps: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Run every env of `env` for one episode; steps after an env's first `done` are masked out.

    Returns (B, T) arrays `reward`, `done`, `success`, `mask`, and `frames`: for the first `render_n` envs, the
    list of their rendered frames up to and including their last step.
    """
    policy.reset()
    observation, _ = env.reset(seed=seeds)
    n_envs = env.num_envs
    finished = np.zeros(n_envs, dtype=bool)
    rewards, dones, successes, masks = [], [], [], []
    frames: list[list[np.ndarray]] = [[f] for f in _render(env, render_n)]
    bar = tqdm(total=max_steps, desc="rollout", leave=False, disable=not progress)
    while not finished.all():
        batch = {k: v.to(device, non_blocking=True) for k, v in preprocess_observation(observation).items()}
        with autocast(device, use_amp):
            action = policy.select_action(batch)  # (B, action_dim)
        action = action.to("cpu", torch.float32).numpy()
        if not np.isfinite(action).all():
            raise FloatingPointError("The policy returned a non-finite action; the checkpoint may be broken.")
        observation, reward, terminated, truncated, info = env.step(action)
        done = np.asarray(terminated) | np.asarray(truncated)
        masks.append(~finished)
        rewards.append(np.asarray(reward, dtype=np.float64))
        dones.append(done)
        successes.append(_successes(info, done))
        for i, new_frame in enumerate(_render(env, render_n)):
            if not finished[i] and not done[i]:  # after `done` the env has already reset to a new episode
                frames[i].append(new_frame)
        finished |= done
        bar.update(1)
        if max_steps is not None and len(rewards) > max_steps + 1:
            raise RuntimeError(f"The env ran past episode_length={max_steps} without ending the episode.")
    bar.close()
    return {
        "reward": np.stack(rewards, axis=1),
        "done": np.stack(dones, axis=1),
        "success": np.stack(successes, axis=1),
        "mask": np.stack(masks, axis=1),
        "frames": frames,
    }


def beta_posterior(n_success: int, n: int, mass: float = 0.68) -> dict[str, float]:
    """Mean and central `mass` interval (in %) of the success rate's posterior under a uniform prior."""
    from scipy.stats import beta

    a, b = n_success + 1, n - n_success + 1
    low, high = beta.ppf([(1 - mass) / 2, (1 + mass) / 2], a, b)
    return {"mean": 100 * a / (a + b), "low": 100 * float(low), "high": 100 * float(high), "mass": mass}


def eval_policy(
    env: Any,
    policy: PreTrainedPolicy,
    n_episodes: int,
    *,
    device: torch.device | str = "cpu",
    start_seed: int | None = 0,
    max_episodes_rendered: int = 0,
    videos_dir: Path | None = None,
    fps: float = 30,
    use_amp: bool = False,
    max_steps: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Roll out `n_episodes` episodes in batches of `env.num_envs`; return the eval_info dict.

    Episode `i` is seeded with `start_seed + i` (unseeded when start_seed is None); extra episodes of the last
    batch are discarded. The first `max_episodes_rendered` episodes are written as mp4 into `videos_dir`.
    """
    if n_episodes < 1:
        raise ValueError(f"eval.n_episodes must be >= 1, got {n_episodes}.")
    if max_episodes_rendered and videos_dir is None:
        raise ValueError("max_episodes_rendered > 0 needs a videos_dir to write the videos to.")
    device = torch.device(device)
    was_training = policy.training
    policy.eval()
    start = time.perf_counter()
    per_episode: list[dict[str, Any]] = []
    video_paths: list[str] = []
    n_batches = -(-n_episodes // env.num_envs)
    bar = tqdm(total=n_episodes, desc="eval episodes", unit="ep", disable=not progress)
    for b in range(n_batches):
        first = b * env.num_envs
        seeds = [None if start_seed is None else start_seed + first + i for i in range(env.num_envs)]
        render_n = max(0, min(env.num_envs, max_episodes_rendered - first))
        out = rollout(env, policy, seeds, device, render_n=render_n, use_amp=use_amp, max_steps=max_steps)
        mask = out["mask"]
        for i in range(env.num_envs):
            if first + i >= n_episodes:
                break
            per_episode.append(
                {
                    "episode_ix": first + i,
                    "sum_reward": float((out["reward"][i] * mask[i]).sum()),
                    "max_reward": float(np.where(mask[i], out["reward"][i], -np.inf).max()),
                    "success": bool((out["success"][i] & mask[i]).any()),
                    "seed": seeds[i],
                }
            )
        for i, frames in enumerate(out["frames"]):
            video_paths.append(str(_write_video(frames, videos_dir / f"eval_episode_{first + i}.mp4", fps)))
        bar.update(min(env.num_envs, n_episodes - first))
        bar.set_postfix(success=f"{100 * np.mean([e['success'] for e in per_episode]):.0f}%")
    bar.close()
    if was_training:
        policy.train()

    elapsed = time.perf_counter() - start
    n_success = sum(e["success"] for e in per_episode)
    aggregated = {
        "avg_sum_reward": float(np.mean([e["sum_reward"] for e in per_episode])),
        "avg_max_reward": float(np.mean([e["max_reward"] for e in per_episode])),
        "pc_success": 100.0 * n_success / len(per_episode),
        "n_episodes": len(per_episode),
        "success_beta_posterior": beta_posterior(n_success, len(per_episode)),
        "eval_s": elapsed,
        "eval_ep_s": elapsed / len(per_episode),
    }
    return {"per_episode": per_episode, "aggregated": aggregated, "video_paths": video_paths}


def _write_video(frames: list[np.ndarray], path: Path, fps: float) -> Path:
    from lerobot.common.datasets.video_utils import encode_video_frames

    path.parent.mkdir(parents=True, exist_ok=True)
    # H.264 plays in every browser and video player; rollout videos are for people, not for training.
    return encode_video_frames(frames, path, fps, vcodec="libx264", g=int(fps) * 2, crf=23, overwrite=True)


# ------------------------------------------------------------------------------------------------ the CLI


def load_run_config(pretrained: Path | None, overrides: list[str]) -> DictConfig:
    """The run config saved with the checkpoint (config.yaml), with `key=value` overrides applied.

    `env=<name>` selects lerobot/configs/env/<name>.yaml (needed for checkpoints saved without config.yaml).
    """
    cfg = OmegaConf.create({})
    if pretrained is not None and (pretrained / "config.yaml").exists():
        cfg = OmegaConf.load(pretrained / "config.yaml")
    dotted = []
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"Override {item!r} is not of the form key=value (e.g. eval.n_episodes=10).")
        key, value = item.split("=", 1)
        if key == "env":
            env_yaml = CONFIGS_DIR / "env" / f"{value}.yaml"
            if not env_yaml.exists():
                known = sorted(p.stem for p in (CONFIGS_DIR / "env").glob("*.yaml"))
                raise ValueError(f"Unknown env {value!r}; known envs: {known}.")
            cfg = OmegaConf.merge(cfg, OmegaConf.load(env_yaml))
        else:
            dotted.append(item)
    cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(dotted))
    if cfg.get("env", None) is None:
        raise ValueError(
            f"No env config: {pretrained}/config.yaml is missing (checkpoints of train.py have one). "
            "Pass env=<pusht|aloha|xarm> and any env.* overrides."
        )
    return cfg


def fetch_config_yaml(name_or_path: str, revision: str | None) -> Path | None:
    """The folder holding a checkpoint's config.yaml: the local folder itself, or the Hub snapshot when it has one
    (used by eval.py and by control_robot.py's `record -p`)."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(name_or_path, "config.yaml", revision=revision)).parent
    except (EntryNotFoundError, LocalEntryNotFoundError):
        return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "-p",
        "--pretrained-policy-name-or-path",
        required=True,
        help="Hub repo id or local pretrained_model folder (config.json + model.safetensors).",
    )
    parser.add_argument("--revision", default=None, help="Hub revision of the policy.")
    parser.add_argument(
        "--out-dir",
        default=None,
        help="Where eval_info.json and videos go (default outputs/eval/<date>/<time>_<env>_<policy>).",
    )
    parser.add_argument(
        "--max-videos",
        type=int,
        default=None,
        help="Rollout videos to save (default eval.max_episodes_rendered, else 10).",
    )
    parser.add_argument("overrides", nargs="*", help="key=value config overrides, e.g. eval.n_episodes=10.")
    return parser


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    init_logging()

    from lerobot.common.policies.factory import load_policy

    pretrained = fetch_config_yaml(args.pretrained_policy_name_or_path, args.revision)
    cfg = load_run_config(pretrained, args.overrides)
    device = get_device(cfg.get("device", "auto"))
    if device.type == "cpu":
        keep_freed_memory()  # each policy call re-faults its freed activations otherwise (as in train.py)
    seed = cfg.get("seed", 1000)
    set_global_seed(seed)
    policy_type = cfg.get("policy", {}).get("name", None) if cfg.get("policy", None) is not None else None
    policy = load_policy(args.pretrained_policy_name_or_path, policy_type=policy_type, revision=args.revision)
    policy.to(device).eval()

    eval_cfg = cfg.get("eval", {}) or {}
    n_episodes = int(eval_cfg.get("n_episodes", 10))
    batch_size = min(int(eval_cfg.get("batch_size", n_episodes)), n_episodes)
    max_videos = (
        args.max_videos if args.max_videos is not None else int(eval_cfg.get("max_episodes_rendered", 10))
    )
    out_dir = (
        Path(args.out_dir)
        if args.out_dir
        else Path("outputs/eval") / datetime.now().strftime(f"%Y-%m-%d/%H-%M-%S_{cfg.env.name}_{policy.name}")
    )
    out_dir.mkdir(parents=True, exist_ok=True)

    env = make_env(cfg, n_envs=batch_size, use_async_envs=bool(eval_cfg.get("use_async_envs", False)))
    try:
        log.info(
            "Evaluating %s on %s/%s: %d episodes, %d envs in parallel, device %s",
            args.pretrained_policy_name_or_path,
            cfg.env.name,
            cfg.env.get("task"),
            n_episodes,
            batch_size,
            device,
        )
        info = eval_policy(
            env,
            policy,
            n_episodes,
            device=device,
            start_seed=seed,
            max_episodes_rendered=max_videos,
            videos_dir=out_dir / "videos",
            fps=cfg.env.get("fps", cfg.get("fps", 30)),
            use_amp=bool(cfg.get("use_amp", False)),
            max_steps=cfg.env.get("episode_length", None),
        )
    finally:
        env.close()
    info["policy"] = str(args.pretrained_policy_name_or_path)
    info["env"] = {"name": cfg.env.name, "task": cfg.env.get("task", None)}
    with atomic_path(out_dir / "eval_info.json") as tmp:
        tmp.write_text(json.dumps(info, indent=2), encoding="utf-8")
    agg = info["aggregated"]
    beta = agg["success_beta_posterior"]
    print(
        f"\n{n_episodes} episodes: success {agg['pc_success']:.1f}% (beta posterior {beta['low']:.1f} / "
        f"{beta['mean']:.1f} / {beta['high']:.1f}), avg sum reward {agg['avg_sum_reward']:.3f}, "
        f"avg max reward {agg['avg_max_reward']:.3f}, {agg['eval_s']:.1f} s\nWrote {out_dir / 'eval_info.json'}"
    )
    return info


if __name__ == "__main__":
    main()
