"""LiveHub, DisplayServer (without a daemon) and the PNG renderer, on a real PTB-XL record.

The full path (daemon + simulator + Chromium) is tests/test_display_e2e.py; these tests pin down the
pieces: decimation and gaps, lead-off blanking, writes through the real command router, SSE, PNG pixels.
"""
from __future__ import annotations

import json
import re
import socket
import struct
import threading
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import pytest
import wfdb

from edge_app.display import DisplayServer, LiveHub
from device_helpers import real_device
from edge_app.command_router import CommandRouter
from edge_app.display.hub import DisplayInputError
from edge_app.sinks.display import DisplaySink
from edge_app.display.render_png import encode_png, render_result_png, render_result_rgb
from firmware_bridge.leads import ELECTRODES, LEAD_ELECTRODES, LEADS

RECORDS = Path(__file__).resolve().parents[1] / "edge_app" / "data" / "records"


@pytest.fixture(scope="module")
def record_uv() -> np.ndarray:
    """00181_hr (PTB-XL, 500 Hz, 10 s) in microvolts, LEADS order."""
    rec = wfdb.rdrecord(str(RECORDS / "00181_hr"))
    names = [n.upper() for n in rec.sig_name]
    return rec.p_signal[:, [names.index(lead.upper()) for lead in LEADS]] * 1000.0


def feed(hub: LiveHub, x: np.ndarray, fs: int = 500, block: int = 10, start: int = 0,
         lead_off: np.ndarray | None = None) -> int:
    """Push x in driver-sized blocks (fs/50 samples, like the wire's DATA frames)."""
    for i in range(0, x.shape[0], block):
        lo = None if lead_off is None else lead_off[i:i + block]
        hub.push_samples(start + i, fs, x[i:i + block], lo)
    return start + x.shape[0]


def strip_array(d: dict) -> np.ndarray:
    return np.array([[np.nan if v is None else v for v in row] for row in d["data"]], dtype=float)


@pytest.fixture()
def device(tmp_path):
    """The device's real operations (state directory, audit, alarm latch) behind the page, no data path."""
    dev = real_device(tmp_path)
    hub = LiveHub(commands=CommandRouter(dev.operations, "http"))
    DisplaySink(hub, dev.state.store).subscribe(dev.bus)      # as the daemon wires it: alarms, patient -> page
    yield dev, hub
    dev.close()


# ---------------------------------------------------------------------------------------- hub
def test_decimation_and_ring_follow_the_record(record_uv):
    hub = LiveHub(display_fs=125, ring_seconds=12)
    feed(hub, record_uv)
    s = hub.live_strip(None)
    assert s["fs"] == 125 and s["end"] == 1250 and s["start"] == 0
    y = strip_array(s)
    assert y.shape == (1250, 12) and np.isfinite(y).all()
    # Same as an independent boxcar + first-order 0.5 Hz high-pass of the record.
    dec = record_uv.reshape(1250, 4, 12).mean(axis=1)
    r = np.exp(-2 * np.pi * 0.5 / 125)
    ref = np.zeros_like(dec)
    for i in range(1, dec.shape[0]):
        ref[i] = dec[i] - dec[i - 1] + r * ref[i - 1]
    assert np.max(np.abs(y - ref)) <= 1.0          # integers on the wire: rounding only
    # R peaks survive the display path: lead II's largest deflections line up with the record's.
    assert abs(np.argmax(np.abs(y[:, 1])) - np.argmax(np.abs(ref[:, 1]))) <= 1
    # "since" returns only what is new; an out-of-range cursor gets the buffer with reset=True.
    feed(hub, record_uv[:500], start=5000)
    new = hub.live_strip(1250)
    assert new["start"] == 1250 and new["end"] == 1375 and len(new["data"]) == 125 and not new["reset"]
    assert hub.live_strip(10 ** 9)["reset"] is True
    # ring keeps ring_seconds only
    feed(hub, np.tile(record_uv, (2, 1)), start=5500)
    s = hub.live_strip(None)
    assert s["end"] - s["start"] == 12 * 125


