"""What a training run reports: a terminal line, metrics files, a loss-curve PNG and optionally Weights & Biases.

Every run writes, whatever else is enabled:
    <run_dir>/metrics/train.jsonl   one JSON object per logged step (also train.csv, for spreadsheets)
    <run_dir>/metrics/eval.jsonl    one per evaluation
    <run_dir>/loss_curve.png        training loss (and eval success, when there is an env) against step
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from lerobot.common.datasets.utils import atomic_path

log = logging.getLogger("lerobot.train")

# Terminal abbreviations of the reference implementation, so its users read our logs at a glance.
SHORT_NAMES = {
    "step": "step",
    "samples": "smpl",
    "episodes": "ep",
    "epoch": "epch",
    "loss": "loss",
    "grad_norm": "grdn",
    "lr": "lr",
    "update_s": "updt_s",
    "data_s": "data_s",
}


def human_count(n: float) -> str:
    """1234 -> '1K', 2_500_000 -> '2M' (the reference's compact step/sample counts)."""
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.0f}{unit}"
    return f"{n:.0f}"


def format_train_line(metrics: Mapping[str, Any]) -> str:
    parts = []
    for key, short in SHORT_NAMES.items():
        if key not in metrics:
            continue
        value = metrics[key]
        if key in ("step", "samples", "episodes"):
            text = human_count(value)
        elif key == "lr":
            text = f"{value:0.1e}"
        elif key in ("update_s", "data_s"):
            text = f"{value:.3f}"
        elif key == "epoch":
            text = f"{value:.2f}"
        else:
            text = f"{value:.3f}"
        parts.append(f"{short}:{text}")
    return " ".join(parts)


def format_eval_line(step: int, aggregated: Mapping[str, Any]) -> str:
    return (
        f"eval step:{human_count(step)} ∑rwrd:{aggregated['avg_sum_reward']:.3f} "
        f"max_rwrd:{aggregated['avg_max_reward']:.3f} success:{aggregated['pc_success']:.1f}% "
        f"eval_s:{aggregated['eval_s']:.1f}"
    )


class TrainLogger:
    """Writes metrics of the main process; the other processes of a multi-process run pass `enabled=False`."""

    def __init__(
        self,
        run_dir: str | Path,
        cfg: DictConfig,
        *,
        enabled: bool = True,
        resume_step: int | None = None,
    ):
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.metrics_dir = self.run_dir / "metrics"
        self._wandb = None
        if not enabled:
            return
        self.metrics_dir.mkdir(parents=True, exist_ok=True)
        if resume_step is not None:  # forget what the interrupted run logged after its last checkpoint
            for name in ("train.jsonl", "eval.jsonl"):
                _truncate_jsonl(self.metrics_dir / name, resume_step)
            _rewrite_csv(self.metrics_dir)
        if cfg.get("wandb", {}).get("enable", False):
            self._wandb = _start_wandb(cfg, self.run_dir, resume=resume_step is not None)

    def log_train(self, metrics: Mapping[str, Any]) -> str:
        line = format_train_line(metrics)
        if not self.enabled:
            return line
        ordered = [k for k in SHORT_NAMES if k in metrics] + [k for k in metrics if k not in SHORT_NAMES]
        record = {k: _plain(metrics[k]) for k in ordered}
        _append_jsonl(self.metrics_dir / "train.jsonl", record)
        _append_csv(self.metrics_dir / "train.csv", record)
        if self._wandb is not None:
            self._wandb.log({f"train/{k}": v for k, v in record.items() if k != "step"}, step=record["step"])
        return line

    def log_eval(self, step: int, eval_info: Mapping[str, Any]) -> str:
        aggregated = eval_info["aggregated"]
        line = format_eval_line(step, aggregated)
        if not self.enabled:
            return line
        _append_jsonl(
            self.metrics_dir / "eval.jsonl", {"step": step, **{k: _plain(v) for k, v in aggregated.items()}}
        )
        if self._wandb is not None:
            self._wandb.log({f"eval/{k}": _plain(v) for k, v in aggregated.items()}, step=step)
            for video in eval_info.get("video_paths", [])[:1]:
                self._wandb.log({"eval/video": self._wandb.Video(video, format="mp4")}, step=step)
        return line

    def plot(self) -> Path | None:
        """Redraw loss_curve.png from the metrics files (training loss; eval success on a second axis)."""
        if not self.enabled:
            return None
        train = _read_jsonl(self.metrics_dir / "train.jsonl")
        if not train:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
        steps = [r["step"] for r in train]
        ax.plot(steps, [r["loss"] for r in train], color="tab:blue", lw=1.2, label="train loss")
        if all(r["loss"] > 0 for r in train):
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("training loss")
        ax.grid(alpha=0.3)
        evals = _read_jsonl(self.metrics_dir / "eval.jsonl")
        if evals:
            ax2 = ax.twinx()
            ax2.plot(
                [r["step"] for r in evals],
                [r["pc_success"] for r in evals],
                "o-",
                color="tab:green",
                label="eval success %",
            )
            ax2.set_ylabel("eval success (%)")
            ax2.set_ylim(-2, 102)
        ax.set_title(self.run_dir.name, fontsize=9)
        fig.tight_layout()
        out = self.run_dir / "loss_curve.png"
        with atomic_path(out) as tmp:
            fig.savefig(tmp, format="png")
        plt.close(fig)
        return out

    def close(self) -> None:
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _append_jsonl(path: Path, record: Mapping[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut short by a crash
            continue
    return records


def _truncate_jsonl(path: Path, last_step: int) -> None:
    if not path.exists():
        return
    kept = [r for r in _read_jsonl(path) if r.get("step", 0) <= last_step]
    with atomic_path(path) as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")


def _append_csv(path: Path, record: Mapping[str, Any]) -> None:
    new = not path.exists()
    with open(path, "a", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(record), extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow(record)


def _rewrite_csv(metrics_dir: Path) -> None:
    path = metrics_dir / "train.csv"
    records = _read_jsonl(metrics_dir / "train.jsonl")
    if path.exists():
        path.unlink()
    for record in records:
        _append_csv(path, record)


def _start_wandb(cfg: DictConfig, run_dir: Path, resume: bool) -> Any:
    try:
        import wandb
    except ImportError as e:
        raise ImportError(
            "wandb.enable=true needs Weights & Biases: `pip install wandb` (and `wandb login`), or set "
            "wandb.enable=false; metrics are always written to <run_dir>/metrics/ anyway."
        ) from e
    run_id_file = run_dir / "metrics" / "wandb_run_id.txt"
    run_id = run_id_file.read_text().strip() if resume and run_id_file.exists() else None
    run = wandb.init(
        project=cfg.wandb.get("project", "lerobot"),
        entity=cfg.wandb.get("entity", None),
        notes=cfg.wandb.get("notes", None),
        name=run_dir.name,
        dir=str(run_dir),
        config=OmegaConf.to_container(cfg, resolve=True),
        id=run_id,
        resume="must" if run_id else None,
        mode=cfg.wandb.get("mode", None),
    )
    run_id_file.write_text(run.id)
    log.info("Weights & Biases run: %s", run.get_url() or run.id)
    return wandb
