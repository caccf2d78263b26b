"""The unit under a real systemd (issue 16): systemd 252 as PID 1 of a systemd-nspawn --boot container (Debian
bookworm amd64, cgroup v2) with the project, systemd/ecg-edge.service, the front-end simulator on a pty and
mosquitto inside. Checked there: READY=1, streaming through the sandbox, the watchdog restarts a SIGSTOPped
daemon within WatchdogSec, `systemd-analyze security` exposure <= 2.0, and a probe in the unit's own sandbox
reaches only the device node, the state dir and the broker. First run ~5 min (debootstrap), then ~40 s.
"""
from __future__ import annotations

import re

import pytest

from targets_run import run_targets

pytestmark = [pytest.mark.targets, pytest.mark.timeout(1500)]


def test_unit_under_booted_systemd():
    checks = run_targets("systemd", timeout_s=1400)
    for name in ("boot", "ready", "stream", "watchdog", "security", "sandbox"):
        assert checks[f"systemd.{name}"].status == "PASS", checks.get(f"systemd.{name}")
    assert "PID 1" in checks["systemd.boot"].detail
    wd = re.search(r"watchdog timeout' after ([0-9.]+) s \(WatchdogSec=(\d+)s\) -> restarted as pid (\d+)",
                   checks["systemd.watchdog"].detail)
    assert wd and 0 < float(wd[1]) <= int(wd[2]) + 1
    score = float(re.search(r"exposure level for ecg-edge.service: ([0-9.]+)", checks["systemd.security"].detail)[1])
    assert score <= 2.0
    sandbox = checks["systemd.sandbox"].detail
    assert "frontend_device" in sandbox.split("denied:")[0] and "broker_tcp" in sandbox.split("denied:")[0]
    assert "non_local_udp (EPERM" in sandbox and "other_device (EPERM" in sandbox
