"""Example 6: augment camera frames with image transforms, and see what they do.

Policies trained on real robots generalise better when the camera frames they learn from vary a little in
brightness, contrast, colour and sharpness. `lerobot.common.datasets.transforms` provides these photometric
transforms (plain torch, same maths as torchvision's), and `LeRobotDataset(image_transforms=...)` applies them to
every camera frame it returns. This example:

1. loads one frame of a dataset;
2. applies each transform alone, at both ends of its default range, to show what it changes;
3. builds the random combination that training uses (`ImageTransformsConfig` / `ImageTransforms`) and gives it
   to the dataset, then reads the same frame several times: every read is augmented differently;
4. saves the original and the transformed frames side by side in one image.

Run it:

    python examples/6_add_image_transforms.py                                 # lerobot/pusht from the Hub
    python examples/6_add_image_transforms.py --root outputs/data/pusht --frame 50

`--root` is a local dataset folder (see example 1). With the training script, the same augmentation is switched
on with `training.image_transforms.enable=true` and tuned under `training.image_transforms` (default.yaml).

Writes `outputs/examples/6_add_image_transforms/transforms.png` (`--output-dir`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from lerobot.common.datasets.lerobot_dataset import LeRobotDataset
from lerobot.common.datasets.transforms import ImageTransforms, ImageTransformsConfig

LABEL_HEIGHT = 16


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--repo-id", default="lerobot/pusht", help="Hub id of the dataset (also names it locally)."
    )
    parser.add_argument("--root", default=None, help="Local dataset folder; omit to use the Hub.")
    parser.add_argument(
        "--episodes", type=int, nargs="*", default=None, help="Episodes to load (default: all)."
    )
    parser.add_argument("--frame", type=int, default=0, help="Index of the frame to transform.")
    parser.add_argument("--samples", type=int, default=5, help="Random augmentations of the frame to show.")
    parser.add_argument(
        "--tile-size", type=int, default=192, help="Height of each picture in the output, pixels."
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", type=Path, default=Path("outputs/examples/6_add_image_transforms"))
    return parser.parse_args(argv)


def to_pil(chw: torch.Tensor, height: int) -> Image.Image:
    """(C, H, W) float in [0, 1] -> an RGB picture `height` pixels high (nearest-neighbour, to keep pixels sharp)."""
    img = Image.fromarray((chw.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy())
    width = max(1, round(img.width * height / img.height))
    return img.resize((width, height), Image.NEAREST)


def grid(rows: list[list[tuple[str, torch.Tensor]]], height: int) -> Image.Image:
    """Labelled pictures, one list per row, on a white background."""
    tiles = [[(label, to_pil(img, height)) for label, img in row] for row in rows]
    width = max(sum(t.width + 4 for _, t in row) for row in tiles)
    sheet = Image.new("RGB", (width, len(rows) * (height + LABEL_HEIGHT + 4)), "white")
    draw = ImageDraw.Draw(sheet)
    y = 0
    for row in tiles:
        x = 0
        for label, tile in row:
            draw.text((x + 2, y + 2), label, fill="black")
            sheet.paste(tile, (x, y + LABEL_HEIGHT))
            x += tile.width + 4
        y += height + LABEL_HEIGHT + 4
    return sheet


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    torch.manual_seed(args.seed)

    # --------------------------------------------------------------------------------------------------------
    # 1. One frame, as the dataset returns it: (C, H, W) float32 in [0, 1]. The transforms expect exactly that
    #    (and also work on a stack of frames (T, C, H, W), which they change all in the same way).
    # --------------------------------------------------------------------------------------------------------
    dataset = LeRobotDataset(args.repo_id, root=args.root, episodes=args.episodes)
    if not dataset.camera_keys:
        raise SystemExit(f"{args.repo_id} has no camera to transform.")
    camera = dataset.camera_keys[0]
    original = dataset[args.frame][camera]
    print(f"Frame {args.frame} of {args.repo_id}, camera {camera!r}: {tuple(original.shape)}")

    # --------------------------------------------------------------------------------------------------------
    # 2. Each transform alone. The config holds, per transform, the range its random factor is drawn from
    #    (`min_max`) and how often it is picked (`weight`); these defaults are the reference training recipe's.
    #    `ImageTransforms(...).transforms` holds one module per enabled transform; `.apply(img, factor)` applies
    #    it with a chosen factor instead of a random one, so we can show both ends of each range.
    # --------------------------------------------------------------------------------------------------------
    config = ImageTransformsConfig(enable=True, max_num_transforms=3, random_order=False)
    single = ImageTransforms(config).transforms
    rows = []
    for name, transform in single.items():
        low, high = transform.min_max
        print(f"  {name:10s} factor drawn from [{low}, {high}], weight {getattr(config, name).weight}")
        rows.append(
            [
                ("original", original),
                (f"{name} {low:g}", transform.apply(original, low)),
                (f"{name} {high:g}", transform.apply(original, high)),
            ]
        )

    # --------------------------------------------------------------------------------------------------------
    # 3. What training sees. `ImageTransforms(config)` picks, on every call, up to `max_num_transforms` of the
    #    transforms (with probability proportional to their weights), each with a random factor. Given to the
    #    dataset, it is applied to every camera frame of every item, so each epoch sees new variations.
    #    Stronger augmentation is a matter of wider ranges, e.g. brightness {"weight": 1, "min_max": [0.5, 1.5]}.
    # --------------------------------------------------------------------------------------------------------
    augmented = LeRobotDataset(
        args.repo_id, root=args.root, episodes=args.episodes, image_transforms=ImageTransforms(config)
    )
    random_draws = [("original", original)]
    for i in range(args.samples):
        random_draws.append((f"random {i + 1}", augmented[args.frame][camera]))
    rows.append(random_draws)

    # --------------------------------------------------------------------------------------------------------
    # 4. Save everything side by side: one row per transform (original, low end, high end), then a last row
    #    with the original and training's random mixes.
    # --------------------------------------------------------------------------------------------------------
    path = args.output_dir / "transforms.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    grid(rows, args.tile_size).save(path)
    print(
        f"Saved {path}: {len(single)} transforms at both ends of their range, then {args.samples} random draws"
    )
    return path


if __name__ == "__main__":
    main()
