"""Simulation benchmark: steps/s of our envs (`make_env`) against the unmodified sim packages, in one run.

For each env and observation type, one env built by `lerobot.common.envs.make_env` (a 1-env SyncVectorEnv, so
it includes the vector-env overhead) and one built straight from the package with `gym.make` take random
actions. The two are timed in alternating blocks of about `--block-seconds`, `--rounds` times, so that load
from other processes on a shared machine weighs on both alike; steps/s = steps / time over all blocks.

Targets (ALOHA): one-camera pixel observations >= 3x the unmodified gym-aloha, and state-only >= 300 steps/s.
gym-aloha has no state-only observation, so state-only rows compare against its cheapest one (pixels_agent_pos).
ALOHA pixel rows come twice: with the yaml's 2048 shadow map (the target row) and with the XML's 4096 one
(`shadow_size=None`, frames identical to gym-aloha's), which can be at most ~3.3x: gym-aloha renders three
cameras per step, we render one.

    .venv/bin/python benchmarks/envs.py --quick      # smoke run (short blocks, one round)
    .venv/bin/python benchmarks/envs.py              # full run: table on stdout, JSON in outputs/benchmarks/envs.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import _machine  # benchmarks/_machine.py: the script's folder is on sys.path

# Headless rendering, before any simulator is imported (make_env does the same).
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

REPO = Path(__file__).resolve().parents[1]
TARGET_PIXEL_RATIO = 3.0
TARGET_STATE_STEPS = 300.0
LONG_EPISODE = 100_000  # no time-limit resets inside the measured blocks
WARMUP_STEPS = 3


# ALOHA with the XML's 4096 shadow map (frames identical to gym-aloha's) instead of the yaml's 2048.
EXACT = (("shadow_size", None),)


@dataclass(frozen=True)
class Row:
    env: str
    task: str
    obs_type: str  # ours
    unmodified_obs_type: str
    target: str = ""  # "pixel_ratio" or "state_steps"
    gym_overrides: tuple[tuple[str, object], ...] = ()  # on top of the env yaml's gym kwargs (ours only)


ROWS = [
    Row("pusht", "PushT-v0", "pixels_agent_pos", "pixels_agent_pos"),
    Row("pusht", "PushT-v0", "environment_state_agent_pos", "environment_state_agent_pos"),
    Row("aloha", "AlohaTransferCube-v0", "pixels_agent_pos", "pixels_agent_pos", "pixel_ratio"),
    Row("aloha", "AlohaTransferCube-v0", "pixels_agent_pos", "pixels_agent_pos", "", EXACT),
    Row("aloha", "AlohaTransferCube-v0", "environment_state_agent_pos", "pixels_agent_pos", "state_steps"),
    Row("aloha", "AlohaInsertion-v0", "pixels_agent_pos", "pixels_agent_pos", "pixel_ratio"),
    Row("aloha", "AlohaInsertion-v0", "pixels_agent_pos", "pixels_agent_pos", "", EXACT),
    Row("aloha", "AlohaInsertion-v0", "environment_state_agent_pos", "pixels_agent_pos", "state_steps"),
    Row("xarm", "XarmLift-v0", "pixels_agent_pos", "pixels_agent_pos"),
    Row("xarm", "XarmLift-v0", "environment_state_agent_pos", "state"),
]


class Stepper:
    """Steps one env with seeded random actions; `run(seconds)` returns (steps, elapsed) of one timed block."""

    def __init__(self, env, vector: bool, seed: int):
        self.env, self.vector = env, vector
        self.env.action_space.seed(seed)
        self.env.reset(seed=seed)
        for _ in range(WARMUP_STEPS):  # first renders in a new GL context compile shaders: not steady state
            self.env.step(self.env.action_space.sample())

    def run(self, seconds: float) -> tuple[int, float]:
        steps, start = 0, time.perf_counter()
        while True:
            _, _, terminated, truncated, _ = self.env.step(self.env.action_space.sample())
            steps += 1
            if not self.vector and (terminated or truncated):
                self.env.reset()  # a vector env resets itself
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                return steps, elapsed


def make_ours(row: Row):
    from omegaconf import OmegaConf

    from lerobot.common.envs import make_env

    cfg = OmegaConf.load(REPO / "lerobot/configs/env" / f"{row.env}.yaml")
    cfg.env.task = row.task
    cfg.env.gym.obs_type = row.obs_type
    cfg.env.episode_length = LONG_EPISODE
    for key, value in row.gym_overrides:
        cfg.env.gym[key] = value
    return make_env(cfg, n_envs=1), OmegaConf.to_container(cfg.env.gym)


def make_unmodified(row: Row):
    import importlib

    import gymnasium as gym

    importlib.import_module(f"gym_{row.env}")
    return gym.make(
        f"gym_{row.env}/{row.task}",
        obs_type=row.unmodified_obs_type,
        max_episode_steps=LONG_EPISODE,
        disable_env_checker=True,
    )


def bench_row(row: Row, rounds: int, block_s: float) -> dict:
    (ours, ours_kwargs), unmod = make_ours(row), make_unmodified(row)
    try:
        steppers = {
            "ours": Stepper(ours, vector=True, seed=0),
            "unmodified": Stepper(unmod, vector=False, seed=0),
        }
        totals = {name: [0, 0.0] for name in steppers}
        for _ in range(rounds):
            for name, stepper in steppers.items():
                steps, elapsed = stepper.run(block_s)
                totals[name][0] += steps
                totals[name][1] += elapsed
    finally:
        ours.close()
        unmod.close()
    rate = {name: steps / elapsed for name, (steps, elapsed) in totals.items()}
    result = {
        "env": row.env,
        "task": row.task,
        "obs_type": row.obs_type,
        "unmodified_obs_type": row.unmodified_obs_type,
        "ours_gym_kwargs": ours_kwargs,
        "ours_steps_per_s": rate["ours"],
        "unmodified_steps_per_s": rate["unmodified"],
        "ratio": rate["ours"] / rate["unmodified"],
        "ours_steps": totals["ours"][0],
        "unmodified_steps": totals["unmodified"][0],
        "target": row.target,
    }
    if row.target == "pixel_ratio":
        result["target_met"] = result["ratio"] >= TARGET_PIXEL_RATIO
    elif row.target == "state_steps":
        result["target_met"] = result["ours_steps_per_s"] >= TARGET_STATE_STEPS
    return result


def machine_info() -> dict:
    packages = ("torch", "gymnasium", "mujoco", "dm-control", "gym-aloha", "gym-pusht", "gym-xarm", "pymunk")
    return _machine.machine_info(packages, MUJOCO_GL=os.environ.get("MUJOCO_GL"))


def obs_label(obs_type: str, env: str, gym_kwargs: dict | None = None) -> str:
    if env == "aloha" and "pixels" in obs_type:
        if gym_kwargs is None:
            return f"{obs_type} (top 480x640)"
        shadow = gym_kwargs.get("shadow_size")
        exact = "shadow map 4096: exact" if shadow is None else "shadow map 2048"
        return f"{obs_type} (top 480x640, {exact})"
    return obs_type


def print_table(results: list[dict]) -> None:
    header = "| env | obs (ours) | obs (unmodified) | ours steps/s | unmodified steps/s | ratio | target |"
    print(header)
    print("|---|---|---|---|---|---|---|")
    for r in results:
        target = ""
        if r["target"] == "pixel_ratio":
            target = f">= {TARGET_PIXEL_RATIO:g}x: {'met' if r['target_met'] else 'MISSED'}"
        elif r["target"] == "state_steps":
            target = f">= {TARGET_STATE_STEPS:g} steps/s: {'met' if r['target_met'] else 'MISSED'}"
        print(
            f"| {r['env']} {r['task']} | {obs_label(r['obs_type'], r['env'], r['ours_gym_kwargs'])} | "
            f"{obs_label(r['unmodified_obs_type'], r['env'])} | {r['ours_steps_per_s']:.1f} | "
            f"{r['unmodified_steps_per_s']:.1f} | {r['ratio']:.2f}x | {target} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short blocks, one round: a smoke run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating ours/unmodified blocks per row")
    parser.add_argument("--block-seconds", type=float, default=4.0, help="length of one timed block")
    parser.add_argument("--envs", default="pusht,aloha,xarm", help="comma-separated subset of env names")
    parser.add_argument("--output", type=Path, default=REPO / "outputs/benchmarks/envs.json")
    args = parser.parse_args()
    rounds, block_s = (1, 0.5) if args.quick else (args.rounds, args.block_seconds)
    wanted = set(args.envs.split(","))

    info = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine_info(),
        "settings": {"rounds": rounds, "block_seconds": block_s, "n_envs": 1},
    }
    results = []
    for row in ROWS:
        if row.env not in wanted:
            continue
        print(f"[envs] {row.env} {row.task} {row.obs_type} ...", file=sys.stderr, flush=True)
        results.append(bench_row(row, rounds, block_s))
    info["machine"]["load_average_at_end"] = list(os.getloadavg())
    info["results"] = results

    print_table(results)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(info, indent=2) + "\n")
    print(f"\nwrote {args.output}")
    missed = [r for r in results if r.get("target_met") is False]
    if missed:
        print(f"targets missed: {[(r['task'], r['obs_type']) for r in missed]}", file=sys.stderr)


if __name__ == "__main__":
    main()
