# The unit under a real systemd (sourced by tools/targets.sh; docs/hardware.md, "Real systemd").
#
# Boots a Debian bookworm amd64 root with systemd-nspawn --boot (systemd is PID 1 of the container), with
# the project installed as on a device, systemd/ecg-edge.service + sysusers + a config, the front-end
# simulator as a pty device (test-only unit), and Debian's mosquitto as the broker. Then checks, inside:
#   READY (Type=notify), watchdog restart of a SIGSTOPped daemon within WatchdogSec, `systemd-analyze
#   security` exposure, and what a process in the unit's sandbox can reach (tools/targets_probe.py).
# The only change to the shipped unit is a drop-in allowing the simulator's pty (char-pts) as the device.

SYSTEMD_ROOT_PKGS=systemd,systemd-sysv,dbus,python3,python3-venv,python3-pip,ca-certificates,mosquitto

in_container() {   # in_container CMD...: run inside the booted container (all its namespaces)
  nsenter --target "$CT_PID" --all -- "$@"
}

unit_prop() {   # unit_prop UNIT PROPERTY
  in_container systemctl show -p "$2" --value "$1"
}

wait_for() {   # wait_for SECONDS CMD...: poll until CMD succeeds
  local end=$(( $(date +%s) + $1 )); shift
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -ge "$end" ] && return 1
    sleep 0.5
  done
}

systemd_prepare() {   # the project, the unit and the test harness inside the root (offline, by chroot)
  local root=$1
  chroot_mounts "$root"
  device_install "$root" || return 1
  ln -sf /opt/ecg-edge/venv/bin/ecg-edge "$root/usr/local/bin/ecg-edge"
  install -m 0644 systemd/ecg-edge.service "$root/etc/systemd/system/ecg-edge.service"
  install -D -m 0644 systemd/ecg-edge.sysusers.conf "$root/etc/sysusers.d/ecg-edge.conf"
  chroot "$root" systemd-sysusers /etc/sysusers.d/ecg-edge.conf || return 1     # as the package's postinst would
  sed -e 's|^port = "/dev/ttyACM0"|port = "/run/ecg-frontend/ttyACM0"|' -e 's|^enabled = false|enabled = true|' \
    systemd/config.example.toml | install -D -m 0640 /dev/stdin "$root/etc/ecg-edge/config.toml"
  chroot "$root" chgrp ecg-edge /etc/ecg-edge/config.toml || return 1             # readable by the daemon only
  grep -q '^port = "/run/ecg-frontend/ttyACM0"' "$root/etc/ecg-edge/config.toml" || return 1
  mkdir -p "$root/etc/systemd/system/ecg-edge.service.d"
  cat > "$root/etc/systemd/system/ecg-edge.service.d/50-emulated-frontend.conf" <<'EOF'
# test harness only: the emulated front end is a pseudo-terminal (char-pts), not /dev/ttyACM0
[Unit]
Wants=ecg-frontend-sim.service
After=ecg-frontend-sim.service mosquitto.service
[Service]
DeviceAllow=char-pts rw
EOF
  cat > "$root/etc/systemd/system/ecg-frontend-sim.service" <<'EOF'
# test harness only: the front-end simulator replaying a real PTB-XL record on a pty
[Service]
User=ecg-edge
Group=dialout
RuntimeDirectory=ecg-frontend
ExecStart=/opt/ecg-edge/venv/bin/ecg-frontend-sim /opt/ecg-edge/src/edge_app/data/records/00181_hr --link /run/ecg-frontend/ttyACM0
EOF
  # the probe runs in a copy of the shipped unit's sandbox (same file, only Type/ExecStart/watchdog changed)
  sed -e 's|^Type=notify|Type=oneshot|' -e '/^NotifyAccess=/d' -e '/^WatchdogSec=/d' -e '/^Restart=/d' \
      -e 's|^ExecStart=.*|ExecStart=/opt/ecg-edge/venv/bin/python /opt/ecg-edge/src/tools/targets_probe.py --json|' \
      systemd/ecg-edge.service > "$root/etc/systemd/system/ecg-edge-probe.service"
  mkdir -p "$root/etc/systemd/system/ecg-edge-probe.service.d"
  cp "$root/etc/systemd/system/ecg-edge.service.d/50-emulated-frontend.conf" "$root/etc/systemd/system/ecg-edge-probe.service.d/"
  cleanup
}

