"""Example 3: train a policy in plain Python with the core library, then save it.

`lerobot/scripts/train.py` (example 4) adds configuration files, checkpoints, evaluation and resuming around
the same few steps, which are spelled out here:

1. read the dataset's metadata to size the policy (its inputs, outputs and frame rate);
2. build the policy's config, and a dataset that returns what that policy trains on;
3. build the policy with the dataset's statistics (for normalisation);
4. loop: batch -> loss -> backward -> optimiser step;
5. save the policy (`config.json` + `model.safetensors`) and load it back.

The policy is ACT (Action Chunking Transformer), which looks at the current camera frames and robot state and
predicts the next chunk of actions, or, with `--policy diffusion`, Diffusion Policy, which generates a sequence
of actions by denoising random noise, conditioned on the last two observations.

Run it:

    python examples/3_train_policy.py                          # lerobot/pusht from the Hub; 5000 steps, for a GPU
    python examples/3_train_policy.py --root outputs/data/pusht --device cpu --steps 200 \\
        --set dim_model=256 --set dim_feedforward=1024 --set n_encoder_layers=2 --set n_vae_encoder_layers=2
    python examples/3_train_policy.py --policy diffusion --output-dir outputs/examples/3_train_policy_diffusion

The second command reads a local dataset folder instead of the Hub (example 1 shows how to make
`outputs/data/pusht` offline; any dataset made with `LeRobotDataset.create` works) and trains a narrower,
shallower ACT, which a CPU can afford: `--set` changes any field of the policy config (see
lerobot/common/policies/<policy>/configuration_<policy>.py).

Writes the trained policy to `outputs/examples/3_train_policy/` (`--output-dir`). Example 2 evaluates it:
`python examples/2_evaluate_pretrained_policy.py -p outputs/examples/3_train_policy`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from lerobot.common.datasets.hub import resolve_dataset_root
from lerobot.common.datasets.lerobot_dataset import LeRobotDataset
from lerobot.common.datasets.metadata import load_metadata
from lerobot.common.datasets.sampler import EpisodeAwareSampler
from lerobot.common.policies.backbone import imagenet_stats
from lerobot.common.policies.factory import load_policy, make_policy, make_policy_config, shapes_from_features
from lerobot.common.utils.utils import get_device


def parse_field(text: str) -> tuple[str, Any]:
    """`key=value` -> (key, value), the value read as YAML: `4` is an int, `null` None, `[1, 2]` a list."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--set expects key=value (e.g. dim_model=256), got {text!r}.")
    return key.strip(), yaml.safe_load(value)


