"""Strip upload figures: wire size per 10 s window, codec time, and the extra load on the device's outbox.

    python benchmarks/bench_strip_upload.py [--drain 300] [--json]

1. Size: for each built-in real record (PTB-XL, 500 Hz) the first window is analysed by the real pipeline and
   real model (edge_app.pipeline.analyse_record); its result is wrapped exactly as the uplink sends it
   (ecg.triage/1) and its strip encoded exactly as the strip sink does (ecg.strip/1). Printed: bytes on the
   wire for both, and what the strip would be raw (8 measured leads int16; 12 leads int16; 12 leads as JSON
   integers), i.e. what the delta+zlib+base64 encoding saves.
2. Codec: encode and decode+verify (SHA-256) time per strip, median of --repeat runs.
3. Outbox load: durable enqueue (fsync'd) time per result and per strip, and bytes queued per hour at the
   default 5 s stride with mqtt.strips = all (one result + one strip per window).
4. Drain: --drain windows queued while offline (results only, then results + strips) drained to a real
   mosquitto on loopback; messages/s, MB/s and seconds to empty the outbox.
Loopback only; stops by itself. Numbers depend on the machine and its load: report them with both.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from edge_app.sinks.strip_upload import StripSink  # noqa: E402
from edge_app.uplink.service import DISCLAIMER, Uplink  # noqa: E402
from edge_app.uplink.settings import MqttConfig  # noqa: E402
from edge_app.uplink.strip_codec import decode_strip, encode_strip  # noqa: E402
from mosquitto_broker import MosquittoBroker  # noqa: E402
from mqtt_helpers import Collector  # noqa: E402

RECORDS = REPO / "edge_app" / "data" / "records"
ENVELOPE = {"schema": "ecg.triage/1", "msg_id": "0" * 32, "device_id": "amb-07", "priority": "high",
            "created_at": "2026-12-04T14:02:01.250Z", "sent_at": "2026-12-04T14:02:01.262Z", "historical": False,
            "seq": 123456, "age_s": 0.012, "disclaimer": DISCLAIMER}


def _wire(body: dict) -> int:
    return len(json.dumps(body, separators=(",", ":")).encode())


def windows() -> list[tuple[str, dict, object, float]]:
    """(record, result dict, (n, 12) uV strip, fs) of the first window of every built-in record."""
    import wfdb
    from edge_app.inference import load_model
    from edge_app.pipeline import analyse_record
    model = load_model(REPO / "quantized_models" / "manifest.json")
    out = []
    for hea in sorted(RECORDS.glob("*_hr.hea")):
        r = analyse_record(hea.with_suffix(""), model=model)[0].to_dict()
        rec = wfdb.rdrecord(str(hea.with_suffix("")))
        out.append((hea.stem, r, rec.p_signal[:5000] * 1000.0, float(rec.fs)))
    return out


def sizes(ws, repeat: int) -> list[dict]:
    rows = []
    for name, r, uv, fs in ws:
        strip = encode_strip(uv, fs, result_id=r["id"], run_id="x" * 36, start_index=0, device_time_us=None,
                             t0="2026-12-04T14:01:51.250Z")
        t_enc, t_dec = [], []
        for _ in range(repeat):
            t = time.perf_counter()
            encode_strip(uv, fs, result_id=r["id"], run_id="x" * 36, start_index=0, device_time_us=None,
                         t0="2026-12-04T14:01:51.250Z")
            t_enc.append(time.perf_counter() - t)
            t = time.perf_counter()
            decode_strip(strip)
            t_dec.append(time.perf_counter() - t)
        n = len(uv)
        ints12 = json.dumps([[int(round(v)) for v in row] for row in uv.tolist()], separators=(",", ":"))
        rows.append({"record": name, "priority": r["alarm_priority"],
                     "result_bytes": _wire(ENVELOPE | {"result": r}),
                     "strip_bytes": _wire(ENVELOPE | {"schema": "ecg.strip/1", "strip": strip}),
                     "strip_dtype": strip["dtype"],
                     "raw_int16_8_leads": n * 8 * 2, "raw_int16_12_leads": n * 12 * 2,
                     "json_ints_12_leads": len(ints12),
                     "encode_ms": round(1000 * statistics.median(t_enc), 2),
                     "decode_verify_ms": round(1000 * statistics.median(t_dec), 2)})
    return rows


def _cfg(port: int) -> MqttConfig:
    return MqttConfig.from_dict({"enabled": True, "port": port, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5,
                                 "telemetry_interval_s": 3600})


def enqueue_cost(ws, workdir: Path, n: int) -> dict:
    up = Uplink(_cfg(1), "amb-07", workdir / "enqueue.sqlite")
    sink = StripSink(up, "all")
    t_res, t_strip = [], []
    for i in range(n):
        _, r, uv, fs = ws[i % len(ws)]
        r = dict(r, id=f"{r['id'][:24]}{i:08d}")
        t = time.perf_counter()
        up.publish_result(r, r["alarm_priority"])
        t_res.append(time.perf_counter() - t)
        t = time.perf_counter()
        sink.publish(r, uv, fs)
        t_strip.append(time.perf_counter() - t)
    used = up.outbox.used_bytes()
    up.outbox.close()
    med = statistics.median
    return {"n": n, "result_enqueue_ms_p50": round(1000 * med(t_res), 2),
            "strip_encode_enqueue_ms_p50": round(1000 * med(t_strip), 2),
            "outbox_bytes_per_window": round(used / n), "outbox_mb_per_hour_5s_stride": round(used / n * 720 / 1e6, 1)}


def drain(ws, workdir: Path, n: int, with_strips: bool) -> dict:
    with MosquittoBroker(workdir / f"broker-{with_strips}") as broker:
        up = Uplink(_cfg(broker.port), "amb-07", workdir / f"drain-{with_strips}.sqlite")
        sink = StripSink(up, "all" if with_strips else "off")
        for i in range(n):
            _, r, uv, fs = ws[i % len(ws)]
            r = dict(r, id=f"{r['id'][:24]}{i:08d}")
            up.publish_result(r, r["alarm_priority"])
            sink.publish(r, uv, fs)
        queued, nbytes = up.outbox.depth(), up.outbox.used_bytes()
        col = Collector(broker.port, "ecg/amb-07/#")
        t0 = time.perf_counter()
        up.start()
        ok = up.wait_drained(600)
        dt = time.perf_counter() - t0
        col.wait_for("triage", n, timeout=30)
        got = len(col.on("triage")) + len(col.on("strip"))
        up.stop()
        col.close()
    return {"with_strips": with_strips, "messages": queued, "mbytes": round(nbytes / 1e6, 2), "drained": ok,
            "received": got, "seconds": round(dt, 2), "msgs_per_s": round(queued / dt, 1),
            "mbytes_per_s": round(nbytes / 1e6 / dt, 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--drain", type=int, default=300, help="windows queued offline then drained (default 300)")
    ap.add_argument("--enqueue", type=int, default=100, help="windows for the durable enqueue timing")
    ap.add_argument("--repeat", type=int, default=20, help="codec timing repetitions")
    ap.add_argument("--dir", default=None, help="work directory (default: a temp dir)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    ws = windows()
    out: dict = {"load_1m_start": round(os.getloadavg()[0], 2), "sizes": sizes(ws, a.repeat)}
    with tempfile.TemporaryDirectory(dir=a.dir) as tmp:
        out["enqueue"] = enqueue_cost(ws, Path(tmp), a.enqueue)
        out["drain"] = [drain(ws, Path(tmp), a.drain, False), drain(ws, Path(tmp), a.drain, True)]
    out["load_1m_end"] = round(os.getloadavg()[0], 2)
    if a.json:
        print(json.dumps(out))
        return 0
    print(f"strip upload (load {out['load_1m_start']} -> {out['load_1m_end']})")
    print(f"{'record':10} {'prio':6} {'result B':>9} {'strip B':>8} {'dtype':5} {'8xint16':>8} {'12xint16':>9} "
          f"{'12 JSON':>8} {'enc ms':>7} {'dec ms':>7}")
    for s in out["sizes"]:
        print(f"{s['record']:10} {s['priority']:6} {s['result_bytes']:9d} {s['strip_bytes']:8d} {s['strip_dtype']:5} "
              f"{s['raw_int16_8_leads']:8d} {s['raw_int16_12_leads']:9d} {s['json_ints_12_leads']:8d} "
              f"{s['encode_ms']:7.2f} {s['decode_verify_ms']:7.2f}")
    e = out["enqueue"]
    print(f"durable enqueue p50: result {e['result_enqueue_ms_p50']} ms, strip (encode + enqueue) "
          f"{e['strip_encode_enqueue_ms_p50']} ms; outbox {e['outbox_bytes_per_window']} B per window = "
          f"{e['outbox_mb_per_hour_5s_stride']} MB per hour at a 5 s stride")
    for d in out["drain"]:
        print(f"drain {'results + strips' if d['with_strips'] else 'results only   '}: {d['messages']} msgs "
              f"({d['mbytes']} MB) in {d['seconds']} s = {d['msgs_per_s']} msg/s, {d['mbytes_per_s']} MB/s, "
              f"received {d['received']}, drained {d['drained']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