systemd_boot() {   # boot the root; sets CT_PID (the container's PID 1) and NSPAWN_PID
  local root=$1
  # the container gets its own cgroup v2 hierarchy (as Raspberry Pi OS bookworm has): on the host's cgroup v1
  # hierarchy systemd can neither attach IPAddressDeny's BPF programs nor use the BPF device controller
  SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 systemd-nspawn -D "$root" --boot \
    --capability=CAP_BPF,CAP_NET_ADMIN,CAP_PERFMON --system-call-filter="bpf" --register=no --keep-unit --console=passive -M ecg-target \
    > "$LOG/nspawn.log" 2>&1 &
  NSPAWN_PID=$!
  CT_PID=
  local end=$(( $(date +%s) + 60 ))
  while [ -z "$CT_PID" ] && [ "$(date +%s)" -lt "$end" ] && kill -0 "$NSPAWN_PID" 2>/dev/null; do
    sleep 0.5
    CT_PID=$(ps -o pid= --ppid "$NSPAWN_PID" | tr -d ' ' | head -n 1)
  done
  [ -n "$CT_PID" ] || return 1
  # booted: systemd answers and multi-user.target is reached (or the boot settled, degraded or not)
  wait_for 90 in_container sh -c 'systemctl is-system-running | grep -qE "running|degraded"'
}

systemd_shutdown() {
  [ -n "${NSPAWN_PID:-}" ] || return 0
  kill -TERM "$NSPAWN_PID" 2>/dev/null                       # nspawn asks the container's systemd to power off
  local i
  for i in $(seq 60); do kill -0 "$NSPAWN_PID" 2>/dev/null || break; sleep 0.5; done
  kill -KILL "$NSPAWN_PID" 2>/dev/null
  wait "$NSPAWN_PID" 2>/dev/null
  NSPAWN_PID=
}