def test_gap_breaks_the_trace(record_uv):
    hub = LiveHub()
    feed(hub, record_uv[:1000])
    feed(hub, record_uv[1500:2500], start=1500)     # 500 samples missing
    y = strip_array(hub.live_strip(None))
    nan_rows = np.flatnonzero(np.isnan(y).all(axis=1))
    assert nan_rows.tolist() == [250], "one NaN row marks the gap"
    assert y.shape[0] == 250 + 1 + 250


def test_lead_off_blanks_exactly_the_leads_that_use_the_electrode(record_uv):
    hub = LiveHub()
    lo = np.zeros((record_uv.shape[0], len(ELECTRODES)), bool)
    lo[2000:3000, ELECTRODES.index("LA")] = True
    x = record_uv.copy()
    x[2000:3000, [0, 2, 3, 4, 5]] = 700_000.0        # what a floating electrode does to the derived leads
    feed(hub, x, lead_off=lo)
    y = strip_array(hub.live_strip(None))
    during = y[510:740]
    for i, lead in enumerate(LEADS):
        uses_la = "LA" in LEAD_ELECTRODES[lead]
        assert np.isnan(during[:, i]).all() == uses_la, lead
    assert np.isfinite(y[800:, :]).all(), "traces come back after the electrode is re-attached"
    assert np.nanmax(np.abs(y[800:, :])) < 10_000, "no rail-to-rail step after re-attachment"
    st = hub.status()
    assert st["electrodes"]["LA"] == "ok"         # last block had LA on again
    hub.push_samples(5000, 500, record_uv[:10], np.eye(1, 9, ELECTRODES.index("V3"), dtype=bool).repeat(10, 0))
    st = hub.status()
    assert st["electrodes"]["V3"] == "off" and st["leads"]["V3"] == "off" and st["leads"]["V2"] == "ok"


def test_writes_go_through_the_router_to_the_real_device_and_bad_ones_change_nothing(device):
    dev, hub = device
    alarm = dev.state.alarms.raise_condition("suspected_mi", "physiological", "high", "Suspected MI")
    assert hub.alarms()[0]["id"] == alarm.id and not hub.alarms()[0]["acknowledged"]    # pushed by the sink
    assert hub.set_patient({"age": 70, "sex": "male"}) == {"age": 70.0, "sex": "male"}
    assert hub.set_patient({"sex": "female"}) == {"age": 70.0, "sex": "female"}, "a field left out is kept"
    assert dev.operations.get_patient() == {"age": 70.0, "sex": "female"}           # persisted on the device
    for bad in ({"age": 500}, {"age": "63"}, {"sex": "f"}, {"height": 1}, {}, [63], "63"):
        with pytest.raises(DisplayInputError) as e:
            hub.set_patient(bad)
        assert e.value.status == 400
    assert hub.patient == {"age": 70.0, "sex": "female"} == dev.operations.get_patient()
    with pytest.raises(DisplayInputError) as e:
        hub.acknowledge_alarm("nope")
    assert e.value.status == 404
    acked = hub.acknowledge_alarm(alarm.id, "crew")
    assert acked["acknowledged"] and acked["acknowledged_by"] == "crew"
    with pytest.raises(DisplayInputError) as e:
        hub.acknowledge_alarm(alarm.id, "crew")
    assert e.value.status == 409 and "already acknowledged" in str(e.value)
    hub.clear_patient()
    assert hub.patient == {"age": None, "sex": None}
    assert dev.audit_kinds().count("patient_set") == 2 and "alarm_ack" in dev.audit_kinds()


def test_a_page_without_a_device_refuses_writes():
    hub = LiveHub()
    with pytest.raises(DisplayInputError) as e:
        hub.set_patient({"age": 50})
    assert e.value.status == 503
    assert hub.patient == {"age": None, "sex": None}


# ---------------------------------------------------------------------------------------- server
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _req(url, method="GET", body=None, ctype="application/json"):
    r = urllib.request.Request(url, data=body, method=method)
    if body is not None and ctype:
        r.add_header("Content-Type", ctype)
    try:
        with urllib.request.urlopen(r, timeout=10) as resp:
            return resp.status, resp.headers.get("Content-Type"), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read()


@pytest.fixture()
def served(record_uv, device):
    dev, hub = device
    srv = DisplayServer(hub, port=0).start()
    yield hub, srv
    srv.stop()


