"""The command line's promises (docs/cli.md): one exit-code convention, plain words for a device that never
ran, no runtime chatter on stderr, and messages that only suggest flags the command has (issue 14, items 11, 13)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from edge_app.cli.common import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_NO_DAEMON, EXIT_OK, plural
from edge_app.jsonsafe import json_safe

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT / "edge_app" / "data" / "records"


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge_app.cli", *args], cwd=str(ROOT), capture_output=True,
                          text=True, timeout=timeout)


def _config(tmp_path: Path) -> Path:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[storage]\nstate_dir = "{tmp_path / "state"}"\n')
    return cfg


def test_exit_codes_are_the_documented_ones():
    assert (EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_NO_DAEMON) == (0, 1, 2, 3)
    doc = (ROOT / "docs" / "cli.md").read_text()
    for code, word in ((0, "OK"), (1, "FAILED"), (2, "BAD INPUT"), (3, "NO DAEMON")):
        assert f"| {code} | {word}" in doc


def test_bad_input_is_exit_2_in_every_command(tmp_path):
    """The same kind of error (a record or config that cannot be used) gives the same code everywhere."""
    bad_record = tmp_path / "nope"
    bad_config = tmp_path / "bad.toml"
    bad_config.write_text("[windows]\nstride_s = -1\n")
    runs = {"replay record": cli("replay", str(bad_record)),
            "measure record": cli("measure", str(bad_record)),
            "demo record": cli("demo", "--record", str(bad_record)),
            "replay stride": cli("replay", "00181_lr", "--stride", "-1", timeout=60),   # looped forever before
            "demo duration": cli("demo", "--duration", "-1"),
            "demo stride": cli("demo", "--stride", "0", "--duration", "1"),
            "demo display address": cli("demo", "--display", "--display-host", "192.0.2.1", "--duration", "1"),
            "config check": cli("config", "check", str(bad_config)),
            "replay config": cli("replay", "00181_hr", "--config", str(bad_config)),
            "selftest config": cli("selftest", "--config", str(bad_config)),
            "status config": cli("status", "--config", str(bad_config)),
            "audit config": cli("audit", "verify", "--config", str(bad_config)),
            "store config": cli("store", "verify", "--config", str(bad_config)),
            "usage": cli("replay")}
    for what, r in runs.items():
        assert r.returncode == EXIT_BAD_INPUT, (what, r.returncode, r.stderr)
        assert "Traceback" not in r.stderr + r.stdout, (what, r.stderr)
    sim = subprocess.run([sys.executable, "-m", "firmware_bridge.simulator_cli", str(bad_record)], cwd=str(ROOT),
                         capture_output=True, text=True, timeout=60)
    assert sim.returncode == EXIT_BAD_INPUT and "Traceback" not in sim.stderr


def test_demo_on_a_truncated_record_says_so(tmp_path):
    """Issue 14 item 9: a truncated record ended in a reshape ValueError traceback."""
    (tmp_path / "cut.hea").write_text((RECORDS / "00181_hr.hea").read_text().replace("00181_hr", "cut"))
    (tmp_path / "cut.dat").write_bytes((RECORDS / "00181_hr.dat").read_bytes()[:10000])
    r = cli("demo", "--record", str(tmp_path / "cut"), "--duration", "1")
    assert r.returncode == EXIT_BAD_INPUT and "Traceback" not in r.stderr and "reshape" not in r.stderr
    assert "cut.dat: is truncated" in r.stderr and "416 whole samples" in r.stderr and "copy the record" in r.stderr


def test_no_daemon_is_exit_3_and_says_so(tmp_path):
    r = cli("status", "--config", str(_config(tmp_path)))
    assert r.returncode == EXIT_NO_DAEMON and "is it running" in r.stderr and "Traceback" not in r.stderr
    r = cli("patient", "show", "--config", str(_config(tmp_path)))
    assert r.returncode == EXIT_NO_DAEMON and "Traceback" not in r.stderr


def test_a_device_that_never_ran_has_no_audit_log_yet_not_a_broken_one(tmp_path):
    cfg = _config(tmp_path)
    r = cli("audit", "verify", "--config", str(cfg))
    assert r.returncode == EXIT_OK and "no audit log yet" in r.stdout and "BROKEN" not in r.stdout, r.stdout
    r = cli("audit", "verify", "--config", str(cfg), "--json")
    assert r.returncode == EXIT_OK and json.loads(r.stdout)["entries"] == 0
    r = cli("store", "verify", "--config", str(cfg))
    assert r.returncode == EXIT_OK and "no result store yet" in r.stdout
    assert not (tmp_path / "state").exists()             # checking did not create a state directory
    # but a device with stored results and no audit log: that log was removed -> BROKEN, exit 1
    (tmp_path / "state" / "results" / "2026-01-01").mkdir(parents=True)
    (tmp_path / "state" / "results" / "2026-01-01" / "x.json").write_text("{}")
    r = cli("audit", "verify", "--config", str(cfg))
    assert r.returncode == EXIT_FAILED and "BROKEN" in r.stdout and "removed" in r.stdout
    r = cli("audit", "verify", "--file", str(tmp_path / "elsewhere.jsonl"))
    assert r.returncode == EXIT_BAD_INPUT and "no such file" in r.stderr


def test_config_check_of_a_missing_file_suggests_nothing_the_command_lacks(tmp_path):
    r = cli("config", "check", str(tmp_path / "missing.toml"))
    assert r.returncode == EXIT_BAD_INPUT and "does not exist" in r.stdout
    assert "--config" not in r.stdout and "ecg-edge config default" in r.stdout


def test_plural():
    assert plural(1, "window") == "1 window" and plural(2, "window") == "2 windows"
    assert plural(0, "entry", "entries") == "0 entries" and plural(1, "entry", "entries") == "1 entry"


def test_model_commands_print_no_litert_info_line_on_stderr():
    for args in (["selftest"], ["replay", "00181_lr", "--json"]):
        r = cli(*args)
        assert r.returncode == 0, r.stderr
        assert "XNNPACK" not in r.stderr and "INFO:" not in r.stderr, (args, r.stderr)


def test_runtime_log_filter_keeps_every_other_line(capfd):
    import os
    from edge_app.inference.runtime_log import quiet_runtime_info
    with quiet_runtime_info():
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
        os.write(2, b"ERROR: something real\n")
        print("python stderr line", file=sys.stderr, flush=True)
    err = capfd.readouterr().err
    assert "XNNPACK" not in err and "ERROR: something real" in err and "python stderr line" in err


def test_json_safe_is_strict_about_nan_and_unknown_types():
    import dataclasses

    import numpy as np
    import pytest

    @dataclasses.dataclass
    class D:
        x: float
        n: np.int64

    out = json_safe({"a": float("nan"), "b": np.float32(1.5), "c": (1, np.inf), 3: np.arange(2), "d": D(2.0, np.int64(4)),
                     "e": np.bool_(True)})
    assert out == {"a": None, "b": 1.5, "c": [1, None], "3": [0, 1], "d": {"x": 2.0, "n": 4}, "e": True}
    assert json.dumps(out, allow_nan=False)
    assert json_safe({"q": 0.123456789}, ndigits=4) == {"q": 0.1235}
    with pytest.raises(TypeError):
        json_safe({"x": object()})
    assert json_safe({"x": Path("/a")}, unknown=str) == {"x": "/a"}


def test_a_tampered_model_is_a_failure_not_a_traceback(tmp_path):
    """The model on the device is not the user's input: a tampered one is FAILED (1), said plainly."""
    import shutil
    man = json.loads((ROOT / "quantized_models" / "manifest.json").read_text())
    for f in (ROOT / "quantized_models").iterdir():
        if f.is_file():
            shutil.copy(f, tmp_path / f.name)
    tfl = next(tmp_path.glob("*.tflite"))
    blob = bytearray(tfl.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    tfl.write_bytes(bytes(blob))
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[model]\nmanifest = "{tmp_path / "manifest.json"}"\n[storage]\nstate_dir = "{tmp_path / "s"}"\n'
                   f'[frontend]\nport = "{tmp_path / "no-tty"}"\n')
    assert man["classes"]
    for args in (["replay", "00181_lr"], ["selftest"], ["run"]):
        r = cli(*args, "--config", str(cfg))
        assert r.returncode == EXIT_FAILED and "Traceback" not in r.stderr + r.stdout, (args, r.stderr)
        assert "tampered" in r.stderr + r.stdout
