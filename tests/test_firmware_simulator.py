"""The ecg-frontend-sim command and the simulator's own behaviour (fault syntax, pacing, errors)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from firmware_bridge import protocol as P
from firmware_bridge.driver import FrontEndDriver
from firmware_bridge.frame_decoder import FrameDecoder
from firmware_bridge.simulator import FrontEndSimulator, SimulatorError, load_record, parse_fault
from firmware_bridge.simulator_cli import main

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "tests" / "fixtures" / "ptbxl_official_sample"
REC500 = FIX / "records500" / "00000" / "00018_hr"
REC100 = FIX / "records100" / "00000" / "00020_lr"


def test_parse_fault_grammar():
    f = parse_fault("electrode_off:la@2+3")
    assert (f.kind, f.electrode, f.start_s, f.duration_s) == ("electrode_off", "LA", 2.0, 3.0)
    f = parse_fault("mains:60:150@0+5")
    assert (f.freq_hz, f.amplitude_uv, f.duration_s) == (60.0, 150.0, 5.0)
    assert parse_fault("mains@1").freq_hz == 50.0
    assert parse_fault("drop:5@3").frames == 5 and parse_fault("corrupt@3").frames == 1
    assert parse_fault("disconnect:2@5").duration_s == 2.0 == parse_fault("disconnect@5+2").duration_s
    assert parse_fault("noise:80@1").amplitude_uv == 80.0
    for bad, why in [("electrode_off:RL@1", "electrode"), ("noise:80", "@START"), ("zap@1", "unknown fault"),
                     ("flat:3@1", "no arguments"), ("noise:x@1", "numbers"), ("drop@x", "seconds")]:
        with pytest.raises(SimulatorError, match=why):
            parse_fault(bad)


def test_load_record_any_rate_and_errors(tmp_path):
    fs, uv = load_record(REC100)
    assert fs == 100 and uv.shape == (1000, 8)
    fs, uv = load_record(str(REC500) + ".hea")
    assert fs == 500 and uv.shape == (5000, 8)
    assert 100 < np.abs(uv).max() < 10000                          # microvolts, not mV
    with pytest.raises(SimulatorError, match="no WFDB record"):
        load_record(tmp_path / "missing")
    with pytest.raises(SimulatorError, match="choose one of"):
        FrontEndSimulator(REC500, fs=333)


def test_real_time_pacing():
    """speed 2: about 1000 samples per wall second at 500 Hz (50 frames/s x 2)."""
    sim = FrontEndSimulator(REC500, fs=500, speed=2.0, loop=True)
    try:
        with FrontEndDriver(sim.start()) as drv:
            n = 0
            t_first = None
            for b in drv.blocks(0.2):
                if b is None:
                    continue
                if t_first is None:
                    t_first = time.monotonic()
                    continue
                n += b.n
                if time.monotonic() - t_first >= 1.5:
                    break
            rate = n / (time.monotonic() - t_first)
    finally:
        sim.stop()
    assert 700 <= rate <= 1300, rate


def test_cli_errors_are_clear(capsys, tmp_path):
    assert main([str(tmp_path / "nope")]) == 2
    assert "no WFDB record" in capsys.readouterr().err
    assert main([str(REC500), "--fault", "electrode_off:XX@1"]) == 2
    assert "electrode_off needs an electrode" in capsys.readouterr().err


def test_cli_prints_path_first_and_survives_disconnect(tmp_path):
    link = tmp_path / "frontend"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "firmware_bridge.simulator_cli", str(REC500), "--speed", "4",
                             "--link", str(link), "--fault", "disconnect:2@1", "--fault", "electrode_off:V6@0",
                             "--duration", "30", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env)
    try:
        first = proc.stdout.readline().strip()
        assert first == str(link) and os.path.islink(link)
        drv = FrontEndDriver(first, backoff_initial_s=0.05, backoff_max_s=0.2)
        blocks = []
        deadline = time.monotonic() + 20
        for b in drv.blocks(0.1):
            assert time.monotonic() < deadline, drv.stats
            if b is None:
                continue
            blocks.append(b)
            if any("reconnected" in x.events for x in blocks) and b.first_index > 1000:
                break
        drv.close()
        assert drv.info.device_id == "SIM-ADS1298"
        rec = [b for b in blocks if "reconnected" in b.events]
        assert len(rec) == 1 and rec[0].gap_before == -1
        # bytes in flight when the cable is pulled are lost (as on real hardware), so <= 500 arrive
        before = sum(b.n for b in blocks[:blocks.index(rec[0])])
        assert rec[0].first_index == before and 0 < before <= 500
        lo = np.concatenate([b.lead_off for b in blocks])
        assert lo[:, -1].all() and not lo[:, :-1].any()                 # V6 off throughout, only V6
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert [e["event"].split(" at ")[0].split(":")[0] for e in events][:2] == ["cable pulled", "cable back"]
    assert events[0]["stream_time_s"] == pytest.approx(1.0, abs=0.05)
    assert not link.exists()                                            # cleaned up on exit


def test_device_answers_commands_like_firmware():
    """Talk to the simulator with raw protocol frames: errors for bad rate and rate change while streaming."""
    import serial
    sim = FrontEndSimulator(REC500, fs=500, speed=1.0)
    try:
        ser = serial.Serial(sim.start(), 460800, timeout=0.05)
        dec = FrameDecoder()

        def ask(cmd):
            ser.write(P.encode(cmd))
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline:
                for m in dec.feed(ser.read(512)):
                    if getattr(m, "token", None) == cmd.token and not isinstance(m, P.DataFrame):
                        return m
            raise AssertionError(f"no answer to {cmd}")

        info = ask(P.GetInfo(9))
        assert isinstance(info, P.DeviceInfo) and info.rate_hz == 500 and not info.streaming
        assert info.lsb_pv == 47684 and info.gain == 6 and info.vref_uv == 2_400_000
        assert ask(P.SetRate(10, 123)) == P.ErrorReply(10, P.T_SET_RATE, P.E_BAD_ARGUMENT,
                                                       "rates: 250,500,1000")
        assert ask(P.Start(11)) == P.Ack(11, P.T_START)
        assert ask(P.SetRate(12, 1000)).code == P.E_BUSY
        assert ask(P.Stop(13)) == P.Ack(13, P.T_STOP)
        assert ask(P.SetRate(14, 1000)) == P.Ack(14, P.T_SET_RATE)
        assert ask(P.GetInfo(15)).samples_per_frame == 20
        ser.close()
    finally:
        sim.stop()


def test_missing_samples_in_the_record_become_a_gap_on_the_wire(tmp_path):
    """A record's missing samples (NaN) are never sent as zeros: the frames holding them are not sent, so the
    host sees a sequence gap of exactly that size and no invented signal (issue 14 item 7, the one NaN rule)."""
    hea = (REC500.parent / (REC500.name + ".hea")).read_text().replace(REC500.name, "gap")
    x = np.fromfile(str(REC500) + ".dat", dtype="<i2").reshape(-1, 12).copy()
    x[1000:1100, 1] = -32768                  # 0.2 s of lead II missing, from 2.0 s (frames 100..104 of 10 ms)
    (tmp_path / "gap.hea").write_text(hea)
    x.astype("<i2").tofile(tmp_path / "gap.dat")
    fs, uv = load_record(tmp_path / "gap")
    assert np.isnan(uv[1000:1100, 1]).all() and not np.isnan(uv[:1000]).any()
    sim = FrontEndSimulator(tmp_path / "gap", fs=500, speed=0, loop=False)
    blocks = []
    try:
        with FrontEndDriver(sim.start()) as drv:
            deadline = time.monotonic() + 30
            for b in drv.blocks(0.2):
                if b is not None:
                    blocks.append(b)
                elif sim.finished and not sim._out:
                    break
                assert time.monotonic() < deadline
    finally:
        sim.stop()
    gaps = [(b.first_index, b.gap_before) for b in blocks if b.gap_before]
    assert gaps == [(1100, 100)], gaps                       # exactly the missing 0.2 s, nothing else
    assert sim.stats.frames_missing == 10 and sim.stats.frames_dropped == 0
    got = np.concatenate([b.leads_uv for b in blocks])
    assert np.isfinite(got).all() and len(got) == 5000 - 100


def test_cli_refuses_non_numbers_and_out_of_range_values_without_starting(capsys):
    """Malformed command-line values (NaN, inf, negative, zero) are refused before a pty is opened: exit 2,
    one line naming the value and the fix. Before, --speed inf killed the device thread and --speed nan or
    --duration nan ran forever."""
    bad = [["--speed", "nan"], ["--speed", "inf"], ["--speed", "-1"], ["--duration", "nan"], ["--duration", "0"],
           ["--duration", "-5"], ["--duration", "inf"], ["--fs", "0"], ["--fs", "333"]]
    bad += [["--fault", f] for f in ("noise:nan@1", "noise:-5@1", "noise:0@1", "mains:inf@1", "wander:1:nan@1",
                                     "flat@nan", "flat@-1", "flat@1+nan", "flat@1+-2", "drop:0@1", "corrupt:-3@1",
                                     "electrode_off:X6@1", "electrode_off@1", "disconnect:nan@1", "reset@inf",
                                     "", "@", "noise@", ":@1", "noise:1:2:3@1")]
    for args in bad:
        assert main([str(REC500), *args]) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("ecg-frontend-sim: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    print(f"\necg-frontend-sim: {len(bad)} malformed argument sets refused with exit 2")
