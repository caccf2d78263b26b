#!/usr/bin/env bash
# The appliance on the hardware it is for, in emulation (issue 16; docs/hardware.md):
#   arm64    Debian bookworm arm64 root (Raspberry Pi OS 64-bit is bookworm arm64) under qemu-user, the project
#            installed as a device installs it (pip install . into a venv, no training extras); `ecg-edge selftest`
#            and a replay of real records on an emulated Pi 4 core (cortex-a72) and Pi 5 core (cortex-a76),
#            every probability compared with this x86 machine's run.
#   trixie   the same on Debian trixie arm64 (Python 3.13).
#   systemd  a booted systemd (PID 1 in systemd-nspawn --boot) with systemd/ecg-edge.service and the front-end
#            simulator on a pty: READY, watchdog restart of a SIGSTOPped daemon, hardening, reachability.
#   mcu      the reference firmware built for a Cortex-M3 (QEMU mps2-an385) streaming a real PTB-XL excerpt to
#            the host driver and daemon (tests/test_firmware_mcu.py).
# usage: tools/targets.sh [all|arm64|trixie|systemd|mcu ...]     (default: all; run as root)
# Prints one line per check: PASS|FAIL|SKIP <check> <what was seen>. Exit 1 if any check failed.
# Caches debootstrapped roots and venvs in $ECG_TARGETS_CACHE (default /var/cache/ecg-targets); a missing or
# half-built root is rebuilt. Timings under emulation are not device speeds.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
CACHE=${ECG_TARGETS_CACHE:-/var/cache/ecg-targets}
PY=${ECG_VENV:-$REPO/.venv}/bin/python
MIRROR=${ECG_TARGETS_MIRROR:-http://deb.debian.org/debian}
CPUS=${ECG_TARGETS_CPUS:-cortex-a72 cortex-a76}
LOG=$CACHE/logs
FAILED=0
MOUNTS=()

mkdir -p "$CACHE" "$LOG"
# one run at a time: two runs would reinstall the same cached roots and share their mounts
exec 9>"$CACHE/.lock"
if ! flock -n 9; then
  echo "tools/targets.sh: another run holds $CACHE/.lock; waiting for it" >&2
  flock 9
fi

source "$REPO/tools/targets_lib.sh"
source "$REPO/tools/targets_systemd.sh"

# ------------------------------------------------------------------------------------------------ arm64
check_arm64() {   # check_arm64 SUITE (bookworm | trixie)
  local suite=$1 name="arm64-$1" root t0 t1 pyver
  need_root "$name" || return
  if ! binfmt_on; then result FAIL "$name.binfmt" "qemu-aarch64 binfmt not available (apt-get install qemu-user-static binfmt-support)"; return; fi
  t0=$(date +%s)
  if ! root=$(ensure_root arm64 "$suite" python3,python3-venv,python3-pip,ca-certificates 2>"$LOG/root-$name.err"); then
    result FAIL "$name.root" "$(cat "$LOG/root-$name.err")"; return
  fi
  chroot_mounts "$root"
  pyver=$(chroot "$root" /usr/bin/python3 -c 'import platform; print(platform.python_version(), platform.machine())')
  if ! device_install "$root"; then
    result FAIL "$name.install" "pip install . failed: $(tail -n 3 "$LOG/pip-$(basename "$root").log" | tr '\n' ' ')"; return
  fi
  t1=$(date +%s)
  result PASS "$name.install" "Debian $suite, Python $pyver: pip install . (device requirements only) in $((t1 - t0)) s"
  mkdir -p "$root/tmp/targets" && rm -f "$root"/tmp/targets/*.npz
  # x86 reference: this machine, the same source snapshot (PYTHONPATH wins over the editable install), same versions
  PYTHONPATH="$root/opt/ecg-edge/src" "$PY" "$root/opt/ecg-edge/src/tools/targets_replay.py" run "$root/tmp/targets/x86.npz" \
    --extra "$root/opt/ecg-edge/src/tests/fixtures/ptbxl_official_sample" \
    > "$LOG/x86-replay.log" 2>&1 || { result FAIL "$name.x86-reference" "$(tail -n 3 "$LOG/x86-replay.log")"; return; }
  local cpu out sel
  for cpu in $CPUS; do
    t0=$(date +%s)
    out=$(QEMU_CPU=$cpu chroot "$root" /opt/ecg-edge/venv/bin/ecg-edge selftest --json 2>"$LOG/selftest-$name-$cpu.err")
    sel=$(printf '%s' "$out" | "$PY" -c 'import json,sys; d=json.loads(sys.stdin.read()); print(("PASS" if d["ok"] else "FAIL"), "model", d["model_version"], "on", len(d["records"]), "built-in records, max |diff| vs golden", d["max_abs_diff"], d.get("error") or "")' 2>/dev/null) \
      || sel="FAIL no selftest output: $(tail -n 2 "$LOG/selftest-$name-$cpu.err" | tr '\n' ' ')"
    result ${sel%% *} "$name.selftest[$cpu]" "${sel#* } ($(( $(date +%s) - t0 )) s)"
    t0=$(date +%s)
    if ! QEMU_CPU=$cpu chroot "$root" sh -c "cd /tmp/targets && /opt/ecg-edge/venv/bin/python /opt/ecg-edge/src/tools/targets_replay.py \
          run $cpu.npz --extra /opt/ecg-edge/src/tests/fixtures/ptbxl_official_sample && \
          /opt/ecg-edge/venv/bin/python /opt/ecg-edge/src/tools/targets_replay.py feed x86.npz x86-on-$cpu.npz" \
          > "$LOG/replay-$name-$cpu.log" 2>&1; then
      result FAIL "$name.replay[$cpu]" "$(grep -v cpuinfo "$LOG/replay-$name-$cpu.log" | tail -n 3 | tr '\n' ' ')"; continue
    fi
    sel=$(PYTHONPATH="$root/opt/ecg-edge/src" "$PY" "$root/opt/ecg-edge/src/tools/targets_replay.py" compare "$root/tmp/targets/x86.npz" "$root/tmp/targets/$cpu.npz" \
          --feed "$root/tmp/targets/x86-on-$cpu.npz" --verdict --save "$LOG/compare-$name-$cpu.json" 2>&1) \
      || sel="FAIL compare: $sel"
    result ${sel%% *} "$name.replay[$cpu]" "${sel#* } ($(( $(date +%s) - t0 )) s)"
  done
  cleanup
}

# -------------------------------------------------------------------------------------------------- mcu
check_mcu() {
  local build=$CACHE/mcu-build out
  for t in arm-none-eabi-gcc qemu-system-arm make; do
    command -v $t >/dev/null || { result FAIL mcu.build "$t missing (bash tools/install.sh --dev)"; return; }
  done
  if out=$(make -s -C firmware_bridge/firmware BUILD="$build" 2>&1); then
    result PASS mcu.build "Cortex-M3 image (mps2-an385): $(printf '%s' "$out" | awk '/ecg_frontend/ {print "text " $1 " B, data " $2 " B, bss " $3 " B"}')"
  else
    result FAIL mcu.build "$(printf '%s' "$out" | tail -n 3 | tr '\n' ' ')"; return
  fi
  local t0; t0=$(date +%s)
  if out=$("$PY" -m pytest -p no:cacheprovider -q tests/test_firmware_mcu.py 2>&1); then
    result PASS mcu.qemu "$(printf '%s' "$out" | tail -n 1): commands/errors, every sample = PTB-XL excerpt, lead-off, daemon result = simulator's ($(( $(date +%s) - t0 )) s)"
  else
    result FAIL mcu.qemu "$(printf '%s' "$out" | grep -E '^(FAILED|ERROR)|passed|failed' | tail -n 4 | tr '\n' ' ')"
  fi
}

[ $# -eq 0 ] && set -- all
for what in "$@"; do
  case $what in
    all) check_mcu; check_arm64 bookworm; check_systemd; check_arm64 trixie ;;
    arm64) check_arm64 bookworm ;;
    trixie) check_arm64 trixie ;;
    systemd) check_systemd ;;
    mcu) check_mcu ;;
    *) echo "usage: tools/targets.sh [all|arm64|trixie|systemd|mcu ...]" >&2; exit 2 ;;
  esac
done
echo "not covered: JetPack (Ubuntu 22.04, Python 3.10: below the project's python_requires 3.11), GPU/TensorRT/Coral, real serial hardware, device speed (emulated timings are not device speeds)"
exit $FAILED
