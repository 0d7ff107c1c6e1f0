#!/usr/bin/env bash
# Creates .venv and installs lerobot with the extras named in $LEROBOT_EXTRAS (default: dev).
# torch is installed first, pinned to the CPU build this machine ships, so that no dependency drags in a
# CUDA torch. On a machine with a GPU, install your own torch first and set LEROBOT_TORCH=skip.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${LEROBOT_EXTRAS:-dev}"
python="${PYTHON:-python3}"

if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  # Debian packages: software OpenGL (EGL + Mesa llvmpipe) for the MuJoCo simulators of the sim extras.
  need=""
  pkgs="libegl1 libgl1 libglib2.0-0 libegl-mesa0 libgl1-mesa-dri libgbm1"
  # The test extra (dev) also gets a headless browser for the HTML episode-browser test.
  case ",$extras," in *,dev,*) pkgs="$pkgs chromium chromium-driver" ;; esac
  for pkg in $pkgs; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need="$need $pkg"
  done
  if [ -n "$need" ]; then
    echo "[setup] apt-get install$need"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($python --version)"
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
if [ "${LEROBOT_TORCH:-pin}" != "skip" ] && ! .venv/bin/python -c "import torch" 2>/dev/null; then
  echo "[setup] installing torch==2.13.0 (CPU build)"
  .venv/bin/pip install -q torch==2.13.0 2>&1 | grep -v "^WARNING: Location" || true
fi
echo "[setup] installing lerobot[$extras]"
.venv/bin/pip install -q -e ".[$extras]" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import lerobot, torch; print(f'[setup] lerobot {lerobot.__version__}, torch {torch.__version__}')"
if .venv/bin/pip list 2>/dev/null | grep -qi '^nvidia'; then
  echo "[setup] WARNING: CUDA packages were pulled into .venv (pip list | grep -i nvidia)." >&2
fi
