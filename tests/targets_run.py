"""Run tools/targets.sh and parse its result lines (shared by tests/test_targets_*.py)."""
from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINE = re.compile(r"^(PASS|FAIL|SKIP)\s+(\S+)\s+(.*)$")


@dataclass
class Check:
    status: str
    name: str
    detail: str


def run_targets(what: str, timeout_s: float, env: dict[str, str] | None = None) -> dict[str, Check]:
    """tools/targets.sh WHAT -> {check name: Check}. Needs root (debootstrap, chroot, nspawn)."""
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("tools/targets.sh needs root (CI runs as root)")
        pytest.skip("tools/targets.sh needs root (debootstrap, chroot, binfmt_misc, systemd-nspawn)")
    p = subprocess.run(["bash", str(ROOT / "tools" / "targets.sh"), what], cwd=ROOT, capture_output=True,
                       text=True, timeout=timeout_s, env={**os.environ, **(env or {})})
    checks = {}
    for line in p.stdout.splitlines():
        m = LINE.match(line)
        if m:
            checks[m.group(2)] = Check(*m.groups())
    print(p.stdout)                       # the figures, in the test log
    assert checks, f"no result lines (exit {p.returncode}): {p.stdout[-2000:]} {p.stderr[-2000:]}"
    failed = [f"{c.name}: {c.detail}" for c in checks.values() if c.status != "PASS"]
    assert not failed and p.returncode == 0, "\n".join(failed) or p.stderr[-2000:]
    return checks
