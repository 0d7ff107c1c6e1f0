"""Advanced example 3: profile a few training steps with torch.profiler.

Where does a training step spend its time: waiting for data, the forward pass, the backward pass or the
optimiser, and in which operators? This example builds the policy, dataset and optimiser exactly as
`lerobot/scripts/train.py` does (the same configs and overrides), runs a few training steps under
`torch.profiler`, and prints the operators that took the most time.

1. compose train.py's configuration from the overrides given on the command line;
2. build the dataset, the policy and its optimiser from it, as train.py does;
3. run `--warmup` unrecorded steps (first batches, memory allocation, lazy initialisation), then `--steps`
   recorded ones, each split into labelled phases with `torch.profiler.record_function`;
4. print the per-operator table (`key_averages`), the time per phase, and save a Chrome trace.

Run it (the overrides after the options are train.py's; `dataset_root` is a local dataset, see example 1 or the
README for making one offline; leave it out to download `dataset_repo_id` from the Hub):

    python examples/advanced/3_profile_policy.py policy=diffusion env=pusht dataset_root=outputs/data/pusht \\
        device=cpu training.batch_size=8 training.num_workers=0
    python examples/advanced/3_profile_policy.py --steps 10 --sort-by cpu_time_total --record-shapes \\
        policy=act env=pusht dataset_root=outputs/data/pusht device=cpu training.batch_size=8 \\
        training.num_workers=0 policy.chunk_size=20 policy.n_action_steps=20 policy.pretrained_backbone_weights=null

With `training.num_workers=0` batches are loaded in the profiled process, so the "data" phase shows the cost of
decoding and collating; with workers it only shows the time spent waiting for them. On a GPU (`device=cuda`)
CUDA kernels are recorded too, and the table is sorted by device time: the CPU time of a phase then only
covers launching its kernels, which run asynchronously.

Writes to `outputs/examples/advanced/3_profile_policy/` (`--output-dir`): `key_averages.txt` (the table),
`trace.json` (open it in https://ui.perfetto.dev or chrome://tracing) and `summary.json` (milliseconds per step
of each phase).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile, record_function, schedule

from lerobot.common.datasets.hub import resolve_dataset_root
from lerobot.common.datasets.lerobot_dataset import LeRobotDataset
from lerobot.common.datasets.metadata import load_metadata
from lerobot.common.datasets.sampler import EpisodeAwareSampler
from lerobot.common.policies.factory import make_policy
from lerobot.common.training.factory import apply_stats_overrides, make_policy_config
from lerobot.common.utils.utils import autocast, get_device, set_global_seed
from lerobot.scripts.train import compose_run_config

PHASES = ("data", "forward", "backward", "optimizer")
SORT_KEYS = (
    "self_cpu_time_total",
    "cpu_time_total",
    "self_device_time_total",
    "device_time_total",
    "self_cpu_memory_usage",
    "cpu_memory_usage",
    "count",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=5, help="Training steps recorded.")
    parser.add_argument("--warmup", type=int, default=2, help="Steps run before recording starts.")
    parser.add_argument(
        "--sort-by",
        choices=SORT_KEYS,
        default=None,
        help="Column the table is sorted by (default: self_cpu_time_total, self_device_time_total on CUDA).",
    )
    parser.add_argument("--row-limit", type=int, default=20, help="Rows of the printed table.")
    parser.add_argument(
        "--record-shapes", action="store_true", help="Also list operators per input shape (slower)."
    )
    parser.add_argument(
        "--profile-memory", action="store_true", help="Also record memory allocated by each operator."
    )
    parser.add_argument("--output-dir", type=Path, default=Path("outputs/examples/advanced/3_profile_policy"))
    parser.add_argument(
        "overrides",
        nargs="*",
        help="train.py overrides, e.g. policy=act env=aloha device=cpu training.batch_size=8.",
    )
    return parser.parse_args(argv)


def batches(loader: torch.utils.data.DataLoader) -> Iterator[dict[str, Any]]:
    """The loader's batches, epoch after epoch, for as many steps as asked."""
    while True:
        yield from loader


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        raise SystemExit(
            f"--steps must be at least 1 and --warmup at least 0 (got {args.steps}, {args.warmup})."
        )

    # --------------------------------------------------------------------------------------------------------
    # 1. The configuration: train.py's yaml files with the command line's overrides (a misspelt key is an error).
    # --------------------------------------------------------------------------------------------------------
    cfg, _ = compose_run_config(args.overrides)
    set_global_seed(int(cfg.seed))
    device = get_device(cfg.device)
    use_amp = bool(cfg.use_amp)

    # --------------------------------------------------------------------------------------------------------
    # 2. Dataset, policy and optimiser, built as train.py builds them: the dataset's features size the policy,
    #    the policy's config says which time steps each sample needs.
    # --------------------------------------------------------------------------------------------------------
    root = resolve_dataset_root(cfg.dataset_repo_id, cfg.get("dataset_root", None))
    meta = load_metadata(root)
    policy_cfg = make_policy_config(cfg, meta.features)
    dataset = LeRobotDataset(
        cfg.dataset_repo_id,
        root=root,
        episodes=cfg.get("dataset_episodes", None),
        delta_timestamps=policy_cfg.delta_timestamps(meta.fps),
    )
    cameras = [k for k in policy_cfg.input_shapes if k in dataset.camera_keys]
    stats = apply_stats_overrides(dataset.stats, cfg.get("override_dataset_stats", None), cameras)
    policy = make_policy(policy_cfg, dataset_stats=stats).to(device)
    policy.train()
    optimizer = policy.make_optimizer()
    # The schedule of the full run, so that the learning rate (and any warm-up code path) is the real one.
    scheduler = policy.make_lr_scheduler(optimizer, int(cfg.training.offline_steps))
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and device.type == "cuda")
    sampler = EpisodeAwareSampler(
        dataset.episode_data_index, drop_n_last_frames=policy_cfg.drop_n_last_frames, shuffle=True
    )
    num_workers = int(cfg.training.num_workers)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=int(cfg.training.batch_size),
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=num_workers > 0,
        drop_last=len(sampler) >= int(cfg.training.batch_size),
    )
    n_params = sum(p.numel() for p in policy.parameters())
    print(
        f"Profiling {policy.name} ({n_params / 1e6:.2f}M parameters) on {device}: {dataset.num_samples} frames of "
        f"{cfg.dataset_repo_id}, batch {cfg.training.batch_size}, {num_workers} workers, "
        f"{torch.get_num_threads()} threads; {args.warmup} warm-up + {args.steps} recorded steps"
    )

    # --------------------------------------------------------------------------------------------------------
    # 3. The profiled loop. The schedule records nothing during the warm-up steps, then `args.steps` steps;
    #    `prof.step()` marks the end of each. A `record_function` block appears as one row of the table (its
    #    total time, children included) and as a labelled span in the trace.
    # --------------------------------------------------------------------------------------------------------
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    trace_path = args.output_dir / "trace.json"

    def synchronize() -> None:
        if device.type == "cuda":  # wall-clock times must include the kernels still queued
            torch.cuda.synchronize(device)

    data = batches(loader)
    step_seconds = []
    with profile(
        activities=activities,
        schedule=schedule(wait=0, warmup=args.warmup, active=args.steps, repeat=1),
        on_trace_ready=lambda p: p.export_chrome_trace(str(trace_path)),
        record_shapes=args.record_shapes,
        profile_memory=args.profile_memory,
    ) as prof:
        for step in range(args.warmup + args.steps):
            synchronize()
            start = time.perf_counter()
            with record_function("data"):
                batch = next(data)
                batch = {
                    k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
                    for k, v in batch.items()
                }
            with record_function("forward"), autocast(device, use_amp):
                loss = policy(batch)["loss"]
            with record_function("backward"):
                scaler.scale(loss).backward()
            with record_function("optimizer"):
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(policy.parameters(), float(cfg.training.grad_clip_norm))
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                if scheduler is not None:
                    scheduler.step()
                policy.update()
            synchronize()
            if step >= args.warmup:
                step_seconds.append(time.perf_counter() - start)
            prof.step()

    # --------------------------------------------------------------------------------------------------------
    # 4. The results. `key_averages()` sums every recorded event by name: "self" time excludes the time of the
    #    operators it called, "total" includes it. Our phase labels are rows like any operator.
    # --------------------------------------------------------------------------------------------------------
    averages = prof.key_averages(group_by_input_shape=args.record_shapes)
    sort_by = args.sort_by or ("self_device_time_total" if device.type == "cuda" else "self_cpu_time_total")
    table = averages.table(sort_by=sort_by, row_limit=args.row_limit)
    print(table)
    (args.output_dir / "key_averages.txt").write_text(table, encoding="utf-8")

    by_name = {event.key: event for event in averages}
    phases = {name: by_name[name].cpu_time_total / 1000 / args.steps for name in PHASES if name in by_name}
    summary = {
        "policy": policy.name,
        "dataset": cfg.dataset_repo_id,
        "device": str(device),
        "batch_size": int(cfg.training.batch_size),
        "num_workers": num_workers,
        "steps": args.steps,
        "wall_ms_per_step": 1000 * sum(step_seconds) / len(step_seconds),
        "cpu_ms_per_step": phases,
    }
    with open(args.output_dir / "summary.json", "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    print(
        f"{summary['wall_ms_per_step']:.1f} ms per step; CPU time per phase: "
        + ", ".join(f"{name} {ms:.1f} ms" for name, ms in phases.items())
    )
    print(
        f"Wrote {args.output_dir / 'key_averages.txt'}, {trace_path} and {args.output_dir / 'summary.json'}"
    )
    return summary


if __name__ == "__main__":
    main()
