"""Negative/fuzz layer for WFDB records, the input every record-reading command takes from outside.

Hundreds of malformed variants of a real PTB-XL record (tests build them: truncated/empty .dat, text or
binary file as .hea, wrong signal counts, 0 Hz and other bad rates, unknown units and formats, lead names
such as X6, missing samples, huge values, random header corruptions) go through:

- the one reader, firmware_bridge.records.read_wfdb_uv: it returns a record or raises RecordError whose message
  names the file; nothing else escapes, and reading never changes the files;
- `ecg-edge replay` (one process, every variant plus two good records): no traceback, every bad record named
  on stderr, exit 2, and the good records are still analysed (nothing lost);
- `ecg-edge measure` and the front-end simulator (in-process): MeasureError / SimulatorError only;
- `ecg-frontend-sim` and `ecg-edge demo` as users run them, on the cases issue 14 lists.

Each test prints how many cases it tried.
"""
from __future__ import annotations

import dataclasses
import hashlib
import random
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from firmware_bridge.leads import CHANNELS, LEADS
from firmware_bridge.records import RecordError, read_wfdb_uv
from fuzz_text import mutate_text

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT / "edge_app" / "data" / "records"
SRC = "00181_lr"                       # real PTB-XL record, 12 x 1000 samples at 100 Hz, format 16
HEA = (RECORDS / f"{SRC}.hea").read_text()
DAT = (RECORDS / f"{SRC}.dat").read_bytes()
REC_LINE, SIG_LINES = HEA.splitlines()[0], HEA.splitlines()[1:]


@dataclass
class Variant:
    name: str
    hea: str | bytes | None            # None: no header file
    dat: bytes | None                  # None: no data file
    readable: bool | None = None       # True: must read; False: must be refused; None: either, cleanly


def _hea(rec_line: str = REC_LINE, sig: list[str] | None = None, name: str | None = None) -> str:
    lines = SIG_LINES if sig is None else sig
    return "\n".join([rec_line, *lines]) + "\n"


def _sig_field(i: int, field: int, value: str) -> list[str]:
    """Signal lines with field `field` of signal i (0-based; all signals if i < 0) replaced."""
    out = []
    for k, line in enumerate(SIG_LINES):
        f = line.split()
        if i < 0 or k == i:
            f[field] = value
        out.append(" ".join(f))
    return out


def _samples(mutate) -> bytes:
    x = np.frombuffer(DAT, dtype="<i2").reshape(-1, 12).copy()
    mutate(x)
    return x.astype("<i2").tobytes()


