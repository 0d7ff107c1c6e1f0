"""xArm demonstrations from the FOWM replay buffers (`buffer.pkl`).

Raw layout: a pickled dict of numpy arrays, N transitions of consecutive episodes: `observations`
{`rgb` (N, 3, H, W) uint8, `state` (N, D)}, `actions` (N, A), `rewards` (N,), `dones` (N,) True on each
episode's last transition (and `next_observations`, `masks`, unused, as in the reference). The file is
read with a restricted unpickler that only rebuilds numpy arrays and plain containers.

Converted: `observation.image` (HWC), `observation.state`, `action`, `next.reward` (= rewards),
`next.done` (= dones). Episodes are cut after each done; transitions after the last done do not form a
complete episode and are dropped with a warning.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from lerobot.common.datasets.push_dataset_to_hub.restricted_pickle import load_restricted
from lerobot.common.datasets.push_dataset_to_hub.utils import (
    CAMERA_NAMES,
    RawFormatError,
    RawSource,
    check_array,
    check_same_length,
    locate,
)

logger = logging.getLogger(__name__)

TASK = "Pick up the cube and lift it."


def _as_column(values: np.ndarray) -> np.ndarray:
    """(N,) or (N, 1) -> (N,)"""
    return values.reshape(len(values)) if values.ndim == 2 and values.shape[1] == 1 else values


class XarmPklSource(RawSource):
    format_name = "xarm_pkl"
    default_fps = 15
    robot_type = None

    def __init__(self, raw_dir: str | Path) -> None:
        super().__init__(raw_dir)
        self.path = locate(self.raw_dir, "buffer.pkl", "*.pkl", "pickle file")
        where = str(self.path)
        data = load_restricted(self.path)
        if not isinstance(data, dict):
            raise RawFormatError(
                f"{where}: expected a dict of arrays at the top level, got {type(data).__name__}."
            )
        missing = [k for k in ("observations", "actions", "rewards", "dones") if k not in data]
        observations = data.get("observations")
        if observations is not None and not isinstance(observations, dict):
            raise RawFormatError(f"{where}: 'observations' must be a dict with 'rgb' and 'state'.")
        missing += [
            f"observations/{k}"
            for k in ("rgb", "state")
            if observations is not None and k not in observations
        ]
        if missing:
            raise RawFormatError(
                f"{where}: missing key(s) {', '.join(missing)}. An xarm_pkl buffer is a dict with "
                "'observations' {'rgb', 'state'}, 'actions', 'rewards' and 'dones'."
            )
        rgb = observations["rgb"]
        check_array(rgb, where=where, key="observations/rgb", ndim=4, kind="uint8")
        if rgb.shape[1] == 3:
            self.channels_first = True
        elif rgb.shape[3] == 3:
            self.channels_first = False
        else:
            raise RawFormatError(
                f"{where}: 'observations/rgb' has shape {rgb.shape}; expected (N, 3, H, W) (or (N, H, W, 3))."
            )
        state, actions = observations["state"], data["actions"]
        rewards, dones = data["rewards"], data["dones"]
        check_array(state, where=where, key="observations/state", ndim=2)
        check_array(actions, where=where, key="actions", ndim=2)
        check_array(rewards, where=where, key="rewards")
        check_array(dones, where=where, key="dones", kind="bool")
        rewards, dones = _as_column(np.asarray(rewards)), _as_column(np.asarray(dones))
        if rewards.ndim != 1 or dones.ndim != 1:
            raise RawFormatError(
                f"{where}: 'rewards' {rewards.shape} and 'dones' {dones.shape} must hold one value per "
                "transition."
            )
        total = check_same_length(
            {
                "observations/rgb": len(rgb),
                "observations/state": len(state),
                "actions": len(actions),
                "rewards": len(rewards),
                "dones": len(dones),
            },
            where,
        )
        if total == 0:
            raise RawFormatError(f"{where}: the buffer holds no transition.")
        if not np.isin(dones, (0, 1)).all():
            raise RawFormatError(f"{where}: 'dones' must be booleans (or 0/1).")
        dones = dones.astype(bool)
        ends = np.flatnonzero(dones) + 1
        if len(ends) == 0:
            raise RawFormatError(
                f"{where}: 'dones' is never True, so no episode ends; cannot split episodes."
            )
        if ends[-1] != total:
            logger.warning(
                "%s: dropping the last %d transitions, which no done=True closes (an unfinished episode).",
                where,
                total - ends[-1],
            )
        starts = np.concatenate([[0], ends[:-1]])
        self.ranges = [(int(a), int(b)) for a, b in zip(starts, ends, strict=True)]
        self.rgb, self.dones = rgb, dones
        self.state = np.asarray(state, dtype=np.float32)
        self.actions = np.asarray(actions, dtype=np.float32)
        self.rewards = rewards.astype(np.float32)

    def features(self) -> dict[str, dict]:
        if self.channels_first:
            c, h, w = self.rgb.shape[1:]
        else:
            h, w, c = self.rgb.shape[1:]
        return {
            "observation.image": {"dtype": "video", "shape": (int(h), int(w), int(c)), "names": CAMERA_NAMES},
            "observation.state": {"dtype": "float32", "shape": (self.state.shape[1],), "names": None},
            "action": {"dtype": "float32", "shape": (self.actions.shape[1],), "names": None},
            "next.reward": {"dtype": "float32", "shape": (1,), "names": None},
            "next.done": {"dtype": "bool", "shape": (1,), "names": None},
        }

    @property
    def episode_lengths(self) -> list[int]:
        return [stop - start for start, stop in self.ranges]

    def describe_episode(self, index: int) -> str:
        start, stop = self.ranges[index]
        return f"{self.path} (episode {index}, transitions {start}:{stop})"

    def default_task(self, repo_id: str) -> str:
        return TASK

    def read_episode(self, index: int) -> dict[str, np.ndarray]:
        start, stop = self.ranges[index]
        frames = self.rgb[start:stop]
        return {
            "observation.image": frames.transpose(0, 2, 3, 1) if self.channels_first else frames,
            "observation.state": self.state[start:stop],
            "action": self.actions[start:stop],
            "next.reward": self.rewards[start:stop],
            "next.done": self.dones[start:stop],
        }
