#!/usr/bin/env python3
"""What a process inside ecg-edge.service's sandbox can reach (run by tools/targets_systemd.sh).

Why a probe in a copy of the unit rather than reading the unit file: a directive that parses may still
not be enforced (kernel, cgroup version, container). The probe tries each thing for real, as the
daemon's user in the daemon's sandbox, and reports what happened. Expected: the front-end device, the
state directory and the broker are reachable; every other device, the read-only system, home
directories, other processes, non-local addresses and raw/netlink sockets are not.

    targets_probe.py --json [--config /etc/ecg-edge/config.toml]   # inside the unit: one JSON line
    targets_probe.py --verdict < probe.json                         # PASS|FAIL summary line
"""
from __future__ import annotations

import argparse
import errno
import json
import os
import socket
import sys
import tomllib

ALLOWED = ("frontend_device", "state_dir_write", "broker_tcp")
DENIED = ("other_device", "write_etc", "write_usr", "write_opt", "read_home", "non_local_udp",
          "non_local_tcp", "packet_socket", "netlink_socket", "other_processes_visible", "capabilities")


def _try(fn) -> dict:
    try:
        detail = fn()
        return {"ok": True, "detail": detail}
    except TimeoutError:
        return {"ok": False, "detail": "no answer (dropped)"}
    except OSError as e:
        return {"ok": False, "detail": f"{errno.errorcode.get(e.errno, e.errno)}: {e.strerror}"}


def probe(config: str) -> dict:
    cfg = tomllib.loads(open(config, encoding="utf-8").read())
    port = cfg.get("frontend", {}).get("port", "/dev/ttyACM0")
    state = cfg.get("storage", {}).get("state_dir", "/var/lib/ecg-edge")
    mqtt = cfg.get("mqtt", {})
    r: dict[str, dict] = {}

    def open_dev(path):
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        os.close(fd)
        return os.path.realpath(path)

    def write_in(d):
        p = os.path.join(d, f".probe-{os.getpid()}")
        with open(p, "w") as f:
            f.write("x")
        os.unlink(p)
        return d

    def tcp(host, port_, timeout=2.0):
        with socket.create_connection((host, port_), timeout=timeout):
            return f"{host}:{port_}"

    def udp(host, port_):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"probe", (host, port_))
            return f"sent to {host}:{port_}"

    r["frontend_device"] = _try(lambda: open_dev(port))
    r["state_dir_write"] = _try(lambda: write_in(state))
    r["broker_tcp"] = _try(lambda: tcp(mqtt.get("host", "127.0.0.1"), int(mqtt.get("port", 1883))))
    # a 0666 node the harness creates (mknod c 10 200): file permissions allow it, only DevicePolicy can refuse
    r["other_device"] = _try(lambda: open_dev("/dev/ecg-probe-tun"))
    r["write_etc"] = _try(lambda: write_in("/etc"))
    r["write_usr"] = _try(lambda: write_in("/usr/local"))
    r["write_opt"] = _try(lambda: write_in("/opt/ecg-edge"))
    r["read_home"] = _try(lambda: f"listed /home ({len(os.listdir('/home'))} entries)")   # 0755 without ProtectHome
    r["non_local_udp"] = _try(lambda: udp("192.0.2.1", 9))                 # TEST-NET-1: nothing needs to exist
    r["non_local_tcp"] = _try(lambda: tcp("192.0.2.1", 80, timeout=1.0))
    r["packet_socket"] = _try(lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW).close() or "AF_PACKET")
    r["netlink_socket"] = _try(lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW).close() or "AF_NETLINK")
    visible = []                                   # ProtectProc=invisible: other users' processes are hidden
    for p in os.listdir("/proc"):
        try:
            if p.isdigit() and os.stat(f"/proc/{p}").st_uid != os.getuid():
                visible.append(p)
        except OSError:
            pass
    r["other_processes_visible"] = {"ok": bool(visible), "detail": f"{len(visible)} process(es) of other users in /proc"}
    cap = next(line.split()[1] for line in open("/proc/self/status") if line.startswith("CapEff:"))
    r["capabilities"] = {"ok": int(cap, 16) != 0, "detail": f"CapEff {cap}"}
    r["user"] = {"ok": True, "detail": f"uid {os.getuid()} gid {os.getgid()} groups {os.getgroups()}"}
    return r


def verdict(r: dict) -> tuple[bool, str]:
    bad = [k for k in ALLOWED if not r.get(k, {}).get("ok")] + [k for k in DENIED if r.get(k, {}).get("ok", True)]
    reach = ", ".join(f"{k} ({r[k]['detail']})" for k in ALLOWED if r.get(k, {}).get("ok"))
    denied = ", ".join(f"{k} ({r[k]['detail']})" for k in DENIED if k in r and not r[k]["ok"])
    text = f"reachable: {reach or 'nothing'}; denied: {denied or 'nothing'}"
    if bad:
        text = "NOT AS EXPECTED: " + ", ".join(f"{k} ({r.get(k, {}).get('detail', 'missing')})" for k in bad) + "; " + text
    return not bad, text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="/etc/ecg-edge/config.toml")
    ap.add_argument("--json", action="store_true", help="probe, print one JSON line")
    ap.add_argument("--verdict", action="store_true", help="read a probe's JSON on stdin, print PASS|FAIL line")
    a = ap.parse_args(argv)
    if a.verdict:
        line = sys.stdin.read().strip()
        if not line:
            print("FAIL the probe printed nothing (see the unit's journal)")
            return 1
        ok, text = verdict(json.loads(line))
        print(("PASS " if ok else "FAIL ") + text)
        return 0 if ok else 1
    print(json.dumps(probe(a.config)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
