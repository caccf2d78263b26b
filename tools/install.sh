#!/usr/bin/env bash
# Installs the project and what it needs from the package registries (idempotent).
#   --dev : also training + test tools and the services the tests start (mosquitto, chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
dev=0; [ "${1:-}" = "--dev" ] && dev=1
need_apt=()
if [ "$dev" = 1 ]; then
  command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto mosquitto-clients)
  command -v chromium >/dev/null 2>&1 || need_apt+=(chromium chromium-driver)
  command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing system packages: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
if [ "$dev" = 1 ]; then
  python3 -m pip install -q -e ".[all]"
else
  python3 -m pip install -q -e .
fi