def policy_fields(policy: str, fps: float, backbone_weights: str | None) -> dict[str, Any]:
    """The config fields that depend on the data, for `policy` trained at `fps` frames per second."""
    if policy == "act":
        # ACT's defaults are for the ALOHA robot at 50 fps.
        # - Normalisation, per kind of feature (so that any camera or state name matches): subtract the dataset
        #   mean, divide by the standard deviation.
        # - The action chunk: ACT predicts `chunk_size` actions at once and executes `n_action_steps` of them
        #   before looking again. The reference uses 100 steps at 50 fps, i.e. 2 seconds; we keep 2 seconds at
        #   the dataset's frame rate (20 steps for PushT at 10 fps).
        horizon = max(1, round(2.0 * fps))
        return {
            "input_normalization_modes": {"VISUAL": "mean_std", "STATE": "mean_std", "ENV": "mean_std"},
            "output_normalization_modes": {"ACTION": "mean_std"},
            "chunk_size": horizon,
            "n_action_steps": horizon,
            "pretrained_backbone_weights": backbone_weights,
        }
    # Diffusion Policy's defaults are the reference's PushT recipe: condition on 2 observations, generate 16
    # actions, execute 8. States and actions are scaled to [-1, 1] by their min and max (the denoiser's samples
    # are clipped to that range), cameras by mean and standard deviation. Its backbone uses group norm, which
    # pretrained weights (made with batch norm) do not fit: loading them switches it to batch norm.
    fields: dict[str, Any] = {
        "input_normalization_modes": {"VISUAL": "mean_std", "STATE": "min_max", "ENV": "min_max"},
        "output_normalization_modes": {"ACTION": "min_max"},
        "pretrained_backbone_weights": backbone_weights,
    }
    if backbone_weights is not None:
        fields["use_group_norm"] = False
    return fields


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--policy", choices=("act", "diffusion"), default="act", help="The policy to train.")
    parser.add_argument(
        "--repo-id", default="lerobot/pusht", help="Hub id of the dataset (also names it locally)."
    )
    parser.add_argument("--root", default=None, help="Local dataset folder; omit to use the Hub.")
    parser.add_argument("--episodes", type=int, nargs="*", default=None, help="Train on these episodes only.")
    parser.add_argument("--steps", type=int, default=5000, help="Optimiser steps.")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--num-workers", type=int, default=2, help="DataLoader worker processes (0: none).")
    parser.add_argument("--device", default="auto", help="auto (cuda, else mps, else cpu), cpu, cuda or mps.")
    parser.add_argument("--log-freq", type=int, default=100, help="Print the loss every this many steps.")
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument(
        "--backbone-weights",
        default=None,
        help="ResNet weights to start the vision backbone from: a torchvision state-dict file (e.g. "
        "resnet18-f37072fd.pth) or 'ResNet18_Weights.IMAGENET1K_V1' when torch.hub has cached it. "
        "Default: random initialisation.",
    )
    parser.add_argument(
        "--set",
        dest="fields",
        type=parse_field,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Set a field of the policy config (repeatable), e.g. --set chunk_size=50.",
    )
    parser.add_argument("--output-dir", type=Path, default=Path("outputs/examples/3_train_policy"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    if args.steps < 1:
        raise SystemExit(f"--steps must be at least 1, got {args.steps}.")
    torch.manual_seed(args.seed)
    device = get_device(args.device)

    # --------------------------------------------------------------------------------------------------------
    # 1. The dataset's metadata: its features (name, dtype, shape of every column) and frame rate. Reading it
    #    is cheap and tells us how to size the policy before loading any frames.
    # --------------------------------------------------------------------------------------------------------
    root = resolve_dataset_root(args.repo_id, args.root, episodes=args.episodes)
    meta = load_metadata(root)
    # Observations (`observation.*`) become the policy's inputs and `action` its output; camera shapes are
    # turned from the stored (height, width, channels) into the (channels, height, width) a network sees.
    input_shapes, output_shapes = shapes_from_features(meta.features)
    # Both policies read cameras, the robot state and the environment state; other observations are left out.
    input_shapes = {
        k: s
        for k, s in input_shapes.items()
        if k.startswith("observation.image") or k in ("observation.state", "observation.environment_state")
    }
    print(f"Dataset {args.repo_id}: {meta.fps} fps, inputs {input_shapes}, outputs {output_shapes}")

    # --------------------------------------------------------------------------------------------------------
    # 2. The policy's config. Every field has a default; we set the input/output shapes found above, and the
    #    fields that depend on the data (`policy_fields` explains each).
    # --------------------------------------------------------------------------------------------------------
    fields = policy_fields(args.policy, meta.fps, args.backbone_weights)
    fields.update(input_shapes=input_shapes, output_shapes=output_shapes)
    fields.update(dict(args.fields))  # --set key=value wins over the above
    config = make_policy_config(args.policy, **fields)

    # The policy tells the dataset which time steps each training sample needs (see example 1 for
    # delta_timestamps): for ACT, the current observation and the next `chunk_size` actions; for Diffusion
    # Policy, the last `n_obs_steps` observations and `horizon` actions starting from the oldest of them.
    delta_timestamps = config.delta_timestamps(meta.fps)
    dataset = LeRobotDataset(
        args.repo_id, root=root, episodes=args.episodes, delta_timestamps=delta_timestamps
    )
    print(
        f"Training on {dataset.num_episodes} episodes, {dataset.num_samples} frames; delta_timestamps: "
        f"{ {k: f'{len(v)} steps' for k, v in delta_timestamps.items()} }"
    )

    # --------------------------------------------------------------------------------------------------------
    # 3. The policy. The dataset statistics go into the policy's normalisation layers (and are saved with its
    #    weights, so the saved policy needs no dataset to run).
    # --------------------------------------------------------------------------------------------------------
    stats = dataset.stats
    if args.backbone_weights is not None:
        # A backbone pretrained on ImageNet expects images normalised the way ImageNet's were.
        for key in config.image_keys:
            stats[key] = {**stats[key], **imagenet_stats()}
    policy = make_policy(config, dataset_stats=stats)
    policy.to(device)
    policy.train()
    n_params = sum(p.numel() for p in policy.parameters())
    print(f"{policy.name} with {n_params / 1e6:.2f}M parameters on {device}")

    # The optimiser and learning-rate schedule of the policy's reference recipe. ACT: AdamW, with a learning
    # rate of its own for the backbone, and no schedule (`scheduler` is None). Diffusion Policy: Adam, with a
    # warm-up then a cosine decay over the `args.steps` steps.
    optimizer = policy.make_optimizer()
    scheduler = policy.make_lr_scheduler(optimizer, args.steps)

    # The sampler draws frames in random order, skipping the last frames of each episode when the policy asks
    # (`drop_n_last_frames`: frames whose action chunk would be mostly padding).
    sampler = EpisodeAwareSampler(
        dataset.episode_data_index, drop_n_last_frames=config.drop_n_last_frames, shuffle=True
    )
    if len(sampler) < args.batch_size:
        raise SystemExit(
            f"The dataset has {len(sampler)} usable frames, fewer than --batch-size {args.batch_size}."
        )
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=args.batch_size,
        sampler=sampler,
        num_workers=args.num_workers,
        pin_memory=device.type == "cuda",
        drop_last=True,  # every step sees a full batch
    )

    # --------------------------------------------------------------------------------------------------------
    # 4. The training loop. `policy(batch)` returns a dict with the loss to minimise (ACT: the L1 error of the
    #    predicted actions plus a KL term of its variational encoder; Diffusion Policy: the error of the noise
    #    it predicts for noised actions). Gradients are clipped at norm 10, as in the reference recipes, which
    #    keeps early steps stable.
    # --------------------------------------------------------------------------------------------------------
    step = 0
    start = time.perf_counter()
    while step < args.steps:  # as many passes over the data as the steps need
        for batch in loader:
            batch = {
                k: v.to(device, non_blocking=True) for k, v in batch.items() if isinstance(v, torch.Tensor)
            }
            output = policy(batch)
            loss = output["loss"]
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), max_norm=10.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if scheduler is not None:
                scheduler.step()
            policy.update()  # per-step bookkeeping some policies need (a no-op for ACT)
            step += 1
            if step % args.log_freq == 0 or step == args.steps:
                print(
                    f"step {step}/{args.steps}  loss {loss.item():.4f}  grad norm {float(grad_norm):.2f}  "
                    f"{(time.perf_counter() - start) / step:.3f} s/step"
                )
            if step >= args.steps:
                break

    # --------------------------------------------------------------------------------------------------------
    # 5. Save: config.json (every config field), model.safetensors (weights and normalisation statistics) and a
    #    README.md model card. `load_policy` reads the config's "type" to rebuild the right class; the same
    #    folder could be uploaded with `policy.push_to_hub("<user>/<name>")`.
    # --------------------------------------------------------------------------------------------------------
    policy.save_pretrained(args.output_dir, datasets=[args.repo_id])
    print(f"Saved the policy to {args.output_dir}")

    reloaded = load_policy(args.output_dir).to(device)  # comes back in eval mode
    reloaded.reset()  # forget queued actions and past observations: call at the start of every episode
    frame = LeRobotDataset(args.repo_id, root=root, episodes=args.episodes)[0]
    observation = {k: frame[k].unsqueeze(0).to(device) for k in config.input_shapes}  # a batch of one
    action = reloaded.select_action(observation)
    print(
        f"Reloaded; its action for the dataset's first frame: {action.squeeze(0).tolist()} "
        f"(recorded: {frame['action'].tolist()})"
    )
    return args.output_dir


if __name__ == "__main__":
    main()
