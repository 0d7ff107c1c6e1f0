#!/usr/bin/env bash
# Sets everything up, then runs the main job (see lerobot/scripts/quickstart.py); output in outputs/quickstart/.
set -euo pipefail
cd "$(dirname "$0")/.."
LEROBOT_EXTRAS="${LEROBOT_EXTRAS:-aloha}" bash scripts/setup.sh
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-0}"
exec .venv/bin/python lerobot/scripts/quickstart.py "$@"