check_systemd() {
  local name=systemd root t0 t1
  need_root "$name" || return
  command -v systemd-nspawn >/dev/null || { result FAIL "$name.boot" "systemd-nspawn missing (apt-get install systemd-container)"; return; }
  if ! root=$(ensure_root amd64 bookworm "$SYSTEMD_ROOT_PKGS" 2>"$LOG/root-$name.err"); then
    result FAIL "$name.root" "$(cat "$LOG/root-$name.err")"; return
  fi
  if ! systemd_prepare "$root"; then result FAIL "$name.install" "$(tail -n 3 "$LOG/pip-$(basename "$root").log" | tr '\n' ' ')"; return; fi
  t0=$(date +%s)
  if ! systemd_boot "$root"; then
    result FAIL "$name.boot" "a booted systemd could not run here: $(grep -v '^$' "$LOG/nspawn.log" | tail -n 3 | tr '\n' ' ')"
    systemd_shutdown
    systemd_fallback
    return
  fi
  result PASS "$name.boot" "systemd $(in_container systemctl --version | head -n 1 | cut -d' ' -f2) is PID 1 of the container ($(in_container systemctl is-system-running)) in $(( $(date +%s) - t0 )) s"

  # READY: Type=notify means `systemctl start` returns once the daemon sent READY=1
  t0=$(date +%s)
  if in_container systemctl start ecg-edge.service 2>"$LOG/start.err" && [ "$(unit_prop ecg-edge ActiveState)" = active ]; then
    result PASS "$name.ready" "ecg-edge.service active/$(unit_prop ecg-edge SubState) after READY=1 in $(( $(date +%s) - t0 )) s; status: $(unit_prop ecg-edge StatusText | cut -c1-80)"
  else
    result FAIL "$name.ready" "$(tail -n 2 "$LOG/start.err" | tr '\n' ' ') $(in_container journalctl -u ecg-edge -n 5 --no-pager | tr '\n' ' ')"
    systemd_shutdown; return
  fi
  # the whole data path inside the sandbox: samples from the pty, a 10 s window analysed, stored, published
  if wait_for 60 sh -c "nsenter --target $CT_PID --all -- systemctl show -p StatusText --value ecg-edge | grep -qE '^streaming; windows [1-9]'"; then
    result PASS "$name.stream" "daemon reads the simulator's pty and analyses windows in the sandbox: STATUS=$(unit_prop ecg-edge StatusText); $(in_container sh -c 'find /var/lib/ecg-edge/store -name "*.json" | wc -l') result(s) stored"
  else
    result FAIL "$name.stream" "no analysed window after 60 s: STATUS=$(unit_prop ecg-edge StatusText); $(in_container journalctl -u ecg-edge -n 3 --no-pager | tr '\n' ' ')"
  fi

  # watchdog: freeze the daemon; systemd must kill it when WatchdogSec passes without WATCHDOG=1, then restart it
  local wd pid0 n0 t_stop t_kill t_ready pid1
  wd=$(( $(unit_prop ecg-edge WatchdogUSec | sed 's/s$//;s/min/*60/' ) ))
  pid0=$(unit_prop ecg-edge MainPID); n0=$(unit_prop ecg-edge NRestarts)
  t_stop=$(date +%s.%N)
  in_container sh -c "kill -STOP $pid0"
  if wait_for $(( wd + 40 )) sh -c "[ \"\$(nsenter --target $CT_PID --all -- systemctl show -p NRestarts --value ecg-edge)\" -gt $n0 ] && \
        [ \"\$(nsenter --target $CT_PID --all -- systemctl show -p ActiveState --value ecg-edge)\" = active ]"; then
    t_ready=$(date +%s.%N)
    pid1=$(unit_prop ecg-edge MainPID)
    local jl; jl=$(in_container journalctl -b -u ecg-edge --no-pager -o short-unix --since "@${t_stop%.*}" | grep -m1 -i 'watchdog timeout')
    t_kill=${jl%% *}
    local to; to=$(awk -v a="$t_stop" -v b="$t_kill" 'BEGIN {printf "%.1f", b - a}')
    local ok=PASS; awk -v x="$to" -v w="$wd" 'BEGIN {exit !(x > 0 && x <= w + 1)}' || ok=FAIL
    result $ok "$name.watchdog" "SIGSTOP pid $pid0 -> systemd 'watchdog timeout' after ${to} s (WatchdogSec=${wd}s) -> restarted as pid $pid1, READY again $(awk -v a="$t_stop" -v b="$t_ready" 'BEGIN {printf "%.1f", b - a}') s after the freeze"
  else
    result FAIL "$name.watchdog" "no restart within $(( wd + 40 )) s: $(in_container journalctl -u ecg-edge -n 6 --no-pager | tr '\n' ' ')"
  fi

  # hardening score
  local sec score
  sec=$(in_container systemd-analyze security --no-pager ecg-edge.service 2>&1 | tail -n 1)
  score=$(printf '%s' "$sec" | grep -oE '[0-9]+\.[0-9]+' | head -n 1)
  if [ -n "$score" ] && awk -v s="$score" 'BEGIN {exit !(s <= 2.0)}'; then
    result PASS "$name.security" "$sec"
  else
    result FAIL "$name.security" "${sec:-no output} (must be <= 2.0)"
  fi

  # reachability from inside the unit's sandbox; a world-writable device node that only the device policy can refuse
  in_container sh -c 'mknod -m 0666 /dev/ecg-probe-tun c 10 200 2>/dev/null; true'
  in_container systemctl start ecg-edge-probe.service >/dev/null 2>&1
  local probe; probe=$(in_container journalctl -u ecg-edge-probe --no-pager -o cat | grep '^{' | tail -n 1)
  printf '%s\n' "$probe" > "$LOG/probe.json"
  local verdict; verdict=$(printf '%s' "$probe" | "$PY" "$REPO/tools/targets_probe.py" --verdict 2>&1)
  result ${verdict%% *} "$name.sandbox" "${verdict#* }"
  in_container journalctl --no-pager -u ecg-edge -u ecg-frontend-sim -u ecg-edge-probe > "$LOG/journal.txt" 2>&1
  systemd_shutdown
}

systemd_fallback() {   # when no systemd can boot here: the strongest checks that do run
  local v
  if v=$(systemd-analyze verify "$REPO/systemd/ecg-edge.service" 2>&1); then
    result PASS systemd.verify "systemd-analyze verify: no complaints (fallback, not a booted systemd)"
  else
    result FAIL systemd.verify "$v"
  fi
}