def test_page_and_assets_are_served_locally(served):
    hub, srv = served
    code, ctype, body = _req(srv.url)
    assert code == 200 and ctype.startswith("text/html")
    html = body.decode()
    assert "NOT A DIAGNOSIS" in html.upper()
    external = re.compile(r"""(src|href)\s*=\s*["']?(https?:)?//|url\(\s*["']?(https?:)?//|"""
                          r"""(fetch|EventSource|import)\s*\(?\s*["'](https?:)?//|@import""")
    assert not external.search(html), "no CDN / internet assets"
    for asset, kind in (("app.js", "text/javascript"), ("style.css", "text/css")):
        code, ctype, body = _req(srv.url + "static/" + asset)
        assert code == 200 and ctype.startswith(kind)
        assert not external.search(body.decode()), f"{asset} loads something from the network"
    assert _req(srv.url + "static/nope.js")[0] == 404
    assert _req(srv.url + "static/../hub.py")[0] == 404


def test_result_detail_strip_and_png(served, record_uv):
    hub, srv = served
    result = {"id": "r-181", "time": "2026-01-01T00:00:00Z", "triage_level": "high", "alarm_priority": "high",
              "probabilities": {"NORM": 0.1, "MI": 0.8, "STTC": 0.2, "CD": 0.1, "HYP": 0.05},
              "explanation": {"findings": [{"cls": "MI", "leads": ["V2", "V3"], "seconds": [[2.0, 3.0]]}]},
              "quality": {"verdict": "good", "reasons": [], "electrodes_off": []}}
    hub.push_result(result, strip_uv=record_uv + 50_000.0, strip_fs=500)    # + a DC offset as from electrodes
    code, _, body = _req(srv.url + "api/results/r-181")
    d = json.loads(body)
    assert code == 200 and d["explanation"]["findings"][0]["leads"] == ["V2", "V3"]
    y = strip_array(d["strip"])
    assert d["strip"]["fs"] == 250 and y.shape == (2500, 12)
    assert np.abs(np.median(y, axis=0)).max() < 100, "baseline removed as the model sees it (DC gone)"
    code, ctype, png = _req(srv.url + "api/results/r-181.png?width=1000")
    assert code == 200 and ctype == "image/png" and struct.unpack(">II", png[16:24])[0] == 1000
    assert _req(srv.url + "api/results/r-181.png?width=50")[0] == 400
    s = json.loads(_req(srv.url + "api/results?limit=5")[2])["results"]
    assert [r["id"] for r in s] == ["r-181"] and "strip" not in s[0]


def test_sse_streams_hello_samples_and_results(served, record_uv):
    hub, srv = served
    got: list[tuple[str, dict]] = []

    def listen():
        with urllib.request.urlopen(srv.url + "api/live", timeout=10) as r:
            event = None
            for raw in r:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    got.append((event, json.loads(line[6:])))
                    if event == "result":
                        return
    t = threading.Thread(target=listen, daemon=True)
    t.start()
    time.sleep(0.5)
    feed(hub, record_uv[:1000])
    time.sleep(0.3)
    hub.push_result({"id": "r2", "triage_level": "none", "probabilities": {"NORM": 0.9}})
    t.join(10)
    kinds = [k for k, _ in got]
    assert kinds[0] == "hello" and "samples" in kinds and kinds[-1] == "result"
    n = sum(len(d["data"]) for k, d in got if k == "samples")
    assert n == 250, "every display sample delivered exactly once"
    assert got[-1][1]["id"] == "r2"


