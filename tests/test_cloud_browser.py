"""The clinician's path in real Chromium (Playwright, Debian's /usr/bin/chromium; never a downloaded browser):
login -> worklist (a new suspected MI appears live, without reloading) -> case (12-lead grid, Grad-CAM,
probabilities against thresholds) -> review "confirmed" -> the review reaches the device over MQTT.
The whole daemon -> dashboard -> bedside chain is tests/test_e2e_dashboard_chain.py."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from cloud_dashboard.testing import result_messages, run_stack
from cloud_support import mi_record, norm_record  # noqa: F401
from mosquitto_broker import MosquittoBroker

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
pytestmark = [pytest.mark.timeout(300),
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium not installed")]


def test_login_worklist_case_review(tmp_path, mi_record, norm_record):
    expect = sync_api.expect
    with MosquittoBroker(tmp_path / "broker") as broker, run_stack(tmp_path / "st", broker.port) as st, \
            sync_api.sync_playwright() as pw:
        reviews: list[dict] = []
        got = threading.Event()
        dev = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="amb-1", protocol=mqtt.MQTTv5)
        dev.on_message = lambda c, u, m: (reviews.append(json.loads(m.payload)), got.set())
        dev.connect("127.0.0.1", broker.port)
        dev.loop_start()
        dev.subscribe("ecg/amb-1/review", qos=1)
        routine, routine_strip = result_messages(*norm_record, device_id="amb-2")
        dev.publish("ecg/amb-2/triage", json.dumps(routine), qos=1).wait_for_publish(10)
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(st.url + "/cases/anything")
            expect(page).to_have_url(st.url + "/login")                      # no anonymous access
            name, password = st.users["clinician"]
            page.fill("#username", name)
            page.fill("#password", "not-the-password")
            page.click("#signin")
            expect(page.locator("#msg")).to_contain_text("wrong user name or password")
            page.fill("#password", password)
            page.click("#signin")
            expect(page).to_have_url(st.url + "/worklist")
            expect(page.locator(f'tr[data-result-id="{routine["result"]["id"]}"]')).to_be_visible(timeout=15_000)
            expect(page.locator(".notice")).to_contain_text("Triage aid, not a diagnosis")
            # a suspected MI arrives while the worklist is open: it appears on top without a reload
            tri, strip = result_messages(*mi_record, device_id="amb-1")
            rid = tri["result"]["id"]
            dev.publish("ecg/amb-1/triage", json.dumps(tri), qos=1).wait_for_publish(10)
            dev.publish("ecg/amb-1/strip", json.dumps(strip), qos=1).wait_for_publish(10)
            from cloud_dashboard.testing import envelope
            alarm = envelope("ecg.alarm/1", "amb-1", "alarm", dict(tri["result"]["alarms"][0], device_id="amb-1"), "high")
            dev.publish("ecg/amb-1/alarm", json.dumps(alarm), qos=1).wait_for_publish(10)
            row = page.locator(f'tr[data-result-id="{rid}"]')
            expect(row).to_be_visible(timeout=20_000)
            expect(page.locator("#alarm-table")).to_contain_text("suspected_mi", timeout=20_000)   # live, too
            expect(page.locator("#results tbody tr").first).to_have_attribute("data-result-id", rid)
            expect(row).to_contain_text("Suspected MI")
            row.click()
            expect(page).to_have_url(f"{st.url}/cases/{rid}")
            svg = page.locator("#ecg svg.ecg")
            expect(svg).to_be_visible(timeout=15_000)
            for lead in ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6", "II-rhythm"):
                expect(svg.locator(f'path[data-lead="{lead}"]')).to_have_count(1)
            # 25 mm/s over 10 s = 250 mm of trace in the rhythm strip
            box = svg.evaluate("s => s.querySelector('path[data-lead=\"II-rhythm\"]').getBBox().width")
            assert box == pytest.approx(250, abs=1)
            assert svg.locator("rect.cam").count() > 0                       # Grad-CAM of the MI finding
            expect(page.locator("#probabilities")).to_contain_text("MI")
            expect(page.locator("#facts")).to_contain_text("62 / male")
            page.check('#review input[name="verdict"][value="confirmed"]')
            page.fill('#review textarea[name="text"]', "Inferior STEMI. Cath lab activated.")
            page.click("#submit-review")
            expect(page.locator("#reviewmsg")).to_contain_text("Review stored", timeout=15_000)
            expect(page.locator("#reviews")).to_contain_text("confirmed by Dr Demo Cardio")
            assert got.wait(30), "the review did not reach the device"
            assert reviews[0]["result_id"] == rid and reviews[0]["verdict"] == "confirmed"
            assert reviews[0]["text"] == "Inferior STEMI. Cath lab activated."
            expect(page.locator("#reviews")).to_contain_text("sent to the crew", timeout=15_000)
            # back on the worklist the case is reviewed and no longer leads
            page.goto(st.url + "/worklist")
            expect(page.locator(f'tr[data-result-id="{rid}"]')).to_contain_text("confirmed")
            expect(page.locator("#results tbody tr").first).to_have_attribute("data-result-id", routine["result"]["id"])
            # the export link serves the zip to the logged-in clinician
            with page.expect_download() as dl:
                page.goto(f"{st.url}/cases/{rid}")
                page.click("#export")
            assert dl.value.suggested_filename.endswith(".zip")
            # a viewer sees the case but no review form; logout ends the session
            page.click("#logout")
            expect(page).to_have_url(st.url + "/login")
            vname, vpass = st.users["viewer"]
            page.fill("#username", vname)
            page.fill("#password", vpass)
            page.click("#signin")
            expect(page).to_have_url(st.url + "/worklist")
            page.goto(f"{st.url}/cases/{rid}")
            expect(page.locator("#reviews")).to_contain_text("confirmed by Dr Demo Cardio")
            expect(page.locator("#review")).to_have_count(0)
        finally:
            browser.close()
            dev.loop_stop()
