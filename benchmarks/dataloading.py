"""Data-loading benchmark: our LeRobotDataset against the reference implementation (PyPI `lerobot`).

Measures samples/s of a torch DataLoader (batch 32, shuffle, num_workers 0 and 2; first epoch and steady state =
last epoch) and the peak RSS of the process tree, on two video datasets in format v3.0:

- `pusht`: the PushT demonstrations of pusht_cchi_v7_replay.zarr (96x96, fps 10, diffusion-policy deltas);
- `aloha480`: 480x640 frames of aloha_sim_insertion_human (fps 50, ACT deltas: 50 future actions).

The datasets are written once into `--data-dir` by our writer (or the reference's: `--writer reference`, which
also checks that our reader reads reference-written data). Each measurement runs `_loader_worker.py` in a fresh
subprocess: our venv's python for ours, `--reference-python` for the reference.

`--allocator`: train.py makes glibc keep freed memory for reuse when it trains on CPU (`keep_freed_memory`; its
DataLoader workers inherit it), which saves re-faulting every 236 MB batch of 480x640 frames. By default neither
side gets it, so the code alone is compared; `--allocator ours` measures ours as train.py runs it, and
`--allocator both` gives the reference's process the same setting (glibc's MALLOC_* variables).

    .venv/bin/python benchmarks/dataloading.py --quick          # smoke run, small datasets, few batches
    .venv/bin/python benchmarks/dataloading.py                  # full run, writes outputs/benchmarks/dataloading.json
    .venv/bin/python benchmarks/dataloading.py --check          # compare items of ours and the reference
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).resolve().parent / "_loader_worker.py"
SHARED = Path("/work/shared/data")
PUSHT_ZARR = SHARED / "pusht_cchi_v7_replay.zarr"
ALOHA = SHARED / "lerobot_v1.3/datasets/aloha_sim_insertion_human"
ALOHA_VIDEO = ALOHA / "videos/observation.images.top_episode_000000.mp4"
ALOHA_ARROW = ALOHA / "train/data-00000-of-00001.arrow"

DELTAS = {
    "pusht": {
        "observation.image": [-0.1, 0.0],
        "observation.state": [-0.1, 0.0],
        "action": [round(i * 0.1, 6) for i in range(16)],
    },
    "aloha480": {
        "observation.images.top": [-0.02, 0.0],
        "observation.state": [-0.02, 0.0],
        "action": [round(i * 0.02, 6) for i in range(50)],
    },
}
# "ceiling": a DataLoader over copies of a few of our items held in RAM (copied into recycled memory, as our
# dataset's frames are): what any dataset could deliver here.
IMPLS = ("reference", "ours", "ours-nocache", "ceiling")
TARGETS = {"first_epoch": 2.0, "steady": 10.0, "rss": 1.0}


# ----------------------------------------------------------------------------------------------- sources


def pusht_source(folder: Path, episodes: int | None) -> None:
    import zarr

    root = zarr.open(str(PUSHT_ZARR), mode="r")
    ends = np.asarray(root["meta/episode_ends"][:], dtype=np.int64)
    ends = ends[:episodes] if episodes else ends
    starts = np.concatenate([[0], ends[:-1]])
    n = int(ends[-1])
    images = np.lib.format.open_memmap(folder / "images.npy", mode="w+", dtype=np.uint8, shape=(n, 96, 96, 3))
    for start in range(0, n, 2048):  # the float32 images are 2.8 GB: convert in slices
        stop = min(start + 2048, n)
        images[start:stop] = np.clip(np.rint(root["data/img"][start:stop]), 0, 255).astype(np.uint8)
    images.flush()
    np.save(folder / "state.npy", np.asarray(root["data/state"][:n, :2], dtype=np.float32))
    np.save(folder / "action.npy", np.asarray(root["data/action"][:n], dtype=np.float32))
    spec = {
        "name": "pusht",
        "fps": 10,
        "image_key": "observation.image",
        "episodes": [list(range(s, e)) for s, e in zip(starts.tolist(), ends.tolist())],
    }
    (folder / "spec.json").write_text(json.dumps(spec))


def aloha_source(folder: Path, episodes: int, frames: int) -> None:
    import av
    import pyarrow as pa

    with av.open(str(ALOHA_VIDEO)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    np.save(folder / "images.npy", np.stack(decoded))
    with pa.ipc.open_stream(str(ALOHA_ARROW)) as reader:
        table = reader.read_all()
    for key, name in (("observation.state", "state"), ("action", "action")):
        values = np.asarray(table.column(key).to_pylist(), dtype=np.float32)
        np.save(folder / f"{name}.npy", values[np.arange(len(decoded)) % len(values)])
    n = len(decoded)
    step = max(1, (n - frames) // max(1, episodes)) if frames < n else 17
    plan = [
        [(e * step + i) % n for i in range(frames)] for e in range(episodes)
    ]  # vary the start per episode
    spec = {"name": "aloha480", "fps": 50, "image_key": "observation.images.top", "episodes": plan}
    (folder / "spec.json").write_text(json.dumps(spec))


def variants(args) -> dict[str, dict]:
    """name -> {dataset, folder name, source builder}; the folder name encodes the sizes."""
    out = {}
    if "pusht" in args.datasets:
        tag = f"pusht_{args.episodes_pusht}ep" if args.episodes_pusht else "pusht_all"
        out["pusht"] = {"tag": tag, "make_source": lambda f: pusht_source(f, args.episodes_pusht)}
    if "aloha480" in args.datasets:
        tag = f"aloha480_{args.episodes_480}x{args.frames_480}"
        out["aloha480"] = {
            "tag": tag,
            "make_source": lambda f: aloha_source(f, args.episodes_480, args.frames_480),
        }
    return out


# ----------------------------------------------------------------------------------------------- running


def run_worker(
    python: str, argv: list[str], timeout: float, cwd: Path | None = None, extra_env: dict | None = None
) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **(extra_env or {})}
    env.pop("PYTHONPATH", None)  # each python must import its own `lerobot`
    proc = subprocess.run(
        [python, str(WORKER), *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=cwd or tempfile.gettempdir(),
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = "\n".join((proc.stderr or proc.stdout).splitlines()[-25:])
        raise RuntimeError(f"worker failed (rc={proc.returncode}): {' '.join(argv[:6])} ...\n{tail}")
    return json.loads(lines[-1])


def malloc_env(impl: str, allocator: str) -> dict[str, str]:
    """glibc's settings for one measurement: `keep_freed_memory`'s (as train.py sets them on CPU, inherited by
    its DataLoader workers) for the sides `--allocator` names, else none (the code alone is compared)."""
    if allocator == "both" or (allocator == "ours" and impl != "reference"):
        from lerobot.common.utils.utils import KEEP_FREED_MEMORY_MALLOC_ENV

        return dict(KEEP_FREED_MEMORY_MALLOC_ENV)
    return {}


def ensure_dataset(name: str, variant: dict, args, python_of: dict[str, str]) -> Path:
    """Build (once) and return the dataset folder for this writer and size."""
    folder = args.data_dir / args.writer / variant["tag"]
    marker = folder / ".bench_complete"
    if marker.exists() and not args.rebuild:
        return folder
    source = args.data_dir / "source" / variant["tag"]
    if not (source / "spec.json").exists():
        print(f"[build] extracting source frames for {variant['tag']} into {source}", flush=True)
        source.mkdir(parents=True, exist_ok=True)
        variant["make_source"](source)
    print(f"[build] writing {folder} with the {args.writer} writer ...", flush=True)
    argv = ["--mode", "build", "--impl", args.writer, "--root", str(folder), "--repo-id", f"bench/{name}"]
    result = run_worker(python_of[args.writer], [*argv, "--source", str(source)], args.timeout)
    print(
        f"[build] {result['episodes']} episodes, {result['frames']} frames in {result['build_s']:.1f}s",
        flush=True,
    )
    marker.write_text(json.dumps(result))
    return folder


def bench_argv(name: str, root: Path, impl: str, workers: int, args) -> list[str]:
    argv = ["--mode", "bench", "--impl", "reference" if impl == "reference" else "ours"]
    argv += ["--root", str(root), "--repo-id", f"bench/{name}", "--deltas", json.dumps(DELTAS[name])]
    argv += [
        "--batch-size",
        str(args.batch_size),
        "--num-workers",
        str(workers),
        "--epochs",
        str(args.epochs),
    ]
    argv += [
        "--max-batches",
        str(args.max_batches),
        "--frame-cache",
        "off" if impl == "ours-nocache" else "fresh",
    ]
    if args.cache_parent:
        argv += ["--cache-parent", str(args.cache_parent)]
    if impl == "ceiling":
        argv += ["--ceiling"]
    return argv


# ----------------------------------------------------------------------------------------------- report


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def summarize(rows: list[dict]) -> list[dict]:
    """Ratio rows: each of our variants against the reference with the same dataset and workers."""
    out = []
    for row in rows:
        if row["impl"] == "reference" or "error" in row:
            continue
        ref = next(
            (
                r
                for r in rows
                if r["impl"] == "reference"
                and "error" not in r
                and (r["dataset"], r["num_workers"]) == (row["dataset"], row["num_workers"])
            ),
            None,
        )
        if ref is None:
            continue
        out.append(
            {
                "dataset": row["dataset"],
                "num_workers": row["num_workers"],
                "impl": row["impl"],
                "first_epoch_ratio": ratio(
                    row["first_epoch_samples_per_s"], ref["first_epoch_samples_per_s"]
                ),
                "steady_ratio": ratio(row["steady_samples_per_s"], ref["steady_samples_per_s"]),
                "rss_ratio_ref_over_ours": ratio(ref["peak_rss_mb"], row["peak_rss_mb"]),
                "anon_rss_ratio_ref_over_ours": ratio(ref["peak_anon_rss_mb"], row["peak_anon_rss_mb"]),
            }
        )
    return out


def print_table(rows: list[dict], ratios: list[dict]) -> None:
    head = f"{'dataset':<10} {'workers':>7}  {'impl':<13} {'first ep/s':>11} {'steady/s':>10} {'peak RSS MB':>12}"
    head += f" {'anon MB':>9}"
    print("\n" + head + "\n" + "-" * len(head))
    for r in rows:
        if "error" in r:
            print(
                f"{r['dataset']:<10} {r['num_workers']:>7}  {r['impl']:<13} failed: {r['error'].splitlines()[0]}"
            )
            continue
        print(
            f"{r['dataset']:<10} {r['num_workers']:>7}  {r['impl']:<13} {fmt(r['first_epoch_samples_per_s']):>11} "
            f"{fmt(r['steady_samples_per_s']):>10} {fmt(r['peak_rss_mb'], '.0f'):>12} "
            f"{fmt(r['peak_anon_rss_mb'], '.0f'):>9}"
        )
    if not ratios:
        return
    print(
        f"\nratios (ours / reference for speed, reference / ours for RSS; targets: first epoch >= "
        f"{TARGETS['first_epoch']}x, steady >= {TARGETS['steady']}x, RSS ratio >= {TARGETS['rss']})"
    )
    head = f"{'dataset':<10} {'workers':>7}  {'impl':<13} {'first ep':>9} {'steady':>9} {'RSS ref/ours':>13}"
    head += f" {'anon ref/ours':>14}  targets"
    print(head + "\n" + "-" * len(head))
    for r in ratios:
        met = (
            (r["first_epoch_ratio"] or 0) >= TARGETS["first_epoch"]
            and (r["steady_ratio"] or 0) >= TARGETS["steady"]
            and (r["rss_ratio_ref_over_ours"] or 0) >= TARGETS["rss"]
        )
        print(
            f"{r['dataset']:<10} {r['num_workers']:>7}  {r['impl']:<13} {fmt(r['first_epoch_ratio'], '.2f'):>9} "
            f"{fmt(r['steady_ratio'], '.2f'):>9} {fmt(r['rss_ratio_ref_over_ours'], '.2f'):>13} "
            f"{fmt(r['anon_rss_ratio_ref_over_ours'], '.2f'):>14}  "
            + (
                "(the most any dataset could reach)"
                if r["impl"] == "ceiling"
                else "met"
                if met
                else "NOT met"
            )
        )


def machine_info() -> dict:
    info = {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
    }
    try:
        import psutil

        info["memory_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
        info["load_avg_at_start"] = os.getloadavg()
    except ImportError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
        info["git_commit"] = commit.stdout.strip() or None
    except OSError:
        pass
    return info


# ----------------------------------------------------------------------------------------------- check


def check_indices(root: Path) -> list[int]:
    """First frames, both sides of the first episode boundary (padding), the middle, the end, a few random."""
    import pyarrow.parquet as pq

    episodes = pq.read_table(root / "meta/episodes", columns=["length"]).column("length").to_pylist()
    n, first = sum(episodes), episodes[0]
    picks = [0, 1, first - 2, first - 1, first, n // 2, n - 1]
    picks += np.random.default_rng(0).integers(0, n, 3).tolist()
    return sorted({int(i) for i in picks if 0 <= i < n})


def compare_dumps(ref_npz: Path, ours_npz: Path) -> list[dict]:
    ref, ours = np.load(ref_npz), np.load(ours_npz)
    ref_other = json.loads(ref_npz.with_suffix(".json").read_text())
    ours_other = json.loads(ours_npz.with_suffix(".json").read_text())

    def by_key(names) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for name in names:
            out.setdefault(name.split("|", 1)[1], []).append(name)
        return out

    ref_keys, ours_keys = by_key([*ref.files, *ref_other]), by_key([*ours.files, *ours_other])
    report = []
    for key in sorted(set(ref_keys) | set(ours_keys)):
        if key not in ours_keys or key not in ref_keys:
            report.append({"key": key, "status": "only in " + ("reference" if key in ref_keys else "ours")})
            continue
        entry: dict = {"key": key, "max_abs_diff": 0.0, "status": "ok"}
        for name in ref_keys[key]:
            if name in ref_other or name in ours_other:
                a, b = ref_other.get(name), ours_other.get(name)
                if a != b:
                    entry["status"] = f"differs: {a!r} vs {b!r}"
                continue
            a, b = ref[name], ours[name]
            entry["shape_ref"], entry["shape_ours"] = list(a.shape), list(b.shape)
            entry["dtype_ref"], entry["dtype_ours"] = str(a.dtype), str(b.dtype)
            if a.shape != b.shape:
                entry["status"] = "shape differs"
                continue
            diff = float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max()) if a.size else 0.0
            entry["max_abs_diff"] = max(entry["max_abs_diff"], diff)
            tolerance = 1 / 255 + 1e-6 if a.ndim >= 3 else 1e-6
            if diff > tolerance:
                entry["status"] = "values differ"
            elif a.dtype != b.dtype and entry["status"] == "ok":
                entry["status"] = "dtype differs"
        report.append(entry)
    return report


def run_check(name: str, root: Path, args, python_of: dict[str, str]) -> dict:
    indices = check_indices(root)
    result: dict = {"dataset": name, "root": str(root), "indices": indices, "comparisons": {}}
    with tempfile.TemporaryDirectory(prefix="lerobot_check_") as tmp:
        dumps = {}
        for impl in IMPLS:
            out = Path(tmp) / f"{impl}.npz"
            argv = ["--mode", "dump", "--impl", "reference" if impl == "reference" else "ours"]
            argv += ["--root", str(root), "--repo-id", f"bench/{name}", "--deltas", json.dumps(DELTAS[name])]
            argv += ["--indices", ",".join(map(str, indices)), "--out", str(out)]
            argv += ["--frame-cache", "off" if impl == "ours-nocache" else "fresh"]
            try:
                run_worker(python_of["ours" if impl != "reference" else "reference"], argv, args.timeout)
                dumps[impl] = out
            except Exception as exc:  # reported, the other comparisons still run
                result["comparisons"][impl] = {"error": str(exc)}
                print(f"[check] {name}: {impl} failed:\n{exc}")
        for impl in ("ours", "ours-nocache"):
            if impl in dumps and "reference" in dumps:
                result["comparisons"][impl] = compare_dumps(dumps["reference"], dumps[impl])
    for impl, report in result["comparisons"].items():
        if isinstance(report, dict):
            continue
        print(f"\n[check] {name} ({root}), {impl} vs reference, items {indices}")
        for e in report:
            shapes = f"{e.get('shape_ref')} / {e.get('shape_ours')}" if "shape_ref" in e else ""
            dtypes = f"{e.get('dtype_ref')} / {e.get('dtype_ours')}" if "dtype_ref" in e else ""
            diff = fmt(e.get("max_abs_diff"), ".2e")
            print(f"  {e['key']:<32} {e['status']:<16} max|diff| {diff:>9}  {shapes:<34} {dtypes}")
    return result


# ----------------------------------------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reference-python", default="/tmp/lerobot-ref/bin/python")
    parser.add_argument("--data-dir", type=Path, default=REPO / "outputs/benchmarks/data")
    parser.add_argument("--output", type=Path, default=REPO / "outputs/benchmarks/dataloading.json")
    parser.add_argument(
        "--writer", choices=["ours", "reference"], default="ours", help="who writes the datasets"
    )
    parser.add_argument("--rebuild", action="store_true", help="rewrite the datasets even if cached")
    parser.add_argument("--datasets", default="pusht,aloha480", help="comma-separated: pusht,aloha480")
    parser.add_argument("--impls", default=",".join(IMPLS), help=f"comma-separated subset of {IMPLS}")
    parser.add_argument("--workers", default="0,2", help="num_workers values, comma-separated")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=2, help="the last epoch is the steady state")
    parser.add_argument("--max-batches", type=int, default=0, help="per epoch (0: full epochs)")
    parser.add_argument("--episodes-pusht", type=int, default=0, help="first N PushT episodes (0: all 206)")
    parser.add_argument("--episodes-480", type=int, default=8)
    parser.add_argument("--frames-480", type=int, default=300)
    parser.add_argument("--cache-parent", type=Path, default=None, help="parent of the fresh frame caches")
    parser.add_argument("--timeout", type=float, default=7200, help="seconds per subprocess")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 10 PushT episodes, 2x100 480p, 4 batches"
    )
    parser.add_argument(
        "--allocator",
        choices=("default", "ours", "both"),
        default="default",
        help="glibc keeps freed memory (train.py's setting on CPU) for ours, for both, or for neither (default)",
    )
    parser.add_argument("--check", action="store_true", help="only compare items of ours and the reference")
    args = parser.parse_args()
    if args.quick:
        args.episodes_pusht = args.episodes_pusht or 10
        args.episodes_480, args.frames_480 = 2, 100
        args.max_batches = args.max_batches or 4
    args.datasets = [d for d in args.datasets.split(",") if d]
    args.impls = [i for i in args.impls.split(",") if i]
    args.workers = [int(w) for w in args.workers.split(",") if w]
    args.data_dir, args.output = args.data_dir.resolve(), args.output.resolve()
    return args


def main() -> None:
    args = parse_args()
    python_of = {"ours": sys.executable, "reference": args.reference_python}
    has_reference = Path(args.reference_python).exists()
    if not has_reference:
        print(f"Reference python {args.reference_python} not found: measuring ours only (no ratios).")
        args.impls = [i for i in args.impls if i != "reference"]
        if args.writer == "reference":
            sys.exit("--writer reference needs the reference python (--reference-python).")

    roots = {name: ensure_dataset(name, v, args, python_of) for name, v in variants(args).items()}

    if args.check:
        if not has_reference:
            sys.exit("--check needs the reference python (--reference-python).")
        checks = [run_check(name, root, args, python_of) for name, root in roots.items()]
        out = args.output.with_name(args.output.stem + "_check.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"writer": args.writer, "checks": checks}, indent=2))
        print(f"\nwrote {out}")
        return

    rows = []
    for name, root in roots.items():
        for workers in args.workers:
            for impl in args.impls:
                label = f"{name} workers={workers} {impl}"
                print(f"[run] {label} ...", flush=True)
                row = {"dataset": name, "num_workers": workers, "impl": impl}
                try:
                    python = python_of["reference" if impl == "reference" else "ours"]
                    env = malloc_env(impl, args.allocator)
                    argv = bench_argv(name, root, impl, workers, args)
                    row.update(run_worker(python, argv, args.timeout, extra_env=env))
                    row["impl"] = impl
                    row["malloc"] = "keep_freed_memory" if env else "default"
                    print(
                        f"[run] {label}: first {row['first_epoch_samples_per_s']:.1f}/s, steady "
                        f"{row['steady_samples_per_s']:.1f}/s, peak RSS {row['peak_rss_mb']:.0f} MB",
                        flush=True,
                    )
                except Exception as exc:  # one failed run must not lose the others
                    row["error"] = str(exc)
                    print(f"[run] {label} failed:\n{exc}", flush=True)
                rows.append(row)
    ratios = summarize(rows)
    print_table(rows, ratios)

    versions = {}
    for row in rows:
        key = "reference" if row["impl"] == "reference" else "ours"
        if key not in versions and "lerobot_file" in row:
            fields = ("lerobot_file", "lerobot_version", "torch", "python", "video_backend")
            versions[key] = {k: row.get(k) for k in fields}
    datasets = {
        name: {
            "root": str(root),
            "delta_timestamps": DELTAS[name],
            "build": json.loads((root / ".bench_complete").read_text()),
        }
        for name, root in roots.items()
    }
    report = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([sys.executable, *sys.argv]),
        "machine": machine_info(),
        "versions": versions,
        "settings": {
            "writer": args.writer,
            "batch_size": args.batch_size,
            "epochs": args.epochs,
            "max_batches": args.max_batches,
            "workers": args.workers,
            "allocator": args.allocator,
            "datasets": datasets,
            "reference_python": args.reference_python if has_reference else None,
        },
        "targets": TARGETS,
        "results": rows,
        "ratios": ratios,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
