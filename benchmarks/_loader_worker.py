"""One benchmark step, run in a subprocess by `dataloading.py` with either venv's python.

It imports either our `lerobot` (`--impl ours`) or the reference one (`--impl reference`) and does one of:

- `--mode bench` (default): load a dataset, iterate a shuffled DataLoader for `--epochs` epochs, time each epoch,
  sample the peak RSS of the process tree, and print one JSON line. With `--ceiling`, the DataLoader reads
  copies of a few items held in RAM instead (same keys, shapes and dtypes, no decoding, no disk): the most any
  dataset can deliver through this DataLoader on this machine.
- `--mode build`: write a benchmark dataset (format v3.0, video) from the source arrays prepared by the driver.
- `--mode dump`: save the items at `--indices` to an .npz (+ .json for strings) for the compatibility check.

Only numpy, torch, psutil and the chosen `lerobot` are needed, so both venvs can run it.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

TASKS = {"pusht": "Push the T-shaped block onto the target.", "aloha480": "Insert the peg into the socket."}


# ----------------------------------------------------------------------------------------------- imports


def dataset_class(impl: str):
    if impl == "ours":
        from lerobot.common.datasets.lerobot_dataset import LeRobotDataset
    else:
        from lerobot.datasets.lerobot_dataset import LeRobotDataset
    return LeRobotDataset


def lerobot_info() -> dict:
    import torch

    import lerobot

    try:
        from importlib.metadata import version

        lerobot_version = version("lerobot")
    except Exception:  # the version is informative only
        lerobot_version = None
    return {
        "lerobot_file": str(Path(lerobot.__file__).parent),
        "lerobot_version": lerobot_version,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def open_dataset(args, frame_cache: str | None = None):
    """Return (dataset, extra info). `frame_cache` applies to ours only: "fresh" (new temp folder), "off", "auto"."""
    LeRobotDataset = dataset_class(args.impl)
    deltas = json.loads(args.deltas) if args.deltas else None
    info: dict = {}
    if args.impl == "ours":
        kwargs: dict = {}
        if frame_cache == "off":
            kwargs["decoded_frame_cache"] = False
        elif frame_cache == "fresh":
            cache_dir = tempfile.mkdtemp(prefix="lerobot_frame_cache_", dir=args.cache_parent)
            kwargs["decoded_frame_cache"] = cache_dir
            info["cache_dir"] = cache_dir
        elif frame_cache not in (None, "auto"):
            kwargs["decoded_frame_cache"] = frame_cache
        ds = LeRobotDataset(args.repo_id, root=args.root, delta_timestamps=deltas, **kwargs)
        info["video_backend"] = "pyav"
    else:
        ds = LeRobotDataset(args.repo_id, root=args.root, delta_timestamps=deltas)
        info["video_backend"] = getattr(ds, "_video_backend", None) or getattr(ds, "video_backend", None)
    return ds, info


# ----------------------------------------------------------------------------------------------- memory


class TreeRssSampler(threading.Thread):
    """Peak of the summed RSS (and of its anonymous part, RSS minus file-backed/shared) of this process tree."""

    def __init__(self, interval_s: float = 0.02, children_every: int = 10):
        super().__init__(daemon=True)
        import psutil

        self.root = psutil.Process()
        self.interval_s = interval_s
        self.children_every = children_every
        self.procs = [self.root]
        self.peak_rss = 0
        self.peak_anon = 0
        self.peak_procs = 1
        self.samples = 0
        self._stop_event = threading.Event()

    def sample(self) -> None:
        import psutil

        if self.samples % self.children_every == 0:  # scanning /proc for children is the costly part
            with contextlib.suppress(psutil.Error):
                self.procs = [self.root, *self.root.children(recursive=True)]
        rss = anon = alive = 0
        for proc in self.procs:
            try:
                mem = proc.memory_info()
            except psutil.Error:
                continue
            rss += mem.rss
            anon += mem.rss - getattr(mem, "shared", 0)
            alive += 1
        self.samples += 1
        self.peak_rss = max(self.peak_rss, rss)
        self.peak_anon = max(self.peak_anon, anon)
        self.peak_procs = max(self.peak_procs, alive)

    def run(self) -> None:
        while not self._stop_event.wait(self.interval_s):
            self.sample()

    def stop(self) -> None:
        self._stop_event.set()
        self.join()
        self.sample()


# ----------------------------------------------------------------------------------------------- bench


class InMemoryItems:
    """`len(dataset)` items cycling through `count` real items kept in RAM; each access returns copies, as a
    dataset decoding frames would (the DataLoader then collates and moves them as it does real items).

    The copies go into our recycled buffers (`lerobot.common.datasets.recycled_buffers`, which our dataset uses for
    its frames) when that module is importable, so that the ceiling stays the most a dataset could deliver: one
    copy per item into memory that is already faulted in. Without it, each copy is fresh memory (`clone`)."""

    def __init__(self, dataset, count: int = 16):
        import torch

        self.length = len(dataset)
        step = max(1, self.length // count)
        self.items = [
            {k: v for k, v in dataset[i].items() if isinstance(v, torch.Tensor)}
            for i in range(0, self.length, step)
        ][:count]
        try:
            from lerobot.common.datasets.recycled_buffers import frame_buffers
        except ImportError:
            frame_buffers = None
        self.buffers = frame_buffers

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        return {k: self._copy(v) for k, v in self.items[index % len(self.items)].items()}

    def _copy(self, value):
        import torch

        if self.buffers is None:
            return value.clone()
        out = torch.from_numpy(self.buffers.empty(tuple(value.shape), value.numpy().dtype))
        return out.copy_(value)


def touch(batch) -> float:
    """Reduce every tensor of the batch so that no lazily produced value goes unread."""
    import torch

    total = 0.0
    for value in batch.values():
        if isinstance(value, torch.Tensor):
            total += float(value.float().sum()) if value.dtype != torch.bool else float(value.sum())
    return total


def batch_size_of(batch) -> int:
    import torch

    for value in batch.values():
        if isinstance(value, torch.Tensor):
            return int(value.shape[0])
    return 0


def bench(args) -> dict:
    import torch

    sampler = TreeRssSampler(args.rss_interval)
    sampler.sample()
    sampler.start()
    t0 = time.perf_counter()
    ds, info = open_dataset(args, args.frame_cache)
    if args.ceiling:
        ds = InMemoryItems(ds)
    load_s = time.perf_counter() - t0
    generator = torch.Generator().manual_seed(args.seed)
    loader = torch.utils.data.DataLoader(
        ds,
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=args.num_workers,
        generator=generator,
        persistent_workers=args.num_workers > 0,
    )
    epochs = []
    checksum = 0.0
    for _ in range(args.epochs):
        samples = batches = 0
        start = time.perf_counter()
        for batch in loader:
            checksum += touch(batch)
            samples += batch_size_of(batch)
            batches += 1
            if args.max_batches and batches >= args.max_batches:
                break
        seconds = time.perf_counter() - start
        epochs.append(
            {"samples": samples, "batches": batches, "seconds": seconds, "samples_per_s": samples / seconds}
        )
    del loader
    gc.collect()
    sampler.stop()
    if info.get("cache_dir"):
        shutil.rmtree(info["cache_dir"], ignore_errors=True)
    return {
        **info,
        "num_samples": len(ds),
        "load_s": load_s,
        "epochs": epochs,
        "first_epoch_samples_per_s": epochs[0]["samples_per_s"],
        "steady_samples_per_s": epochs[-1]["samples_per_s"],
        "peak_rss_mb": sampler.peak_rss / 2**20,
        "peak_anon_rss_mb": sampler.peak_anon / 2**20,
        "peak_processes": sampler.peak_procs,
        "rss_samples": sampler.samples,
        "main_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "checksum": checksum,
    }


# ----------------------------------------------------------------------------------------------- dump


def dump(args) -> dict:
    import torch

    ds, info = open_dataset(args, args.frame_cache)
    arrays: dict[str, np.ndarray] = {}
    other: dict[str, object] = {}
    indices = [int(i) for i in args.indices.split(",")]
    for idx in indices:
        for key, value in ds[idx].items():
            name = f"{idx}|{key}"
            if isinstance(value, torch.Tensor):
                arrays[name] = value.numpy()
            else:
                other[name] = value if isinstance(value, (str, int, float, bool)) else repr(value)
    np.savez(args.out, **arrays)
    Path(args.out).with_suffix(".json").write_text(json.dumps(other))
    if info.get("cache_dir"):
        shutil.rmtree(info["cache_dir"], ignore_errors=True)
    return {**info, "num_samples": len(ds), "indices": indices, "out": args.out}


# ----------------------------------------------------------------------------------------------- build


def build(args) -> dict:
    source = Path(args.source)
    spec = json.loads((source / "spec.json").read_text())
    images = np.load(source / "images.npy", mmap_mode="r")
    state = np.load(source / "state.npy")
    action = np.load(source / "action.npy")
    episodes = [np.asarray(ep, dtype=np.int64) for ep in spec["episodes"]]  # source rows of each episode
    image_key = spec["image_key"]
    h, w, c = images.shape[1:]
    features = {
        image_key: {"dtype": "video", "shape": (h, w, c), "names": ["height", "width", "channels"]},
        "observation.state": {"dtype": "float32", "shape": (state.shape[1],), "names": None},
        "action": {"dtype": "float32", "shape": (action.shape[1],), "names": None},
    }
    task = TASKS[spec["name"]]
    root = Path(args.root)
    if root.exists():
        shutil.rmtree(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    LeRobotDataset = dataset_class(args.impl)
    t0 = time.perf_counter()
    if args.impl == "ours":
        writer = LeRobotDataset.create(
            args.repo_id, fps=spec["fps"], features=features, root=root, use_videos=True
        )
    else:
        writer = LeRobotDataset.create(
            args.repo_id,
            fps=spec["fps"],
            features=features,
            root=root,
            use_videos=True,
            image_writer_threads=2,
        )
    for frames in episodes:
        for i in frames.tolist():
            frame = {
                image_key: np.ascontiguousarray(images[i]),
                "observation.state": state[i].astype(np.float32),
                "action": action[i].astype(np.float32),
            }
            if args.impl == "reference":
                frame["task"] = task
            writer.add_frame(frame)
        if args.impl == "ours":
            writer.save_episode(task=task)
        else:
            writer.save_episode()
    writer.finalize()
    return {
        "root": str(root),
        "episodes": len(episodes),
        "frames": int(sum(len(e) for e in episodes)),
        "build_s": time.perf_counter() - t0,
    }


# ----------------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mode", choices=["bench", "build", "dump"], default="bench")
    parser.add_argument("--impl", choices=["ours", "reference"], required=True)
    parser.add_argument("--root", required=True, help="dataset folder")
    parser.add_argument("--repo-id", default="bench/dataset")
    parser.add_argument("--deltas", default=None, help="delta_timestamps as JSON")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-batches", type=int, default=0, help="stop each epoch after this many (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rss-interval", type=float, default=0.02)
    parser.add_argument(
        "--frame-cache", default="fresh", help="ours only: fresh (new temp folder) | off | auto | a folder"
    )
    parser.add_argument(
        "--cache-parent", default=None, help="where fresh frame caches are made (default: tmp)"
    )
    parser.add_argument("--ceiling", action="store_true", help="bench: copies of items held in RAM")
    parser.add_argument("--source", help="build: folder of source arrays prepared by the driver")
    parser.add_argument("--indices", default="0", help="dump: comma-separated item indices")
    parser.add_argument("--out", help="dump: output .npz")
    args = parser.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    result = {"mode": args.mode, "impl": args.impl, "pid": os.getpid()}
    if args.mode == "bench":
        cache = args.frame_cache if args.impl == "ours" else None
        result.update(num_workers=args.num_workers, batch_size=args.batch_size, frame_cache=cache)
        result.update(bench(args))
    elif args.mode == "build":
        result.update(build(args))
    else:
        result.update(dump(args))
    result.update(lerobot_info())
    sys.stdout.flush()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
