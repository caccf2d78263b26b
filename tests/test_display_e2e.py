"""Bedside display end to end: a RUNNING daemon (`ecg-edge run`, display enabled) fed by the pty
front-end simulator replaying a real PTB-XL record, the page loaded in real headless Chromium.

The daemon also has [mqtt] enabled against a real mosquitto, so an acknowledgement made on the page
is checked where the fleet sees it.

Timeline of the shared daemon (stream seconds): results every 5 s from 10 s; the simulator lifts the
LA electrode at 40 s for 8 s. Tests run in file order and build on each other (strip -> result ->
patient from the page -> electrode off -> alarm acknowledgement -> PNG -> bad API input).
Screenshots land in tests/artifacts/display/.
"""
from __future__ import annotations

import json
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from mosquitto_broker import MosquittoBroker

from cdp_browser import Browser, find_chromium

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "edge_app" / "data" / "records" / "00181_hr"     # PTB-XL MI record shipped with the app
ARTIFACTS = ROOT / "tests" / "artifacts" / "display"
FAULT_AT_S, FAULT_FOR_S = 40.0, 8.0

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(find_chromium() is None, reason="chromium not installed (tools/install.sh --dev)")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http(url: str, method: str = "GET", body: bytes | None = None, ctype: str | None = "application/json",
          headers: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url, data=body, method=method)
    if ctype and body is not None:
        req.add_header("Content-Type", ctype)
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def _json(url: str) -> dict:
    code, _, body = _http(url)
    assert code == 200, (url, code, body[:300])
    return json.loads(body)


def _payload(raw: bytes) -> dict:
    try:
        d = json.loads(raw)
    except ValueError:
        return {}
    return d if isinstance(d, dict) else {}


def _iso(t: str) -> float:
    return datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp()


class Rig:
    """Simulator + daemon processes and one browser tab on the bedside page."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.state = tmp / "state"
        self.link = tmp / "frontend"
        # A real broker, so the acknowledgement from the page can be seen going out over MQTT.
        self.broker = MosquittoBroker(tmp / "broker").start()
        self.mqtt_msgs: list[tuple[str, dict]] = []
        self.mqtt = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.mqtt.on_message = lambda c, u, m: self.mqtt_msgs.append((m.topic, _payload(m.payload)))
        self.mqtt.on_connect = lambda c, u, f, rc, p=None: c.subscribe("ecg/bedside-test/#", qos=1)
        self.mqtt.connect("127.0.0.1", self.broker.port)
        self.mqtt.loop_start()
        self.cfg = tmp / "ecg-edge.toml"
        self.cfg.write_text(f"""
