"""ecg.strip/1 codec and the station -> device schemas (receipt, review), on real PTB-XL strips.

The built-in records (edge_app/data/records, PTB-XL, CC BY 4.0) are stored at 1 uV per LSB, so their
measured leads are integers in microvolts: the round trip must give them back bit for bit.
"""
from __future__ import annotations

import base64
import copy
import json
import uuid
import zlib
from pathlib import Path

import numpy as np
import pytest
import wfdb

from edge_app.uplink import schemas
from edge_app.uplink.strip_codec import (LEADS, WIRE_LEADS, StripError, decode_message, decode_strip,
                                         encode_strip, samples_sha256)
from edge_app.uplink.topics import Topics
from firmware_bridge.samples import derive_leads

RECORDS = Path(__file__).resolve().parents[1] / "edge_app" / "data" / "records"
T0 = "2026-12-04T14:02:01.250Z"


def _record(name: str = "00181_hr") -> tuple[np.ndarray, float]:
    rec = wfdb.rdrecord(str(RECORDS / name))
    assert [n.lower() for n in rec.sig_name] == [n.lower() for n in LEADS]   # PTB-XL spells AVR, AVL, AVF
    return rec.p_signal * 1000.0, float(rec.fs)


def _encode(uv: np.ndarray, fs: float, **kw) -> dict:
    args = dict(result_id=uuid.uuid4().hex, run_id=str(uuid.uuid4()), start_index=12500,
                device_time_us=25_000_000, t0=T0) | kw
    return encode_strip(uv, fs, **args)


def _message(strip: dict, priority: str = "high") -> dict:
    """The envelope the uplink wraps around a strip (edge_app.uplink.service)."""
    return {"schema": "ecg.strip/1", "msg_id": uuid.uuid4().hex, "device_id": "amb-07", "priority": priority,
            "created_at": T0, "sent_at": T0, "historical": False, "seq": 7, "age_s": 0.0,
            "disclaimer": "Triage aid, not a diagnosis. A clinician must read the ECG.", "strip": strip}


def test_round_trip_is_exact_at_one_microvolt_on_a_real_record() -> None:
    uv, fs = _record()
    s = _encode(uv, fs)
    st = decode_strip(s)
    assert st.fs == 500.0 and st.n_samples == 5000 and st.leads == WIRE_LEADS
    cols = [LEADS.index(n) for n in WIRE_LEADS]
    expected = np.round(uv[:, cols]).astype(np.int32)
    assert np.array_equal(st.samples_uv, expected)           # the measured leads, bit for bit
    twelve = st.twelve_lead_uv()
    assert np.array_equal(twelve, derive_leads(expected))    # derived leads by the device's own rule
    # PTB-XL's own stored III/aVR/aVL/aVF are rounded too: within 1.5 uV of ours
    assert np.abs(twelve - uv).max() <= 1.5
    assert set(st.leads_uv()) == set(LEADS) and len(st.leads_uv()["aVF"]) == 5000
    assert (st.result_id, st.start_index, st.device_time_us, st.t0) == (s["result_id"], 12500, 25_000_000, T0)


def test_fractional_input_rounds_to_the_nearest_microvolt() -> None:
    rng = np.random.default_rng(7)
    uv = rng.normal(0, 800, (5000, 12)).cumsum(axis=0) / 50 + rng.uniform(-0.49, 0.49, (5000, 12))
    st = decode_strip(_encode(uv, 500.0))
    assert np.array_equal(st.samples_uv, np.round(uv[:, [0, 1, 6, 7, 8, 9, 10, 11]]).astype(np.int32))


def test_large_steps_switch_to_int32_and_still_round_trip() -> None:
    uv, fs = _record("00270_hr")
    uv = uv.copy()
    uv[:, 0] += 250_000.0                  # a 250 mV electrode offset: the first difference exceeds int16
    uv[100, 7] = -40_000.0                 # a pacing-like spike in V2
    s = _encode(uv, fs)
    assert s["dtype"] == "int32"
    assert np.array_equal(decode_strip(s).samples_uv[:, 0], np.round(uv[:, 0]).astype(np.int32))
    assert decode_strip(_encode(_record("00270_hr")[0], fs))  # the ordinary strip stays int16
    assert _encode(_record("00270_hr")[0], fs)["dtype"] == "int16"