def variants(seed: int = 14) -> list[Variant]:
    v: list[Variant] = [Variant("good", HEA, DAT, True)]
    # the data file
    for n in (0, 1, 2, 23, 24, 2400, len(DAT) // 2, len(DAT) - 1):
        v.append(Variant(f"dat_truncated_{n}", HEA, DAT[:n], False))
    v.append(Variant("dat_missing", HEA, None, False))
    v.append(Variant("dat_longer_than_header", HEA, DAT + DAT[:240], True))
    # the header file
    v += [Variant("hea_missing", None, DAT, False),
          Variant("hea_empty", "", DAT, False),
          Variant("hea_only_comments", "# nothing here\n#\n", DAT, False),
          Variant("hea_is_text", (ROOT / "edge_app" / "data" / "records" / "README.md").read_text(), DAT, False),
          Variant("hea_is_binary", DAT[:300], DAT, False),
          Variant("hea_latin1", _hea().encode() + "# caf\xe9\n".encode("latin-1"), DAT, True),
          Variant("hea_multisegment", _hea(f"{SRC}/2 12 100 1000"), DAT, False)]
    # the record line
    for nsig in ("13", "20", "0", "-1", "twelve", "999999"):
        v.append(Variant(f"nsig_{nsig}", _hea(f"{SRC} {nsig} 100 1000"), DAT, False))
    v.append(Variant("nsig_11_of_12_lines", _hea(f"{SRC} 11 100 1000"), DAT, False))
    v.append(Variant("fewer_signal_lines", _hea(sig=SIG_LINES[:7]), DAT, False))
    for fs in ("0", "-500", "abc", "nan", "inf", "0.0"):
        v.append(Variant(f"fs_{fs}", _hea(f"{SRC} 12 {fs} 1000"), DAT, False))
    for fs in ("1e6", "0.5", "360", "100/1(0)"):
        v.append(Variant(f"fs_odd_{fs}", _hea(f"{SRC} 12 {fs} 1000"), DAT, None))
    v.append(Variant("fs_absent", _hea(f"{SRC} 12"), DAT, True))
    for ns in ("0", "1001", "1000000", "x", "-5"):
        v.append(Variant(f"nsamp_{ns}", _hea(f"{SRC} 12 100 {ns}"), DAT, None if ns == "0" else False))
    v.append(Variant("nsamp_1", _hea(f"{SRC} 12 100 1"), DAT, True))
    # signal lines
    for fmt in ("999", "abc", "8", "80", "212", "16x2", "24", "32"):
        v.append(Variant(f"fmt_{fmt}", _hea(sig=_sig_field(-1, 1, fmt)), DAT, None))
    for gain in ("0(0)/mV", "-1000(0)/mV", "abc/mV", "1e-30(0)/mV", "1e30(0)/mV", "1000.0(0)", "1000(x)/mV",
                 "inf(0)/mV", "nan(0)/mV"):
        v.append(Variant(f"gain_{gain}", _hea(sig=_sig_field(-1, 2, gain)), DAT, None))
    for unit in ("mmHg", "uV", "V", "nV", "µV", "MV", "%"):
        v.append(Variant(f"unit_{unit}", _hea(sig=_sig_field(3, 2, f"1000.0(0)/{unit}")), DAT,
                         unit in ("uV", "V", "nV", "µV") or None))
    v.append(Variant("datfile_other_name", _hea(sig=_sig_field(-1, 0, "elsewhere.dat")), DAT, False))
    v.append(Variant("datfile_parent_dir", _hea(sig=_sig_field(-1, 0, "..")), DAT, False))
    v.append(Variant("signal_line_one_field", _hea(sig=["00181_lr.dat"] + SIG_LINES[1:]), DAT, False))
    # lead names (the file reads; picking the 12 leads must refuse what is not a standard lead)
    for i, name in ((11, "X6"), (11, "V7"), (0, "II"), (3, "avr"), (6, "v1"), (1, "MLII"), (5, "Lead-aVF")):
        v.append(Variant(f"lead_{i}_{name}", _hea(sig=_sig_field(i, 8, name)), DAT, True))
    # the samples themselves
    v.append(Variant("all_missing", HEA, _samples(lambda x: x.fill(-32768)), True))
    v.append(Variant("gap_in_II_and_V2", HEA, _samples(lambda x: (x.__setitem__((slice(100, 140), 1), -32768),
                                                               x.__setitem__((slice(300, 400), 7), -32768))), True))
    v.append(Variant("huge_values", HEA, _samples(lambda x: x.fill(32767)), True))
    v.append(Variant("alternating_rails", HEA, _samples(lambda x: x.__setitem__(slice(None), np.where(
        np.arange(x.size).reshape(x.shape) % 2, 32767, -32767))), True))
    # random corruptions of the header text (characters replaced, deleted, duplicated, lines dropped)
    rng = random.Random(seed)
    alphabet = "0123456789 ./()-+xX#\n\tabcmVu\x00é"
    for k in range(160):
        text = mutate_text(HEA, rng, alphabet, 6)
        if rng.random() < 0.2:
            lines = text.splitlines()
            del lines[rng.randrange(len(lines))]
            text = "\n".join(lines) + "\n"
        v.append(Variant(f"random_header_{k}", text, DAT, None))
    # random corruptions of the data (truncation at random points, random bytes)
    for k in range(40):
        n = rng.randrange(len(DAT))
        dat = DAT[:n] if k % 2 else bytes(rng.getrandbits(8) for _ in range(len(DAT)))
        v.append(Variant(f"random_data_{k}", HEA, dat, None if k % 2 == 0 else (n >= len(DAT))))
    return v


def write_variant(v: Variant, where: Path) -> Path:
    d = where / v.name
    d.mkdir(parents=True)
    if v.hea is not None:
        (d / f"{SRC}.hea").write_bytes(v.hea.encode() if isinstance(v.hea, str) else v.hea)
    if v.dat is not None:
        (d / f"{SRC}.dat").write_bytes(v.dat)
    return d / SRC


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> list[tuple[Variant, Path]]:
    where = tmp_path_factory.mktemp("wfdb_fuzz")
    return [(v, write_variant(v, where)) for v in variants()]


def test_reader_returns_a_record_or_a_record_error_naming_the_file(corpus):
    refused = read = 0
    for v, path in corpus:
        before = _digest(path.parent)
        try:
            rec = read_wfdb_uv(path)
        except RecordError as e:
            refused += 1
            msg = str(e)
            assert v.readable is not True, f"{v.name}: good record refused: {msg}"
            assert str(path.parent) in msg, f"{v.name}: message does not name the file: {msg}"
            assert "Traceback" not in msg and len(msg) > 40, f"{v.name}: {msg}"
        except Exception as e:  # noqa: BLE001 - exactly what the test is looking for
            pytest.fail(f"{v.name}: {type(e).__name__} escaped the reader: {e}")
        else:
            read += 1
            assert v.readable is not False, f"{v.name}: a broken record was accepted"
            assert rec.signals_uv.dtype == np.float64 and rec.signals_uv.ndim == 2
            assert rec.signals_uv.shape[1] == len(rec.sig_names) and rec.fs > 0
            assert not np.isinf(rec.signals_uv).any(), v.name
            try:
                x = rec.leads_uv(LEADS)
                assert x.shape == (rec.n_samples, 12)
            except RecordError as e:
                assert str(path.parent) in str(e)
        assert _digest(path.parent) == before, f"{v.name}: reading changed the files"
    print(f"\nWFDB fuzz: {len(corpus)} record variants tried through read_wfdb_uv: {read} read, "
          f"{refused} refused with a RecordError naming the file; 0 other exceptions")
    assert read >= 20 and refused >= 60


def test_reader_rules_units_missing_samples_and_lead_names(corpus):
    by = {v.name: p for v, p in corpus}
    good = read_wfdb_uv(by["good"])
    # units: the header's unit decides; uV is 1000x smaller than mV for the same stored numbers
    assert np.allclose(read_wfdb_uv(by["unit_uV"]).signals_uv[:, 3] * 1000.0, good.signals_uv[:, 3])
    assert np.allclose(read_wfdb_uv(by["unit_V"]).signals_uv[:, 3], good.signals_uv[:, 3] * 1000.0)
    with pytest.raises(RecordError, match="mmHg.*not a voltage"):
        read_wfdb_uv(by["unit_mmHg"])
    # missing samples are NaN, exactly where the record says, never zero
    gap = read_wfdb_uv(by["gap_in_II_and_V2"])
    assert np.isnan(gap.signals_uv[100:140, 1]).all() and np.isnan(gap.signals_uv[300:400, 7]).all()
    assert gap.missing_samples == 40 + 100
    assert np.array_equal(gap.signals_uv[:100], good.signals_uv[:100])
    assert np.isnan(read_wfdb_uv(by["all_missing"]).signals_uv).all()
    # lead names: exact synonyms only; X6 is not V6
    with pytest.raises(RecordError, match="lacks lead.*V6.*'X6'.*not standard lead names"):
        read_wfdb_uv(by["lead_11_X6"]).leads_uv(LEADS)
    with pytest.raises(RecordError, match="II appears 2 times"):
        read_wfdb_uv(by["lead_0_II"]).leads_uv(LEADS)
    assert np.array_equal(read_wfdb_uv(by["lead_3_avr"]).leads_uv(LEADS), good.leads_uv(LEADS))
    assert read_wfdb_uv(by["lead_11_X6"]).leads_uv(CHANNELS[:7]).shape == (1000, 7)
    with pytest.raises(RecordError, match="is a directory.*00062_hr"):
        read_wfdb_uv(RECORDS)
    # clear messages for the cases issue 14 lists
    for name, words in [("dat_truncated_2400", "truncated.*100 whole samples"), ("dat_truncated_0", "empty"),
                        ("hea_is_text", "not a WFDB record line"), ("hea_is_binary", "binary file"),
                        ("nsig_13", "declares 13 signals but has 12 signal line"), ("fs_0", "above 0 Hz"),
                        ("dat_missing", "missing")]:
        with pytest.raises(RecordError, match=words):
            read_wfdb_uv(by[name])


def test_replay_cli_names_every_bad_record_and_still_analyses_the_good_ones(corpus, tmp_path):
    """One `ecg-edge replay` over every variant plus two good records, as a user would run it."""
    good = [RECORDS / "00181_hr", RECORDS / "00062_hr"]
    bad = [p for v, p in corpus if v.readable is False]
    r = subprocess.run([sys.executable, "-m", "edge_app.cli", "replay", *map(str, bad[:60]), str(good[0]),
                        *map(str, bad[60:]), str(good[1]), "--json"], cwd=str(ROOT), capture_output=True,
                       text=True, timeout=600)
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    assert r.returncode == 2
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("ecg-edge replay: ")]
    assert len(errors) == len(bad), r.stderr[-3000:]
    for p in bad:
        assert any(str(p.parent) in ln for ln in errors), f"{p} not named"
    analysed = {line.split('"record": "')[1].split('"')[0] for line in r.stdout.splitlines()}
    assert analysed == {str(g) for g in good}                 # nothing lost: the good records were analysed
    print(f"\nreplay fuzz: {len(bad)} broken records + 2 good in one run: {len(errors)} clear errors, "
          f"good records analysed, exit {r.returncode}, no traceback")


