#!/usr/bin/env bash
# The main job on built-in defaults: the front-end simulator replays a real PTB-XL record over a
# pseudo-terminal into the daemon, and the triage results are shown as they come.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install.sh
exec "${ECG_VENV:-$PWD/.venv}/bin/ecg-edge" demo "$@"