# ---------------------------------------------------------------------------------------- PNG
def decode_png(data: bytes) -> np.ndarray:
    """Decoder for what encode_png writes (8-bit RGB, filter 0): enough to check pixels."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    w = h = 0
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + n]
        assert struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0] == zlib.crc32(kind + chunk) & 0xFFFFFFFF
        if kind == b"IHDR":
            w, h = struct.unpack(">II", chunk[:8])
            assert chunk[8:10] == b"\x08\x02"
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + n
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, 1 + 3 * w)
    assert (raw[:, 0] == 0).all()
    return raw[:, 1:].reshape(h, w, 3)


def test_png_draws_traces_grid_and_explanation(record_uv):
    result = {"id": "x", "time": "2026-01-01T00:00:00Z", "triage_level": "high",
              "probabilities": {"MI": 0.8}, "heart_rate_bpm": 72.0,
              "explanation": {"findings": [{"cls": "MI", "leads": ["V2"], "seconds": [[6.0, 7.0]]}]}}
    t0 = time.perf_counter()
    png = render_result_png(result, 500, record_uv, width=1600)
    elapsed = time.perf_counter() - t0
    img = decode_png(png)
    assert img.shape[1] == 1600
    rgb = render_result_rgb(result, 500, record_uv, width=1600)
    assert np.array_equal(img, rgb), "PNG round-trips losslessly"
    margin = 1600 // 80
    pxps = (1600 - 2 * margin) / 10.0
    black = (img.sum(axis=2) < 60)
    assert black.sum() > 10_000, "traces drawn"
    # the finding's 6-7 s band is shaded orange across the paper, and nowhere around 1-2 s
    paper = slice(img.shape[0] - int(0.6 * img.shape[0]), img.shape[0] - 40)

    def blue(x):   # mean blue of a pixel column over the paper: orange shading lowers it
        return float(img[paper, int(margin + x * pxps) + 1:int(margin + x * pxps) + 4, 2].mean())
    assert blue(6.5) < blue(1.5) - 30 and blue(6.5) < blue(8.5) - 30
    assert elapsed < 5.0


def test_png_works_without_matplotlib(record_uv, monkeypatch):
    """The device has no matplotlib: rendering must not need it."""
    import builtins
    real_import = builtins.__import__

    def guard(name, *a, **k):
        if name.startswith("matplotlib") or name.startswith("PIL"):
            raise ImportError(f"{name} is not on the device")
        return real_import(name, *a, **k)
    monkeypatch.setattr(builtins, "__import__", guard)
    png = render_result_png({"id": "y", "triage_level": "cannot_interpret",
                             "quality": {"verdict": "unusable", "electrodes_off": ["LA"]}}, 500, record_uv, 800)
    assert decode_png(png).shape[1] == 800


def test_png_readable_by_pillow_when_available(record_uv):
    Image = pytest.importorskip("PIL.Image")
    import io
    im = Image.open(io.BytesIO(encode_png(render_result_rgb({"id": "z"}, 500, record_uv, 1200))))
    im.load()
    assert im.size[0] == 1200 and im.mode == "RGB"


def test_png_rejects_bad_strips():
    with pytest.raises(ValueError):
        render_result_png({"id": "q"}, 500, np.zeros((100, 8)))


def test_foreign_host_header_is_refused(served):
    """DNS-rebinding guard: on localhost, a request naming another host gets 421 and changes nothing."""
    hub, srv = served
    for host, ok in (("127.0.0.1:%d" % srv.port, True), ("localhost:%d" % srv.port, True),
                     ("evil.example:%d" % srv.port, False), ("", False)):
        conn = __import__("http.client").client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
        conn.putrequest("POST", "/api/patient", skip_host=True)
        if host:
            conn.putheader("Host", host)
        body = b'{"age": 44}' if ok else b'{"age": 99}'
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        r = conn.getresponse()
        r.read()
        conn.close()
        assert (r.status == 200) == ok, (host, r.status)
        if not ok:
            assert r.status == 421
    assert hub.patient["age"] == 44.0


def test_port_in_use_is_a_config_error_naming_the_key():
    from edge_app.errors import ConfigError
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        with pytest.raises(ConfigError) as e:
            DisplayServer(LiveHub(), port=s.getsockname()[1]).start()
    assert e.value.key == "display.port"


def test_slow_reader_learns_it_lost_events():
    hub = LiveHub()
    e0 = hub.event_seq
    for i in range(300):                     # more than the bounded event log holds
        hub.push_heart_rate(60 + i % 40)
    _, evs, lost = hub.events_since(e0)
    assert lost and len(evs) == 256
    latest, evs, lost = hub.events_since(hub.event_seq - 3)
    assert not lost and len(evs) == 3 and latest == hub.event_seq
    # sample pushes alone never look like lost events
    hub.push_samples(0, 500, np.zeros((50, 12)))
    assert hub.events_since(hub.event_seq) == (hub.event_seq, [], False)


def test_history_is_topped_up_from_the_store_after_a_restart():
    stored = [{"id": f"s{i}", "time": f"2026-01-01T00:00:0{i}Z", "triage_level": "none"} for i in (3, 2, 1)]
    hub = LiveHub()
    hub.history_lookup = lambda n: stored[:n]
    assert hub.latest()["id"] == "s3"
    hub.push_result({"id": "new", "triage_level": "high"})
    assert [r["id"] for r in hub.results(3)] == ["new", "s3", "s2"]
    assert hub.latest()["id"] == "new"
    hub.history_lookup = lambda n: 1 / 0          # a broken store: the page keeps working
    assert [r["id"] for r in hub.results(5)] == ["new"]


def test_live_lead_off_bits_beat_the_older_window_verdict(record_uv):
    """Electrode re-attached after the last window said 'LA off': the page follows the live bits."""
    hub = LiveHub()
    la = np.zeros((10, 9), bool)
    la[:, ELECTRODES.index("LA")] = True
    hub.push_samples(0, 500, record_uv[:10], la)
    off_q = {"verdict": "unusable", "reasons": ["LA electrode off"], "electrodes_off": ["LA"],
             "per_lead": {"I": {"verdict": "unusable", "flags": ["electrode_off", "off"]},
                          "V2": {"verdict": "acceptable", "flags": ["noisy"]}}}
    hub.push_quality(off_q)
    st = hub.status()
    assert st["electrodes"]["LA"] == "off" and st["leads"]["I"] == "off" and st["leads"]["V2"] == "off"
    hub.push_samples(10, 500, record_uv[10:20], np.zeros((10, 9), bool))      # back on
    st = hub.status()
    assert st["electrodes"]["LA"] == "ok" and st["leads"]["I"] == "ok"
    assert st["leads"]["V2"] == "noisy", "noise verdicts still shown"
    # without live bits (a front end that has none), the window's verdict is all there is
    hub2 = LiveHub()
    hub2.push_samples(0, 500, record_uv[:10])
    hub2.push_quality(off_q)
    assert hub2.status()["electrodes"]["LA"] == "off" and hub2.status()["leads"]["I"] == "off"


def test_refused_requests_keep_a_keepalive_connection_usable(served):
    """A 415/404/405 on a persistent connection must not leave its body to be read as the next request."""
    import http.client
    hub, srv = served
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    for method, path, body, ctype, expected in (
            ("POST", "/api/patient", b"age=50", "application/x-www-form-urlencoded", 415),
            ("POST", "/api/nope", b'{"a": 1}', "application/json", 404),
            ("PUT", "/api/patient", b'{"age": 1}', "application/json", 405),
            ("POST", "/api/patient", b'{"age": 51}', "application/json", 200)):
        conn.request(method, path, body=body, headers={"Content-Type": ctype})
        r = conn.getresponse()
        r.read()
        assert r.status == expected, (method, path, r.status)
    conn.close()
    assert hub.patient["age"] == 51.0


def test_png_shades_a_gradcam_curve_in_proportion(record_uv):
    """A finding that carries its CAM curve gets graded shading: stronger where the CAM is higher."""
    cam = [0.0] * 10 + [1.0] * 10 + [0.5] * 10 + [0.0] * 20          # 50 points over 10 s
    result = {"id": "c", "triage_level": "high", "probabilities": {"MI": 0.9},
              "explanation": {"findings": [{"cls": "MI", "leads": ["V2"], "seconds": [], "cam": cam}]}}
    img = decode_png(render_result_png(result, 500, record_uv, width=1600))
    margin = 1600 // 80
    pxps = (1600 - 2 * margin) / 10.0
    paper = slice(img.shape[0] - int(0.6 * img.shape[0]), img.shape[0] - 40)

    def blue(t):   # median blue of the paper under a few pixel columns (traces and grid lines are outliers)
        x = int(margin + t * pxps)
        return float(np.median(img[paper, x + 1:x + 4, 2]))
    assert blue(3.0) < blue(4.5) - 15 < blue(8.0) - 30      # CAM 1.0 (2-4 s) darker than 0.5 (4-6 s) than 0