def test_measure_and_simulator_refuse_cleanly_in_process(corpus, capsys):
    from edge_app.signal_chain.measure_cli import run as measure
    from firmware_bridge.simulator import FrontEndSimulator, SimulatorError
    codes = {0: 0, 2: 0}
    sim_ok = sim_refused = 0
    for v, path in corpus:
        try:
            rc = measure([str(path), "--json"])
        except Exception as e:  # noqa: BLE001
            pytest.fail(f"measure {v.name}: {type(e).__name__}: {e}")
        assert rc in codes, f"measure {v.name}: exit {rc}"
        codes[rc] += 1
        err = capsys.readouterr().err
        assert "Traceback" not in err
        try:
            FrontEndSimulator(path, fs=500, speed=0)
            sim_ok += 1
        except SimulatorError as e:
            sim_refused += 1
            assert "Traceback" not in str(e)
        except Exception as e:  # noqa: BLE001
            pytest.fail(f"simulator {v.name}: {type(e).__name__}: {e}")
    print(f"\nmeasure/simulator fuzz: {len(corpus)} variants each: measure exit 0 x{codes[0]}, exit 2 x{codes[2]}; "
          f"simulator accepted {sim_ok}, refused {sim_refused} with SimulatorError")
    assert codes[2] >= 60 and sim_refused >= 60


