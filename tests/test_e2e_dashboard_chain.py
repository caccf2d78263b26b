"""Issue 12's first "done when", end to end on real parts, in real Chromium:

    ambulance daemon (`ecg-edge run`, real model) on the front-end simulator replaying PTB-XL 00181 (MI)
      -> real mosquitto -> the receiving station (`ecg-cloud serve`: ingest worker + web app;
         on SQLite and on a real PostgreSQL)
      -> a clinician signs in, finds the suspected MI at the top of the worklist, opens the case, sees the
         12-lead strip with its Grad-CAM highlights, submits "confirmed"
      -> the bedside page on the ambulance shows "received by <station> at ..." and then the review.

Also measured (printed with `pytest -s`; not asserted beyond "within seconds"): the time from the device
handing each result to the broker (`sent_at`) to its row appearing in the clinician's worklist (a
MutationObserver in the page stamps each new row), over every result of the run.
"""
from __future__ import annotations

import json
import re
import statistics
import time
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path

import pytest

from mosquitto_broker import MosquittoBroker, free_port
from test_daemon_e2e import MI_RECORD, _config, _sim, _start_daemon, _stop, _wait_ready
from mqtt_helpers import Collector

sync_api = pytest.importorskip("playwright.sync_api")
testing = pytest.importorskip("cloud_dashboard.testing")   # the station's own start helper (run_stack)
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(400),
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium not installed")]

MIN_RESULTS = 6
#: Stamps the first time each worklist row is in the DOM (wall clock, ms), so latency = seen - sent_at.
ROW_WATCH = """() => {
  window.__seen = window.__seen || {};
  const stamp = () => { for (const tr of document.querySelectorAll('tr[data-result-id]')) {
      const id = tr.dataset.resultId; if (!(id in window.__seen)) window.__seen[id] = Date.now(); } };
  stamp();
  new MutationObserver(stamp).observe(document.body, {childList: true, subtree: true});
}"""


