"""The long-running service, assembled: front end -> pipeline -> dispatcher -> sinks, under systemd.

docs/daemon.md walks from a serial byte to an MQTT message and to the page. In short: the front-end link's
reader thread drains the serial port into a queue (frontend_link.py); the main thread (the data path) takes
each block, publishes it (BlockReceived) and pushes it through the pipeline (pipeline.py); every analysed
window has its alarms latched (alarm_latch.py) and is published once (ResultReady). Who listens is decided
here, in `_assemble`: the run ledger, stream analysers, the record sink (store + audit), the uplink and the
display sinks, telemetry. Commands from the control socket, MQTT and the page go through one router
(command_router.py) onto DeviceOperations (operations.py).

Threads: the main thread runs the data path, so a hang anywhere in it stops the progress-gated watchdog and
systemd restarts the service. Side threads: the serial reader, the watchdog pinger, the control socket, the
uplink's threads, the display server. They only read snapshots or call DeviceOperations (short, locked).
"""
from __future__ import annotations

import logging
import os
import queue
import signal
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Sequence

from edge_app import __version__
from edge_app.command_router import CommandRouter
from edge_app.config import Config
from edge_app.control_socket import ControlServer
from edge_app.device_state import open_device_state
from edge_app.dispatcher import Dispatcher, Subscriber
from edge_app.frontend_link import FrontEndLink
from edge_app.jsonsafe import json_safe
from edge_app.messages import BlockReceived, DeviceInfoChanged, ResultReady, StatusTick, TelemetryUpdate
from edge_app.model_runtime import ModelRuntime
from edge_app.operations import DeviceOperations, apply_store_limits
from edge_app.pipeline import Analysis, Pipeline, PipelineSettings
from edge_app.results import new_id
from edge_app.run_ledger import RunLedger
from edge_app.sinks.record import RecordSink
from edge_app.sinks.rhythm_watch import RhythmWatch
from edge_app.sinks.station_feedback import StationFeedbackSink
from edge_app.status_report import device_status
from edge_app.supervision import Notifier, Watchdog
from edge_app.telemetry import Telemetry

if TYPE_CHECKING:
    from edge_app.display import DisplayServer
    from edge_app.uplink.service import Uplink
    from firmware_bridge.driver import FrontEndDriver
    from firmware_bridge.samples import SampleBlock

log = logging.getLogger("edge_app.daemon")
STATUS_EVERY_S = 5.0
DriverFactory = Callable[[str, int, int], "FrontEndDriver"]


def _default_driver_factory(port: str, baudrate: int, fs: int) -> FrontEndDriver:
    from firmware_bridge.driver import FrontEndDriver
    return FrontEndDriver(port, baudrate=baudrate, rate_hz=fs)


