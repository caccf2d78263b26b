"""The reference firmware on an emulated Cortex-M3 (QEMU mps2-an385) talking to the host's real driver.

Built here from source with arm-none-eabi-gcc (firmware_bridge/firmware/Makefile); QEMU exposes the
board's UART0 (host link) and UART1 (bench fixture: unplug/replug electrodes of the emulated ADS1298) as
pseudo-terminals. Checked end to end: the wire protocol's commands and errors, every sample against the
real PTB-XL excerpt built into the firmware, lead-off bits, and the daemon's analysis of the firmware's
stream against its analysis of the pty simulator replaying the same record.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import serial

from firmware_bridge import protocol as P
from firmware_bridge.driver import FrontEndDriver
from firmware_bridge.frame_decoder import FrameDecoder
from firmware_bridge.samples import ELECTRODES, derive_leads

ROOT = Path(__file__).resolve().parents[1]
FW = ROOT / "firmware_bridge" / "firmware"
RECORD = ROOT / "edge_app" / "data" / "records" / "00181_hr"     # the excerpt's source (PTB-XL ecg_id 181)
LSB_UV = 47684 / 1e6
TOOLS = ("arm-none-eabi-gcc", "qemu-system-arm", "make")

pytestmark = pytest.mark.timeout(240)


def _need_tools() -> None:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        msg = f"missing {', '.join(missing)} (bash tools/install.sh --dev installs them)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)


@pytest.fixture(scope="module")
def firmware(tmp_path_factory) -> Path:
    _need_tools()
    build = tmp_path_factory.mktemp("fw-an385")
    r = subprocess.run(["make", "-C", str(FW), f"BUILD={build}"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "warning" not in r.stderr.lower(), r.stderr
    return build / "ecg_frontend_an385.elf"


@pytest.fixture(scope="module")
def excerpt_counts() -> np.ndarray:
    """(5000, 8) int64 counts the emulated ADS1298 must produce: the record quantised as the simulator does."""
    from firmware_bridge.simulator import load_record
    fs, uv = load_record(RECORD)
    assert fs == 500
    return np.clip(np.rint(uv[:5000] / LSB_UV), P.COUNT_MIN, P.COUNT_MAX).astype(np.int64)


class Board:
    """qemu-system-arm running the firmware; .host and .fixture are the pty paths of UART0 / UART1."""

    def __init__(self, elf: Path):
        self.proc = subprocess.Popen(
            ["qemu-system-arm", "-M", "mps2-an385", "-display", "none", "-monitor", "none",
             "-serial", "pty", "-serial", "pty", "-kernel", str(elf)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        ptys: list[str] = []
        t_end = time.monotonic() + 20
        while len(ptys) < 2 and time.monotonic() < t_end:
            line = self.proc.stdout.readline()
            if not line:
                break
            m = re.search(r"redirected to (/dev/pts/\d+)", line)
            if m:
                ptys.append(m.group(1))
        self._keep: list[int] = []
        if len(ptys) < 2:
            self.close()
            raise AssertionError(f"QEMU did not expose two ptys (got {ptys})")
        self.host, self.fixture = ptys
        # Hold each pty open (never read) as a UART's device node stays: QEMU notices a connected pty only
        # on its 1 s poll and forgets it whenever the last opener closes, e.g. between driver reconnects.
        self._keep = [os.open(p, os.O_RDWR | os.O_NOCTTY) for p in ptys]

    def close(self) -> None:
        for fd in self._keep:
            os.close(fd)
        self._keep = []
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def board(firmware):
    b = Board(firmware)
    yield b
    b.close()


class Link:
    """The host side of the wire, by hand: send a command, collect what comes back."""

    def __init__(self, path: str):
        self.ser = serial.Serial(path, 460800, timeout=0.05)
        self.dec = FrameDecoder()
        self.token = 0
        self.pending: list[P.Message] = []                        # arrived after the awaited answer

    def _read(self) -> list[P.Message]:
        msgs, self.pending = self.pending, []
        return msgs + self.dec.feed(self.ser.read(4096))

    def collect(self, seconds: float) -> list[P.Message]:
        msgs: list[P.Message] = []
        t_end = time.monotonic() + seconds
        while time.monotonic() < t_end:
            msgs += self._read()
        return msgs

    def command(self, make, *args, want=(P.Ack, P.ErrorReply, P.DeviceInfo), timeout: float = 5.0):
        """Send make(token, *args); return (answer, DATA frames that arrived before it)."""
        self.token = self.token % 255 + 1
        self.ser.write(b"\x00" + P.encode(make(self.token, *args)))
        frames: list[P.DataFrame] = []
        t_end = time.monotonic() + timeout
        while time.monotonic() < t_end:
            msgs = self._read()
            for i, m in enumerate(msgs):
                if isinstance(m, want) and getattr(m, "token", None) == self.token:
                    self.pending = msgs[i + 1:]
                    return m, frames
                if isinstance(m, P.DataFrame):
                    frames.append(m)
        raise AssertionError(f"no answer to {make.__name__} within {timeout} s")

    def frames(self, n: int, timeout: float = 10.0) -> list[P.DataFrame]:
        out: list[P.DataFrame] = []
        t_end = time.monotonic() + timeout
        while len(out) < n and time.monotonic() < t_end:
            out += [m for m in self._read() if isinstance(m, P.DataFrame)]
        assert len(out) >= n, f"{len(out)} DATA frames in {timeout} s, wanted {n}"
        return out

    def close(self) -> None:
        self.ser.close()


def _fixture(port: serial.Serial, line: str) -> str:
    port.write(line.encode() + b"\n")
    return port.readline().decode().strip()


def test_excerpt_source_is_the_ptbxl_record():
    """ecg_excerpt.c is what make_excerpt.py renders from the record (regenerate it if this fails)."""
    sys.path.insert(0, str(FW))
    try:
        import make_excerpt
    finally:
        sys.path.remove(str(FW))
    fs, uv = make_excerpt.excerpt_uv(RECORD, 10.0)
    assert (fs, uv.shape) == (500, (5000, 8))
    assert (FW / "ecg_excerpt.c").read_text() == make_excerpt.render(RECORD, fs, uv)


def test_commands_rates_and_samples(board, excerpt_counts):
    link = Link(board.host)
    try:
        link.command(P.Stop)                                       # whatever state: quiet
        info, _ = link.command(P.GetInfo)
        assert isinstance(info, P.DeviceInfo)
        assert info.device_id == "QEMU-AN385-0001" and info.protocol_version == 1
        assert info.supported_rates == (250, 500, 1000) and info.rate_hz == 500 and not info.streaming
        assert info.lsb_pv == 47684 and info.channel_map == ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")
        assert info.lead_off_electrodes == ELECTRODES

        bad, _ = link.command(P.SetRate, 333)
        assert isinstance(bad, P.ErrorReply) and bad.code == P.E_BAD_ARGUMENT and bad.command == P.T_SET_RATE
        ok, _ = link.command(P.SetRate, 1000)
        assert ok == P.Ack(link.token, P.T_SET_RATE)
        info, _ = link.command(P.GetInfo)
        assert (info.rate_hz, info.samples_per_frame) == (1000, 20)

        ack, _ = link.command(P.Start)
        assert ack == P.Ack(link.token, P.T_START)
        frames = link.frames(30)
        # first START since boot: the emulated ADC starts at the excerpt's first sample, held for 1000 Hz
        assert [f.seq for f in frames] == list(range(len(frames)))
        assert all(f.n == 20 for f in frames)
        assert np.all(np.diff([f.timestamp_us for f in frames]) == 20_000)
        counts = np.concatenate([f.counts for f in frames]).astype(np.int64)
        assert np.array_equal(counts, excerpt_counts[np.arange(counts.shape[0]) // 2])
        assert not np.concatenate([f.status for f in frames]).any()

        busy, _ = link.command(P.SetRate, 250)
        assert isinstance(busy, P.ErrorReply) and busy.code == P.E_BUSY
        again, before = link.command(P.Start)                     # START while streaming: no restart
        assert isinstance(again, P.Ack)
        assert isinstance(link.command(P.Stop)[0], P.Ack)
        assert not [m for m in link.collect(0.3) if isinstance(m, P.DataFrame)], "DATA after STOP"

        assert isinstance(link.command(P.SetRate, 250)[0], P.Ack)
        assert isinstance(link.command(P.Start)[0], P.Ack)
        frames = link.frames(10)
        assert frames[0].seq == 0 and all(f.n == 5 for f in frames)   # seq restarts after STOP/START
        assert np.all(np.diff([f.timestamp_us for f in frames]) == 20_000)
        c = np.concatenate([f.counts for f in frames]).astype(np.int64)
        # the patient's signal went on where it stopped; at 250 Hz every other excerpt sample
        starts = np.flatnonzero((excerpt_counts == c[0]).all(axis=1))      # a value can repeat: try each
        steps = 2 * np.arange(c.shape[0])
        assert any(np.array_equal(c, excerpt_counts[(s0 + steps) % excerpt_counts.shape[0]]) for s0 in starts)
        assert isinstance(link.command(P.Stop)[0], P.Ack)
    finally:
        link.close()


def test_driver_reads_the_excerpt_exactly_with_lead_off(board, excerpt_counts):
    """FrontEndDriver at 500 Hz: every sample equals the record (through the wrap), then V2 and RA unplugged."""
    fixture = serial.Serial(board.fixture, 115200, timeout=5)        # kept open: QEMU sees it connected
    drv = FrontEndDriver(board.host, rate_hz=500)
    blocks = []
    n = 0
    replies = {}
    t_end = time.monotonic() + 60                                  # ~13 s of signal at real time
    try:
        for b in drv.blocks(idle_timeout_s=0.5):
            assert time.monotonic() < t_end, f"stream too slow or absent ({drv.status}, {drv.last_error})"
            if b is None:
                continue
            blocks.append(b)
            n += b.n
            if n >= 5500 and "off" not in replies:                   # past the excerpt's end: wrapped
                replies["off"] = _fixture(fixture, "off V2")
                replies["off_ra"] = _fixture(fixture, "off RA")
                mark = n
            if "off" in replies and "on" not in replies and n >= mark + 500:
                replies["on"] = _fixture(fixture, "on all")
                replies["bad"] = _fixture(fixture, "unplug everything")
                mark2 = n
            if "on" in replies and n >= mark2 + 500:
                break
    finally:
        drv.close()
        fixture.close()
    assert replies["off"] == "ok 010" and replies["off_ra"] == "ok 011" and replies["on"] == "ok 000"
    assert replies["bad"].startswith("error:")
    assert all(b.gap_before == 0 and not b.events and b.fs == 500 for b in blocks)
    assert [b.first_index for b in blocks] == list(np.cumsum([0] + [b.n for b in blocks[:-1]]))
    leads = np.concatenate([b.leads_uv for b in blocks])
    lead_off = np.concatenate([b.lead_off for b in blocks])
    idx = np.arange(leads.shape[0]) % 5000
    clean = ~lead_off.any(axis=1)
    assert clean[:5500].all() and clean[-300:].all()
    expected = derive_leads(excerpt_counts[idx].astype(np.float64) * LSB_UV)
    assert np.array_equal(leads[clean], expected[clean])          # bit-exact through the whole chain
    from firmware_bridge.simulator import load_record
    _, uv = load_record(RECORD)
    wire = [0, 1, 6, 7, 8, 9, 10, 11]                              # I, II, V1..V6 among the 12 leads
    assert np.max(np.abs(leads[clean][:, wire] - uv[idx[clean]])) <= LSB_UV / 2 + 1e-9
    off = lead_off[~clean]
    v2, ra = ELECTRODES.index("V2"), ELECTRODES.index("RA")
    assert off[:, v2].all() and off[:, ra].any()
    assert set(np.flatnonzero(off.any(axis=0))) == {v2, ra}
    railed = leads[~clean & lead_off[:, v2]][:, 7]                 # V2 floats to the rail
    assert np.all(railed == P.COUNT_MAX * LSB_UV)


def _daemon(tmp: Path, port: str) -> subprocess.Popen:
    (tmp / "config.toml").write_text(f"""