def test_checksum_detects_changed_samples() -> None:
    uv, fs = _record()
    s = _encode(uv, fs)
    # re-encode slightly different samples under the original checksum: decodes fine, checksum must fail
    other = uv.copy()
    other[2500, 6] += 1.0                  # 1 uV in V1 (column 6 of 12), one sample
    forged = dict(s, data=_encode(other, fs)["data"])
    with pytest.raises(StripError, match="checksum"):
        decode_strip(forged)
    with pytest.raises(StripError, match="checksum"):
        decode_strip(dict(s, sha256="0" * 64))
    assert samples_sha256(decode_strip(s).samples_uv) == s["sha256"]


@pytest.mark.parametrize("change", [
    {"data": "not base64!!"},
    {"data": base64.b64encode(b"not zlib").decode()},
    {"n_samples": 4999},
    {"n_samples": 10 ** 9},
    {"n_samples": True},
    {"dtype": "float32"},
    {"leads": ["I", "II", "III", "V1", "V2", "V3", "V4", "V5"]},
    {"format": "ecg-edge.strip/2"},
    {"units": "mV"},
    {"fs": "fast"},
    {"start_index": None},
])
def test_malformed_strips_raise_strip_error_only(change: dict) -> None:
    uv, fs = _record()
    with pytest.raises(StripError):
        decode_strip(dict(_encode(uv, fs), **change))


def test_decompression_is_bounded() -> None:
    """A small payload that inflates to gigabytes must be refused after n_samples x leads x width bytes."""
    uv, fs = _record()
    s = _encode(uv, fs)
    bomb = zlib.compress(b"\0" * (50 * 2 ** 20), 9)           # 50 MiB of zeros in ~50 kB
    with pytest.raises(StripError, match="decompresses"):
        decode_strip(dict(s, data=base64.b64encode(bomb).decode()))


def test_missing_samples_travel_as_missing_never_as_numbers() -> None:
    """A stream gap (NaN on the device) stays a gap: NaN in arrays, null in JSON lists, checksummed."""
    uv, fs = _record()
    uv = uv.copy()
    uv[1000:1250, :] = np.nan                 # 0.5 s gap in every lead
    uv[3000:3100, 0] = np.nan                 # lead I alone: III, aVR, aVL, aVF go missing there too
    s = _encode(uv, fs)
    assert s["dtype"] == "int32"
    st = decode_strip(json.loads(json.dumps(s)))
    twelve = st.twelve_lead_uv()
    assert np.array_equal(np.isnan(twelve[:, 1]), np.isnan(uv[:, 1]))              # II: exactly the gap
    assert np.isnan(twelve[3000:3100, [0, 2, 3, 4, 5]]).all() and not np.isnan(twelve[3000:3100, 1]).any()
    ok = ~np.isnan(uv[:, 6])
    assert np.array_equal(twelve[ok, 6], np.round(uv[ok, 6]))                        # the rest exact
    assert st.n_missing == 250 * 8 + 100
    leads = st.leads_uv()
    assert leads["V1"][1000] is None and leads["V1"][999] is not None
    json.dumps(leads, allow_nan=False)                                               # valid JSON for the API
    bad = uv.copy()
    bad[10, 1] = np.inf
    with pytest.raises(StripError, match="infinite"):
        _encode(bad, fs)
    with pytest.raises(StripError):
        _encode(uv[:, :5], fs)


@pytest.mark.parametrize("use_jsonschema", [True, False])
def test_strip_message_matches_its_schema(use_jsonschema: bool) -> None:
    if use_jsonschema:
        pytest.importorskip("jsonschema")
    uv, fs = _record()
    msg = json.loads(json.dumps(_message(_encode(uv, fs))))        # exactly what crosses the wire
    schemas.validate(msg, "strip", use_jsonschema=use_jsonschema)
    assert decode_message(msg).n_samples == 5000
    for bad in ({"strip": dict(msg["strip"], sha256="xyz")}, {"strip": dict(msg["strip"], extra=1)},
                {"schema": "ecg.triage/1"}, {"priority": "urgent"}):
        with pytest.raises(schemas.SchemaError):
            schemas.validate(dict(msg, **bad), "strip", use_jsonschema=use_jsonschema)
    broken = copy.deepcopy(msg)
    del broken["strip"]["sha256"]
    with pytest.raises(StripError, match="not an ecg.strip/1"):
        decode_message(broken)


