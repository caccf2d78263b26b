"""The device path on arm64 (issue 16): a Debian bookworm arm64 root under qemu-user, the project installed
with `pip install .` (device requirements only), `ecg-edge selftest` and a replay of 96 real windows (the
built-in records + the PTB-XL fixture) on an emulated Raspberry Pi 4 core (cortex-a72), every probability
compared with this x86 machine's run of the same source. The root and venv are cached in
/var/cache/ecg-targets (first run ~12-15 min, then ~1.5 min). `tools/targets.sh arm64` also runs the Pi 5 core.
"""
from __future__ import annotations

import json
import re

import pytest

from targets_run import run_targets

pytestmark = [pytest.mark.targets, pytest.mark.timeout(3000)]


def test_arm64_selftest_and_replay_match_x86():
    checks = run_targets("arm64", timeout_s=2900, env={"ECG_TARGETS_CPUS": "cortex-a72"})
    assert {"arm64-bookworm.install", "arm64-bookworm.selftest[cortex-a72]",
            "arm64-bookworm.replay[cortex-a72]"} <= set(checks)
    assert "aarch64" in checks["arm64-bookworm.install"].detail
    # the shipped golden outputs come from x86; arm64's int8 kernels may differ by a few 1/256 steps, which the
    # manifest's golden_tolerance must allow (the selftest line is PASS only within it)
    assert re.search(r"max \|diff\| vs golden [0-9.]+", checks["arm64-bookworm.selftest[cortex-a72]"].detail)
    replay = checks["arm64-bookworm.replay[cortex-a72]"].detail
    m = re.search(r"(\d+) windows \((\d+) interpreted\).*max \|dP\| ([0-9.]+).*triage/quality changes: (\d+)", replay)
    assert m, replay
    windows, interpreted, max_dp, changes = int(m[1]), int(m[2]), float(m[3]), int(m[4])
    assert windows >= 90 and interpreted >= 90
    assert changes == 0
    # int8 outputs move in steps of 1/256; a few steps at most (measured: 6 steps, 0.0234)
    assert max_dp <= 0.05
    saved = json.loads(open("/var/cache/ecg-targets/logs/compare-arm64-bookworm-cortex-a72.json").read())
    assert saved["windows"] == windows and saved["triage_or_quality_changes"] == []
