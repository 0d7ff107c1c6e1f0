"""Convert a LeRobot dataset of any version (v1.x, v2.0, v2.1, v3.0) to v3.0 (default) or v2.1.

    python lerobot/scripts/convert_dataset.py --repo-id lerobot/pusht --root data/lerobot/pusht \
        --out-dir data/lerobot/pusht_v30 [--to v2.1] [--single-task "Push the T onto the target"]

Nothing in the source is modified. Per-episode AV1/H.264 videos are reused without re-encoding.
"""

from __future__ import annotations

import argparse
import sys
import time

from lerobot.common.datasets.convert import convert_dataset
from lerobot.common.datasets.errors import DatasetError
from lerobot.common.datasets.utils import WRITABLE_VERSIONS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repo-id", required=True, help="namespace/name of the dataset, e.g. lerobot/pusht")
    parser.add_argument(
        "--root", required=True, help="folder of the source dataset (holding meta/ or meta_data/)"
    )
    parser.add_argument("--out-dir", required=True, help="folder to write the converted dataset to")
    parser.add_argument(
        "--to", default="v3.0", choices=WRITABLE_VERSIONS, help="target format (default v3.0)"
    )
    parser.add_argument("--single-task", default=None, help="task text for datasets that record none (v1.x)")
    parser.add_argument("--episodes", type=int, nargs="*", default=None, help="convert only these episodes")
    parser.add_argument(
        "--vcodec", default="libsvtav1", choices=["libsvtav1", "libx264"], help="codec for re-encoding"
    )
    parser.add_argument("--force-override", type=int, default=0, help="1: replace an existing --out-dir")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    try:
        out = convert_dataset(
            args.repo_id,
            args.root,
            args.out_dir,
            to_version=args.to,
            single_task=args.single_task,
            episodes=args.episodes,
            overwrite=bool(args.force_override),
            vcodec=args.vcodec,
        )
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"Wrote {out} ({args.to}) in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
