"""The README's commands are accepted as written, and its Python snippets run.

Commands: every line of the README's ```bash blocks, and the `python ...` commands quoted inline in its prose.
Each is checked without starting the job it describes:

- `python lerobot/scripts/<x>.py ...`, `python examples/...` and `python -m <module> ...`: the file exists and
  its argument parser accepts the arguments: `build_parser()`, else `parse_args(argv)`, else `main(argv)` run
  only up to its `parse_args` call (ArgumentParser.parse_args is wrapped to stop there, before any work);
- hydra scripts: train.py's overrides compose into its config (a misspelt key, group or value is an error) and
  the policy config they describe can be built (unknown fields, inconsistent values); record_sim_demos.py's
  compose likewise; eval.py's `key=value` overrides must name keys of the run config a checkpoint carries, and
  the profiling example's are train.py's;
- `torchrun ...`: torchrun's own parser accepts the command, then the script is checked as above;
- `bash <file>`: the file exists; `hf <command>`: the command exists (`hf <command> --help` succeeds);
- variables set before a command (`DATA_DIR=...`) must be ones the package reads.

What a reader substitutes is substituted here: PLACEHOLDERS; `[--flag value]` marks optional arguments, so
such a command is checked both with and without them; `...` as the only argument of a torchrun command
stands for the arguments of the commands above it, so only the launcher and the script are checked.

Python blocks run in README order, in one namespace, in a scratch folder that holds what they read:
`lerobot/pusht` (a small synthetic dataset with PushT's features) under `$DATA_DIR` and at
`data/lerobot/pusht`, and a trained-looking checkpoint at `outputs/train/my_run/checkpoints/last/
pretrained_model` (a tiny ACT saved as train.py saves it). The Hub is replaced by FakeHub, which keeps uploads
in a folder and serves downloads from it, after checking every call against the real `huggingface_hub`
signature. Names a snippet leaves to the reader (the recording loop's `image`, `state`, ...) are bound by
READER_INPUTS before the block that uses them.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import importlib
import importlib.util
import inspect
import io
import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import mock

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"

# What a reader replaces, and what the test uses instead.
PLACEHOLDERS = {"<you>": "me", "<run>": "run"}
# `[--flag value]`: optional arguments (brackets after a space and before a dash; `[16,32]` values are not).
OPTIONAL = re.compile(r"(?<=\s)\[(-[^\]]*)\]")
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
PACKAGE_SOURCE = "\n".join(p.read_text(encoding="utf-8") for p in (REPO / "lerobot").rglob("*.py"))


# ------------------------------------------------------------------------------------------------ extraction


def readme_text() -> str:
    return README.read_text(encoding="utf-8")


def fenced_blocks(language: str, text: str | None = None) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", readme_text() if text is None else text, re.S | re.M)


def readme_commands(text: str | None = None) -> list[str]:
    """Command lines of the ```bash blocks (continuations joined), then the inline `python ...` commands."""
    text = readme_text() if text is None else text
    commands = []
    for block in fenced_blocks("bash", text):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                commands.append(" ".join(line.split()))
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    commands += re.findall(r"`(python [^`]+)`", prose)
    return commands


def variants(command: str) -> list[str]:
    """The command without its optional `[...]` arguments, and with all of them."""
    without = " ".join(OPTIONAL.sub("", command).split())
    with_all = " ".join(OPTIONAL.sub(r"\1", command).split())
    return [without] if without == with_all else [without, with_all]


def substitute(command: str) -> list[str]:
    """The command's tokens with placeholders replaced; any other `<...>` left is an unknown placeholder."""
    for placeholder, value in PLACEHOLDERS.items():
        command = command.replace(placeholder, value)
    tokens = shlex.split(command, comments=True)
    unknown = [t for t in tokens if re.search(r"<[^>\s]+>", t)]
    assert not unknown, f"Unknown placeholder in {command!r}: {unknown}; add it to PLACEHOLDERS."
    return tokens


# ------------------------------------------------------------------------------------------------ checking


class RejectedCommandError(AssertionError):
    """A README command that our scripts would not accept."""


def load_script(script: str) -> ModuleType:
    if script.startswith("lerobot/"):
        return importlib.import_module(script.removesuffix(".py").replace("/", "."))
    name = "readme_" + re.sub(r"\W", "_", script.removesuffix(".py"))
    spec = importlib.util.spec_from_file_location(name, REPO / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Parsed(BaseException):  # noqa: N818 (a signal, not an error; BaseException passes `except Exception`)
    """Raised by the wrapped ArgumentParser.parse_args, carrying its result, to stop `main` right there."""

    def __init__(self, namespace: argparse.Namespace):
        super().__init__()
        self.namespace = namespace


def parse_through_main(main: Callable[[list[str]], Any], args: list[str]) -> argparse.Namespace:
    """What `main(args)` parses, without the rest of main running: its first parse_args call ends it."""
    real_parse_args = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        raise _Parsed(real_parse_args(self, args, namespace))

    with mock.patch.object(argparse.ArgumentParser, "parse_args", parse_then_stop):
        try:
            main(args)
        except _Parsed as parsed:
            return parsed.namespace
    raise RejectedCommandError(f"{main.__module__}.main returned without parsing its arguments.")


def parse(module: ModuleType, script: str, args: list[str]) -> argparse.Namespace:
    """Parse `args` with the script's own parser; argparse's error message becomes the failure's."""
    if hasattr(module, "build_parser"):
        parse_fn: Callable[[list[str]], argparse.Namespace] = module.build_parser().parse_args
    elif hasattr(module, "parse_args") and inspect.signature(module.parse_args).parameters:
        parse_fn = module.parse_args
    elif hasattr(module, "main") and inspect.signature(module.main).parameters:
        parse_fn = lambda argv: parse_through_main(module.main, argv)  # noqa: E731
    else:
        raise RejectedCommandError(
            f"{script} has no build_parser(), parse_args(argv) or main(argv) to check its README command with."
        )
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            return parse_fn(args)
    except SystemExit as e:
        raise RejectedCommandError(f"{script} rejects {args}: {stderr.getvalue().strip()}") from e


def check_train_overrides(overrides: list[str]) -> None:
    """train.py composes these overrides, and the policy config they describe can be built."""
    from lerobot.common.policies.factory import get_policy_classes
    from lerobot.common.training.factory import policy_fields
    from lerobot.scripts.train import compose_run_config

    try:
        cfg, _ = compose_run_config(overrides)
        name, fields = policy_fields(cfg)
        config_class, _ = get_policy_classes(name)
        config_class.from_dict(fields)
    except Exception as e:  # hydra's and the config classes' own errors, whatever their type
        raise RejectedCommandError(f"train.py overrides {overrides} fail: {type(e).__name__}: {e}") from e


def check_eval_overrides(overrides: list[str], scratch: Path) -> None:
    """eval.py applies these to the config.yaml of a train.py checkpoint; each key must exist there."""
    from lerobot.scripts.eval import load_run_config
    from lerobot.scripts.train import compose_run_config

    run_config, _ = compose_run_config([])
    OmegaConf.save(run_config, scratch / "config.yaml")
    try:
        load_run_config(scratch, overrides)
    except ValueError as e:
        raise RejectedCommandError(f"eval.py overrides {overrides} fail: {e}") from e
    absent = object()
    for item in overrides:
        key = item.split("=", 1)[0]
        if key != "env" and OmegaConf.select(run_config, key, default=absent) is absent:
            raise RejectedCommandError(f"eval.py override {item!r}: the run config has no key {key!r}.")


def check_python_script(script: str, args: list[str], scratch: Path) -> None:
    if not (REPO / script).is_file():
        raise RejectedCommandError(f"No file {script}.")
    if script == "lerobot/scripts/train.py":
        check_train_overrides(args)
        return
    module = load_script(script)
    if script == "lerobot/scripts/record_sim_demos.py":
        try:
            module.load_config(args)
        except Exception as e:  # hydra's errors, whatever their type
            raise RejectedCommandError(f"record_sim_demos.py overrides {args} fail: {e}") from e
        return
    namespace = parse(module, script, args)
    if script == "lerobot/scripts/eval.py":
        check_eval_overrides(namespace.overrides, scratch)
    elif script == "examples/advanced/3_profile_policy.py":
        check_train_overrides(namespace.overrides)


def check_command(command: str, scratch: Path) -> None:
    """Raise RejectedCommandError unless every variant of `command` is accepted as written."""
    for variant in variants(command):
        tokens = substitute(variant)
        while tokens and ENV_ASSIGNMENT.match(tokens[0]):
            name = tokens.pop(0).split("=", 1)[0]
            if name not in PACKAGE_SOURCE:
                raise RejectedCommandError(f"{command!r} sets {name}, which the package never reads.")
        program, args = tokens[0], tokens[1:]
        if program == "python" and args[0] == "-m":
            check_python_script(args[1].replace(".", "/") + ".py", args[2:], scratch)
        elif program == "python":
            check_python_script(args[0], args[1:], scratch)
        elif program == "torchrun":
            from torch.distributed.run import get_args_parser

            stderr = io.StringIO()
            try:
                with contextlib.redirect_stderr(stderr):
                    launch = get_args_parser().parse_args(args)
            except SystemExit as e:
                raise RejectedCommandError(f"torchrun rejects {args}: {stderr.getvalue().strip()}") from e
            script_args = [] if launch.training_script_args == ["..."] else launch.training_script_args
            check_python_script(launch.training_script, script_args, scratch)
        elif program == "bash":
            if not (REPO / args[0]).is_file():
                raise RejectedCommandError(f"No file {args[0]}.")
        elif program == "hf":
            hf = Path(sys.executable).with_name("hf")
            result = subprocess.run([str(hf), *args, "--help"], capture_output=True, text=True, timeout=60)
            if result.returncode != 0:
                raise RejectedCommandError(
                    f"`hf {' '.join(args)}` is not an hf command: {result.stderr[-2000:]}"
                )
        else:
            raise RejectedCommandError(f"No check for the program {program!r} of {command!r}; add one here.")


COMMANDS = readme_commands()


def test_commands_are_found():
    """The extraction sees the README's commands (a broken regex would otherwise check nothing)."""
    assert len(COMMANDS) >= 30
    scripts = {c.split()[1] for c in COMMANDS if c.startswith("python ")}
    for script in ("train.py", "eval.py", "push_dataset_to_hub.py", "record_sim_demos.py", "quickstart.py"):
        assert f"lerobot/scripts/{script}" in scripts
    assert "examples/advanced/3_profile_policy.py" in scripts
    assert any(c.startswith("torchrun ") for c in COMMANDS) and any(
        c.startswith("DATA_DIR=") for c in COMMANDS
    )


@pytest.mark.parametrize("command", COMMANDS, ids=[f"{i:02d}-{c[:60]}" for i, c in enumerate(COMMANDS)])
def test_readme_command_is_accepted(command, tmp_path):
    check_command(command, tmp_path)


@pytest.mark.parametrize(
    "command, error",
    [
        ("python lerobot/scripts/train.py policy=act training.offline_step=10", "offline_step"),
        ("python lerobot/scripts/train.py policy=act env=alohaa", "alohaa"),
        ("python lerobot/scripts/train.py policy=act policy.chunk_size=50", "n_action_steps"),
        (
            "python lerobot/scripts/train.py policy=diffusion policy.num_inference_step=10",
            "num_inference_steps",
        ),
        ("python lerobot/scripts/eval.py -p x eval.n_episode=5", "no key 'eval.n_episode'"),
        ("python lerobot/scripts/eval.py -p x env=pushtt", "Unknown env"),
        ("python lerobot/scripts/eval.py eval.n_episodes=5", "required"),
        (
            "python lerobot/scripts/convert_dataset.py --repo-id a/b --root x --out-dir y --to v9",
            "invalid choice",
        ),
        (
            "python lerobot/scripts/push_dataset_to_hub.py --raw-dir x --raw-format pusht_zarr --repo-id a/b "
            "[--push-hub 1]",
            "unrecognized arguments: --push-hub",
        ),
        ("python lerobot/scripts/record_sim_demos.py env=aloha num_episode=2", "num_episode"),
        ("python lerobot/scripts/nope.py", "No file"),
        ("python lerobot/scripts/find_cameras.py --fps fast", "invalid float value"),  # through main(argv)
        ("python lerobot/scripts/find_motors_bus_port.py --port x", "unrecognized arguments"),
        ("python -m lerobot.common.robot_devices.motors.emulator --brand nope", "invalid choice"),
        ("python -m lerobot.no_such_module", "No file"),
        ("python lerobot/scripts/control_robot.py record --robot-path so100 --fpss 30", "unrecognized"),
        ("python examples/advanced/3_profile_policy.py --stepz 3", "unrecognized"),
        ("python examples/advanced/3_profile_policy.py policy=act policy.dim_modl=8", "dim_model"),
        ("torchrun --nprocs 2 lerobot/scripts/train.py ...", "torchrun rejects"),
        ("LEROBOT_NO_SUCH_VARIABLE=1 python lerobot/scripts/train.py", "never reads"),
        ("python lerobot/scripts/eval.py -p <somebody>/policy", "Unknown placeholder"),
        ("hf auth logn", "not an hf command"),
    ],
)
def test_checks_reject_wrong_commands(command, error, tmp_path):
    """Each check fails on a command our scripts would refuse: a test of the tests above."""
    with pytest.raises(AssertionError, match=re.escape(error)):
        check_command(command, tmp_path)


def test_optional_arguments_are_checked_both_ways():
    command = "python x.py --a 1 [--b 2] policy.down_dims=[16,32] [--c 3 --d 4]"
    assert variants(command) == [
        "python x.py --a 1 policy.down_dims=[16,32]",
        "python x.py --a 1 --b 2 policy.down_dims=[16,32] --c 3 --d 4",
    ]
    text = "```bash\npython a.py x=1 \\\n    y=2   # comment\n# only a comment\n```\nRun `python b.py --z 3`."
    assert readme_commands(text) == ["python a.py x=1 y=2 # comment", "python b.py --z 3"]


# ------------------------------------------------------------------------------------------------ Python blocks


class FakeHub:
    """The Hub, as a folder: HfApi's repo and upload methods write to it, hf_hub_download reads from it.

    Every call is first bound to the real method's signature, so a snippet passing an argument the real
    `huggingface_hub` does not take fails here too.
    """

    def __init__(self, root: Path):
        self.root = root
        self.tags: dict[str, list[str]] = {}

    def repo(self, repo_id: str, repo_type: str | None) -> Path:
        return self.root / (repo_type or "model") / repo_id

    def create_repo(self, repo_id: str, repo_type: str | None, **_: Any) -> str:
        self.repo(repo_id, repo_type).mkdir(parents=True, exist_ok=True)
        return f"https://huggingface.co/{repo_id}"

    def existing(self, repo_id: str, repo_type: str | None) -> Path:
        path = self.repo(repo_id, repo_type)
        assert path.is_dir(), f"{repo_type or 'model'} repo {repo_id} is used before create_repo"
        return path

    def create_branch(self, repo_id: str, repo_type: str | None, **_: Any) -> None:
        self.existing(repo_id, repo_type)

    def upload_folder(
        self,
        repo_id: str,
        folder_path: str | Path,
        repo_type: str | None,
        path_in_repo: str | None,
        ignore_patterns: list[str] | str | None,
        **_: Any,
    ) -> None:
        target = self.existing(repo_id, repo_type) / (path_in_repo or "")
        patterns = [ignore_patterns] if isinstance(ignore_patterns, str) else list(ignore_patterns or [])
        for file in Path(folder_path).rglob("*"):
            rel = file.relative_to(folder_path).as_posix()
            if file.is_file() and not any(fnmatch.fnmatch(rel, p) for p in patterns):
                (target / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(file, target / rel)

    def upload_file(
        self, path_or_fileobj: Any, path_in_repo: str, repo_id: str, repo_type: str | None, **_: Any
    ) -> None:
        data = path_or_fileobj if isinstance(path_or_fileobj, bytes) else Path(path_or_fileobj).read_bytes()
        (self.existing(repo_id, repo_type) / path_in_repo).write_bytes(data)

    def create_tag(self, repo_id: str, tag: str, repo_type: str | None, **_: Any) -> None:
        self.existing(repo_id, repo_type)
        self.tags.setdefault(repo_id, []).append(tag)

    def hf_hub_download(self, repo_id: str, filename: str, repo_type: str | None, **_: Any) -> str:
        from huggingface_hub.errors import LocalEntryNotFoundError

        path = self.repo(repo_id, repo_type) / filename
        if not path.is_file():
            raise LocalEntryNotFoundError(f"{repo_id} has no {filename} on the fake Hub")
        return str(path)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import huggingface_hub

        def checked(real: Callable, fake: Callable) -> Callable:
            """`fake`, called with the arguments of `real` by name (`self` of a method included, then dropped)."""
            signature = inspect.signature(real)

            def call(*args: Any, **kwargs: Any) -> Any:
                bound = signature.bind(*args, **kwargs)  # TypeError for what the real one refuses
                bound.apply_defaults()
                return fake(**{k: v for k, v in bound.arguments.items() if k not in ("self", "kwargs")})

            return call

        api = huggingface_hub.HfApi
        for name in ("create_repo", "create_branch", "upload_folder", "upload_file", "create_tag"):
            monkeypatch.setattr(api, name, checked(getattr(api, name), getattr(self, name)))
        download = checked(huggingface_hub.hf_hub_download, self.hf_hub_download)
        monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
        # Anything that still reached for the network would fail instead of connecting.
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        # Our own push refuses to run under HF_HUB_OFFLINE=1, which the test suite sets.
        monkeypatch.setenv("HF_HUB_OFFLINE", "0")


def make_pusht_like_dataset(root: Path, n_episodes: int = 2, length: int = 20) -> Path:
    """Episodes with lerobot/pusht's features (a 96x96 camera, 2-d state and action) at its 10 fps."""
    from lerobot.common.datasets.writer import LeRobotDatasetWriter

    features = {
        "observation.image": {
            "dtype": "video",
            "shape": (96, 96, 3),
            "names": ["height", "width", "channels"],
        },
        "observation.state": {"dtype": "float32", "shape": (2,), "names": None},
        "action": {"dtype": "float32", "shape": (2,), "names": None},
    }
    writer = LeRobotDatasetWriter.create("lerobot/pusht", fps=10, features=features, root=root)
    rng = np.random.default_rng(0)
    for _ in range(n_episodes):
        for _ in range(length):
            writer.add_frame(
                {
                    "observation.image": rng.integers(0, 256, (96, 96, 3), dtype=np.uint8),
                    "observation.state": rng.uniform(0, 512, 2).astype(np.float32),
                    "action": rng.uniform(0, 512, 2).astype(np.float32),
                }
            )
        writer.save_episode(task="Push the T-shaped block onto the T-shaped target.")
    writer.finalize()
    return root


def make_checkpoint(folder: Path) -> None:
    """A tiny ACT saved as train.py saves a checkpoint: the policy files plus the run's config.yaml."""
    from lerobot.common.policies.factory import make_policy
    from lerobot.scripts.train import compose_run_config
    from tests.policies.helpers import TINY_CONFIGS, make_stats

    fields = TINY_CONFIGS["act"]
    policy = make_policy(
        "act", dataset_stats=make_stats({**fields["input_shapes"], **fields["output_shapes"]}), **fields
    )
    policy.save_pretrained(folder, datasets=["lerobot/aloha_sim_insertion_human"])
    run_config, _ = compose_run_config(["policy=act", "env=aloha"])
    OmegaConf.save(run_config, folder / "config.yaml")


def recording_inputs(namespace: dict) -> dict:
    # Two short episodes of a 480x640 camera and a 6-joint arm, as the snippet's features declare.
    return {
        "n_episodes": 2,
        "frames": range(3),
        "image": np.zeros((480, 640, 3), dtype=np.uint8),
        "state": np.zeros(6, dtype=np.float32),
        "action": np.zeros(6, dtype=np.float32),
    }


def profiling_inputs(namespace: dict) -> dict:
    from tests.policies.helpers import make_batch

    # 7 batches: the snippet's 2 warm-up and 5 recorded steps, for the policy loaded by the block before.
    return {"batches": [make_batch(namespace["policy"].config, batch_size=2, seed=i) for i in range(7)]}


# Names a block leaves to the reader, bound before the block containing the key (each key is in one block).
READER_INPUTS: dict[str, Callable[[dict], dict]] = {
    "writer.add_frame(": recording_inputs,
    "for batch in batches:": profiling_inputs,
}


def test_python_blocks_run(tmp_path, monkeypatch):
    blocks = fenced_blocks("python")
    for key in READER_INPUTS:
        assert sum(key in b for b in blocks) == 1, f"READER_INPUTS key {key!r} must be in exactly one block"

    pusht = make_pusht_like_dataset(tmp_path / "hub_data" / "lerobot" / "pusht")
    work = tmp_path / "work"
    (work / "data" / "lerobot").mkdir(parents=True)
    (work / "data" / "lerobot" / "pusht").symlink_to(pusht, target_is_directory=True)
    make_checkpoint(work / "outputs/train/my_run/checkpoints/last/pretrained_model")
    hub = FakeHub(tmp_path / "hub")
    hub.install(monkeypatch)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "hub_data"))
    monkeypatch.chdir(work)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    namespace: dict[str, Any] = {"__name__": "readme"}
    printed = io.StringIO()
    try:
        for i, block in enumerate(blocks):
            for key, inputs in READER_INPUTS.items():
                if key in block:
                    namespace.update(inputs(namespace))
            for placeholder, value in PLACEHOLDERS.items():
                block = block.replace(placeholder, value)
            try:
                with contextlib.redirect_stdout(printed):
                    exec(compile(block, f"README.md python block {i}", "exec"), namespace)
            except Exception as e:
                raise AssertionError(f"README python block {i} fails:\n{block}") from e
    finally:
        torch.set_num_threads(threads)

    # Datasets: the last item is the delta_timestamps one.
    item = namespace["item"]
    assert item["observation.image"].shape == (2, 3, 96, 96) and item["action"].shape == (16, 2)
    assert item["action_is_pad"].dtype == torch.bool
    # Recording: the reader's two episodes are on disk.
    info = json.loads((work / "data/pick_cube/meta/info.json").read_text())
    assert info["total_episodes"] == 2 and info["total_frames"] == 6
    # Adding a dataset to the Hub: uploaded with its card and tagged with its format version.
    dataset_repo = hub.repo("me/pick_cube", "dataset")
    assert (dataset_repo / "meta/info.json").is_file() and (dataset_repo / "README.md").is_file()
    assert hub.tags["me/pick_cube"] == ["v3.0"]
    # Adding a policy: the checkpoint's four files, and both ways of loading it back.
    model_repo = hub.repo("me/act_aloha_insertion", "model")
    assert sorted(p.name for p in model_repo.iterdir()) == [
        "README.md",
        "config.json",
        "config.yaml",
        "model.safetensors",
    ]
    assert type(namespace["policy"]).__name__ == "ACTPolicy"
    # Profiling: a table and a Chrome trace with the labelled phases.
    assert "Self CPU" in printed.getvalue()
    trace = json.loads((work / "trace.json").read_text())
    names = {event.get("name") for event in trace["traceEvents"]}
    assert {"forward", "backward", "optimizer"} <= names


def test_relative_links_exist():
    """Links and images of the README that point into the repository lead to files that exist."""
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme_text())
    local = [t for t in targets if not re.match(r"^[a-z]+://", t)]
    assert "examples/advanced/3_profile_policy.py" in local and "BENCHMARKS.md" in local
    missing = [t for t in local if not (REPO / t).exists()]
    assert not missing, f"README links to missing files: {missing}"
