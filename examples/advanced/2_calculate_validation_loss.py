"""Advanced example 2: the loss of a trained policy on episodes it never saw (a validation loss).

The training loss says how well a policy fits its training data; on held-out episodes the same loss says how well
it generalises, and the gap between the two shows over-fitting. The split must be by episode, not by frame:
neighbouring frames of one episode are nearly identical, so frames held out of a training episode are not new.

1. choose the held-out episodes (`--val-episodes`, default: the last 10% of the dataset);
2. load the policy and, for each split, a dataset that returns what the policy's loss needs;
3. average the loss over each split with the policy in eval mode, without gradients.

A validation loss only means something for a policy trained without those episodes:

    python examples/3_train_policy.py --episodes $(seq 0 184)           # PushT has 206 episodes: keep 21 out
    python examples/advanced/2_calculate_validation_loss.py -p outputs/examples/3_train_policy

or, with the training script, `"dataset_episodes=[$(seq -s, 0 184)]"` and `-p <run>/checkpoints/last/pretrained_model`.

`-p` is a folder with config.json + model.safetensors or a Hub repo id; `--root` a local dataset folder (omit
to use the Hub; see example 1). When the checkpoint carries train.py's config.yaml, the episodes it was trained
on are read from it and, by default, all the other episodes are held out.

Writes `outputs/examples/advanced/2_calculate_validation_loss/validation_loss.json` (`--output-dir`).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from lerobot.common.datasets.hub import resolve_dataset_root
from lerobot.common.datasets.lerobot_dataset import LeRobotDataset
from lerobot.common.datasets.metadata import load_metadata
from lerobot.common.datasets.sampler import EpisodeAwareSampler
from lerobot.common.policies.factory import load_policy
from lerobot.common.policies.pretrained import PreTrainedPolicy
from lerobot.common.utils.utils import get_device


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "-p", "--policy", default="outputs/examples/3_train_policy", help="Folder or Hub repo id."
    )
    parser.add_argument("--policy-type", default=None, help="Only for config.json files that do not name it.")
    parser.add_argument(
        "--repo-id", default="lerobot/pusht", help="Hub id of the dataset (also names it locally)."
    )
    parser.add_argument("--root", default=None, help="Local dataset folder; omit to use the Hub.")
    parser.add_argument("--val-episodes", type=int, nargs="*", default=None, help="Held-out episode indices.")
    parser.add_argument(
        "--val-fraction", type=float, default=0.1, help="Share of episodes held out by default."
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--max-batches", type=int, default=None, help="Stop each split after this many batches."
    )
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader worker processes.")
    parser.add_argument("--device", default="auto", help="auto (cuda, else mps, else cpu), cpu, cuda or mps.")
    parser.add_argument("--seed", type=int, default=0, help="Seeds the randomness some losses have.")
    parser.add_argument(
        "--output-dir", type=Path, default=Path("outputs/examples/advanced/2_calculate_validation_loss")
    )
    return parser.parse_args(argv)


def trained_episodes(policy_path: str) -> list[int] | None:
    """The episodes train.py trained this checkpoint on (config.yaml's dataset_episodes; all when null), or None
    when the folder has no config.yaml to tell."""
    config_yaml = Path(policy_path) / "config.yaml"
    if not config_yaml.is_file():
        return None
    episodes = OmegaConf.load(config_yaml).get("dataset_episodes", None)
    return [] if episodes is None else [int(e) for e in episodes]


@torch.no_grad()
def average_loss(
    policy: PreTrainedPolicy,
    dataset: LeRobotDataset,
    batch_size: int,
    num_workers: int,
    device: torch.device,
    max_batches: int | None,
) -> tuple[float, int]:
    """Mean of the policy's loss over the dataset's frames (weighted by batch size), and the frames used."""
    # The same frames training would use: the sampler skips each episode's last `drop_n_last_frames` frames.
    sampler = EpisodeAwareSampler(
        dataset.episode_data_index, drop_n_last_frames=policy.config.drop_n_last_frames
    )
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers
    )
    total, frames = 0.0, 0
    for i, batch in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        batch = {k: v.to(device) for k, v in batch.items() if isinstance(v, torch.Tensor)}
        n = next(iter(batch.values())).shape[0]
        total += policy(batch)["loss"].item() * n
        frames += n
    if frames == 0:
        raise SystemExit(
            f"No frames to evaluate in episodes {dataset.episodes} (too short for this policy?)."
        )
    return total / frames, frames


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    device = get_device(args.device)

    # --------------------------------------------------------------------------------------------------------
    # 1. The split. Without --val-episodes: the episodes the checkpoint was not trained on when its config.yaml
    #    says which those were, else the last `--val-fraction` of the episodes.
    # --------------------------------------------------------------------------------------------------------
    root = resolve_dataset_root(args.repo_id, args.root)
    all_episodes = sorted(load_metadata(root).episodes)
    seen = trained_episodes(args.policy)
    if args.val_episodes:
        val_episodes = sorted(set(args.val_episodes))
    elif seen:  # a known, partial training set: everything else is held out
        val_episodes = [e for e in all_episodes if e not in seen]
    else:
        n_val = max(1, math.ceil(args.val_fraction * len(all_episodes)))
        val_episodes = all_episodes[-n_val:]
    train_episodes = [e for e in all_episodes if e not in val_episodes]
    if not val_episodes or not train_episodes:
        raise SystemExit(
            f"The split leaves {len(train_episodes)} training and {len(val_episodes)} validation episodes of "
            f"{len(all_episodes)}; both need at least one."
        )
    print(f"{len(all_episodes)} episodes: {len(train_episodes)} for training, held out {val_episodes}")
    if seen == []:
        print(
            "Warning: config.yaml says the policy was trained on every episode; its validation loss is not one."
        )
    elif seen is None:
        print("Make sure the policy was trained without the held-out episodes (see this file's docstring).")

    # --------------------------------------------------------------------------------------------------------
    # 2. The policy and its data. The policy's config says which time steps its loss needs (ACT: the current
    #    observation and the next chunk of actions), exactly as during training.
    # --------------------------------------------------------------------------------------------------------
    policy = load_policy(args.policy, policy_type=args.policy_type).to(device)
    # eval(): no dropout. ACT's loss in eval mode is the L1 error of the actions predicted with the latent
    # variable at zero, i.e. what the policy does at inference (its KL term exists only in training mode).
    policy.eval()
    fps = load_metadata(root).fps
    delta_timestamps = policy.config.delta_timestamps(fps)

    results: dict[str, Any] = {"policy": str(args.policy), "dataset": args.repo_id}
    for split, episodes in (("train", train_episodes), ("val", val_episodes)):
        dataset = LeRobotDataset(
            args.repo_id, root=root, episodes=episodes, delta_timestamps=delta_timestamps
        )
        # ------------------------------------------------------------------------------------------------------
        # 3. The average loss over the split. torch.no_grad (on average_loss) skips building the graph.
        # ------------------------------------------------------------------------------------------------------
        loss, frames = average_loss(
            policy, dataset, args.batch_size, args.num_workers, device, args.max_batches
        )
        results[f"{split}_episodes"] = episodes
        results[f"{split}_loss"] = loss
        results[f"{split}_frames"] = frames
        print(f"{split:5s} loss {loss:.4f} over {frames} frames of {len(episodes)} episodes")

    args.output_dir.mkdir(parents=True, exist_ok=True)
    path = args.output_dir / "validation_loss.json"
    path.write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(f"Wrote {path}")
    return results


if __name__ == "__main__":
    main()
