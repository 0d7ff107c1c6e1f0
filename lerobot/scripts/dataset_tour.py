"""A tour of the dataset stack on real robot data, end to end, offline:

For each public LeRobot dataset found in old format v1.3 (../shared/data/lerobot_v1.3/datasets, or --source):
convert it to format v3.0, load it back with `LeRobotDataset`, check the converted frames against the
originals, time a DataLoader pass with `delta_timestamps`, and save a strip of frames. Writes
outputs/dataset_tour/ with the converted datasets, one PNG strip per dataset and summary.md.

Without that folder, it downloads `lerobot/pusht` from the Hugging Face Hub and does the same.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lerobot.common.datasets.convert import convert_dataset
from lerobot.common.datasets.lerobot_dataset import LeRobotDataset

DEFAULT_SOURCE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "lerobot_v1.3" / "datasets"


def frame_strip(dataset: LeRobotDataset, path: Path, n: int = 8, height: int = 96) -> None:
    key = dataset.camera_keys[0]
    tiles = []
    for i in np.linspace(0, len(dataset) - 1, n).round().astype(int):
        img = (dataset[int(i)][key] * 255).round().byte().permute(1, 2, 0).numpy()
        pil = Image.fromarray(img)
        tiles.append(pil.resize((max(1, round(pil.width * height / pil.height)), height)))
    strip = Image.new("RGB", (sum(t.width for t in tiles) + 2 * (n - 1), height), "white")
    x = 0
    for tile in tiles:
        strip.paste(tile, (x, 0))
        x += tile.width + 2
    strip.save(path)


def dataloader_rate(dataset: LeRobotDataset, max_batches: int = 20) -> float:
    loader = torch.utils.data.DataLoader(dataset, batch_size=32, shuffle=True, num_workers=0)
    start, seen = time.perf_counter(), 0
    for i, batch in enumerate(loader):
        seen += len(batch["index"])
        if i + 1 >= max_batches:
            break
    return seen / (time.perf_counter() - start)


def max_frame_diff(original: LeRobotDataset, converted: LeRobotDataset) -> float:
    worst = 0.0
    for i in (0, len(original) // 2, len(original) - 1):
        a, b = original[i], converted[i]
        for key in original.camera_keys:
            worst = max(worst, (a[key] - b[key]).abs().max().item())
        for key in ("observation.state", "action"):
            if key in a and not torch.equal(a[key], b[key]):
                raise AssertionError(f"{original.repo_id}[{i}] {key} changed in conversion")
    return worst


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="folder of v1.3 datasets")
    parser.add_argument("--out-dir", type=Path, default=Path("outputs/dataset_tour"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    out = args.out_dir
    (out / "datasets").mkdir(parents=True, exist_ok=True)
    if args.source.is_dir():
        sources = [
            (f"lerobot/{p.name}", p) for p in sorted(args.source.iterdir()) if (p / "meta_data").is_dir()
        ]
    else:
        print(f"{args.source} not found: downloading lerobot/pusht from the Hugging Face Hub instead.")
        hub = LeRobotDataset("lerobot/pusht", episodes=[0])
        sources = [("lerobot/pusht", hub.root)]

    rows = []
    total_start = time.perf_counter()
    for step, (repo_id, src) in enumerate(sources, start=1):
        name = repo_id.split("/")[1]
        print(f"[{step}/{len(sources)}] {repo_id}: convert -> v3.0, load, check, time, draw", flush=True)
        t0 = time.perf_counter()
        dst = convert_dataset(
            repo_id,
            src,
            out / "datasets" / name,
            to_version="v3.0",
            single_task=name,
            overwrite=True,
            progress=False,
        )
        convert_s = time.perf_counter() - t0
        original = LeRobotDataset(repo_id, root=src, decoded_frame_cache=False)
        fps = original.fps
        deltas = {key: [-1 / fps, 0.0] for key in original.camera_keys}
        if "action" in original.features:
            deltas["action"] = [i / fps for i in range(8)]
        converted = LeRobotDataset(repo_id, root=dst, delta_timestamps=deltas, decoded_frame_cache=False)
        plain = LeRobotDataset(repo_id, root=dst, decoded_frame_cache=False)
        diff = max_frame_diff(original, plain)
        rate = dataloader_rate(converted)
        frame_strip(plain, out / f"frames_{name}.png")
        h, w, _ = plain.features[plain.camera_keys[0]]["shape"]
        rows.append(
            (
                name,
                plain.num_episodes,
                len(plain),
                fps,
                f"{w}x{h}",
                plain.features.get("action", {}).get("shape", ["-"])[0],
                f"{convert_s:.1f}",
                f"{diff * 255:.1f}/255",
                f"{rate:.0f}",
            )
        )

    header = (
        "dataset",
        "episodes",
        "frames",
        "fps",
        "camera",
        "action dim",
        "convert s",
        "max pixel diff",
        "samples/s",
    )
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [" | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in [header, *rows]]
    lines.insert(1, "-|-".join("-" * w for w in widths))
    table = "\n".join(lines)
    print("\n" + table)
    summary = out / "summary.md"
    summary.write_text(
        "# Quickstart summary\n\nEach dataset converted from format v1.3 to v3.0, re-loaded, compared with the "
        "original (max pixel diff over 3 frames), read through a DataLoader (batch 32, deltas on the camera and "
        f"8 future actions).\n\n```\n{table}\n```\n\nTotal time: {time.perf_counter() - total_start:.0f} s.\n"
    )
    print(f"\nWrote {out}/: datasets/, frames_<name>.png, summary.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
