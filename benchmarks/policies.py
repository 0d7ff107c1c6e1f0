"""Policy benchmark: training steps/s and `select_action` latency on CPU, ours against the reference, in one run.

For every registered policy among ACT and Diffusion Policy, at the reference's default config and at a tiny
config, both implementations get the same config values, the same inputs (generated once with a fixed seed,
saved to an .npz that both load), the same number of torch threads and each policy's reference optimiser:

* training: `forward -> backward -> clip_grad_norm_(10) -> optimizer.step -> zero_grad` on batches of 8 and 64
  (the first rows of the saved batch); warm-up steps, then timed steps for about `--budget-s` seconds per
  implementation (at least `--min-steps`); steps/s and samples/s. No learning-rate schedule on either side.
* select_action: `reset()` (not timed) then one `select_action` on a single observation, so that every call
  runs the model and returns a full chunk's first action; warm-up calls, then `--calls` timed calls (fewer if
  `--budget-s` runs out, at least `--min-calls`); median latency, and amortised per action = median /
  n_action_steps. Diffusion Policy also gets a DDIM-10 row beside its DDPM-100 one.

Normalisation is included on both sides: ours normalises inside `forward` / `select_action`; the reference
runs its preprocessor pipeline (rename, batch dim, device, normaliser) before them and its postprocessor
(unnormaliser, to CPU) after `select_action`, as its own train and eval scripts do. The reference's
pre/post-processing time is recorded separately in the JSON (`reference_processor_*`).

The two implementations are measured alternately in `--rounds` blocks per cell (ours first, then the
reference first), so that load from other processes weighs on both alike. Ours runs in this process; the
reference runs in a subprocess with its own python (`benchmarks/_policies_reference.py`), never imported here.
ImageNet weights cannot be downloaded, so backbones are randomly initialised (the speed is the same).

Targets: training throughput >= 1.3x the reference; full-chunk inference latency <= 0.7x.

`--allocator`: our train.py makes glibc keep freed memory for reuse when it trains on CPU
(`keep_freed_memory`), which saves re-faulting hundreds of MB of activations every step. By default neither
side gets it here, so the code alone is compared; `--allocator ours` runs ours as train.py does, and
`--allocator both` gives the reference's process the same setting (glibc's MALLOC_* variables).

`--isolate` measures each (policy, config) in fresh processes on both sides. Without it, configs share the two
processes, and one that allocates large activations (ACT at 480x640, batch 64) leaves glibc's malloc thresholds
raised for the configs after it, which then fault in fewer fresh pages: ACT tiny's training ratio was 1.22x / 1.24x
after ACT default in the same processes and 1.29x / 1.40x in fresh ones (BENCHMARKS.md, seventh run).

    .venv/bin/python benchmarks/policies.py --configs tiny --budget-s 10      # smoke run
    .venv/bin/python benchmarks/policies.py                                    # full run (long on 2 cores)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _machine  # noqa: E402
from _policies_reference import Bench, Built, optimizer_info, process_info, training_step  # noqa: E402

from lerobot.common.policies.factory import available_policies, make_policy, make_policy_config  # noqa: E402
from lerobot.common.policies.normalize import feature_type  # noqa: E402
from lerobot.common.policies.pretrained import PolicyConfig  # noqa: E402
from lerobot.common.utils.utils import KEEP_FREED_MEMORY_MALLOC_ENV, keep_freed_memory  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).resolve().parent / "_policies_reference.py"
DEFAULT_REFERENCE_PYTHON = "/tmp/lerobot-ref/bin/python"
POLICIES = ("act", "diffusion")
CONFIG_NAMES = ("default", "tiny")
TRAIN_BATCH_SIZES = (8, 64)
TARGET_TRAIN_RATIO = 1.3  # ours / reference steps/s, at least
TARGET_INFER_RATIO = 0.7  # ours / reference latency, at most
GRAD_CLIP_NORM = 10.0  # both training scripts' default
SEED = 0

# Config fields on top of each policy's defaults (which are the reference's). Backbones start from random
# weights everywhere: ImageNet weights cannot be downloaded here, and they do not change the speed.
CONFIGS: dict[tuple[str, str], dict[str, Any]] = {
    # ALOHA: one 480x640 camera + 14-d state, chunk 100 (all defaults).
    ("act", "default"): {"pretrained_backbone_weights": None},
    ("act", "tiny"): {
        "input_shapes": {"observation.images.top": [3, 96, 128], "observation.state": [14]},
        "output_shapes": {"action": [14]},
        "input_normalization_modes": {"observation.images.top": "mean_std", "observation.state": "mean_std"},
        "output_normalization_modes": {"action": "mean_std"},
        "chunk_size": 20,
        "n_action_steps": 20,
        "dim_model": 64,
        "n_heads": 4,
        "dim_feedforward": 256,
        "n_encoder_layers": 1,
        "n_decoder_layers": 1,
        "n_vae_encoder_layers": 1,
        "latent_dim": 8,
        "pretrained_backbone_weights": None,
    },
    # PushT: one 96x96 image (crop 84) + 2-d state, 2 observation steps, horizon 16, DDPM 100 steps. Set
    # explicitly: the reference's 0.6.1 class defaults moved to horizon 64 / 32 action steps.
    ("diffusion", "default"): {
        "use_group_norm": True,  # the PushT recipe (the reference's class default moved to False)
        "input_shapes": {"observation.image": [3, 96, 96], "observation.state": [2]},
        "output_shapes": {"action": [2]},
        "n_obs_steps": 2,
        "horizon": 16,
        "n_action_steps": 8,
        "crop_shape": [84, 84],
        "down_dims": [512, 1024, 2048],
        "noise_scheduler_type": "DDPM",
        "num_train_timesteps": 100,
        "num_inference_steps": 100,
        "pretrained_backbone_weights": None,
    },
    ("diffusion", "tiny"): {
        "use_group_norm": True,
        "input_shapes": {"observation.image": [3, 48, 48], "observation.state": [2]},
        "output_shapes": {"action": [2]},
        "n_obs_steps": 2,
        "horizon": 8,
        "n_action_steps": 4,
        "crop_shape": [40, 40],
        "down_dims": [32, 64],
        "kernel_size": 3,
        "n_groups": 4,
        "diffusion_step_embed_dim": 32,
        "spatial_softmax_num_keypoints": 16,
        "noise_scheduler_type": "DDPM",
        "num_train_timesteps": 100,
        "num_inference_steps": 100,
        "pretrained_backbone_weights": None,
    },
}
# Extra inference-only variants: name -> fields on top of the base config.
VARIANTS: dict[str, dict[str, dict[str, Any]]] = {
    "diffusion": {"ddim10": {"noise_scheduler_type": "DDIM", "num_inference_steps": 10}},
}
# Fields shown in the description of each config (when the policy has them).
DESCRIBED = (
    "n_obs_steps",
    "chunk_size",
    "horizon",
    "n_action_steps",
    "vision_backbone",
    "dim_model",
    "dim_feedforward",
    "n_encoder_layers",
    "n_decoder_layers",
    "n_vae_encoder_layers",
    "latent_dim",
    "use_vae",
    "crop_shape",
    "use_group_norm",
    "spatial_softmax_num_keypoints",
    "down_dims",
    "kernel_size",
    "diffusion_step_embed_dim",
    "noise_scheduler_type",
    "num_inference_steps",
)
# Config fields that are ours only, or translated for the reference (shapes -> features, modes -> mapping).
TRANSLATED = ("input_shapes", "output_shapes", "input_normalization_modes", "output_normalization_modes")


# ----------------------------------------------------------------------------------------------- setups


@dataclass
class Setup:
    """One policy built on both sides, and what is measured on it."""

    policy: str
    config_name: str  # "default", "tiny"
    variant: str  # "" or e.g. "ddim10"
    config: PolicyConfig
    measures: list[tuple[str, int]]  # ("train", batch size) or ("infer", 0)

    @property
    def label(self) -> str:
        return self.config_name + (f"+{self.variant}" if self.variant else "")


def make_setups(
    policies: list[str],
    config_names: list[str],
    registered: list[str],
    batch_sizes: tuple[int, ...] | list[int] = TRAIN_BATCH_SIZES,
    measures: tuple[str, ...] | list[str] = ("train", "infer"),
) -> list[Setup]:
    """The setups to build, in order; `measures` is a subset of ["train", "infer"]."""
    setups = []
    infer = [("infer", 0)] if "infer" in measures else []
    for policy in policies:
        if policy not in registered:
            continue
        for name in config_names:
            fields = CONFIGS[(policy, name)]
            train = [("train", b) for b in batch_sizes] if "train" in measures else []
            if train or infer:
                setups.append(Setup(policy, name, "", make_policy_config(policy, **fields), train + infer))
            for variant, extra in VARIANTS.get(policy, {}).items():
                if infer:
                    config = make_policy_config(policy, **{**fields, **extra})
                    setups.append(Setup(policy, name, variant, config, infer))
    return setups


def our_fields(config: PolicyConfig) -> dict[str, Any]:
    fields = config.to_dict()
    fields.pop("type", None)
    return json.loads(json.dumps(fields))  # tuples -> lists, as the reference worker receives them


def normalization_modes(config: PolicyConfig) -> dict[str, str]:
    """Per key: "mean_std" / "min_max" / "identity" (from per-key or per-type entries of our config)."""
    modes = {**dict(config.input_normalization_modes), **dict(config.output_normalization_modes)}
    out = {}
    for key in {**config.input_shapes, **config.output_shapes}:
        mode = modes.get(key, modes.get(feature_type(key)))
        out[key] = str(mode or "identity").lower()
    return out


def reference_spec(config: PolicyConfig, inputs: Path) -> dict[str, Any]:
    """Our config in the reference's terms: features with types, a per-type normalisation mapping, fields."""
    mapping: dict[str, str] = {}
    for key, mode in normalization_modes(config).items():
        kind = feature_type(key)
        if mapping.setdefault(kind, mode.upper()) != mode.upper():
            raise ValueError(
                f"The reference normalises per feature type, but our config gives {kind} features different "
                f"modes ({mapping[kind]} and {mode.upper()}); use one mode per type in the benchmark configs."
            )
    fields = {k: v for k, v in our_fields(config).items() if k not in TRANSLATED}
    return {
        "policy": config.type,
        "fields": fields,
        "features": {
            "input": {k: [feature_type(k), list(s)] for k, s in config.input_shapes.items()},
            "output": {k: [feature_type(k), list(s)] for k, s in config.output_shapes.items()},
        },
        "normalization_mapping": mapping,
        "inputs": str(inputs),
        "seed": SEED,
    }


