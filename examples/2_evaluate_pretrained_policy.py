"""Example 2: load a pretrained policy and watch it act in its simulation environment.

1. load a policy saved with `save_pretrained` (a local folder, or a Hugging Face Hub repo id);
2. build the simulated environment it was trained for;
3. roll it out: observe -> `policy.select_action` -> `env.step`, until the episode ends;
4. save a video of each rollout and print its reward and whether it succeeded.

Run it:

    python examples/2_evaluate_pretrained_policy.py -p outputs/examples/3_train_policy     # after example 3
    python examples/2_evaluate_pretrained_policy.py -p outputs/train/<run>/checkpoints/last/pretrained_model
    python examples/2_evaluate_pretrained_policy.py -p lerobot/diffusion_pusht --policy-type diffusion
    python examples/2_evaluate_pretrained_policy.py -p lerobot/act_aloha_sim_transfer_cube_human \\
        --policy-type act --env aloha --task AlohaTransferCube-v0

Which environment: `--env` (a file of lerobot/configs/env/, plus `--task`) when given; otherwise the run config
`config.yaml` saved beside the weights (every checkpoint of lerobot/scripts/train.py has one, and so do many Hub
checkpoints); otherwise PushT, the task of example 3. The observation type is
chosen to give the policy the inputs it was trained on (camera images, or the privileged environment state).

Hub checkpoints need network access; a local folder (`config.json` + `model.safetensors`) needs none. The two Hub
policies above were trained by the reference implementation, whose config.json does not name the policy's type,
hence `--policy-type`.

Writes `outputs/examples/2_evaluate_pretrained_policy/rollout_<i>.mp4` and `summary.json` (`--output-dir`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

import lerobot
from lerobot.common.datasets.video_utils import encode_video_frames
from lerobot.common.envs.factory import make_env, observation_keys
from lerobot.common.envs.utils import preprocess_observation
from lerobot.common.policies.factory import load_policy
from lerobot.common.policies.pretrained import PreTrainedPolicy
from lerobot.common.utils.utils import get_device

ENV_CONFIGS = Path(lerobot.__file__).resolve().parent / "configs" / "env"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "-p",
        "--policy",
        default="outputs/examples/3_train_policy",
        help="Local folder with config.json + model.safetensors, or a Hub repo id.",
    )
    parser.add_argument(
        "--policy-type",
        default=None,
        help="act, ... Only for checkpoints whose config.json does not name its type (the reference's).",
    )
    parser.add_argument(
        "--env", default=None, help=f"One of {sorted(p.stem for p in ENV_CONFIGS.glob('*.yaml'))}."
    )
    parser.add_argument("--task", default=None, help="The env's task, e.g. AlohaTransferCube-v0.")
    parser.add_argument("--episodes", type=int, default=1, help="Rollouts to run (one video each).")
    parser.add_argument("--max-steps", type=int, default=None, help="Cut episodes at this many steps.")
    parser.add_argument("--seed", type=int, default=1000, help="Episode i starts from seed + i.")
    parser.add_argument("--device", default="auto", help="auto (cuda, else mps, else cpu), cpu, cuda or mps.")
    parser.add_argument(
        "--output-dir", type=Path, default=Path("outputs/examples/2_evaluate_pretrained_policy")
    )
    return parser.parse_args(argv)


def saved_run_config(policy_path: str) -> DictConfig | None:
    """The run config (config.yaml) stored with a checkpoint, from its folder or its Hub repo; None if absent."""
    folder = Path(policy_path)
    if folder.is_dir():
        return OmegaConf.load(folder / "config.yaml") if (folder / "config.yaml").is_file() else None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        return OmegaConf.load(hf_hub_download(policy_path, "config.yaml"))
    except (EntryNotFoundError, LocalEntryNotFoundError):  # none in the repo, or offline and not cached
        return None


def make_env_config(args: argparse.Namespace, policy: PreTrainedPolicy) -> DictConfig:
    """The env section to build the simulator from, with an observation type that feeds this policy."""
    run_cfg = None if args.env else saved_run_config(args.policy)
    if run_cfg is not None and run_cfg.get("env") is not None:
        cfg = OmegaConf.create({"fps": run_cfg.get("fps"), "env": run_cfg.env})
        print(f"Env from the checkpoint's config.yaml: {cfg.env.name} / {cfg.env.task}")
    else:
        name = args.env or "pusht"
        if args.env is None:
            print("No --env given and no config.yaml beside the weights: using pusht.")
        env_yaml = ENV_CONFIGS / f"{name}.yaml"
        if not env_yaml.is_file():
            raise SystemExit(
                f"Unknown --env {name!r}; choose one of {sorted(p.stem for p in ENV_CONFIGS.glob('*.yaml'))}."
            )
        cfg = OmegaConf.load(env_yaml)
    if args.task is not None:
        cfg.env.task = args.task
    if args.max_steps is not None:
        cfg.env.episode_length = args.max_steps

    # A policy trained on the privileged environment state (e.g. PushT's keypoints) needs the env to report it
    # instead of rendering camera images; a policy with cameras needs images.
    inputs = set(policy.config.input_shapes)
    if "observation.environment_state" in inputs:
        cfg.env.gym.obs_type = "environment_state_agent_pos"
    elif any(k.startswith("observation.image") for k in inputs):
        cfg.env.gym.obs_type = "pixels_agent_pos"
    missing = sorted(inputs - set(observation_keys(cfg) or []))
    if missing:
        raise SystemExit(
            f"The policy needs {missing}, which env {cfg.env.name} (obs_type {cfg.env.gym.obs_type}) does not "
            "provide. Is this the env the policy was trained in? Choose it with --env / --task."
        )
    return cfg


def episode_success(info: dict[str, Any], done: bool) -> bool:
    """Whether the env reported success at this step. A vector env resets an env as soon as its episode ends, so
    the info of the last step is then under `final_info`."""
    if done and "final_info" in info:
        return bool(info["final_info"][0].get("is_success", False))
    return bool(info.get("is_success", [False])[0])


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    device = get_device(args.device)

    # --------------------------------------------------------------------------------------------------------
    # 1. The policy. `load_policy` reads config.json to know which class to build (ACT, ...), then loads the
    #    weights, which include the normalisation statistics of its training data: no dataset is needed.
    # --------------------------------------------------------------------------------------------------------
    policy = load_policy(args.policy, policy_type=args.policy_type)
    policy.to(device)
    policy.eval()  # no dropout; ACT also stops sampling its latent variable
    print(f"Loaded {policy.name} from {args.policy}: inputs {dict(policy.config.input_shapes)}")

    # --------------------------------------------------------------------------------------------------------
    # 2. The environment: a gymnasium vector env with one copy of the simulator. Its observations come as
    #    batched numpy arrays; `preprocess_observation` renames them to the dataset keys the policy was trained
    #    on (`observation.image`, `observation.state`, ...) and converts images to float (B, C, H, W) in [0, 1].
    # --------------------------------------------------------------------------------------------------------
    cfg = make_env_config(args, policy)
    env = make_env(cfg, n_envs=1)
    fps = cfg.env.get("fps", None) or 30
    args.output_dir.mkdir(parents=True, exist_ok=True)

    results = []
    try:
        for episode in range(args.episodes):
            # ------------------------------------------------------------------------------------------------
            # 3. One rollout. `policy.reset()` clears the actions the policy queued during the previous episode
            #    (ACT predicts a chunk of actions and executes them one per step).
            # ------------------------------------------------------------------------------------------------
            policy.reset()
            observation, info = env.reset(seed=[args.seed + episode])
            frames = [env.envs[0].render()]  # what a person would see, at the env's display resolution
            rewards, success, done = [], False, False
            while not done:
                batch = {k: v.to(device) for k, v in preprocess_observation(observation).items()}
                with torch.inference_mode():
                    action = policy.select_action(batch)  # (1, action_dim), in the env's units
                observation, reward, terminated, truncated, info = env.step(action.cpu().numpy())
                done = bool(terminated[0] or truncated[0])
                rewards.append(float(reward[0]))
                success = success or episode_success(info, done)
                if not done:  # once done, the vector env has already reset to a new episode
                    frames.append(env.envs[0].render())

            # ------------------------------------------------------------------------------------------------
            # 4. Save the video, report the outcome. PushT's reward is the overlap of the T block with its
            #    target (success above 95%); ALOHA's counts the completed stages of the task.
            # ------------------------------------------------------------------------------------------------
            video = args.output_dir / f"rollout_{episode}.mp4"
            encode_video_frames(frames, video, fps, vcodec="libx264", g=int(fps), overwrite=True)
            result = {
                "episode": episode,
                "seed": args.seed + episode,
                "steps": len(rewards),
                "sum_reward": float(np.sum(rewards)),
                "max_reward": float(np.max(rewards)),
                "success": success,
                "video": str(video),
            }
            results.append(result)
            print(
                f"Episode {episode}: {result['steps']} steps, sum reward {result['sum_reward']:.3f}, "
                f"max reward {result['max_reward']:.3f}, success {success}. Video: {video}"
            )
    finally:
        env.close()

    n_success = sum(r["success"] for r in results)
    print(f"Success: {n_success}/{len(results)} episodes")
    (args.output_dir / "summary.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    return results


if __name__ == "__main__":
    main()