[device]
id = "bedside-test"
[frontend]
port = "{self.link}"
[storage]
state_dir = "{self.state}"
[display]
enabled = true
host = "127.0.0.1"
port = {self.port}
[windows]
stride_s = 5
[mqtt]
enabled = true
port = {self.broker.port}
reconnect_max_s = 1.0
""")
        self.sim_log = open(tmp / "sim.log", "a")
        self.daemon_log = open(tmp / "daemon.log", "a")
        self.sim = self.start_sim(f"electrode_off:LA@{FAULT_AT_S:g}+{FAULT_FOR_S:g}")
        self.daemon = self.start_daemon()
        self.browser = Browser()
        self.page = self.browser.new_page(1280, 800)
        self.page.navigate(self.base + "/")

    def start_sim(self, *faults: str) -> subprocess.Popen:
        args = [sys.executable, "-m", "firmware_bridge.simulator_cli", str(RECORD), "--link", str(self.link)]
        for f in faults:
            args += ["--fault", f]
        return subprocess.Popen(args, stdout=self.sim_log, stderr=subprocess.STDOUT, cwd=ROOT)

    def start_daemon(self) -> subprocess.Popen:
        daemon = subprocess.Popen([sys.executable, "-m", "edge_app.cli", "run", "--config", str(self.cfg)],
                                  stdout=self.daemon_log, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.monotonic() + 60
        while True:
            if daemon.poll() is not None:
                raise RuntimeError("daemon exited: " + (self.tmp / "daemon.log").read_text()[-3000:])
            try:
                _json(self.base + "/api/status")
                return daemon
            except (OSError, AssertionError):
                if time.monotonic() > deadline:
                    raise RuntimeError("display did not come up: " + (self.tmp / "daemon.log").read_text()[-3000:])
                time.sleep(0.2)

    @staticmethod
    def stop(p: subprocess.Popen) -> None:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)

    def stream_s(self) -> float:
        sig = _json(self.base + "/api/status")["signal"]
        return sig["samples_in"] / (sig["fs_in"] or 500.0)

    def shot(self, name: str) -> Path:
        return self.page.screenshot(ARTIFACTS / f"{name}.png")

    def close(self) -> None:
        try:
            self.browser.close()
        finally:
            for p in (self.daemon, self.sim):
                self.stop(p)
            self.mqtt.loop_stop()
            self.mqtt.disconnect()
            self.broker.stop()
            self.sim_log.close()
            self.daemon_log.close()
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            for name in ("daemon.log", "sim.log"):
                src = self.tmp / name
                if src.exists():
                    (ARTIFACTS / name).write_text(src.read_text())


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    r = Rig(tmp_path_factory.mktemp("display-e2e"))
    try:
        yield r
    finally:
        r.close()


def test_live_strip_updates(rig):
    p = rig.page
    p.wait_for("window.ecg && ecg.perf.samplesIn > 250 && ecg.perf.frames > 20", 20)
    s0, f0 = p.evaluate("[ecg.perf.samplesIn, ecg.perf.frames]")
    time.sleep(1.5)
    s1, f1 = p.evaluate("[ecg.perf.samplesIn, ecg.perf.frames]")
    assert s1 - s0 >= 125, "about 125 display samples per second should arrive"
    assert f1 > f0, "the sweep should redraw"
    # The trace is really on the canvas: count bright-green pixels of the live trace layer.
    green = p.evaluate("""(() => { const c = document.getElementById('live');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i+3] > 100 && d[i+1] > 150 && d[i] < 200) n++; return n; })()""")
    assert green > 2000, f"live canvas shows almost no trace ({green} px)"
    assert p.evaluate("document.getElementById('live-state').textContent").startswith("live")
    assert "NOT A DIAGNOSIS" in p.evaluate("document.getElementById('notice').textContent").upper()
    rig.shot("01-live")


def test_result_appears(rig):
    p = rig.page
    rid = p.wait_for("document.getElementById('result-title').dataset.id", 30)
    latest = _json(rig.base + "/api/results?limit=50")["results"]
    assert rid in [r["id"] for r in latest]
    detail = _json(rig.base + f"/api/results/{rid}")
    assert detail["notice"] == "Triage aid, not a diagnosis"
    assert detail["strip"] and len(detail["strip"]["data"]) == int(detail["strip"]["fs"] * 10)
    banner = p.evaluate("[document.getElementById('banner').dataset.prio, "
                        "document.getElementById('banner-label').textContent]")
    level = detail["triage_level"]
    expected = {"high": "high", "medium": "medium", "none": "low", "cannot_interpret": "none"}[level]
    if level != "cannot_interpret":
        assert banner[0] == expected, (banner, level)
        # probabilities on the page are the daemon's numbers
        shown = p.evaluate("[...document.querySelectorAll('#probs .prob')].map(e => e.textContent)")
        for cls, prob in detail["probabilities"].items():
            assert any(t.startswith(cls) and t.endswith(f"{round(100 * prob)}%") for t in shown), (cls, prob, shown)
    # the result strip canvas has been drawn, with the explanation overlay when there is one
    assert p.evaluate("ecg.perf.resultDraws") >= 1
    findings = detail["explanation"]["findings"]
    orange = p.evaluate("""(() => { const c = document.getElementById('result');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i] > 200 && d[i+1] > 120 && d[i+1] < 200 && d[i+2] < 110) n++;
        return n; })()""")
    if any(f.get("leads") or f.get("seconds") for f in findings):
        assert orange > 500, f"explanation overlay missing ({orange} orange px)"
        leads = findings[0]["leads"]
        assert all(lead in p.evaluate("document.getElementById('result-expl').textContent") for lead in leads)
    else:
        assert orange < 50
    rig.shot("02-result")


def test_patient_from_page_reaches_next_result(rig):
    p = rig.page
    before = _json(rig.base + "/api/latest")
    assert before["patient"] == {"age": "unknown", "sex": "unknown"}
    p.tap("#age")
    p.type_into("#age", "63")
    p.tap("#sex-female")
    p.tap("#patient-save")
    p.wait_for("document.getElementById('patient-msg').textContent.startsWith('Applied')", 10)
    applied_at = time.time()
    assert _json(rig.base + "/api/patient")["patient"] == {"age": 63.0, "sex": "female"}
    # the next result the daemon makes carries the patient context (the model saw age/sex)
    deadline = time.monotonic() + 20
    while True:
        r = _json(rig.base + "/api/latest")
        if _iso(r["time"]) > applied_at:
            break
        assert time.monotonic() < deadline, "no new result after the patient was entered"
        time.sleep(0.3)
    assert r["patient"] == {"age": 63.0, "sex": "female"}, r["patient"]
    assert p.wait_for(f"ecg.st.latest && ecg.st.latest.id === {json.dumps(r['id'])} && ecg.st.latest.patient.age", 10) == 63
    assert "63 y, female" in p.evaluate("document.getElementById('patient-now').textContent")
    audit = (rig.state / "audit.jsonl").read_text()
    assert '"patient_set"' in audit and '"female"' in audit
    rig.shot("03-patient")


def test_electrode_off_shows_within_one_window(rig):
    p = rig.page
    assert rig.stream_s() < FAULT_AT_S - 1, "test ordering: the fault must still be ahead"
    p.wait_for("document.getElementById('el-LA').dataset.state === 'off'", FAULT_AT_S + 20, interval=0.05)
    latency = rig.stream_s() - FAULT_AT_S
    assert latency < 10.0, f"electrode-off shown {latency:.1f} s after it happened (more than one window)"
    assert p.evaluate("document.getElementById('tech').dataset.state") == "on"
    assert "ELECTRODE OFF" in p.evaluate("document.getElementById('tech-label').textContent")
    assert p.evaluate("document.getElementById('lead-II').dataset.state") == "ok"          # RA-LL: unaffected
    assert p.evaluate("document.getElementById('lead-I').dataset.state") == "off"          # RA-LA
    (ARTIFACTS / "electrode_off_latency.txt").write_text(f"{latency:.3f} s after the fault (stream time)\n")
    rig.shot("04-electrode-off")
    # the daemon then refuses to interpret and the page shows it as a technical alarm
    p.wait_for("ecg.st.latest && ecg.st.latest.triage_level === 'cannot_interpret'", 20)
    assert p.evaluate("[...document.querySelectorAll('#alarms .alarm.prio-tech')].length") >= 1
    rig.shot("05-cannot-interpret")
    # electrode back on: the page clears it
    p.wait_for("document.getElementById('el-LA').dataset.state === 'ok'", FAULT_FOR_S + 10)


def test_alarm_acknowledged_from_page(rig):
    p = rig.page
    aid = p.wait_for("(() => { const b = document.querySelector('#alarms button.btn-ack'); "
                     "return b ? b.dataset.alarm : null; })()", 20)
    p.tap(f"#alarms button[data-alarm='{aid}']")
    p.wait_for(f"document.querySelector(\"#alarms li[data-id='{aid}']\") && "
               f"document.querySelector(\"#alarms li[data-id='{aid}']\").dataset.acked === '1'", 10)
    alarms = {a["id"]: a for a in _json(rig.base + "/api/alarms")["alarms"]}
    assert alarms[aid]["acknowledged"] is True and alarms[aid]["acknowledged_by"] == "bedside"
    acks = [json.loads(line) for line in (rig.state / "audit.jsonl").read_text().splitlines() if '"alarm_ack"' in line]
    assert any(json.dumps(aid) in json.dumps(e) for e in acks), "acknowledgement not in the audit log"
    # ... and visible over MQTT: the alarm is re-published with who acknowledged it
    deadline = time.monotonic() + 15
    while not any(t.endswith("/alarm") and (m.get("alarm") or {}).get("id") == aid
                  and (m.get("alarm") or {}).get("acknowledged_by") == "bedside" for t, m in list(rig.mqtt_msgs)):
        assert time.monotonic() < deadline, "acknowledged alarm not published over MQTT: " + \
            str([(t, m.get("alarm", {}).get("id")) for t, m in rig.mqtt_msgs if t.endswith("/alarm")][-5:])
        time.sleep(0.2)
    # acknowledging again is refused and changes nothing
    code, _, body = _http(rig.base + f"/api/alarms/{aid}/ack", "POST", b'{"by": "crew"}')
    assert code == 409 and "already" in json.loads(body)["error"]
    assert {a["id"]: a for a in _json(rig.base + "/api/alarms")["alarms"]}[aid]["acknowledged_by"] == "bedside"
    rig.shot("06-acknowledged")


def test_banner_acknowledge_stops_the_flashing(rig):
    """Each tap acknowledges the alarm the banner names; a result can carry several (suspected MI and an
    abnormal-ECG finding), and the banner keeps flashing until every one of them is acknowledged."""
    p = rig.page
    aid = p.wait_for("(() => { const b = document.getElementById('banner'); const k = document.getElementById('banner-ack');"
                     " return b.classList.contains('flash') && !k.classList.contains('hidden') ? k.dataset.alarm : null; })()",
                     25)
    prio = p.evaluate("document.getElementById('banner').dataset.prio")
    assert prio in ("high", "medium")
    acked = []
    for _ in range(6):
        current = p.evaluate("(() => { const b = document.getElementById('banner'); const k = document.getElementById('banner-ack');"
                             " return b.classList.contains('flash') && !k.classList.contains('hidden') ? k.dataset.alarm : null; })()")
        if current is None:
            break
        p.tap("#banner-ack")
        acked.append(current)
        p.wait_for(f"document.getElementById('banner-ack').dataset.alarm !== {json.dumps(current)} || "
                   "document.getElementById('banner-ack').classList.contains('hidden')", 10)
    p.wait_for("!document.getElementById('banner').classList.contains('flash') && "
               "document.getElementById('banner-ack').classList.contains('hidden')", 10)
    assert aid in acked
    assert p.evaluate("document.getElementById('banner').dataset.prio") == prio, "colour stays after the ack"
    alarms = {a["id"]: a for a in _json(rig.base + "/api/alarms")["alarms"]}
    assert all(alarms[a]["acknowledged"] is True for a in acked)
    rig.shot("06b-banner-acknowledged")


def test_result_png_renders_in_browser(rig):
    rid = _json(rig.base + "/api/results?limit=1")["results"][0]["id"]
    code, headers, body = _http(rig.base + f"/api/results/{rid}.png")
    assert code == 200 and headers["Content-Type"] == "image/png"
    assert body[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = struct.unpack(">II", body[16:24])
    assert w == 1600 and 600 < h < 1200
    (ARTIFACTS / "result.png").write_bytes(body)
    p = rig.page
    dims = p.evaluate(f"""new Promise(res => {{ const i = new Image(); i.onload = () => res([i.naturalWidth,
        i.naturalHeight]); i.onerror = () => res(null); i.src = '/api/results/{rid}.png?width=1200'; }})""",
                      await_promise=True)
    assert dims and dims[0] == 1200


BAD_REQUESTS = [
    # (method, path, body, content-type, expected status)
    ("POST", "/api/patient", b'{"age": "sixty", "sex": "female"}', "application/json", 400),
    ("POST", "/api/patient", b'{"age": -1}', "application/json", 400),
    ("POST", "/api/patient", b'{"age": 131}', "application/json", 400),      # the one age range: 0-130
    ("POST", "/api/patient", b'{"age": true}', "application/json", 400),
    ("POST", "/api/patient", b'{"age": NaN}', "application/json", 400),
    ("POST", "/api/patient", b'{"sex": "x"}', "application/json", 400),
    ("POST", "/api/patient", b'{"sex": 1}', "application/json", 400),
    ("POST", "/api/patient", b'{"weight": 80}', "application/json", 400),
    ("POST", "/api/patient", b'[63, "female"]', "application/json", 400),
    ("POST", "/api/patient", b'{"age": 50', "application/json", 400),
    ("POST", "/api/patient", b'{}', "application/json", 400),
    ("POST", "/api/patient", b'age=50&sex=male', "application/x-www-form-urlencoded", 415),
    ("POST", "/api/patient", b'{"age": 50}', None, 415),
    ("POST", "/api/patient", b'{"age": 50, "pad": "' + b"x" * 5000 + b'"}', "application/json", 413),
    ("PUT", "/api/patient", b'{"age": 50}', "application/json", 405),
    ("POST", "/api/alarms/no-such-alarm/ack", b'{}', "application/json", 404),
    ("POST", "/api/alarms/bad%20id!/ack", b'{}', "application/json", 400),
    ("GET", "/api/alarms/x/ack", None, None, 405),
    ("GET", "/api/results/no-such-result", None, None, 404),
    ("GET", "/api/results/no-such-result.png", None, None, 404),
    ("GET", "/api/results?limit=0", None, None, 400),
    ("GET", "/api/results?limit=abc", None, None, 400),
    ("GET", "/api/strip?since=-5", None, None, 400),
    ("GET", "/api/nope", None, None, 404),
    ("GET", "/static/..%2Fhub.py", None, None, 404),
    ("DELETE", "/api/results", None, None, 405),
]


def test_bad_api_input_is_refused_and_changes_nothing(rig):
    patient = _json(rig.base + "/api/patient")
    alarms = _json(rig.base + "/api/alarms")["alarms"]
    for method, path, body, ctype, expected in BAD_REQUESTS:
        code, headers, raw = _http(rig.base + path, method, body, ctype)
        assert code == expected, (method, path, body[:60] if body else None, code, raw[:200])
        err = json.loads(raw)
        assert isinstance(err.get("error"), str) and err["error"], (path, err)
        assert headers["Content-Type"] == "application/json"
    # an alarm ack body with bad fields is refused even for a real alarm id
    real = next((a for a in alarms if not a.get("acknowledged")), None)
    if real is not None:
        for bad in (b'{"by": 5}', b'{"by": ""}', b'{"who": "x"}', b'"crew"'):
            code, _, _ = _http(rig.base + f"/api/alarms/{real['id']}/ack", "POST", bad)
            assert code == 400, bad
    assert _json(rig.base + "/api/patient") == patient, "bad input changed the patient context"
    after = {a["id"]: a.get("acknowledged") for a in _json(rig.base + "/api/alarms")["alarms"]}
    for a in alarms:
        assert after.get(a["id"], a.get("acknowledged")) == a.get("acknowledged") or a["id"] not in after
    # the page survived it all without a script error
    assert not rig.page.exceptions, rig.page.exceptions


def test_history_shows_an_older_result(rig):
    p = rig.page
    p.wait_for("document.querySelectorAll('#history button').length >= 2", 10)
    older = p.evaluate("document.querySelectorAll('#history button')[1].dataset.id")
    p.tap(f"#history button[data-id='{older}']")
    p.wait_for(f"document.getElementById('result-title').dataset.id === {json.dumps(older)}", 10)
    assert "from history" in p.evaluate("document.getElementById('result-title').textContent")
    assert older in [r["id"] for r in _json(rig.base + "/api/results?limit=50")["results"]]
    newest = p.evaluate("document.querySelectorAll('#history button')[0].dataset.id")
    p.tap(f"#history button[data-id='{newest}']")          # back to following the latest
    p.wait_for("ecg.st.selectedId === null", 5)


def test_new_patient_clears_context(rig):
    p = rig.page
    p.tap("#new-patient")
    assert p.evaluate("document.getElementById('new-patient').textContent").startswith("Tap again")
    assert _json(rig.base + "/api/patient")["patient"]["age"] == 63.0, "one tap must not clear"
    p.tap("#new-patient")
    p.wait_for("document.getElementById('patient-msg').textContent.startsWith('New patient')", 10)
    assert _json(rig.base + "/api/patient")["patient"] == {"age": None, "sex": None}
    assert "age unknown" in p.evaluate("document.getElementById('patient-now').textContent")
    assert '"patient_cleared"' in (rig.state / "audit.jsonl").read_text()


def test_small_touchscreen_layout(rig):
    """800x480 kiosk panel: banner, notice and live strip are visible without scrolling."""
    p = rig.page
    p.set_viewport(800, 480)
    time.sleep(1.0)
    boxes = p.evaluate("""['notice', 'banner', 'live'].map(id => { const r = document.getElementById(id)
        .getBoundingClientRect(); return [id, r.top, r.bottom, r.width, r.height]; })""")
    for name, top, bottom, width, height in boxes:
        assert top >= 0 and bottom <= 480 + 1 and width > 0 and height > 0, (name, top, bottom, width, height)
    rig.shot("07-800x480")
    p.set_viewport(1280, 800)


def test_no_signal_then_daemon_restart_recovers(rig):
    """The front end goes away, then the daemon restarts (as systemd would): the page says so and
    comes back on its own, showing the stored results again."""
    p = rig.page
    before = _json(rig.base + "/api/results?limit=3")["results"]
    rig.stop(rig.sim)
    p.wait_for("document.getElementById('tech-label').textContent === 'NO SIGNAL'", 10)
    rig.shot("08-no-signal")
    rig.stop(rig.daemon)
    p.wait_for("document.getElementById('tech-label').textContent === 'DISPLAY NOT CONNECTED'", 10)
    rig.shot("09-not-connected")
    rig.sim = rig.start_sim()
    rig.daemon = rig.start_daemon()
    s0 = p.evaluate("ecg.perf.samplesIn")
    p.wait_for(f"ecg.perf.samplesIn > {s0} + 250 && document.getElementById('live-state').textContent.startsWith('live')", 30)
    p.wait_for("document.getElementById('tech').dataset.state === 'off'", 10)
    assert before[0]["id"] in [r["id"] for r in _json(rig.base + "/api/results?limit=20")["results"]] or \
        _json(rig.base + f"/api/results/{before[0]['id']}")["id"] == before[0]["id"], "stored results reachable"
    assert not p.exceptions, p.exceptions
