#!/usr/bin/env bash
# The main job on built-in defaults: the front-end simulator replays a real PTB-XL record over a
# pseudo-terminal into the daemon, and the triage results are shown as they come.
#   bash tools/demo.sh [ecg-edge demo options]          one ambulance, results on the terminal
#   bash tools/demo.sh --cloud [ecg-cloud demo options] the whole chain: N ambulances (the real daemon on the
#                                                       simulator) -> a local mosquitto -> the dashboard (URL + login)
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${ECG_VENV:-$PWD/.venv}"
if [ "${1:-}" = "--cloud" ]; then
  shift
  bash tools/install.sh --cloud
  exec "$venv/bin/ecg-cloud" demo "$@"
fi
bash tools/install.sh
exec "$venv/bin/ecg-edge" demo "$@"