@pytest.mark.parametrize("case,words", [
    ("dat_truncated_2400", "truncated"), ("hea_is_text", "not a WFDB record line"),
    ("nsig_13", "declares 13 signals"), ("dat_truncated_0", "empty"), ("fs_0", "above 0 Hz"),
    ("lead_11_X6", "X6")])
def test_frontend_sim_command_on_the_records_issue_14_lists(corpus, case, words):
    path = dict((v.name, p) for v, p in corpus)[case]
    r = subprocess.run([sys.executable, "-m", "firmware_bridge.simulator_cli", str(path), "--duration", "1"],
                       cwd=str(ROOT), capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stdout == "", r.stderr
    assert words in r.stderr and str(path.parent) in r.stderr


def test_demo_accepts_every_builtin_name_and_lists_them_for_an_unknown_one():
    from edge_app.cli.builtin import builtin_names, resolve_record
    names = builtin_names()
    assert "00181_hr" in names and len(names) == 12
    for n in names:
        assert Path(str(resolve_record(n)) + ".hea").is_file()
        read_wfdb_uv(resolve_record(n)).leads_uv(CHANNELS)        # what the simulator will read
    r = subprocess.run([sys.executable, "-m", "edge_app.cli", "demo", "--record", "00181_hx", "--duration", "1"],
                       cwd=str(ROOT), capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "00181_hr, 00181_lr" in r.stderr
    print(f"\nbuilt-in records resolvable by name: {len(names)}")


def test_demo_runs_on_a_builtin_name_other_than_the_default(tmp_path):
    r = subprocess.run([sys.executable, "-m", "edge_app.cli", "demo", "--record", "00062_hr", "--duration", "4",
                        "--speed", "4"], cwd=str(ROOT), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "00062_hr" in r.stdout and "window 0.0-10.0 s" in r.stdout and "Traceback" not in r.stderr
    assert "XNNPACK" not in r.stderr


def test_numpy_fast_path_equals_the_wfdb_library_bit_for_bit(corpus):
    """Format-16 records are read with numpy alone; the wfdb library reads everything else. On every built-in
    record and every fuzz variant the fast path takes, both give exactly the same record."""
    from firmware_bridge.records import (_check_data_files, _check_header, _header_units, _read_fmt16,
                                         _read_with_wfdb, _to_microvolts, record_base)
    paths = [RECORDS / n[:-4] for n in sorted(p.name for p in RECORDS.glob("*.hea"))] + [p for _, p in corpus]
    compared = 0
    for path in paths:
        base = record_base(path)
        try:
            h = _check_header(base)
            _check_data_files(base, h)
            fast = _read_fmt16(base, h)
        except RecordError:
            continue
        if fast is None or fast.digital.shape[0] == 0:
            continue
        try:
            slow = _read_with_wfdb(base)
        except RecordError:
            pytest.fail(f"{path}: numpy path read a record the wfdb library refuses")
        units = _header_units(h)                     # read_wfdb_uv takes units from the header (wfdb: µV -> V)
        slow = dataclasses.replace(slow, units=units) if units else slow
        assert np.array_equal(fast.digital, slow.digital), path
        assert (fast.fmt, fast.gain, fast.baseline, fast.units, fast.fs) == \
            (slow.fmt, slow.gain, slow.baseline, slow.units, slow.fs), path
        assert [n.strip() for n in fast.names] == [n.strip() for n in slow.names], path
        try:
            a = _to_microvolts(base, fast).signals_uv
        except RecordError as e:
            with pytest.raises(RecordError, match=re.escape(str(e))):
                _to_microvolts(base, slow)
            continue
        b = _to_microvolts(base, slow).signals_uv
        assert np.array_equal(a, b, equal_nan=True) and a.tobytes() == b.tobytes(), path
        compared += 1
    print(f"\nfmt-16 numpy reader vs wfdb library: {compared} records identical bit for bit")
    assert compared >= 40


def test_reading_a_format_16_record_does_not_import_wfdb():
    code = ("import sys; from firmware_bridge.records import read_wfdb_uv; "
            "read_wfdb_uv('edge_app/data/records/00181_hr'); print('wfdb' in sys.modules, 'pandas' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], cwd=str(ROOT), capture_output=True, text=True, timeout=60)
    assert r.stdout.split() == ["False", "False"], r.stdout + r.stderr


def test_other_formats_go_through_wfdb_and_equal_its_physical_signal():
    """Format-212 MIT-BIH fixtures take the wfdb path: the microvolts equal wfdb's own p_signal x 1000."""
    import wfdb
    paths = sorted((ROOT / "tests" / "fixtures").rglob("*.hea"))
    compared = 0
    for hea in paths:
        if " 212 " not in hea.read_text():
            continue
        base = hea.with_suffix("")
        got = read_wfdb_uv(base).signals_uv
        want = wfdb.rdrecord(str(base)).p_signal * 1000.0
        assert np.array_equal(got, want, equal_nan=True), base
        compared += 1
    print(f"\nformat-212 records via wfdb: {compared} equal to wfdb.rdrecord(...).p_signal * 1000")
    assert compared >= 2
