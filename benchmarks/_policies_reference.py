"""Timing harness of `benchmarks/policies.py`, and the worker process that runs the reference implementation.

Two uses:

* `policies.py` imports this module (with our venv's python) for `Bench`, the timing code shared by both sides,
  and subclasses it to build our policies. Nothing here imports either implementation at module level.
* `policies.py` starts this file as a subprocess with the reference's python (`/tmp/lerobot-ref/bin/python`).
  `ReferenceBench` then builds the reference's policies (PyPI `lerobot` 0.6.1). The worker reads one JSON
  command per line on stdin and answers one JSON line per command on its original stdout; everything the
  libraries print goes to stderr.

Commands (the same for `Bench.handle` in-process):

    {"cmd": "setup", "spec": {...}}            build a policy, its optimiser and the inputs (see `Bench.setup`)
    {"cmd": "train", "batch_size": 8, ...}     timed training steps (see `Bench.train`)
    {"cmd": "infer", ...}                      timed select_action calls, each after reset() (see `Bench.infer`)
    {"cmd": "teardown"}                        drop the policy and inputs
    {"cmd": "info"}                            versions of python / torch / numpy / lerobot in this process
    {"cmd": "quit"}
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import numpy as np
import torch

# ------------------------------------------------------------------------------------------------ inputs


def load_inputs(path: str) -> dict[str, np.ndarray]:
    """The arrays written by `policies.write_inputs`: `batch/<key>`, `obs/<key>` and `stats/<key>/<stat>`."""
    with np.load(path) as data:
        return {name: data[name] for name in data.files}


def split_inputs(
    arrays: dict[str, np.ndarray],
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, dict[str, torch.Tensor]]]:
    """(training batch, one observation, normalisation stats) as tensors."""
    batch, obs, stats = {}, {}, {}
    for name, array in arrays.items():
        kind, rest = name.split("/", 1)
        tensor = torch.from_numpy(array)
        if kind == "batch":
            batch[rest] = tensor
        elif kind == "obs":
            obs[rest] = tensor
        elif kind == "stats":
            key, stat = rest.rsplit("/", 1)
            stats.setdefault(key, {})[stat] = tensor
        else:
            raise ValueError(f"Unexpected array {name!r} in the inputs file.")
    return batch, obs, stats


# ------------------------------------------------------------------------------------------------ timing


@dataclass
class Built:
    """What a side builds for one setup; the step functions do all the work that is timed.

    train_step(batch) runs forward, backward, gradient clipping, optimiser step and zero_grad, and returns
        the seconds it spent in pre-processing (normalisation outside the policy), for the record.
    act(obs) runs one `select_action` (plus pre/post-processing where the implementation does them outside
        the policy) and returns the seconds spent in that pre/post-processing.
    reset() is `policy.reset()`, called before every timed `act` so that each call runs the model.
    """

    policy: torch.nn.Module
    train_step: Callable[[dict[str, torch.Tensor]], float]
    act: Callable[[dict[str, torch.Tensor]], float]
    reset: Callable[[], None]
    info: dict[str, Any] = field(default_factory=dict)


class Bench:
    """Builds one policy at a time and times it; subclasses implement `build`."""

    def __init__(self) -> None:
        self.built: Built | None = None
        self.batch: dict[str, torch.Tensor] = {}
        self.obs: dict[str, torch.Tensor] = {}
        self.mode = ""

    def build(
        self, spec: dict[str, Any], stats: dict[str, dict[str, torch.Tensor]]
    ) -> Built:  # pragma: no cover
        raise NotImplementedError

    # -- commands ---------------------------------------------------------------------------------------

    def handle(self, command: dict[str, Any]) -> dict[str, Any]:
        name = command.get("cmd")
        if name == "setup":
            return self.setup(command["spec"])
        if name == "train":
            return self.train(**{k: v for k, v in command.items() if k != "cmd"})
        if name == "infer":
            return self.infer(**{k: v for k, v in command.items() if k != "cmd"})
        if name == "teardown":
            return self.teardown()
        if name == "info":
            return process_info()
        raise ValueError(f"Unknown command {name!r}.")

    def setup(self, spec: dict[str, Any]) -> dict[str, Any]:
        """spec: {"policy", "fields", "features", "normalization_mapping", "inputs" (path), "seed"}."""
        self.teardown()
        batch, obs, stats = split_inputs(load_inputs(spec["inputs"]))
        torch.manual_seed(spec.get("seed", 0))
        start = time.perf_counter()
        self.built = self.build(spec, stats)
        build_s = time.perf_counter() - start
        self.batch, self.obs, self.mode = batch, obs, ""
        params = list(self.built.policy.parameters())
        return {
            "build_s": build_s,
            "n_params": sum(p.numel() for p in params),
            "n_trainable": sum(p.numel() for p in params if p.requires_grad),
            **self.built.info,
        }

    def teardown(self) -> dict[str, Any]:
        self.built, self.batch, self.obs, self.mode = None, {}, {}, ""
        gc.collect()
        return {}

    def _require(self) -> Built:
        if self.built is None:
            raise RuntimeError("No policy: send a 'setup' command first.")
        return self.built

    def train(
        self,
        batch_size: int,
        warmup_steps: int,
        budget_s: float,
        min_steps: int,
        max_steps: int,
        seed: int = 0,
    ) -> dict[str, Any]:
        """Warm-up steps (stopped early once they have taken `budget_s`, but at least one), then timed steps
        until `budget_s` has passed and at least `min_steps` ran, or `max_steps` ran."""
        built = self._require()
        full = next(iter(self.batch.values())).shape[0]
        if batch_size > full:
            raise ValueError(f"batch_size {batch_size} > the {full} samples in the inputs file.")
        batch = {k: v[:batch_size] for k, v in self.batch.items()}
        if self.mode != "train":
            built.policy.train()
            self.mode = "train"
        torch.manual_seed(seed)
        warmup = run_timed(lambda: built.train_step(batch), warmup_steps, budget_s, 1 if warmup_steps else 0)
        timed = run_timed(lambda: built.train_step(batch), max_steps, budget_s, min_steps)
        return {"warmup_s": warmup[0], "step_s": timed[0], "processor_s": timed[1]}

    def infer(
        self,
        warmup_calls: int,
        calls: int,
        budget_s: float,
        min_calls: int,
        seed: int = 0,
        amp: bool = False,
    ) -> dict[str, Any]:
        """`select_action` on one observation, each call after `reset()` (not timed), so each runs the model.
        With `amp`, under `torch.autocast` (bfloat16 on CPU), as both eval scripts run with `use_amp`."""
        built = self._require()
        if self.mode != "eval":
            built.policy.eval()
            self.mode = "eval"
        torch.manual_seed(seed)

        def one_call() -> tuple[float, float]:
            built.reset()
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                processor_s = built.act(self.obs)
            return time.perf_counter() - start, processor_s

        warmup = run_calls(one_call, warmup_calls, budget_s, 1 if warmup_calls else 0)
        timed = run_calls(one_call, calls, budget_s, min_calls)
        return {"warmup_s": warmup[0], "call_s": timed[0], "processor_s": timed[1]}


def run_timed(
    step: Callable[[], float], max_n: int, budget_s: float, min_n: int
) -> tuple[list[float], list[float]]:
    """Run `step` until `max_n` runs, or until `budget_s` seconds have passed and `min_n` ran.
    Returns (seconds per run, what `step` returned per run)."""
    times, extra = [], []
    start = time.perf_counter()
    while len(times) < max_n:
        if len(times) >= min_n and time.perf_counter() - start >= budget_s:
            break
        t0 = time.perf_counter()
        extra.append(float(step()))
        times.append(time.perf_counter() - t0)
    return times, extra


def run_calls(
    call: Callable[[], tuple[float, float]], max_n: int, budget_s: float, min_n: int
) -> tuple[list[float], list[float]]:
    """As `run_timed`, for calls that time themselves (to leave their set-up out): (seconds, extra)."""
    times, extra = [], []
    start = time.perf_counter()
    while len(times) < max_n:
        if len(times) >= min_n and time.perf_counter() - start >= budget_s:
            break
        seconds, other = call()
        times.append(seconds)
        extra.append(float(other))
    return times, extra


def training_step(
    loss_of: Callable[[dict[str, torch.Tensor]], tuple[torch.Tensor, float]],
    parameters: list[torch.nn.Parameter],
    optimizer: torch.optim.Optimizer,
    grad_clip_norm: float,
) -> Callable[[dict[str, torch.Tensor]], float]:
    """forward -> backward -> clip_grad_norm_ -> optimizer.step -> zero_grad, as both training scripts do.

    `loss_of(batch)` returns (loss, seconds spent pre-processing outside the policy); the step returns the latter.
    """

    def step(batch: dict[str, torch.Tensor]) -> float:
        loss, processor_s = loss_of(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, grad_clip_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return processor_s

    return step


def optimizer_info(optimizer: torch.optim.Optimizer, grad_clip_norm: float) -> dict[str, Any]:
    groups = []
    for group in optimizer.param_groups:
        groups.append(
            {
                "n_params": sum(p.numel() for p in group["params"]),
                **{k: group[k] for k in ("lr", "betas", "eps", "weight_decay") if k in group},
            }
        )
    return {
        "optimizer": type(optimizer).__name__,
        "fused": bool(
            optimizer.defaults.get("fused")
        ),  # ours is fused where torch has a kernel; not compared
        "param_groups": groups,
        "grad_clip_norm": grad_clip_norm,
    }


def process_info() -> dict[str, Any]:
    versions = {}
    for package in ("lerobot", "torch", "numpy", "diffusers"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "python": platform.python_version(),
        "executable": sys.executable,
        "versions": versions,
        "torch_num_threads": torch.get_num_threads(),
        "torch_config_blas": _blas(),
    }


def _blas() -> str | None:
    for line in torch.__config__.show().splitlines():
        if "BLAS_INFO" in line or "USE_MKL" in line:
            return line.strip()
    return None


# ------------------------------------------------------------------------------------------------ reference

# The reference's (config class, policy class, processor factory) per policy, as "module:attribute".
REFERENCE_CLASSES = {
    "act": (
        "lerobot.policies.act.configuration_act:ACTConfig",
        "lerobot.policies.act.modeling_act:ACTPolicy",
        "lerobot.policies.act.processor_act:make_act_pre_post_processors",
    ),
    "diffusion": (
        "lerobot.policies.diffusion.configuration_diffusion:DiffusionConfig",
        "lerobot.policies.diffusion.modeling_diffusion:DiffusionPolicy",
        "lerobot.policies.diffusion.processor_diffusion:make_diffusion_pre_post_processors",
    ),
}


def _import(target: str) -> Any:
    module, attribute = target.split(":")
    return getattr(importlib.import_module(module), attribute)


class ReferenceBench(Bench):
    """Builds the reference's ACT / Diffusion Policy with its processors and its optimiser preset."""

    def build(self, spec: dict[str, Any], stats: dict[str, dict[str, torch.Tensor]]) -> Built:
        from lerobot.configs.types import FeatureType, NormalizationMode, PolicyFeature

        policy_name = spec["policy"]
        if policy_name not in REFERENCE_CLASSES:
            raise ValueError(
                f"The reference worker does not know the policy {policy_name!r}; it knows {list(REFERENCE_CLASSES)}."
            )
        config_class, policy_class, make_processors = (
            _import(target) for target in REFERENCE_CLASSES[policy_name]
        )

        def features(role: str) -> dict[str, Any]:
            return {
                key: PolicyFeature(type=FeatureType[kind], shape=tuple(shape))
                for key, (kind, shape) in spec["features"][role].items()
            }

        known = set(config_class.__dataclass_fields__)
        fields = {k: _tuples(v) for k, v in spec["fields"].items() if k in known}
        ignored = sorted(set(spec["fields"]) - known)
        config = config_class(
            input_features=features("input"),
            output_features=features("output"),
            normalization_mapping={
                kind: NormalizationMode[mode] for kind, mode in spec["normalization_mapping"].items()
            },
            device="cpu",
            **fields,
        )
        policy = policy_class(config)
        preprocessor, postprocessor = make_processors(config, dataset_stats=stats)
        preset = config.get_optimizer_preset()
        optimizer = preset.build(policy.get_optim_params())
        parameters = list(policy.parameters())

        def loss_of(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, float]:
            start = time.perf_counter()
            processed = preprocessor(batch)
            processor_s = time.perf_counter() - start
            loss, _ = policy.forward(processed)
            return loss, processor_s

        train_step = training_step(loss_of, parameters, optimizer, preset.grad_clip_norm)

        def act(obs: dict[str, torch.Tensor]) -> float:
            t0 = time.perf_counter()
            processed = preprocessor(dict(obs))
            t1 = time.perf_counter()
            action = policy.select_action(processed)
            t2 = time.perf_counter()
            postprocessor(action)
            return (t1 - t0) + (time.perf_counter() - t2)

        resolved = {k: _jsonable(getattr(config, k)) for k in fields}
        info = {
            "config_resolved": resolved,
            "fields_unknown_to_reference": ignored,
            "normalization": "reference preprocessor (rename, batch dim, device, normalizer) before forward / "
            "select_action, postprocessor (unnormalizer, to cpu) after select_action",
            **optimizer_info(optimizer, preset.grad_clip_norm),
        }
        return Built(policy=policy, train_step=train_step, act=act, reset=policy.reset, info=info)


def _tuples(value: Any) -> Any:
    """JSON lists back to tuples (the reference's configs use tuples, e.g. down_dims, crop_shape)."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if hasattr(value, "value"):  # enums
        return value.value
    return value


def serve(bench: Bench) -> None:
    """The worker loop: JSON commands on stdin, JSON answers on the original stdout."""
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever the libraries print (C level included) goes to stderr
    sys.stdout = sys.stderr
    for line in sys.stdin:
        if not line.strip():
            continue
        command = json.loads(line)
        if command.get("cmd") == "quit":
            break
        try:
            answer = {"ok": True, **bench.handle(command)}
        except Exception as exc:  # reported to the parent, which decides what to do
            answer = {
                "ok": False,
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(),
            }
        answers.write(json.dumps(answer) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description="Reference-implementation worker of benchmarks/policies.py")
    parser.add_argument("--threads", type=int, required=True, help="torch.set_num_threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    serve(ReferenceBench())


if __name__ == "__main__":
    main()