def describe(config: PolicyConfig) -> str:
    shapes = ", ".join(f"{k} {'x'.join(map(str, s))}" for k, s in config.input_shapes.items())
    parts = [shapes, f"action {config.output_shapes['action'][0]}"]
    for name in DESCRIBED:
        if hasattr(config, name):
            value = getattr(config, name)
            parts.append(f"{name}={list(value) if isinstance(value, tuple) else value}")
    return "; ".join(parts)


# ----------------------------------------------------------------------------------------------- inputs


def write_inputs(config: PolicyConfig, path: Path, batch_size: int, seed: int = SEED) -> None:
    """A training batch (as a dataset with the config's delta indices yields it), one observation (the first
    sample's current frame, batch of 1) and plausible stats, generated with numpy from `seed`."""
    rng = np.random.default_rng(seed)
    obs_steps = config.observation_delta_indices
    action_steps = config.action_delta_indices
    arrays: dict[str, np.ndarray] = {}
    for key, shape in config.input_shapes.items():
        time_axis = [len(obs_steps)] if obs_steps is not None else []
        full = (batch_size, *time_axis, *shape)
        if feature_type(key) == "VISUAL":
            value = rng.random(full, dtype=np.float32)
        else:
            value = rng.standard_normal(full, dtype=np.float32)
        arrays[f"batch/{key}"] = value
        arrays[f"obs/{key}"] = np.ascontiguousarray(value[:1, -1] if time_axis else value[:1])
        if time_axis:  # the dataset's padding flags (the first frames of an episode are copies)
            arrays[f"batch/{key}_is_pad"] = np.zeros((batch_size, len(obs_steps)), dtype=bool)
    action_dim = config.output_shapes["action"][0]
    horizon = len(action_steps) if action_steps is not None else 1
    arrays["batch/action"] = rng.standard_normal((batch_size, horizon, action_dim), dtype=np.float32)
    pad_from = horizon - rng.integers(0, max(1, horizon // 4), size=batch_size)  # some chunks pass the end
    arrays["batch/action_is_pad"] = np.arange(horizon)[None, :] >= pad_from[:, None]
    for key, shape in {**config.input_shapes, **config.output_shapes}.items():
        if feature_type(key) == "VISUAL":
            channels = (shape[0], 1, 1)
            mean = np.full(channels, 0.5, np.float32) + rng.uniform(-0.05, 0.05, channels).astype(np.float32)
            std = np.full(channels, 0.25, np.float32)
            low, high = np.zeros(channels, np.float32), np.ones(channels, np.float32)
        else:
            mean = rng.standard_normal(shape, dtype=np.float32) * 0.1
            std = rng.uniform(0.5, 1.5, shape).astype(np.float32)
            low, high = mean - 3 * std, mean + 3 * std
        for stat, value in (("mean", mean), ("std", std), ("min", low), ("max", high)):
            arrays[f"stats/{key}/{stat}"] = value
    np.savez(path, **arrays)


# ----------------------------------------------------------------------------------------------- sides


class OursBench(Bench):
    """Builds our policy (`make_policy`) with its `make_optimizer`; normalisation happens inside the policy."""

    def __init__(self, configs: dict[str, PolicyConfig]):
        super().__init__()
        self.configs = configs  # by the spec's "key"

    def build(self, spec: dict[str, Any], stats: dict[str, dict[str, torch.Tensor]]) -> Built:
        policy = make_policy(self.configs[spec["key"]], dataset_stats=stats)
        optimizer = policy.make_optimizer()
        parameters = list(policy.parameters())

        def loss_of(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, float]:
            return policy(batch)["loss"], 0.0

        def act(obs: dict[str, torch.Tensor]) -> float:
            policy.select_action(obs)
            return 0.0

        info = {
            "normalization": "inside the policy (forward / select_action)",
            **optimizer_info(optimizer, GRAD_CLIP_NORM),
        }
        return Built(
            policy=policy,
            train_step=training_step(loss_of, parameters, optimizer, GRAD_CLIP_NORM),
            act=act,
            reset=policy.reset,
            info=info,
        )


class Local:
    """Our side, in this process."""

    name = "ours"

    def __init__(self, bench: Bench):
        self.bench = bench

    def call(self, command: dict[str, Any]) -> dict[str, Any]:
        try:
            return {"ok": True, **self.bench.handle(command)}
        except Exception as exc:  # reported in the results, the other cells still run
            import traceback

            return {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}

    def close(self) -> None:
        self.bench.teardown()


class Remote:
    """The reference side: `_policies_reference.py` run by the reference's python, one JSON line per command."""

    name = "reference"

    def __init__(self, python: str, threads: int, workdir: Path, keep_freed_memory: bool = False):
        if not Path(python).exists():
            raise FileNotFoundError(
                f"Reference python {python} not found: run `bash /work/shared/tools/install-reference.sh "
                f"{Path(python).parent.parent}` (several minutes), or pass --no-reference."
            )
        self.python, self.threads, self.workdir = python, threads, workdir
        self.keep_freed_memory = keep_freed_memory
        self.log = workdir / "reference_worker.log"
        self.proc: subprocess.Popen | None = None

    def _start(self) -> subprocess.Popen:
        env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "WANDB_MODE": "disabled",
            "PYTHONUNBUFFERED": "1",
            "OMP_NUM_THREADS": str(self.threads),
            "MKL_NUM_THREADS": str(self.threads),
        }
        env.pop("PYTHONPATH", None)  # it must import its own `lerobot`, never ours
        if self.keep_freed_memory:  # what keep_freed_memory() sets, through glibc's environment variables
            env.update(KEEP_FREED_MEMORY_MALLOC_ENV)
        log = open(self.log, "a")  # noqa: SIM115 (kept open for the worker's lifetime)
        return subprocess.Popen(
            [self.python, str(WORKER), "--threads", str(self.threads)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=env,
            cwd=self.workdir,  # not the repo: our lerobot must not be importable from the working directory
        )

    def call(self, command: dict[str, Any]) -> dict[str, Any]:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = self._start()
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps(command) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except BrokenPipeError:
            line = ""
        if not line:
            rc = self.proc.wait(timeout=30)
            self.proc = None
            tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])
            return {"ok": False, "error": f"reference worker exited (rc={rc}); log tail:\n{tail}"}
        return json.loads(line)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            assert self.proc.stdin is not None
            try:
                self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=30)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.kill()
        self.proc = None