@pytest.mark.parametrize("use_jsonschema", [True, False])
def test_receipt_and_review_schemas(use_jsonschema: bool) -> None:
    if use_jsonschema:
        pytest.importorskip("jsonschema")
    receipt = {"schema": "ecg.receipt/1", "receipt_id": uuid.uuid4().hex, "device_id": "amb-07",
               "msg_ids": [uuid.uuid4().hex, uuid.uuid4().hex], "kinds": ["triage", "strip"],
               "result_id": uuid.uuid4().hex, "station": "St Mary's ED", "stored_at": T0}
    review = {"schema": "ecg.review/1", "review_id": uuid.uuid4().hex, "device_id": "amb-07",
              "result_id": uuid.uuid4().hex, "verdict": "confirmed", "text": "STEMI, cath lab activated",
              "reviewer": "Dr A. Cardio", "reviewed_at": T0, "station": "St Mary's ED"}
    schemas.validate(receipt, "receipt", use_jsonschema=use_jsonschema)
    schemas.validate(dict(receipt, result_id=None), "receipt", use_jsonschema=use_jsonschema)
    schemas.validate(review, "review", use_jsonschema=use_jsonschema)
    schemas.validate(dict(review, text=None), "review", use_jsonschema=use_jsonschema)
    for doc, name, bad in ((receipt, "receipt", {"msg_ids": ["nothex"]}), (receipt, "receipt", {"station": ""}),
                           (receipt, "receipt", {"stored_at": "yesterday"}), (review, "review", {"verdict": "maybe"}),
                           (review, "review", {"reviewer": ""}), (review, "review", {"text": "x" * 2001}),
                           (review, "review", {"schema": "ecg.review/2"})):
        with pytest.raises(schemas.SchemaError):
            schemas.validate(dict(doc, **bad), name, use_jsonschema=use_jsonschema)
    assert schemas.BY_LEAF["strip"] == "strip.json" and schemas.BY_LEAF["review"] == "review.json"
    t = Topics("ecg", "amb-07")
    assert (t.strip, t.receipt, t.review) == ("ecg/amb-07/strip", "ecg/amb-07/receipt", "ecg/amb-07/review")


def test_size_of_a_ten_second_strip_on_every_built_in_record() -> None:
    """Not a speed test: the wire size is deterministic. Printed for the report (pytest -s)."""
    rows = []
    for hea in sorted(RECORDS.glob("*_hr.hea")):
        uv, fs = _record(hea.stem)
        msg = _message(_encode(uv, fs))
        wire = len(json.dumps(msg, separators=(",", ":")).encode())
        raw_int16_8 = uv.shape[0] * 8 * 2
        rows.append((hea.stem, wire, raw_int16_8))
        assert wire < raw_int16_8 * 0.6, (hea.stem, wire)          # compact: well under the raw int16 leads
    for name, wire, raw in rows:
        print(f"strip {name}: {wire} bytes on the wire (raw 8-lead int16 {raw}, "
              f"12-lead int16 {raw * 3 // 2}); ratio {wire / raw:.2f}")


def test_decode_raises_strip_error_and_nothing_else_on_generated_strips() -> None:
    """Any field replaced by any JSON value, or the data bytes flipped: StripError or a verified Strip."""
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies
    uv, fs = _record("00387_hr")
    good = _encode(uv[:1000], fs)
    scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=30))
    values = st.one_of(scalars, st.lists(scalars, max_size=9), st.dictionaries(st.text(max_size=5), scalars,
                                                                                max_size=3))

    @hypothesis.settings(max_examples=400, deadline=None, database=None)
    @hypothesis.given(changes=st.dictionaries(st.sampled_from(sorted(good)), values, max_size=3),
                      flip=st.integers(min_value=-1, max_value=len(good["data"]) - 1))
    def check(changes: dict, flip: int) -> None:
        s = dict(good, **changes)
        if flip >= 0 and isinstance(s.get("data"), str) and flip < len(s["data"]):
            c = s["data"][flip]
            s["data"] = s["data"][:flip] + ("A" if c != "A" else "B") + s["data"][flip + 1:]
        try:
            strip = decode_strip(s)
        except StripError:
            return
        assert samples_sha256(strip.samples_uv) == s["sha256"]    # whatever decodes is what was checksummed

    check()
