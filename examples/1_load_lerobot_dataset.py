"""Example 1: load a LeRobot dataset, look inside it, and feed it to a PyTorch DataLoader.

Start here. This walks through `LeRobotDataset`, the class every other example and script builds on:

1. what datasets the library knows about;
2. loading one (from a local folder, or the Hugging Face Hub);
3. the attributes that describe it (episodes, frames, fps, cameras, features, statistics, tasks);
4. saving one episode's camera stream as an mp4 you can watch;
5. asking for several time steps per item with `delta_timestamps` (what policies train on);
6. batching items with a `torch.utils.data.DataLoader`.

Run it:

    python examples/1_load_lerobot_dataset.py                      # lerobot/pusht, downloaded from the Hub
    python examples/1_load_lerobot_dataset.py --repo-id lerobot/pusht --root outputs/data/pusht

`--root` is a local dataset folder (the one holding `meta/info.json`, or a folder holding `<repo-id>/`); with it
nothing is downloaded. Without network, make `outputs/data/pusht` from the PushT episode kept in ../shared/data
(old format v1.3, converted to the current one):

    python lerobot/scripts/convert_dataset.py --repo-id lerobot/pusht \
        --root ../shared/data/lerobot_v1.3/datasets/pusht --out-dir outputs/data/pusht

Any dataset you recorded with `LeRobotDataset.create(...)` works the same way.

Writes `outputs/examples/1_load_lerobot_dataset/episode_<index>.mp4` (change the folder with `--output-dir`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from pprint import pformat

import numpy as np
import torch

import lerobot
from lerobot.common.datasets.lerobot_dataset import LeRobotDataset
from lerobot.common.datasets.video_utils import encode_video_frames


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--repo-id", default="lerobot/pusht", help="Hub id of the dataset (also names it locally)."
    )
    parser.add_argument("--root", default=None, help="Local dataset folder; omit to use the Hub.")
    parser.add_argument(
        "--episodes",
        type=int,
        nargs="*",
        default=None,
        help="Episode indices to load (default: all). Only their files are downloaded.",
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader worker processes.")
    parser.add_argument("--output-dir", type=Path, default=Path("outputs/examples/1_load_lerobot_dataset"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)

    # --------------------------------------------------------------------------------------------------------
    # 1. What is available. These lists name the public datasets recorded in the simulators this library
    #    ships (plus a real-world one). Any dataset in the LeRobot format loads, listed here or not.
    # --------------------------------------------------------------------------------------------------------
    print(f"Simulation environments: {lerobot.available_envs}")
    print("Datasets per environment:")
    for env, repo_ids in lerobot.available_datasets_per_env.items():
        print(f"  {env}: {repo_ids}")
    print(f"Real-world datasets: {lerobot.available_real_world_datasets}\n")

    # --------------------------------------------------------------------------------------------------------
    # 2. Load a dataset. `repo_id` is its name on the Hub. With `root`, the files are read from that folder;
    #    without it, the library looks in $HF_LEROBOT_HOME (~/.cache/huggingface/lerobot) and the Hub cache,
    #    then downloads. `episodes=[...]` loads (and downloads) a subset.
    # --------------------------------------------------------------------------------------------------------
    dataset = LeRobotDataset(args.repo_id, root=args.root, episodes=args.episodes)
    print(dataset, "\n")

    # --------------------------------------------------------------------------------------------------------
    # 3. Attributes. A dataset is a list of frames (one row per time step) grouped into episodes (one
    #    demonstration each). Everything below is read from the dataset's metadata; nothing is decoded yet.
    # --------------------------------------------------------------------------------------------------------
    print(f"Format version:      {dataset.codebase_version}")
    # `meta` describes the whole dataset on disk; `num_episodes` / `num_samples` count what was loaded.
    print(f"Episodes:            {dataset.num_episodes} loaded of {dataset.meta.total_episodes}")
    print(f"Frames:              {dataset.num_samples} loaded of {dataset.meta.total_frames}")
    print(f"Frames per second:   {dataset.fps}")
    print(f"Camera keys:         {dataset.camera_keys}")
    print(f"Tasks:               {dataset.tasks}")
    # `features` describes every column: dtype ("video" / "image" for cameras, else a numpy dtype), shape
    # (cameras are stored height x width x channels) and optional names of the vector's entries.
    print("Features:")
    for key, feature in dataset.features.items():
        print(f"  {key:32s} {feature['dtype']:8s} shape={tuple(feature['shape'])}")
    # Statistics over the whole dataset (mean, std, min, max, ...), as tensors. Policies use them to normalise
    # their inputs and outputs; cameras have one value per channel, shaped (3, 1, 1).
    action_stats = dataset.stats.get("action", {})
    print("Action statistics:\n" + pformat({k: v.tolist() for k, v in action_stats.items()}))
    # Where each loaded episode starts and ends, as [from, to) row indices into this dataset.
    from_idx, to_idx = dataset.episode_data_index["from"], dataset.episode_data_index["to"]
    print(f"First episodes span rows: {list(zip(from_idx[:3].tolist(), to_idx[:3].tolist(), strict=True))}")
    # The same rows as a Hugging Face `datasets.Dataset` (memory-mapped Arrow), for those who prefer that API.
    # Camera frames are not in it when they live in videos.
    print(f"hf_dataset columns: {dataset.hf_dataset.column_names}\n")

    # --------------------------------------------------------------------------------------------------------
    # 4. Items, and one episode as a video. `dataset[i]` is a dict of tensors for frame `i`: vectors as
    #    float32, camera frames as (channels, height, width) float32 in [0, 1], decoded from the videos.
    # --------------------------------------------------------------------------------------------------------
    item = dataset[0]
    print("dataset[0]:")
    for key, value in item.items():
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else repr(value)
        print(f"  {key:32s} {shape}")

    if not dataset.camera_keys:
        raise SystemExit(f"{args.repo_id} has no camera, so there is no video to save.")
    camera = dataset.camera_keys[0]
    episode_index = dataset.episodes[0]
    start, end = int(from_idx[0]), int(to_idx[0])
    frames = []
    for i in range(start, end):
        chw = dataset[i][camera]  # (C, H, W) float in [0, 1]
        frames.append((chw * 255).round().to(torch.uint8).permute(1, 2, 0).numpy())  # (H, W, C) uint8
    # H.264 with 4:2:0 chroma (what every player reads) needs even sizes: drop an odd last row/column.
    h, w = frames[0].shape[:2]
    frames = [np.ascontiguousarray(f[: h - h % 2, : w - w % 2]) for f in frames]
    video_path = args.output_dir / f"episode_{episode_index}.mp4"
    video_path.parent.mkdir(parents=True, exist_ok=True)
    encode_video_frames(frames, video_path, dataset.fps, vcodec="libx264", g=int(dataset.fps), overwrite=True)
    print(f"\nSaved {len(frames)} frames of {camera!r} (episode {episode_index}) to {video_path}\n")

    # --------------------------------------------------------------------------------------------------------
    # 5. Several time steps per item. Policies look at a short history of observations and predict a chunk of
    #    future actions. `delta_timestamps` asks for them: per key, times in seconds relative to the indexed
    #    frame. They must be multiples of 1 / fps, so we write them as frame offsets divided by fps. Times
    #    before the episode's start or after its end repeat the first or last frame, and `<key>_is_pad` says
    #    which ones those are (a policy leaves them out of its loss).
    # --------------------------------------------------------------------------------------------------------
    fps = dataset.fps
    delta_timestamps = {
        camera: [-4 / fps, -2 / fps, 0.0],  # three frames: 4 and 2 steps ago, and now
        "action": [t / fps for t in range(16)],  # the next 16 actions, from now on
    }
    if "observation.state" in dataset.features:
        delta_timestamps["observation.state"] = [-1 / fps, 0.0]
    dataset = LeRobotDataset(
        args.repo_id, root=args.root, episodes=args.episodes, delta_timestamps=delta_timestamps
    )
    item = dataset[0]
    print(f"With delta_timestamps={delta_timestamps}:")
    for key in delta_timestamps:
        print(f"  {key:32s} {tuple(item[key].shape)}  padded: {item[f'{key}_is_pad'].tolist()}")

    # --------------------------------------------------------------------------------------------------------
    # 6. A DataLoader batches items like any PyTorch dataset: every tensor gains a leading batch axis.
    #    Use num_workers > 0 to decode videos in parallel worker processes.
    # --------------------------------------------------------------------------------------------------------
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=args.batch_size, shuffle=True, num_workers=args.num_workers
    )
    batch = next(iter(loader))
    print("\nOne batch:")
    for key in (camera, "observation.state", "action"):
        if key in batch:
            print(f"  {key:32s} {tuple(batch[key].shape)}")
    return video_path


if __name__ == "__main__":
    main()