# ----------------------------------------------------------------------------------------------- measuring


def per_round(total: int, rounds: int) -> int:
    return max(1, -(-total // rounds))


def infer_label(args: argparse.Namespace) -> str:
    return "select_action (bf16 autocast)" if args.amp else "select_action"


def measure_command(kind: str, batch_size: int, first_round: bool, args: argparse.Namespace) -> dict:
    budget = args.budget_s / args.rounds
    if kind == "train":
        return {
            "cmd": "train",
            "batch_size": batch_size,
            "warmup_steps": args.warmup_steps if first_round else 0,
            "budget_s": budget,
            "min_steps": per_round(args.min_steps, args.rounds),
            "max_steps": per_round(args.max_steps, args.rounds),
            "seed": SEED,
        }
    return {
        "cmd": "infer",
        "warmup_calls": args.warmup_calls if first_round else 0,
        "calls": per_round(args.calls, args.rounds),
        "budget_s": budget,
        "min_calls": per_round(args.min_calls, args.rounds),
        "seed": SEED,
        "amp": args.amp,
    }


def summarise_side(kind: str, batch_size: int, parts: list[dict], n_action_steps: int) -> dict[str, Any]:
    failed = [p for p in parts if not p.get("ok")]
    if failed:
        return {"error": failed[0].get("error"), "traceback": failed[0].get("traceback")}
    warmup = [t for p in parts for t in p["warmup_s"]]
    extra = [t for p in parts for t in p["processor_s"]]
    if kind == "train":
        steps = [t for p in parts for t in p["step_s"]]
        rate = len(steps) / sum(steps)
        return {
            "steps_per_s": rate,
            "samples_per_s": rate * batch_size,
            "timed_steps": len(steps),
            "timed_s": sum(steps),
            "median_step_s": statistics.median(steps),
            "warmup_steps": len(warmup),
            "warmup_s": sum(warmup),
            "processor_s_mean": statistics.fmean(extra),
        }
    calls = [t for p in parts for t in p["call_s"]]
    median = statistics.median(calls)
    return {
        "median_ms": median * 1e3,
        "mean_ms": statistics.fmean(calls) * 1e3,
        "min_ms": min(calls) * 1e3,
        "amortised_ms_per_action": median * 1e3 / n_action_steps,
        "timed_calls": len(calls),
        "warmup_calls": len(warmup),
        "processor_ms_median": statistics.median(extra) * 1e3,
    }


def measure(
    setup: Setup, kind: str, batch_size: int, sides: list, args: argparse.Namespace
) -> dict[str, Any]:
    parts: dict[str, list[dict]] = {side.name: [] for side in sides}
    for r in range(args.rounds):
        order = sides if r % 2 == 0 else sides[::-1]
        for side in order:
            if parts[side.name] and not parts[side.name][-1].get("ok"):
                continue  # failed already
            parts[side.name].append(side.call(measure_command(kind, batch_size, r == 0, args)))
    n_action_steps = int(setup.config.n_action_steps)
    row: dict[str, Any] = {
        "policy": setup.policy,
        "config": setup.label,
        "measure": f"train b{batch_size}" if kind == "train" else infer_label(args),
        "kind": kind,
        "batch_size": batch_size if kind == "train" else 1,
        "n_action_steps": n_action_steps,
    }
    for side in sides:
        row[side.name] = summarise_side(kind, batch_size, parts[side.name], n_action_steps)
    ours, ref = row.get("ours", {}), row.get("reference", {})
    if kind == "train" and "steps_per_s" in ours and "steps_per_s" in ref:
        row["ratio"] = ours["steps_per_s"] / ref["steps_per_s"]
        row["ratio_of_median_steps"] = ref["median_step_s"] / ours["median_step_s"]  # less sensitive to load
        row["target"] = f">= {TARGET_TRAIN_RATIO}x"
        row["target_met"] = row["ratio"] >= TARGET_TRAIN_RATIO
    elif kind == "infer" and "median_ms" in ours and "median_ms" in ref:
        row["ratio"] = ours["median_ms"] / ref["median_ms"]
        row["target"] = f"<= {TARGET_INFER_RATIO}x"
        row["target_met"] = row["ratio"] <= TARGET_INFER_RATIO
    return row


def compare_setups(ours: dict, ref: dict, spec: dict) -> list[str]:
    """Differences between the two built policies that would make the comparison unequal."""
    problems = []
    for key in ("n_params", "n_trainable"):
        if ours.get(key) != ref.get(key):
            problems.append(f"{key}: ours {ours.get(key)} vs reference {ref.get(key)}")
    resolved = ref.get("config_resolved", {})
    for key, value in spec["fields"].items():
        if key in resolved and resolved[key] != value:
            problems.append(f"config {key}: ours {value!r} vs reference {resolved[key]!r}")
    groups = json.loads(json.dumps((ours.get("param_groups"), ref.get("param_groups"))))
    if groups[0] != groups[1] or ours.get("optimizer") != ref.get("optimizer"):
        problems.append(
            f"optimiser: ours {ours.get('optimizer')} {groups[0]} vs reference "
            f"{ref.get('optimizer')} {groups[1]}"
        )
    return problems


def run(args: argparse.Namespace, workdir: Path) -> tuple[list[dict], list[dict], list[str]]:
    registered = available_policies()
    skipped = [p for p in args.policies if p not in registered]
    setups = make_setups(args.policies, args.configs, registered, args.batch_sizes, args.measures)
    configs = {f"{s.policy}/{s.label}": s.config for s in setups}
    sides: list = [Local(OursBench(configs))]
    if not args.no_reference:
        sides.append(Remote(args.reference_python, args.threads, workdir, args.allocator == "both"))
    results, setup_info = [], []
    try:
        for setup in setups:
            key = f"{setup.policy}/{setup.label}"
            inputs = workdir / f"{setup.policy}_{setup.config_name}.npz"
            if not inputs.exists():  # shared by a config's variants (same shapes)
                write_inputs(setup.config, inputs, max(args.batch_sizes))
            spec = {**reference_spec(setup.config, inputs), "key": key}
            print(f"[policies] {key}: building ({describe(setup.config)})", file=sys.stderr, flush=True)
            built = {side.name: side.call({"cmd": "setup", "spec": spec}) for side in sides}
            info: dict[str, Any] = {
                "policy": setup.policy,
                "config": setup.label,
                "description": describe(setup.config),
                "our_config": our_fields(setup.config),
                **{name: {k: v for k, v in b.items() if k != "traceback"} for name, b in built.items()},
            }
            if "reference" in built and built["reference"].get("ok") and built["ours"].get("ok"):
                info["differences"] = compare_setups(built["ours"], built["reference"], spec)
                for problem in info["differences"]:
                    print(f"[policies] WARNING {key}: {problem}", file=sys.stderr, flush=True)
            setup_info.append(info)
            live = [side for side in sides if built[side.name].get("ok")]
            for side in sides:
                if side not in live:
                    print(
                        f"[policies] {key}: {side.name} failed to build: {built[side.name].get('error')}",
                        file=sys.stderr,
                        flush=True,
                    )
            for kind, batch_size in setup.measures:
                if not live:
                    break
                label = f"train b{batch_size}" if kind == "train" else infer_label(args)
                print(f"[policies] {key}: {label} ...", file=sys.stderr, flush=True)
                start = time.perf_counter()
                row = measure(setup, kind, batch_size, live, args)
                for side in sides:
                    if side not in live:
                        row[side.name] = {"error": built[side.name].get("error")}
                row["wall_s"] = time.perf_counter() - start
                results.append(row)
                print(f"[policies]   {format_row(row)}", file=sys.stderr, flush=True)
            for side in sides:
                side.call({"cmd": "teardown"})
    finally:
        for side in sides:
            side.close()
    return results, setup_info, skipped


# ----------------------------------------------------------------------------------------------- report


def cell(side: dict, kind: str) -> str:
    if not side:
        return "-"
    if "error" in side:
        return "failed"
    if kind == "train":
        return f"{side['steps_per_s']:.3g} steps/s ({side['samples_per_s']:.3g} samples/s, n={side['timed_steps']})"
    return f"{side['median_ms']:.4g} ms ({side['amortised_ms_per_action']:.3g} ms/action, n={side['timed_calls']})"


def format_row(row: dict) -> str:
    ratio = f"{row['ratio']:.2f}x" if "ratio" in row else "-"
    target = ""
    if "target_met" in row:
        target = f"{row['target']}: {'met' if row['target_met'] else 'MISSED'}"
    return (
        f"| {row['policy']} | {row['config']} | {row['measure']} | {cell(row.get('ours', {}), row['kind'])} | "
        f"{cell(row.get('reference', {}), row['kind'])} | {ratio} | {target} |"
    )


def print_report(results: list[dict], setup_info: list[dict], skipped: list[str]) -> None:
    print("| policy | config | measure | ours | reference | ours / reference | target |")
    print("|---|---|---|---|---|---|---|")
    for row in results:
        print(format_row(row))
    print("\nconfigs:")
    for info in setup_info:
        print(f"- {info['policy']} {info['config']}: {info['description']}")
        for problem in info.get("differences", []):
            print(f"  WARNING, not equal: {problem}")
    for policy in skipped:
        print(f"- {policy}: not registered in our factory, not measured")
    errors = [
        (row["policy"], row["config"], row["measure"], name, row[name]["error"])
        for row in results
        for name in ("ours", "reference")
        if "error" in row.get(name, {})
    ]
    for error in errors:
        print(f"failed: {' '.join(map(str, error[:4]))}: {str(error[4]).splitlines()[0]}")


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "cpu": _machine.cpu_model(),
        "cpu_count": os.cpu_count(),
        "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_average_at_start": list(os.getloadavg()),
        "ours": process_info(),
    }
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
        info["git_commit"] = commit.stdout.strip() or None
    except OSError:
        pass
    return info


def reference_info(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    remote = Remote(args.reference_python, args.threads, workdir)
    try:
        answer = remote.call({"cmd": "info"})
    finally:
        remote.close()
    if not answer.get("ok"):
        raise RuntimeError(f"The reference worker does not start: {answer.get('error')}")
    answer.pop("ok")
    return answer


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--policies", nargs="+", default=list(POLICIES), choices=POLICIES)
    parser.add_argument("--configs", nargs="+", default=list(CONFIG_NAMES), choices=CONFIG_NAMES)
    parser.add_argument("--measures", nargs="+", default=["train", "infer"], choices=["train", "infer"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=list(TRAIN_BATCH_SIZES))
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads, each side")
    parser.add_argument(
        "--budget-s",
        type=float,
        default=60.0,
        help="timed seconds per cell and implementation (split in rounds)",
    )
    parser.add_argument("--rounds", type=int, default=2, help="alternating ours/reference blocks per cell")
    parser.add_argument("--warmup-steps", type=int, default=2, help="training warm-up steps (fewer if slow)")
    parser.add_argument("--min-steps", type=int, default=2, help="timed training steps, at least")
    parser.add_argument("--max-steps", type=int, default=200, help="timed training steps, at most")
    parser.add_argument(
        "--warmup-calls", type=int, default=3, help="select_action warm-up calls (fewer if slow)"
    )
    parser.add_argument("--calls", type=int, default=20, help="timed select_action calls (median)")
    parser.add_argument(
        "--min-calls", type=int, default=5, help="timed calls, at least, if the budget runs out"
    )
    parser.add_argument(
        "--allocator",
        choices=["default", "ours", "both"],
        default="default",
        help="which sides keep freed memory mapped as train.py does for CPU training "
        "(lerobot.common.utils.utils.keep_freed_memory): default = neither (the code alone is compared), "
        "ours = ours only (as our train.py runs), both = both sides",
    )
    parser.add_argument(
        "--amp",
        action="store_true",
        help="run select_action under torch.autocast(cpu, bfloat16) on both sides, as eval.py with use_amp=true",
    )
    parser.add_argument(
        "--isolate",
        action="store_true",
        help="measure each (policy, config) in fresh processes on both sides (one run of this script each), so "
        "that no cell depends on what the processes ran before it (glibc's malloc thresholds rise after large "
        "allocations and then spare later configs some page faults)",
    )
    parser.add_argument("--no-reference", action="store_true", help="measure ours only")
    parser.add_argument("--reference-python", default=DEFAULT_REFERENCE_PYTHON)
    parser.add_argument("--out", type=Path, default=REPO / "outputs/benchmarks/policies.json")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.threads < 1 or args.budget_s <= 0 or min(args.batch_sizes) < 1:
        parser.error("--rounds, --threads and --batch-sizes must be >= 1, --budget-s > 0")
    return args


def child_argv(argv: list[str], policy: str, config: str, out: Path) -> list[str]:
    """`argv` without --isolate, --policies, --configs and --out, for one (policy, config) and its own output."""
    kept, skipping = [], False
    for token in argv:
        if token.startswith("--"):
            name = token.split("=", 1)[0]
            skipping = name in ("--policies", "--configs", "--out") and "=" not in token
            if name in ("--isolate", "--policies", "--configs", "--out"):
                continue
        elif skipping:
            continue
        kept.append(token)
    return [*kept, "--policies", policy, "--configs", config, "--out", str(out)]


def run_isolated(args: argparse.Namespace, argv: list[str]) -> None:
    """One run of this script per (policy, config), each in fresh processes; their results in one report."""
    merged: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="lerobot_policy_bench_isolated_") as tmp:
        for policy in args.policies:
            for config in args.configs:
                out = Path(tmp) / f"{policy}_{config}.json"
                command = [
                    sys.executable,
                    str(Path(__file__).resolve()),
                    *child_argv(argv, policy, config, out),
                ]
                print(f"[policies] isolated run: {policy}/{config}", file=sys.stderr, flush=True)
                if subprocess.run(command, stdout=subprocess.DEVNULL).returncode != 0 or not out.exists():
                    sys.exit(f"policies.py: the isolated run for {policy}/{config} failed")
                part = json.loads(out.read_text())
                if not merged:
                    merged = {**part, "results": [], "setups": [], "not_registered": []}
                merged["results"] += part["results"]
                merged["setups"] += part["setups"]
                merged["not_registered"] += [
                    p for p in part["not_registered"] if p not in merged["not_registered"]
                ]
    merged["command"] = " ".join([Path(sys.executable).name, *sys.argv])
    merged["settings"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    report_and_write(merged, args)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.isolate:
        run_isolated(args, sys.argv[1:] if argv is None else argv)
        return
    if args.allocator != "default" and not keep_freed_memory():
        sys.exit("policies.py: --allocator needs glibc's mallopt (Linux); use --allocator default")
    torch.set_num_threads(args.threads)
    torch.manual_seed(SEED)
    info: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine_info(),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "method": {
            "train_step": "forward -> backward -> clip_grad_norm_(10) -> optimizer.step -> zero_grad(set_to_none)",
            "optimisers": "each policy's reference preset (ACT: AdamW lr 1e-5, backbone group lr 1e-5, wd 1e-4; "
            "Diffusion: Adam lr 1e-4, betas (0.95, 0.999), wd 1e-6); no lr schedule",
            "select_action": "reset() (not timed), then one select_action on a batch of 1: runs the model; "
            "amortised = median / n_action_steps",
            "normalisation": "included on both sides (ours inside the policy; reference pre/post-processors)",
            "weights": "random init (no ImageNet download)",
        },
    }
    with tempfile.TemporaryDirectory(prefix="lerobot_policy_bench_") as tmp:
        workdir = Path(tmp)
        if not args.no_reference:
            try:
                info["machine"]["reference"] = reference_info(args, workdir)
            except (FileNotFoundError, RuntimeError) as exc:
                sys.exit(f"policies.py: {exc}")
        results, setup_info, skipped = run(args, workdir)
    info["machine"]["load_average_at_end"] = list(os.getloadavg())
    info["setups"], info["results"], info["not_registered"] = setup_info, results, skipped
    report_and_write(info, args)


def report_and_write(info: dict[str, Any], args: argparse.Namespace) -> None:
    print_report(info["results"], info["setups"], info["not_registered"])
    torch_versions = [
        info["machine"].get(side, {}).get("versions", {}).get("torch") for side in ("ours", "reference")
    ]
    print(f"\ntorch: ours {torch_versions[0]}, reference {torch_versions[1]}")
    if not args.no_reference and torch_versions[0] != torch_versions[1]:
        print(
            "WARNING: the two sides run different torch builds, so kernel speed differs as well as the code. "
            "For a like-for-like run, run this script with the reference's interpreter and ours on the path: "
            "PYTHONPATH=$PWD /tmp/lerobot-ref/bin/python benchmarks/policies.py ... (see benchmarks/README.md)"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(info, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    missed = [
        (r["policy"], r["config"], r["measure"]) for r in info["results"] if r.get("target_met") is False
    ]
    if missed:
        print(f"targets missed: {missed}", file=sys.stderr)


if __name__ == "__main__":
    main()
