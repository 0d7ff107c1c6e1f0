#!/usr/bin/env bash
# Sets everything up, then runs the test suite (extra pytest arguments are passed through).
set -euo pipefail
cd "$(dirname "$0")/.."
# The tests cover the simulators and viewers too, so install their extras (pinned in pyproject.toml).
LEROBOT_EXTRAS="${LEROBOT_EXTRAS:-dev,pusht,aloha,xarm,viz}" bash scripts/setup.sh
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 MUJOCO_GL="${MUJOCO_GL:-egl}" PYOPENGL_PLATFORM="${PYOPENGL_PLATFORM:-egl}"
exec .venv/bin/python -m pytest tests -n 2 -q "$@"
