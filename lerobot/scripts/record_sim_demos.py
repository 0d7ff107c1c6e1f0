r"""Record scripted-expert demonstrations of a simulated task (ALOHA, XArm, PushT) into a LeRobot dataset.

    python lerobot/scripts/record_sim_demos.py env=aloha env.task=AlohaTransferCube-v0 num_episodes=50 \
        repo_id=local/aloha_transfer_cube_scripted root=outputs/data/aloha_transfer_cube_scripted seed=0 \
        state_only=true

Defaults: lerobot/configs/record_sim_demos.yaml (with the env yamls of lerobot/configs/env/); any key can be
overridden as `key=value` (hydra syntax). The experts, what is recorded and how episode seeds are chosen are
described in lerobot/common/envs/experts/ (recorder.py). From Python:

    from lerobot.scripts.record_sim_demos import record_sim_demos
    summary = record_sim_demos(cfg, num_episodes=50, repo_id=..., root=..., state_only=True)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from omegaconf import DictConfig

from lerobot.common.envs.experts.recorder import RecordSummary, record_sim_demos

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
CONFIG_NAME = "record_sim_demos"

__all__ = ["RecordSummary", "load_config", "main", "record_sim_demos"]


def load_config(overrides: list[str]) -> DictConfig:
    """The script's config with command-line overrides, composed by hydra without creating any run folder."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.2"):
        return compose(CONFIG_NAME, overrides=overrides)


def default_repo_id(cfg: DictConfig) -> str:
    """local/<env>_<task in snake case>_scripted, e.g. AlohaTransferCube-v0 -> local/aloha_transfer_cube_scripted."""
    task = re.sub(r"-v\d+$", "", str(cfg.env.task))
    if task.lower().startswith(str(cfg.env.name).lower()):
        task = task[len(str(cfg.env.name)) :]
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", task).lower().strip("_")
    return f"local/{cfg.env.name}_{snake}_scripted" if snake else f"local/{cfg.env.name}_scripted"


def main(argv: list[str] | None = None) -> RecordSummary | None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(arg in ("-h", "--help") for arg in argv):
        print(__doc__)
        return None
    from lerobot.common.utils.utils import init_logging

    init_logging()
    cfg = load_config(argv)
    repo_id = cfg.repo_id or default_repo_id(cfg)
    root = Path(cfg.root) if cfg.root else Path("outputs/data") / repo_id.split("/")[-1]
    summary = record_sim_demos(
        cfg,
        num_episodes=cfg.num_episodes,
        repo_id=repo_id,
        root=root,
        seed=cfg.seed,
        state_only=cfg.state_only,
        keep_failed=cfg.keep_failed,
        overwrite=cfg.overwrite,
        progress=cfg.progress,
        max_attempts=cfg.max_attempts,
    )
    print(f"\nRecorded {summary}")
    print(f"Load it with: LeRobotDataset({repo_id!r}, root={str(root)!r})")
    return summary


if __name__ == "__main__":
    from lerobot.common.datasets.errors import DatasetExistsError
    from lerobot.common.envs.experts.recorder import DemoRecordingError

    try:
        main()
    except (DatasetExistsError, DemoRecordingError) as e:  # expected outcomes: a message, not a traceback
        sys.exit(f"error: {e}")
