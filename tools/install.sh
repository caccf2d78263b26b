#!/usr/bin/env bash
# Installs the project into its own virtual environment, .venv/ at the project root (idempotent).
#   (no flag) : the device only (numpy, scipy, pyserial, paho-mqtt, ai-edge-litert, ...) into .venv
#   --cloud   : the device plus the receiving end (cloud_dashboard, `ecg-cloud`) and Debian's mosquitto
#   --dev     : also training, the cloud dashboard, the test tools, and the Debian packages the tests start
#               (mosquitto, chromium + chromium-driver, postgresql, openssl, and the emulators for tools/targets.sh)
# Python packages go only into .venv (Debian's python3 refuses system-wide pip installs, PEP 668).
# System-wide it installs Debian packages with apt-get, and only those that are missing.
# ECG_VENV=/path overrides where the environment lives.
set -euo pipefail
cd "$(dirname "$0")/.."
dev=0; cloud=0
case "${1:-}" in
  --dev) dev=1 ;;
  --cloud) cloud=1 ;;
  "") ;;
  *) echo "usage: bash tools/install.sh [--cloud | --dev]" >&2; exit 2 ;;
esac
venv="${ECG_VENV:-$PWD/.venv}"

apt_missing() {  # prints the Debian packages of "$@" that are not installed
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
  done
}
apt_install() {
  local missing
  missing=$(apt_missing "$@")
  [ -z "$missing" ] && return 0
  if [ "$(id -u)" != 0 ]; then
    echo "ERROR: these Debian packages are needed and this user cannot install them: $missing" >&2
    echo "       run: sudo apt-get install -y $missing" >&2
    exit 1
  fi
  echo "installing Debian packages (system-wide): $missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

py=python3
if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "ERROR: Python >= 3.11 is needed as python3 (found: $("$py" --version 2>&1))" >&2
  exit 1
fi
if [ ! -x "$venv/bin/python" ]; then
  echo "creating the project's virtual environment: $venv"
  if ! "$py" -m venv "$venv" 2>/dev/null; then
    rm -rf "$venv"
    ver=$("$py" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
    apt_install "python${ver}-venv"
    "$py" -m venv "$venv"
  fi
  "$venv/bin/python" -m pip install -q --upgrade pip
fi

if [ "$dev" = 1 ]; then
  apt_install mosquitto mosquitto-clients chromium chromium-driver openssl postgresql \
    qemu-user-static binfmt-support debootstrap systemd-container \
    gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm
  "$venv/bin/python" -m pip install -q -e ".[all]"
elif [ "$cloud" = 1 ]; then
  apt_install mosquitto
  "$venv/bin/python" -m pip install -q -e ".[cloud]"
else
  "$venv/bin/python" -m pip install -q -e .
fi
echo "installed into $venv (activate with: source $venv/bin/activate)"