[device]
id = "h16-target"
[frontend]
port = "{port}"
[windows]
stride_s = 5
[storage]
state_dir = "{tmp / 'state'}"
[display]
enabled = false
[mqtt]
enabled = false
""")
    env = dict(os.environ)
    env.pop("NOTIFY_SOCKET", None)
    log = open(tmp / "daemon.log", "wb")
    return subprocess.Popen([sys.executable, "-m", "edge_app.cli", "run", "--config", str(tmp / "config.toml")],
                            cwd=str(ROOT), stdout=log, stderr=subprocess.STDOUT, env=env)


def _first_result(proc: subprocess.Popen, tmp: Path, timeout: float = 90) -> dict:
    from edge_app.storage import ResultStore
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        if proc.poll() is not None:
            raise AssertionError(f"daemon exited {proc.returncode}: {(tmp / 'daemon.log').read_text()[-3000:]}")
        if list((tmp / "state").rglob("*.json")) and (tmp / "state" / "store").exists():
            store = ResultStore(tmp / "state")
            try:
                res = store.latest(10)
            finally:
                store.close()
            if res:
                return min(res, key=lambda r: r["window"]["start_index"])
        time.sleep(0.5)
    raise AssertionError("no result: " + (tmp / "daemon.log").read_text()[-3000:])


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_daemon_analysis_of_firmware_equals_simulator(board, tmp_path):
    """The real daemon on the emulated MCU's UART and on the pty simulator (same record, same start):
    the same first 10 s window, so the same probabilities, triage, heart rate and stored strip."""
    from firmware_bridge.simulator import FrontEndSimulator
    (tmp_path / "mcu").mkdir()
    (tmp_path / "sim").mkdir()
    sim = FrontEndSimulator(str(RECORD), fs=500, speed=1.0, loop=True, link_path=str(tmp_path / "sim" / "frontend"))
    sim.start()
    procs = [_daemon(tmp_path / "mcu", board.host), _daemon(tmp_path / "sim", str(tmp_path / "sim" / "frontend"))]
    try:
        mcu = _first_result(procs[0], tmp_path / "mcu")
        ref = _first_result(procs[1], tmp_path / "sim")
    finally:
        for p in procs:
            _stop(p)
        sim.stop()
    assert mcu["window"]["start_index"] == ref["window"]["start_index"] == 0
    assert mcu["window"]["fs"] == ref["window"]["fs"] == 500
    assert mcu["probabilities"] is not None
    assert mcu["probabilities"] == ref["probabilities"]
    assert (mcu["triage_level"], mcu["heart_rate_bpm"], mcu["quality"]["verdict"]) == \
        (ref["triage_level"], ref["heart_rate_bpm"], ref["quality"]["verdict"])
    assert mcu["triage_level"] == "high"                           # PTB-XL 181: anterior MI
    import wfdb
    strips = []
    for name, r in (("mcu", mcu), ("sim", ref)):
        hea = next((tmp_path / name / "state").rglob(f"{r['id']}.hea"))
        strips.append(wfdb.rdrecord(str(hea.with_suffix("")), physical=False).d_signal)
    assert np.array_equal(strips[0], strips[1])