def _settled(url: str, quiet_s: float = 2.0, timeout: float = 30.0) -> None:
    """Wait until the device's result list stops growing (no window still in flight)."""
    import urllib.request
    last, since, deadline = -1, time.monotonic(), time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(url, timeout=10) as r:
            n = len(json.loads(r.read())["results"])
        if n != last:
            last, since = n, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
        time.sleep(0.25)
    raise AssertionError("the device kept producing results after the simulator stopped")


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_suspected_mi_travels_to_the_clinician_and_the_review_back_to_the_crew(tmp_path, database) -> None:
    expect = sync_api.expect
    display_port = free_port()
    with ExitStack() as stack:
        db_url = "" if database == "sqlite" else stack.enter_context(testing.PostgresServer(tmp_path)).url
        broker = stack.enter_context(MosquittoBroker(tmp_path / "broker"))
        station = stack.enter_context(testing.run_stack(tmp_path / "station", broker.port, database_url=db_url))
        pw = stack.enter_context(sync_api.sync_playwright())
        station_name = station.config.station.name
        clinician, password = station.users["clinician"]
        col = Collector(broker.port, "ecg/test-dev/triage")
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
        sim = proc = None
        try:
            # the clinician signs in first and keeps the worklist open: it must update live. A second tab
            # (same session) watches the worklist for the whole run and stamps when each row appears.
            page = ctx.new_page()
            page.goto(station.url + "/worklist")
            expect(page).to_have_url(station.url + "/login")              # no anonymous access
            page.fill("#username", clinician)
            page.fill("#password", password)
            page.click("#signin")
            expect(page).to_have_url(station.url + "/worklist")
            watch = ctx.new_page()
            watch.goto(station.url + "/worklist")
            expect(watch).to_have_url(station.url + "/worklist")
            watch.evaluate(ROW_WATCH)

            # the ambulance: real daemon, real model, simulator replaying the MI record in real time x2
            sim = _sim(tmp_path, MI_RECORD, speed=2.0)
            cfg = _config(tmp_path, extra=f"[mqtt]\nenabled = true\nport = {broker.port}\nreconnect_max_s = 1.0\n"
                                          f"[display]\nenabled = true\nport = {display_port}\n")
            proc = _start_daemon(cfg, tmp_path)
            _wait_ready(proc, tmp_path)
            deadline = time.monotonic() + 120
            target = None
            while target is None:
                assert proc.poll() is None and time.monotonic() < deadline, \
                    (tmp_path / "daemon.log").read_text()[-3000:]
                target = next((d for d in col.on("triage") if any(
                    a.get("code") == "suspected_mi" for a in d["result"].get("alarms") or [])), None)
                time.sleep(0.1)
            rid = target["result"]["id"]
            row = page.locator(f'tr[data-result-id="{rid}"]')
            expect(row).to_be_visible(timeout=30_000)                    # "within seconds"
            expect(row).to_contain_text("Suspected MI")
            while len(col.on("triage")) < MIN_RESULTS:                   # a few more windows for the latency
                assert proc.poll() is None and time.monotonic() < deadline, "the daemon stopped producing"
                time.sleep(0.2)
            sim.stop()                                                   # the crew stops recording
            sim = None
            _settled(f"http://127.0.0.1:{display_port}/api/results?limit=50")   # the last window has landed
            first = page.locator("#results tbody tr").first
            assert "mi" in (first.get_attribute("class") or "").split(), "an unreviewed suspected MI leads"

            # the case: 12-lead strip on a grid with its Grad-CAM highlights
            row.click()
            expect(page).to_have_url(f"{station.url}/cases/{rid}")
            svg = page.locator("#ecg svg.ecg")
            expect(svg).to_be_visible(timeout=15_000)
            for lead in ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6", "II-rhythm"):
                expect(svg.locator(f'path[data-lead="{lead}"]')).to_have_count(1)
            assert svg.get_attribute("data-mm-per-s") == "25" and svg.get_attribute("data-mm-per-mv") == "10"
            expect(page.locator("button.cam.on")).to_have_count(1)        # a finding is highlighted
            assert svg.locator("g.highlights > *").count() > 0, "no Grad-CAM highlight drawn"
            expect(page.locator("body")).to_contain_text("Triage aid, not a diagnosis")
            expect(page.locator("#rhythm")).to_have_text(re.compile(r"^(sinus|tachy|brady|AF|SVT|VT|other) \d+$"))
            page.screenshot(path=str(tmp_path / "case.png"), full_page=True)

            # the crew's bedside page: the receipt arrives first (the station stored the result) ...
            bedside = ctx.new_page()
            bedside.goto(f"http://127.0.0.1:{display_port}/")
            pick = bedside.locator(f'#history button[data-id="{rid}"]')
            expect(pick).to_be_visible(timeout=15_000)
            pick.click()
            expect(bedside.locator("#result-title")).to_have_attribute("data-id", rid)
            expect(bedside.locator("#delivery")).to_contain_text(f"received by {station_name} at ", timeout=20_000)
            expect(bedside.locator("#review")).to_be_hidden()

            # ... the clinician confirms ...
            page.check('#review input[name="verdict"][value="confirmed"]')
            page.fill('#review textarea[name="text"]', "Anterior STEMI: cath lab activated, go straight to lab 2.")
            page.click("#submit-review")
            expect(page.locator("#reviewmsg")).to_contain_text("Review stored", timeout=15_000)

            # ... and the crew sees the review, with reviewer and time
            review = bedside.locator("#review")
            expect(review).to_contain_text("Hospital review: CONFIRMED", timeout=30_000)
            expect(review).to_contain_text("cath lab activated")
            expect(review).to_contain_text(f"{testing.DEMO_USERS['clinician'][1]}, {station_name}")   # who, where
            expect(bedside.locator("#notice")).to_contain_text("NOT A DIAGNOSIS")
            bedside.screenshot(path=str(tmp_path / "bedside.png"))

            seen = watch.evaluate("() => window.__seen || {}")             # result id -> ms first shown
        finally:
            ctx.close()
            browser.close()
            if proc is not None:
                _stop(proc)
            if sim is not None:
                sim.stop()
            col.close()
        sent = {d["result"]["id"]: _epoch(d["sent_at"]) for d in col.on("triage")}
    # publish (device hands the result to the broker) -> row visible in the clinician's worklist
    lat = sorted(seen[r] / 1000.0 - sent[r] for r in sent if r in seen)
    assert rid in seen and lat, (len(sent), len(seen))
    report = {"database": database, "results_published": len(sent), "rows_seen": len(lat), "median_s": round(statistics.median(lat), 3),
              "max_s": round(lat[-1], 3), "target_s": round(seen[rid] / 1000.0 - sent[rid], 3)}
    (tmp_path / "latency.json").write_text(json.dumps(report))
    print(f"\npublish -> worklist latency: {report}")
    audit = [json.loads(line) for line in (tmp_path / "state" / "audit.jsonl").read_text().splitlines()]
    reviews = [e["data"] for e in audit if e["kind"] == "review_received"]
    assert [(r["result_id"], r["verdict"]) for r in reviews] == [(rid, "confirmed")]
    assert any(e["kind"] == "result_received" and e["data"]["result_id"] == rid for e in audit)