class Daemon:
    """Builds the services, runs the data path, shuts down in order. `sinks`: extra subscribers (objects with
    subscribe(bus)) or plain callables that get every result dict (e.g. the demo's printer)."""

    def __init__(self, cfg: Config, driver_factory: DriverFactory | None = None,
                 sinks: Sequence[Subscriber | Callable[[dict[str, Any]], None]] = (), notifier: Notifier | None = None):
        self.t_created = time.monotonic()
        self.run_id = new_id()                    # this process; stamped on every result and event
        self.cfg = cfg
        self.driver_factory = driver_factory or _default_driver_factory
        self.extra_sinks = list(sinks)
        self.notifier = notifier or Notifier()
        self.watchdog = Watchdog(self.notifier)
        self.bus = Dispatcher()
        self.telemetry = Telemetry()
        self._stop = threading.Event()
        self.state = "starting"
        self.ready_s: float | None = None
        self.driver: FrontEndDriver | None = None
        self.uplink: Uplink | None = None
        self.display: DisplayServer | None = None
        self.control: ControlServer | None = None
        self.ledger: RunLedger | None = None
        self._telemetry_sent = False     # the first telemetry goes out at once; later ones on the uplink's interval

    # ------------------------------------------------------------------------------------ assembly
    def start(self) -> None:
        self.device = open_device_state(self.cfg, self.run_id, self.bus.publish)
        self.runtime, self.audit, self.store = self.device.runtime, self.device.audit, self.device.store
        self.alarms, self.patient = self.device.alarms, self.device.patient
        cfg = self.cfg = self.runtime.current
        self.ledger = RunLedger(cfg.state_dir / "run.json", self.run_id, cfg.device_id, self.audit, self.bus.publish)
        self.operations = DeviceOperations(self.device, self.bus, self.status, self._apply_config)
        self.models = ModelRuntime(cfg, self.audit, self.bus.publish)
        self.pipeline = Pipeline(self.models.model, PipelineSettings.from_config(cfg), cfg.device_id,
                                 patient=self.patient.get, run_id=self.run_id)
        self.models.on_swap = self.pipeline.set_model
        self.pipeline.warm_up(float(cfg.get("frontend.fs")))
        self._assemble()
        self.alarms.restore()
        self.driver = self.driver_factory(cfg.get("frontend.port"), cfg.get("frontend.baudrate"),
                                          cfg.get("frontend.fs"))
        self.frontend = FrontEndLink(self.driver, float(cfg.get("frontend.idle_timeout_s")), cfg.get("frontend.port"),
                                     self.alarms)
        model = self.models.model
        self.ledger.start({"software_version": __version__, "config_version": self.runtime.version(),
                           "pid": os.getpid()},
                          {"model_version": model.model_version, "model_sha256": model.model_sha256,
                           "fs": int(cfg.get("frontend.fs")), "stride_s": float(cfg.get("windows.stride_s")),
                           "length_s": float(cfg.get("windows.length_s"))})
        # The control socket answers only once every service (uplink, display) is up: "status ok" means ready.
        self.control = ControlServer(cfg.control_socket, CommandRouter(self.operations, "socket"))
        self.control.start()
        self.state = "ready"
        self.ready_s = time.monotonic() - self.t_created
        self.notifier.ready(f"ready in {self.ready_s:.2f} s; waiting for the front end on {cfg.get('frontend.port')}")
        self.watchdog.start()
        log.info("ready in %.2f s (model %s sha256 %s..., state %s, control %s)", self.ready_s,
                 model.model_version, model.model_sha256[:12], cfg.state_dir, cfg.control_socket)

    def _assemble(self) -> None:
        """Who hears what: one line per subscriber, in the order each message reaches them."""
        self.ledger.subscribe(self.bus)                                   # stream gaps -> audit + event
        RhythmWatch(self.alarms).subscribe(self.bus)                      # live rhythm -> alarms, label on results
        RecordSink(self.store, self.audit, self.alarms).subscribe(self.bus)   # store + audit every result
        if self.cfg.mqtt.enabled:
            self._start_uplink()                                          # outbox -> MQTT
        if self.cfg.get("display.enabled"):
            self._start_display()                                         # bedside page
        StationFeedbackSink(self.cfg.state_dir, self.store, self.audit, self.uplink,     # receipts/reviews -> page
                            self.display and self.display.hub).subscribe(self.bus)
        for sink in self.extra_sinks:                                     # e.g. `ecg-edge demo` printing
            if isinstance(sink, Subscriber):
                sink.subscribe(self.bus)
            else:
                self.bus.subscribe(ResultReady, lambda msg, callback=sink: callback(msg.result))
        self.telemetry.subscribe(self.bus)                                # last: latency covers every sink

    def _start_uplink(self) -> None:
        from edge_app.sinks.strip_upload import StripSink
        from edge_app.sinks.uplink import UplinkSink
        from edge_app.uplink.service import Uplink
        self.uplink = Uplink(self.cfg.mqtt, self.cfg.device_id, self.cfg.state_dir / "outbox.sqlite",
                             control=self.operations, model_store=self.models.store)
        sink = UplinkSink(self.uplink, self.store, self.alarms)
        sink.subscribe(self.bus)
        StripSink(self.uplink, self.cfg.mqtt.strips, self.store).subscribe(self.bus)   # each result's strip, after it
        model = self.models.model
        self.uplink.set_birth({"software_version": __version__, "model_version": model.model_version,
                               "model_sha256": model.model_sha256, "config_version": self.runtime.version(),
                               "frontend": self._frontend_info()})
        self.uplink.start()
        sink.queue_unsent()

    def _start_display(self) -> None:
        from edge_app.display import DisplayServer, LiveHub
        from edge_app.display.connection_guard import Limits, display_token
        from edge_app.sinks.display import DisplaySink
        hub = LiveHub(commands=CommandRouter(self.operations, "http"))
        DisplaySink(hub, self.store).subscribe(self.bus)
        hub.set_patient_view(self.patient.get().to_dict())
        self.display = DisplayServer(hub, host=self.cfg.get("display.host"), port=self.cfg.get("display.port"),
                                     write_token=display_token(self.cfg),
                                     limits=Limits(max_connections=self.cfg.get("display.max_connections")))
        self.display.start()

    def _frontend_info(self) -> dict[str, Any]:
        """Front-end identity for the retained birth: what is configured, and what the device reported."""
        return {"port": self.cfg.get("frontend.port"), "fs": int(self.cfg.get("frontend.fs")),
                "status": str(getattr(self.driver, "status", "none")),
                "info": json_safe(getattr(self.driver, "info", None), unknown=str)}

    def _apply_config(self, new: Config) -> None:
        """A validated runtime configuration change takes effect (called by DeviceOperations.set_config)."""
        self.cfg = new
        self.pipeline.apply(PipelineSettings.from_config(new))
        apply_store_limits(self.store, new)
        logging.getLogger().setLevel(new.get("logging.level"))

    # ------------------------------------------------------------------------------------ data path
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

    def _loop(self) -> None:
        self.frontend.start(self._stop)
        last_status = 0.0
        while not self._stop.is_set():
            try:
                t_recv, block = self.frontend.next()
            except queue.Empty:
                # Not even an idle tick from the reader: the serial path is stuck. No watchdog progress.
                self.state = "reader_stuck"
                log.error("front-end reader gave no sign of life for %.1f s", 2 * self.frontend.idle_s + 1.0)
                continue
            if self._stop.is_set():
                break
            if block is None:
                self.state, honest = self.frontend.idle()
                if honest:                       # "no device" / "connecting" is an honest answer: progress
                    self.watchdog.progress(f"front end {self.state}")
            else:
                self.on_block(block, t_recv)
            if time.monotonic() - last_status > STATUS_EVERY_S:
                last_status = time.monotonic()
                self._publish_status()

    def on_block(self, block: SampleBlock, t_recv: float) -> None:
        """One block in from the front end: published to the block observers, then windowed and analysed."""
        self.watchdog.progress("samples")
        self.state = "streaming"
        self.frontend.samples_arrived()
        if self.telemetry.counters["blocks"] == 0 or block.events:
            self.bus.publish(DeviceInfoChanged({"frontend": self._frontend_info()}))  # the device (re)introduced itself
        self.bus.publish(BlockReceived(block, t_recv))          # ledger, telemetry, page, stream analysers
        try:
            analyses = self.pipeline.process_block(block, t_arrival=t_recv)
        except Exception as e:  # noqa: BLE001 - one bad block must not stop the appliance
            self.telemetry.count("errors")
            log.exception("analysis failed on block at %d; the window restarts", block.first_index)
            self.pipeline.assembler = None
            self.alarms.raise_condition("analysis_failed", "technical", "medium",
                                        f"Analysis failed ({type(e).__name__}: {e}); results may be delayed. "
                                        "Restarting the window.")
            return
        if analyses:
            self.alarms.clear_condition("analysis_failed")
        for analysis in analyses:
            self._on_analysis(analysis)

    def _on_analysis(self, analysis: Analysis) -> None:
        t_handled = time.monotonic()
        triage = analysis.result
        if analysis.overran:
            self.telemetry.count("overruns")
            self.watchdog.stall(f"analysis took {triage.timings_ms.get('analysis_ms', 0):.0f} ms, deadline "
                                f"{self.cfg.get('model.deadline_s')} s")
            log.warning("analysis overran its deadline: %s", triage.timings_ms)
        else:
            self.watchdog.progress("inference")
        triage.alarms = self.alarms.observe_window(triage.alarms, triage.id)   # a persisting condition keeps its id
        self.bus.publish(ResultReady(triage, triage.to_dict(), analysis.window.native_uv, analysis.window.fs,
                                     t_handled))
        self.bus.publish(TelemetryUpdate(self._metrics(), now=False))    # what the next telemetry carries
        log.info("result %s window %.1f-%.1f s: %s (priority %s), quality %s%s, HR %s, %.0f ms after last sample",
                 triage.id[:8], triage.window.start_s, triage.window.end_s, triage.triage_level,
                 triage.alarm_priority, triage.quality.verdict,
                 f" ({'; '.join(triage.quality.reasons)})" if triage.quality.reasons else "",
                 triage.heart_rate_bpm, self.telemetry.last_latency_ms)

    def _metrics(self) -> dict[str, Any]:
        return {**self.telemetry.metrics(self.state, self.driver, self.alarms.active_codes()),
                "audit_head": self.audit.head}       # a copy of the audit chain's head off the device

    def _publish_status(self) -> None:
        self.alarms.refresh_if_due()      # keeps alarms.json's age = how long we have been down, for restore
        self.notifier.status(f"{self.state}; windows {self.telemetry.counters['windows']}; "
                             f"alarms {len(self.alarms.active_codes())}")
        if self.bus.wants(StatusTick):
            self.bus.publish(StatusTick(self.status()))
        self.bus.publish(TelemetryUpdate(self._metrics(), now=not self._telemetry_sent))
        self._telemetry_sent = True

    def status(self) -> dict[str, Any]:
        """The whole device's health (the `status` command, the page's /api/status `daemon` part)."""
        return device_status(state=self.state, ready_s=self.ready_s, cfg=self.cfg, config_version=self.runtime.version(),
                             driver=self.driver, model=self.models.model, patient=self.patient,
                             telemetry=self.telemetry, alarms=self.alarms, store=self.store, watchdog=self.watchdog,
                             uplink=self.uplink)

    # ------------------------------------------------------------------------------------ shutdown
    def _end_run(self) -> None:
        """The `stopped` event and run.json marked clean. Waits up to 1 s for the uplink to deliver it while
        connected; otherwise it stays in the outbox for the next start."""
        if self.ledger is None or self.ledger.previous is None:       # never got as far as `start`
            return
        self.ledger.stop(dict(self.telemetry.counters))
        if self.uplink is not None and self.uplink.wait_connected(0):
            self.uplink.wait_drained(1.0)

    def shutdown(self) -> None:
        log.info("shutting down")
        self.notifier.stopping("flushing storage")
        self.watchdog.stop()
        device = getattr(self, "device", None)
        for name, step in (("driver", lambda: self.driver and self.driver.close()),
                           ("control", lambda: self.control and self.control.stop()),
                           ("display", lambda: self.display and self.display.stop()),
                           ("stopped", self._end_run),
                           ("uplink", lambda: self.uplink and self.uplink.stop()),
                           ("audit", lambda: device and device.audit.append(
                               "stop", {"windows": self.telemetry.counters["windows"], "run_id": self.run_id})),
                           ("store+audit", lambda: device and device.close())):
            try:
                step()
            except Exception:  # noqa: BLE001 - finish the rest of the shutdown regardless
                log.exception("shutdown: %s failed", name)
        self.notifier.close()
        log.info("stopped")
