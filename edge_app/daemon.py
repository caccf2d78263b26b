"""The long-running service: front end -> pipeline -> store/audit -> uplink/display, under systemd.

Threads: the main thread runs the data path (driver -> pipeline -> store), so a hang anywhere in it
stops the progress-gated watchdog and systemd restarts the service. Side threads: the watchdog pinger,
the control socket server, the uplink's own threads and the display server. None of them can block
the data path: they only read snapshots or call the DeviceControl methods below (short, locked).

Alarm conditions are latched in the spirit of IEC 60601-1-8: a condition that persists over
consecutive windows keeps one alarm id (not a new alarm every 5 s); it is audited and published when
it starts, when it is acknowledged and when it ends. The active alarms (ids, acknowledgements) are kept in
<state_dir>/alarms.json (atomic write on every change, refreshed every minute while any is active), so a
restart (watchdog, update, short power cut) continues them instead of raising a continuing condition again
as a new unacknowledged alarm. State older than ALARM_RESTORE_MAX_AGE_S is not restored (a new patient may
be attached by then): those alarms are closed as cleared, and a persisting condition raises a new alarm.

Every result carries the `run_id` of the daemon process that produced it (a uuid4 made once per process),
because the stream index restarts at 0 in every process: after a restart two results can carry the same
window indices. The process's start and stop and every stream gap are audited and also queued durably on
the uplink as events (`Uplink.publish_event`, topic `<prefix>/<device_id>/event`), so a remote subscriber can
account for every stretch of signal: a result, a cannot-interpret result with its reason, or a reported gap.
`<state_dir>/run.json` remembers the last run, so the `started` event says whether the previous run stopped
cleanly (a SIGKILL / power cut leaves no `stopped` event).

Runtime configuration changes (MQTT, control socket) are validated by edge_app.config, applied,
audited and persisted in <state_dir>/config-overrides.json (the config file itself sits on the
read-only system partition under ProtectSystem=strict); they are re-applied at the next start.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import queue
import signal
import threading
import time
from collections import OrderedDict, deque
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edge_app import __version__
from edge_app.config import Config, apply_changes, mqtt_enabled, mqtt_to_dict
from edge_app.errors import ConfigError
from edge_app.patient import ControlServer, PatientStore, validate_patient
from edge_app.pipeline import Analysis, Pipeline, PipelineSettings
from edge_app.results import Alarm, PatientContext, new_id, utc_now_iso
from edge_app.storage import AuditLog, ResultStore
from edge_app.storage.atomic import atomic_write_bytes
from edge_app.supervision import Notifier, Watchdog

log = logging.getLogger("edge_app.daemon")
HONEST_IDLE = ("no_device", "connecting")     # driver states that count as progress while idle
SECRET_KEYS = ("password",)
WINDOW_CONDITIONS = ("suspected_mi", "abnormal_ecg", "extreme_heart_rate", "signal_unusable")
CLEAR_AFTER_WINDOWS = 2
QUEUE_BLOCKS = 50 * 120          # 2 min of 20 ms blocks between the serial reader and the analysis
ALARM_RESTORE_MAX_AGE_S = 600.0  # active alarms saved longer ago than this are not continued after a restart
ALARM_REFRESH_S = 60.0           # re-save alarms.json this often while alarms are active (its age = downtime)


def _default_driver_factory(port: str, baudrate: int, fs: int) -> Any:
    from firmware_bridge.driver import FrontEndDriver
    return FrontEndDriver(port, baudrate=baudrate, rate_hz=fs)


class Daemon:
    """Implements edge_app.uplink.control.DeviceControl (status/get_config/set_config/set_patient/
    clear_patient/acknowledge_alarm) plus latest()/alarms()/store_stats() for the control socket."""

    def __init__(self, cfg: Config, driver_factory: Callable[[str, int, int], Any] | None = None,
                 sinks: tuple[Callable[[dict[str, Any]], None], ...] = (), notifier: Notifier | None = None):
        self.t_created = time.monotonic()
        self.run_id = new_id()                    # this process; stamped on every result and event
        self.run_path = cfg.state_dir / "run.json"
        self.previous_run: dict[str, Any] | None = None
        self._prev_end: tuple[int, int | None] | None = None   # (stream index, device us) after the last block
        self.base_cfg = cfg
        self.overrides_path = cfg.state_dir / "config-overrides.json"
        self.overrides: dict[str, Any] = {}
        self.cfg = cfg
        self.driver_factory = driver_factory or _default_driver_factory
        self.sinks = list(sinks)
        self.notifier = notifier or Notifier()
        self.watchdog = Watchdog(self.notifier)
        self._stop = threading.Event()
        self._lock = threading.RLock()
        self.state = "starting"
        self._alarms: "OrderedDict[str, Alarm]" = OrderedDict()     # recent alarms by id
        self.active: dict[str, str] = {}                            # alarm code -> active alarm id
        self._absent: dict[str, int] = {}                           # code -> consecutive windows without it
        self.alarms_path = cfg.state_dir / "alarms.json"
        self._alarm_file_lock = threading.Lock()
        self._alarms_saved = 0.0                                    # monotonic time of the last save
        self.latencies_ms: deque[float] = deque(maxlen=1000)
        self.inference_ms: deque[float] = deque(maxlen=100)    # model run alone, for telemetry
        self._telemetry_sent = False     # the first telemetry goes out at once; later ones on the uplink's interval
        self.counters = {"blocks": 0, "samples": 0, "windows": 0, "cannot_interpret": 0, "gaps": 0,
                         "errors": 0, "overruns": 0}
        self.last_result: dict[str, Any] | None = None
        self.ready_s: float | None = None
        self.driver: Any = None
        self.uplink: Any = None
        self.hub: Any = None
        self.display: Any = None
        self.control: ControlServer | None = None
        self.store: ResultStore | None = None
        self.audit: AuditLog | None = None

    # ------------------------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        cfg = self.cfg
        try:
            cfg.state_dir.mkdir(parents=True, exist_ok=True)
            probe = cfg.state_dir / f".write-test-{os.getpid()}"
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as e:
            raise ConfigError("storage.state_dir", f"{cfg.state_dir} is not a writable directory ({e.strerror})",
                              "create it and give the service user write access (systemd: StateDirectory=ecg-edge)"
                              ) from None
        self._load_overrides()
        cfg = self.cfg
        self.audit = AuditLog(cfg.state_dir / "audit.jsonl", cfg.device_id)
        self.store = ResultStore(cfg.state_dir, max_bytes=cfg.get("storage.max_bytes"),
                                 retention_days=cfg.get("storage.retention_days"),
                                 keep_strips=cfg.get("storage.keep_strips"), audit=self.audit)
        for rid in self.store.recovered:
            self.audit.append("result_recovered", {"id": rid})
        age, sex = cfg.patient
        self.patient = PatientStore(cfg.state_dir / "patient.json", PatientContext(age, sex))
        from edge_app.inference import load_model
        from edge_app.model_store import ModelStore
        # Models installed over MQTT (signed, self-tested) live in <state_dir>/models; else the shipped one.
        self.model_store = ModelStore(cfg.state_dir, cfg.manifest_path, on_change=self._on_model_change)
        manifest = self.model_store.active_manifest_path()
        self.model = load_model(manifest, backend=cfg.get("model.backend"), num_threads=cfg.get("model.num_threads"))
        self.audit.append("model_loaded", {"version": self.model.model_version, "sha256": self.model.model_sha256,
                                           "manifest": str(manifest),
                                           "backend": str(getattr(self.model.backend, "name", ""))})
        self.pipeline = Pipeline(self.model, PipelineSettings.from_config(cfg), cfg.device_id,
                                 patient=self.patient.get, run_id=self.run_id)
        self._warm_up()
        if mqtt_enabled(cfg.mqtt):
            self._start_uplink()
        if cfg.get("display.enabled"):
            self._start_display()
        self._restore_alarms()
        self.driver = self.driver_factory(cfg.get("frontend.port"), cfg.get("frontend.baudrate"),
                                          cfg.get("frontend.fs"))
        prev = self._begin_run()
        self.audit.append("start", {"software_version": __version__, "config_version": self.config_version(),
                                    "pid": os.getpid(), "run_id": self.run_id} | prev)
        self._publish_event("started", prev | {
            "software_version": __version__, "config_version": self.config_version(), "pid": os.getpid(),
            "model_version": self.model.model_version, "model_sha256": self.model.model_sha256,
            "fs": int(cfg.get("frontend.fs")), "stride_s": float(cfg.get("windows.stride_s")),
            "length_s": float(cfg.get("windows.length_s"))})
        # The control socket answers only once every service (uplink, display) is up: "status ok" means ready.
        self.control = ControlServer(cfg.control_socket, self)
        self.control.start()
        self.state = "ready"
        self.ready_s = time.monotonic() - self.t_created
        self.notifier.ready(f"ready in {self.ready_s:.2f} s; waiting for the front end on {cfg.get('frontend.port')}")
        self.watchdog.start()
        log.info("ready in %.2f s (model %s sha256 %s..., state %s, control %s)", self.ready_s,
                 self.model.model_version, self.model.model_sha256[:12], cfg.state_dir, cfg.control_socket)

    def _begin_run(self) -> dict[str, Any]:
        """Record this run in <state_dir>/run.json; return what is known of the previous one."""
        prev: dict[str, Any] = {"previous_run_id": None, "previous_stop": None}
        try:
            old = json.loads(self.run_path.read_text())
            prev = {"previous_run_id": old.get("run_id"),
                    "previous_stop": "clean" if old.get("stopped_at") else "unclean"}
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as e:
            log.error("ignoring unreadable %s: %s", self.run_path, e)
        self.previous_run = prev
        self._write_run(None)
        return prev

    def _write_run(self, stopped_at: str | None) -> None:
        doc = {"run_id": self.run_id, "pid": os.getpid(), "started_at": getattr(self, "_started_at", None),
               "stopped_at": stopped_at}
        if stopped_at is None:
            doc["started_at"] = self._started_at = utc_now_iso()
        atomic_write_bytes(self.run_path, json.dumps(doc).encode())

    def _publish_event(self, code: str, data: dict[str, Any]) -> dict[str, Any]:
        """Queue an event (started / stopped / stream_gap) durably on the uplink; never raises."""
        ev = {"schema": "ecg-edge.event/1", "code": code, "run_id": self.run_id, "device_id": self.cfg.device_id,
              "time": utc_now_iso()} | data
        if self.uplink is not None:
            try:
                self.uplink.publish_event(ev, "low")
            except Exception:  # noqa: BLE001 - OutboxFull etc.: the audit log still has it
                log.exception("could not queue event %s for the uplink", code)
        return ev

    def _on_model_change(self, manifest_path: str) -> None:
        """The model store swapped (install or rollback, already verified and self-tested): load and switch.
        The pipeline's model reference is replaced in one assignment, so a window is analysed wholly by the
        old or wholly by the new model."""
        from edge_app.inference import load_model
        old = self.model
        try:
            new = load_model(manifest_path, backend=self.cfg.get("model.backend"),
                             num_threads=self.cfg.get("model.num_threads"))
        except Exception as e:  # noqa: BLE001 - keep the running model; say so loudly
            log.error("new model %s failed to load (%s); keeping %s", manifest_path, e, old.model_version)
            self.audit.append("model_change_failed", {"manifest": str(manifest_path), "error": str(e)})
            return
        self.model = new
        self.pipeline.set_model(new)
        self.audit.append("model_changed", {"from": {"version": old.model_version, "sha256": old.model_sha256},
                                            "to": {"version": new.model_version, "sha256": new.model_sha256},
                                            "manifest": str(manifest_path)})
        log.warning("model changed: %s -> %s", old.model_version, new.model_version)
        if self.uplink is not None:
            self.uplink.set_birth({"model_version": new.model_version, "model_sha256": new.model_sha256})

    def _warm_up(self) -> None:
        """Import and exercise everything the first window needs, so it is not 1 s late (lazy imports,
        interpreter allocation, filter design caches)."""
        import wfdb  # noqa: F401  (strip writer)
        from edge_app.pipeline import _call_quality
        from edge_app.signal_chain.beats import ecg_measure
        fs = float(self.cfg.get("frontend.fs"))
        t = np.arange(int(10 * fs)) / fs
        x = np.outer(np.sin(2 * np.pi * 1.2 * t) * 500, np.ones(12))
        try:
            _call_quality(x, fs, np.zeros((len(x), 9), bool), int(self.cfg.get("signal.mains_hz")))
            ecg_measure(x, fs)
            self.pipeline.resampler_factory(fs).process(x[:100])
            self.model.predict(np.zeros((1000, 12)), None, None)
        except Exception as e:  # noqa: BLE001 - warm-up is an optimisation, never a reason not to start
            log.debug("warm-up: %s", e)

    def _start_uplink(self) -> None:
        from edge_app.uplink.service import Uplink
        self.uplink = Uplink(self.cfg.mqtt, self.cfg.device_id, self.cfg.state_dir / "outbox.sqlite",
                             control=self, model_store=self.model_store, on_delivered=self._on_delivered)
        self.uplink.set_birth({"software_version": __version__, "model_version": self.model.model_version,
                               "model_sha256": self.model.model_sha256, "config_version": self.config_version(),
                               "frontend": self._frontend_birth()})
        self.uplink.start()
        for d in self.store.unqueued():           # committed before a crash, never handed to the outbox
            self._publish_result(d)

    def _frontend_birth(self) -> dict[str, Any]:
        """Front-end identity for the retained birth: what is configured, and what the device reported."""
        return {"port": self.cfg.get("frontend.port"), "fs": int(self.cfg.get("frontend.fs")),
                "status": str(getattr(self.driver, "status", "none")),
                "info": _jsonable(getattr(self.driver, "info", None))}

    def _start_display(self) -> None:
        from edge_app.display import DisplayServer, LiveHub
        self.hub = LiveHub(controller=self)
        self.hub.result_lookup = self.store.get
        self.hub.history_lookup = self.store.latest     # the banner and history survive a daemon restart

        def strip(rid: str) -> tuple[float, np.ndarray] | None:
            try:
                uv, fs = self.store.strip(rid)
                return fs, uv
            except (KeyError, FileNotFoundError):
                return None
        self.hub.strip_lookup = strip
        self.hub.set_patient_view(self.patient.get().to_dict())
        self.display = DisplayServer(self.hub, host=self.cfg.get("display.host"), port=self.cfg.get("display.port"))
        self.display.start()

    def request_stop(self, *_: Any) -> None:
        self._stop.set()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)

    def run(self) -> None:
        """The data path. Returns after request_stop() (SIGTERM) once everything is flushed."""
        try:
            self._loop()
        finally:
            self.shutdown()

    def _reader(self, idle: float) -> None:
        """Serial reader thread: keeps the port drained even while an analysis runs, so a slow window
        never makes the front end's buffer overflow (which would cost samples and reset the window)."""
        while not self._stop.is_set():
            try:
                for item in self.driver.blocks(idle_timeout_s=idle):
                    self._queue.put((time.monotonic(), item))
                    if self._stop.is_set():
                        break
            except Exception:  # noqa: BLE001 - the driver promises not to raise; if it does, retry
                log.exception("front-end driver failed; retrying in 1 s")
            if not self._stop.is_set():
                self._stop.wait(1.0)
        self._queue.put((time.monotonic(), None))

    def _loop(self) -> None:
        idle = float(self.cfg.get("frontend.idle_timeout_s"))
        self._queue: queue.Queue = queue.Queue(maxsize=QUEUE_BLOCKS)
        reader = threading.Thread(target=self._reader, args=(idle,), name="frontend-reader", daemon=True)
        reader.start()
        last_status = 0.0
        while not self._stop.is_set():
            try:
                t_recv, item = self._queue.get(timeout=2 * idle + 1.0)
            except queue.Empty:
                # Not even an idle tick from the reader: the serial path is stuck. No watchdog progress.
                self.state = "reader_stuck"
                log.error("front-end reader gave no sign of life for %.1f s", 2 * idle + 1.0)
                continue
            if self._stop.is_set():
                break
            if item is None:
                self._idle()
            else:
                self._on_block(item, t_recv)
            now = time.monotonic()
            if now - last_status > 5.0:
                last_status = now
                self._publish_status()

    def _idle(self) -> None:
        st = str(getattr(self.driver, "status", "unknown"))
        if st in HONEST_IDLE:
            self.watchdog.progress(f"front end {st}")
            self._raise_condition("no_device" if st == "no_device" else "frontend_connecting", "technical",
                                  "medium" if st == "no_device" else "low",
                                  f"No ECG front end on {self.cfg.get('frontend.port')} ({st}); check the cable.")
        else:
            self._raise_condition("frontend_stalled", "technical", "medium",
                                  f"ECG front end connected but sending no samples ({st}).")
        self.state = st

    def _on_block(self, block: Any, t_recv: float | None = None) -> None:
        self.watchdog.progress("samples")
        self.state = "streaming"
        self._clear_condition("no_device")
        self._clear_condition("frontend_connecting")
        self._clear_condition("frontend_stalled")
        self.counters["blocks"] += 1
        self.counters["samples"] += block.n
        if self.uplink is not None and (self.counters["blocks"] == 1 or block.events):
            self.uplink.set_birth({"frontend": self._frontend_birth()})   # the device (re)introduced itself
        dt = None if block.device_time_us is None else int(block.device_time_us)
        if block.gap_before != 0 or block.events:
            self.counters["gaps"] += 1
            gap = {"at_index": int(block.first_index), "missing": int(block.gap_before),
                   "events": list(block.events), "device_time_us": dt,
                   "prev_end_index": None if self._prev_end is None else self._prev_end[0],
                   "prev_end_device_time_us": None if self._prev_end is None else self._prev_end[1],
                   "fs": float(block.fs)}
            self.audit.append("stream_gap", gap | {"run_id": self.run_id})
            self._publish_event("stream_gap", gap)
        self._prev_end = (int(block.first_index) + block.n,
                          None if dt is None else dt + int(round(block.n * 1e6 / float(block.fs))))
        if self.hub is not None:
            self.hub.push_block(block)
        try:
            analyses = self.pipeline.process_block(block, t_arrival=t_recv)
        except Exception as e:  # noqa: BLE001 - one bad block must not stop the appliance
            self.counters["errors"] += 1
            log.exception("analysis failed on block at %d; the window restarts", block.first_index)
            self.pipeline.assembler = None
            self._raise_condition("analysis_failed", "technical", "medium",
                                  f"Analysis failed ({type(e).__name__}: {e}); results may be delayed. "
                                  "Restarting the window.")
            return
        if analyses:
            self._clear_condition("analysis_failed")
        for a in analyses:
            self._handle(a)

    def _handle(self, a: Analysis) -> None:
        t0 = time.monotonic()
        r = a.result
        self.counters["windows"] += 1
        if r.triage_level == "cannot_interpret":
            self.counters["cannot_interpret"] += 1
        if a.overran:
            self.counters["overruns"] += 1
            self.watchdog.stall(f"analysis took {r.timings_ms.get('analysis_ms', 0):.0f} ms, deadline "
                                f"{self.cfg.get('model.deadline_s')} s")
            log.warning("analysis overran its deadline: %s", r.timings_ms)
        else:
            self.watchdog.progress("inference")
        # Latch alarm conditions: a persisting condition keeps its alarm id.
        codes = set()
        latched = []
        for al in r.alarms:
            codes.add(al.code)
            latched.append(self._raise_condition(al.code, al.kind, al.priority, al.message, result_id=r.id))
        r.alarms = latched
        for code in list(self.active):
            if code in codes:
                self._absent.pop(code, None)
            elif code in WINDOW_CONDITIONS:
                # Hysteresis: a condition ends after CLEAR_AFTER_WINDOWS consecutive windows without it, so a
                # probability hovering at its threshold does not make the alarm flap every stride.
                self._absent[code] = self._absent.get(code, 0) + 1
                if self._absent[code] >= CLEAR_AFTER_WINDOWS or code == "signal_unusable":
                    self._absent.pop(code, None)
                    self._clear_condition(code)
        d = r.to_dict()
        stored = self.store.put(d, a.window.native_uv, a.window.fs)
        self.audit.append("result", {
            "id": r.id, "level": r.triage_level, "priority": r.alarm_priority, "quality": r.quality.verdict,
            "probabilities": r.probabilities, "window": [r.window.start_index, r.window.end_index],
            "alarms": [al.id for al in r.alarms], "model_sha256": r.model.sha256,
            "json_sha256": hashlib.sha256(stored.json_path.read_bytes()).hexdigest()})
        if stored.full:
            self._raise_condition("store_full", "technical", "medium",
                                  f"Result store over its limit ({self.store.max_bytes} bytes) with only "
                                  "undelivered results left; nothing is deleted. Connect the uplink or export.")
        else:
            self._clear_condition("store_full")
        self._publish_result(d)
        if self.hub is not None:
            self.hub.push_result(d, strip_uv=a.window.native_uv, strip_fs=a.window.fs)
            self.hub.push_quality(r.quality.__dict__ | {"verdict": r.quality.verdict})
            self.hub.push_heart_rate(r.heart_rate_bpm)
        self.last_result = d
        for sink in self.sinks:
            try:
                sink(d)
            except Exception:  # noqa: BLE001
                log.exception("result sink failed")
        total = r.timings_ms.get("since_last_sample_ms", 0.0) + (time.monotonic() - t0) * 1000
        self.latencies_ms.append(total)
        if "model_ms" in r.timings_ms:
            self.inference_ms.append(r.timings_ms["model_ms"])
        if self.uplink is not None:       # refresh what the next periodic telemetry carries (no publish now)
            self.uplink.publish_telemetry(self._telemetry_metrics(), now=False)
        log.info("result %s window %.1f-%.1f s: %s (priority %s), quality %s%s, HR %s, %.0f ms after last sample",
                 r.id[:8], r.window.start_s, r.window.end_s, r.triage_level, r.alarm_priority, r.quality.verdict,
                 f" ({'; '.join(r.quality.reasons)})" if r.quality.reasons else "",
                 r.heart_rate_bpm, total)

    def _publish_result(self, d: dict[str, Any]) -> None:
        if self.uplink is None:
            return
        try:
            msg_id = self.uplink.publish_result(d, d.get("alarm_priority", "none"))
            self.store.set_msg_id(d["id"], msg_id)
        except Exception:  # noqa: BLE001 - OutboxFull etc.: the result stays in our store, undelivered
            log.exception("could not queue result %s for the uplink; kept in the store", d["id"])

    def _on_delivered(self, msg_id: str) -> None:
        rid = self.store.mark_delivered_msg(msg_id)
        if rid:
            log.debug("result %s delivered", rid)

    # ----------------------------------------------------------------------------------- alarms
    def _raise_condition(self, code: str, kind: str, priority: str, message: str,
                         result_id: str | None = None) -> Alarm:
        with self._lock:
            aid = self.active.get(code)
            if aid is not None and aid in self._alarms:
                al = self._alarms[aid]
                al.message, al.result_id = message, result_id or al.result_id
                return al
            al = Alarm(id=new_id(), kind=kind, priority=priority, code=code, message=message, time=utc_now_iso(),
                       device_id=self.cfg.device_id, result_id=result_id)
            self._alarms[al.id] = al
            while len(self._alarms) > 500:
                self._alarms.popitem(last=False)
            self.active[code] = al.id
        self._save_alarms()
        self.audit.append("alarm", al.to_dict() | {"state": "raised"})
        log.warning("ALARM %s (%s, %s priority): %s", code, kind, priority, message)
        self._publish_alarm(al, "raised")
        return al

    def _clear_condition(self, code: str) -> None:
        with self._lock:
            aid = self.active.pop(code, None)
            al = self._alarms.get(aid) if aid else None
        if al is not None:
            self._save_alarms()
            self.audit.append("alarm_cleared", {"id": al.id, "code": code})
            log.info("alarm condition %s ended", code)
            self._publish_alarm(al, "cleared")

    def _save_alarms(self) -> None:
        """Persist the active alarms atomically (never raises: an unwritable file costs continuity only)."""
        with self._alarm_file_lock:
            with self._lock:
                active = [self._alarms[a].to_dict() for a in self.active.values() if a in self._alarms]
            doc = {"saved_at": utc_now_iso(), "saved_at_epoch": time.time(), "run_id": self.run_id,
                   "active": active}
            try:
                atomic_write_bytes(self.alarms_path, json.dumps(doc, indent=1).encode())
                self._alarms_saved = time.monotonic()
            except OSError as e:
                log.error("could not persist alarm state to %s: %s", self.alarms_path, e)

    def _restore_alarms(self) -> None:
        """Continue the alarms that were active when the previous run ended (if saved recently enough)."""
        try:
            doc = json.loads(self.alarms_path.read_text())
            saved = list(doc.get("active") or [])
            age = time.time() - float(doc.get("saved_at_epoch", 0.0))
        except FileNotFoundError:
            return
        except (OSError, ValueError, TypeError, AttributeError) as e:
            log.error("ignoring unreadable %s (%s): alarms start afresh", self.alarms_path, e)
            doc, saved, age = {}, [], 0.0
        names = {f.name for f in dataclasses.fields(Alarm)}
        for d in saved:
            try:
                al = Alarm(**{k: v for k, v in d.items() if k in names})
            except (TypeError, AttributeError):
                log.error("ignoring a malformed saved alarm: %r", d)
                continue
            if not 0.0 <= age <= ALARM_RESTORE_MAX_AGE_S:
                # Too old (or the clock went backwards): do not carry an acknowledgement over to what may be
                # another patient. Close it; a condition still present raises a new alarm.
                self.audit.append("alarm_cleared", {"id": al.id, "code": al.code,
                                                    "reason": f"not continued after restart (saved {age:.0f} s ago)"})
                self._publish_alarm(al, "cleared")
                continue
            with self._lock:
                self._alarms[al.id] = al
                self.active[al.code] = al.id
            self.audit.append("alarm_restored", {"id": al.id, "code": al.code, "acknowledged_by": al.acknowledged_by,
                                                 "from_run_id": doc.get("run_id"), "saved_s_ago": round(age, 1)})
            log.warning("alarm %s (%s) continues from the previous run%s", al.code, al.id[:8],
                        f", acknowledged by {al.acknowledged_by}" if al.acknowledged_by else "")
            if self.hub is not None:
                self.hub.push_alarm(al.to_dict() | {"state": "acknowledged" if al.acknowledged_by else "raised",
                                                    "active": True, "acknowledged": al.acknowledged_by is not None})
        self._save_alarms()

    def _publish_alarm(self, al: Alarm, state: str) -> None:
        d = al.to_dict() | {"state": state, "active": state != "cleared"}
        if self.uplink is not None:
            try:
                self.uplink.publish_alarm(d, al.priority)
            except Exception:  # noqa: BLE001
                log.exception("could not queue alarm %s", al.id)
        if self.hub is not None:
            self.hub.push_alarm(d | {"acknowledged": al.acknowledged_by is not None})

    # ------------------------------------------------------------------------------ DeviceControl
    def config_version(self) -> str:
        return hashlib.sha256(json.dumps(self.cfg.to_dict(), sort_keys=True, default=str).encode()).hexdigest()[:12]

    def status(self) -> dict[str, Any]:
        ok, why = self.watchdog.healthy()
        lat = sorted(self.latencies_ms)
        drv = self.driver
        return {
            "state": self.state, "device_id": self.cfg.device_id, "software_version": __version__,
            "pid": os.getpid(), "ready_s": self.ready_s,
            "frontend": {"status": str(getattr(drv, "status", "none")), "port": self.cfg.get("frontend.port"),
                         "info": _jsonable(getattr(drv, "info", None)), "stats": _jsonable(getattr(drv, "stats", None))},
            "model": {"version": self.model.model_version, "sha256": self.model.model_sha256},
            "patient": self.patient.get().to_dict(),
            "counters": dict(self.counters),
            "latency_ms": {"n": len(lat), "median": lat[len(lat) // 2] if lat else None,
                           "p99": lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else None},
            "latency_all_ms": [round(v, 1) for v in self.latencies_ms],
            "alarms_active": [self._alarms[a].to_dict() for a in self.active.values() if a in self._alarms],
            "last_result": None if self.last_result is None else {
                k: self.last_result.get(k) for k in ("id", "time", "triage_level", "alarm_priority",
                                                     "probabilities", "heart_rate_bpm")}
            | {"quality": (self.last_result.get("quality") or {}).get("verdict")},
            "quality": None if self.last_result is None else self.last_result.get("quality"),
            "store": self.store.stats(), "watchdog": {"healthy": ok, "detail": why, "pings": self.watchdog.pings},
            "uplink": self.uplink.stats() if self.uplink is not None else {"enabled": False},
            "config_version": self.config_version(),
            "notice": "Triage aid, not a diagnosis",
        }

    def get_config(self) -> dict[str, Any]:
        d = self.cfg.to_dict()
        for k in SECRET_KEYS:
            if d.get("mqtt", {}).get(k):
                d["mqtt"][k] = "***"
        d["config_version"] = self.config_version()
        return d

    def set_config(self, changes: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(changes, dict) or not changes:
            raise ConfigError("<changes>", "no changes given", 'send {"section.key": value, ...}')
        for k in changes:
            if k == "mqtt" or k.startswith("mqtt."):
                raise ConfigError(k if "." in k else "mqtt", "MQTT settings cannot be changed while running",
                                  "edit the [mqtt] section of the config file and restart the service")
        with self._lock:
            new, diff = apply_changes(self.cfg, changes)      # raises ConfigError; nothing applied then
            self._apply(new)
            self.overrides.update({k: v[1] for k, v in diff.items()})
            atomic_write_bytes(self.overrides_path, json.dumps(self.overrides, indent=1).encode())
        self.audit.append("config_change", {"changes": {k: {"old": o, "new": n} for k, (o, n) in diff.items()},
                                            "config_version": self.config_version()})
        if any(k.startswith("patient.") for k in diff):     # [patient] changed remotely: it is the context now
            age, sex = self.cfg.patient
            self.set_patient(age, sex)
        log.info("configuration changed: %s", {k: n for k, (o, n) in diff.items()})
        return self.get_config()

    def _apply(self, new: Config) -> None:
        self.cfg = new
        s = PipelineSettings.from_config(new)
        p = getattr(self, "pipeline", None)
        if p is not None:
            p.set_stride(s.stride_s)
            p.settings.threshold_overrides = s.threshold_overrides
            p.settings.hr_low_bpm, p.settings.hr_high_bpm = s.hr_low_bpm, s.hr_high_bpm
            p.settings.deadline_s, p.settings.mains_hz = s.deadline_s, s.mains_hz
        if self.store is not None:
            self.store.max_bytes = int(new.get("storage.max_bytes"))
            self.store.retention_days = float(new.get("storage.retention_days"))
            self.store.keep_strips = bool(new.get("storage.keep_strips"))
        logging.getLogger().setLevel(new.get("logging.level"))

    def _load_overrides(self) -> None:
        if not self.overrides_path.exists():
            return
        try:
            ov = json.loads(self.overrides_path.read_text())
            new, _ = apply_changes(self.cfg, ov)
        except (OSError, ValueError) as e:
            # A bad override file must not stop the appliance: fall back to the file config, loudly.
            log.error("ignoring %s: %s", self.overrides_path, e)
            return
        self.overrides = ov
        self.cfg = new
        log.info("applied runtime overrides from %s: %s", self.overrides_path, ov)

    def set_patient(self, age: float | None, sex: str | None) -> dict[str, Any]:
        ctx = validate_patient(age, sex)
        self.patient.set(ctx)
        self.audit.append("patient_set", ctx.to_dict())
        if self.hub is not None:
            self.hub.set_patient_view(ctx.to_dict())
        log.info("patient context set: %s", ctx.to_dict())
        return ctx.to_dict()

    def clear_patient(self) -> dict[str, Any]:
        ctx = self.patient.set(PatientContext())
        self.audit.append("patient_cleared", {})
        if self.hub is not None:
            self.hub.set_patient_view(ctx.to_dict())
        log.info("patient context cleared (unknown age/sex)")
        return ctx.to_dict()

    def acknowledge_alarm(self, alarm_id: str, by: str) -> dict[str, Any]:
        with self._lock:
            al = self._alarms.get(alarm_id)
            if al is None:
                raise KeyError(f"unknown alarm id {alarm_id!r}")
            if al.acknowledged_by is None:
                al.acknowledged_by, al.acknowledged_at = str(by or "unknown"), utc_now_iso()
        self._save_alarms()
        self.audit.append("alarm_ack", {"id": al.id, "code": al.code, "by": al.acknowledged_by})
        self._publish_alarm(al, "acknowledged" if al.id in self.active.values() else "cleared")
        return al.to_dict()

    def latest(self, n: int = 10) -> list[dict[str, Any]]:
        return self.store.latest(max(1, min(int(n), 100)))

    def alarms(self) -> list[dict[str, Any]]:
        """Recent alarms (oldest first), each with whether its condition is still active."""
        with self._lock:
            active = set(self.active.values())
            return [a.to_dict() | {"active": a.id in active} for a in self._alarms.values()]

    def store_stats(self) -> dict[str, Any]:
        return self.store.stats()

    def _telemetry_metrics(self) -> dict[str, Any]:
        """What only the daemon knows, merged by the uplink into its system-health telemetry."""
        drv = self.driver
        inf = sorted(self.inference_ms)
        lat = sorted(self.latencies_ms)
        last = self.last_result or {}
        m = {"state": self.state, "counters": dict(self.counters), "alarms_active": sorted(self.active),
                "frontend_status": str(getattr(drv, "status", "none")),
                "frontend_stats": _jsonable(getattr(drv, "stats", None)),
                "signal_quality": (last.get("quality") or {}).get("verdict"),
                "inference_ms": None if not inf else round(inf[len(inf) // 2], 2),
                "result_latency_ms": None if not lat else round(lat[len(lat) // 2], 1)}
        return {k: v for k, v in m.items() if v is not None}     # unknown yet: absent, never null

    def _publish_status(self) -> None:
        st = f"{self.state}; windows {self.counters['windows']}; alarms {len(self.active)}"
        if self.active and time.monotonic() - self._alarms_saved > ALARM_REFRESH_S:
            self._save_alarms()             # keeps the file's age = how long we have been down, for restore
        self.notifier.status(st)
        if self.hub is not None:
            self.hub.set_status(self.status())
        if self.uplink is not None:
            try:
                self.uplink.publish_telemetry(self._telemetry_metrics(), now=not self._telemetry_sent)
                self._telemetry_sent = True
            except Exception:  # noqa: BLE001
                log.exception("telemetry failed")

    # ------------------------------------------------------------------------------------ shutdown
    def _end_run(self) -> None:
        """The `stopped` event (with this run's counters) and run.json marked clean. Waits up to 1 s for
        the uplink to deliver it while connected; otherwise it stays in the outbox for the next start."""
        if self.audit is None or self.previous_run is None:       # never got as far as `start`
            return
        self._publish_event("stopped", {"counters": dict(self.counters), "windows": self.counters["windows"]})
        self._write_run(utc_now_iso())
        if self.uplink is not None and self.uplink.wait_connected(0):
            self.uplink.wait_drained(1.0)

    def shutdown(self) -> None:
        log.info("shutting down")
        self.notifier.stopping("flushing storage")
        self.watchdog.stop()
        for name, fn in (("driver", lambda: self.driver and self.driver.close()),
                         ("control", lambda: self.control and self.control.stop()),
                         ("display", lambda: self.display and self.display.stop()),
                         ("stopped", self._end_run),
                         ("uplink", lambda: self.uplink and self.uplink.stop()),
                         ("audit", lambda: self.audit and self.audit.append(
                             "stop", {"windows": self.counters["windows"], "run_id": self.run_id})),
                         ("store", lambda: self.store and self.store.close()),
                         ("audit-close", lambda: self.audit and self.audit.close())):
            try:
                fn()
            except Exception:  # noqa: BLE001 - finish the rest of the shutdown regardless
                log.exception("shutdown: %s failed", name)
        self.notifier.close()
        log.info("stopped")


def _jsonable(v: Any) -> Any:
    import dataclasses
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    if dataclasses.is_dataclass(v):
        return _jsonable(dataclasses.asdict(v))
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return str(v)
