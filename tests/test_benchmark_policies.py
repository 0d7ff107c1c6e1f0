"""The policy benchmark's `--isolate` option: each (policy, config) is re-run alone with the other options kept."""

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "policies.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_policies", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)
    if str(SCRIPT.parent) in sys.path:  # the script puts its folder first on the path for its helpers
        sys.path.remove(str(SCRIPT.parent))


@pytest.mark.parametrize(
    "argv, expected",
    [
        (
            [
                "--threads",
                "2",
                "--isolate",
                "--policies",
                "act",
                "diffusion",
                "--configs",
                "tiny",
                "--out",
                "a.json",
            ],
            ["--threads", "2"],
        ),
        (
            ["--out=a.json", "--isolate", "--policies=act", "--amp", "--budget-s", "5"],
            ["--amp", "--budget-s", "5"],
        ),
        (
            ["--measures", "train", "--isolate", "--batch-sizes", "8", "64"],
            ["--measures", "train", "--batch-sizes", "8", "64"],
        ),
    ],
)
def test_isolated_runs_keep_every_other_option(bench, argv, expected):
    out = Path("/tmp/part.json")
    child = bench.child_argv(argv, "diffusion", "default", out)
    assert child == [*expected, "--policies", "diffusion", "--configs", "default", "--out", str(out)]
    args = bench.parse_args(child)
    assert args.policies == ["diffusion"] and args.configs == ["default"] and not args.isolate
