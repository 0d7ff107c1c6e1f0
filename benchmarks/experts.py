"""Scripted-expert benchmark: success rate and seconds per episode of each expert, state only.

Each expert (ALOHA transfer cube and insertion, XArm lift, PushT) plays `--episodes` episodes in the env built
by `make_env` (obs_type `environment_state_agent_pos`: nothing rendered) with the seeds `record_sim_demos(seed=0)`
uses (`episode_seed(0, i)`). Every episode is played, also ALOHA plans that already failed in the end-effector
scene (the recorder skips those), so the success rate is that of the joint-space replays. Columns:

- success: the expert's success check (what `next.success` holds in recorded datasets; the env's `is_success`
  except for XArm, see lerobot/common/envs/experts/xarm.py), with a 95% Wilson interval;
- env is_success: the env's own check; plan success: ALOHA plans that succeeded in the end-effector scene;
- steps: mean episode length (ALOHA plays all 400 steps; PushT and XArm stop at success);
- s/episode: wall-clock seconds per episode, planning included (the machine may be shared: see the load).

A last row times one `record_sim_demos` call recording `--record-episodes` state-only transfer-cube episodes
(the quickstart's demonstrations), writing included.

    .venv/bin/python benchmarks/experts.py --quick    # 3 episodes per expert, 3 recorded
    .venv/bin/python benchmarks/experts.py            # 100 per expert, 50 recorded; JSON: outputs/benchmarks/experts.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import _machine  # benchmarks/_machine.py: the script's folder is on sys.path

# Headless rendering, before any simulator is imported (make_env does the same).
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

REPO = Path(__file__).resolve().parents[1]
TASKS = {  # task: env yaml
    "AlohaTransferCube-v0": "aloha",
    "AlohaInsertion-v0": "aloha",
    "XarmLift-v0": "xarm",
    "PushT-v0": "pusht",
}


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return 0.0, 0.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def load_cfg(task: str):
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(REPO / "lerobot/configs/env" / f"{TASKS[task]}.yaml")
    cfg.env.task = task
    return cfg


def bench_expert(task: str, episodes: int) -> dict:
    from lerobot.common.envs import make_env
    from lerobot.common.envs.experts import episode_seed, make_expert
    from lerobot.common.envs.experts.recorder import play_episode

    cfg = load_cfg(task)
    cfg.env.gym.obs_type = "environment_state_agent_pos"
    vec = make_env(cfg, n_envs=1)
    env = vec.envs[0]
    expert = make_expert(task, env)
    rows = []
    try:
        for i in range(episodes):
            started = time.perf_counter()
            result = play_episode(env, expert, episode_seed(0, i), skip_failed_plans=False)
            rows.append(
                {
                    "seed": result.seed,
                    "success": result.success,
                    "env_success": result.env_success,
                    "planned_success": result.planned_success,
                    "steps": result.steps,
                    "seconds": time.perf_counter() - started,
                }
            )
            print(f"  {task} {i + 1}/{episodes}: {rows[-1]}", file=sys.stderr, flush=True)
    finally:
        expert.close()
        vec.close()
    n = len(rows)
    successes = sum(r["success"] for r in rows)
    planned = [r["planned_success"] for r in rows if r["planned_success"] is not None]
    return {
        "task": task,
        "expert": type(expert).__name__,
        "episodes": n,
        "successes": successes,
        "success_rate": successes / n,
        "success_95ci": wilson_interval(successes, n),
        "env_success_rate": sum(r["env_success"] for r in rows) / n,
        "plan_success_rate": sum(planned) / len(planned) if planned else None,
        "mean_steps": sum(r["steps"] for r in rows) / n,
        "seconds_per_episode": sum(r["seconds"] for r in rows) / n,
        "failed_seeds": [r["seed"] for r in rows if not r["success"]],
        "per_episode": rows,
    }


def bench_recording(num_episodes: int) -> dict:
    from lerobot.common.envs.experts import record_sim_demos

    task = "AlohaTransferCube-v0"
    with tempfile.TemporaryDirectory(prefix="experts-bench-") as tmp:
        started = time.perf_counter()
        summary = record_sim_demos(
            load_cfg(task),
            num_episodes=num_episodes,
            repo_id="local/aloha_transfer_cube_scripted",
            root=Path(tmp) / "data",
            state_only=True,
            progress=False,
        )
        seconds = time.perf_counter() - started
    return {"task": task, "state_only": True, "seconds_total": seconds, **summary.as_dict()}


def machine_info() -> dict:
    packages = ("gymnasium", "mujoco", "dm-control", "gym-aloha", "gym-pusht", "gym-xarm", "pymunk")
    return _machine.machine_info(packages)


def print_table(results: list[dict], recording: dict | None) -> None:
    print(
        "| task | expert | episodes | success (95% CI) | env is_success | plan success | steps | s/episode |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        low, high = r["success_95ci"]
        plan = "" if r["plan_success_rate"] is None else f"{r['plan_success_rate']:.0%}"
        print(
            f"| {r['task']} | {r['expert']} | {r['episodes']} | **{r['success_rate']:.0%}** "
            f"({low:.0%}-{high:.0%}) | {r['env_success_rate']:.0%} | {plan} | {r['mean_steps']:.0f} | "
            f"{r['seconds_per_episode']:.2f} |"
        )
    if recording is not None:
        print(
            f"\nrecord_sim_demos, {recording['kept_episodes']} state-only {recording['task']} episodes "
            f"({recording['frames']} frames, {recording['attempts']} attempts): "
            f"{recording['seconds_total']:.1f} s ({recording['seconds_total'] / 60:.1f} min)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 episodes per expert, 3 recorded: a smoke run")
    parser.add_argument("--episodes", type=int, default=100, help="episodes (seeds) per expert")
    parser.add_argument(
        "--record-episodes", type=int, default=50, help="episodes of the recording row (0: skip)"
    )
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated subset of tasks")
    parser.add_argument("--output", type=Path, default=REPO / "outputs/benchmarks/experts.json")
    args = parser.parse_args()
    episodes, record_episodes = (3, 3) if args.quick else (args.episodes, args.record_episodes)
    tasks = [t for t in args.tasks.split(",") if t]
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        parser.error(f"unknown task(s) {unknown}; choose from {list(TASKS)}")

    info = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine_info(),
        "settings": {"episodes": episodes, "record_episodes": record_episodes, "obs_type": "state only"},
    }
    results = []
    for task in tasks:
        print(f"[experts] {task} ...", file=sys.stderr, flush=True)
        results.append(bench_expert(task, episodes))
    recording = None
    if record_episodes > 0:
        print(f"[experts] record_sim_demos {record_episodes} episodes ...", file=sys.stderr, flush=True)
        recording = bench_recording(record_episodes)
    info["machine"]["load_average_at_end"] = list(os.getloadavg())
    info["results"] = results
    info["recording"] = recording

    print_table(results, recording)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(info, indent=2) + "\n")
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
