"""`ecg-cloud serve`: the web app under uvicorn plus N ingest worker processes, supervised.

Why worker processes (not threads in the web process): intake must not share a GIL or a crash with request
handling, a stuck request must never stall the fleet's messages, and a worker is the unit that scales out (run
`ecg-cloud ingest --index K` on other hosts with the same mqtt.group). A worker that exits is restarted; its
persistent MQTT session means nothing queued for it is lost meanwhile.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from .config import CloudConfig

log = logging.getLogger(__name__)


class WorkerSupervisor:
    def __init__(self, config_path: str, workers: int, first_index: int = 0):
        self.config_path, self.workers, self.first_index = config_path, workers, first_index
        self.procs: dict[int, subprocess.Popen] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ingest-supervisor", daemon=True)

    def spawn(self, index: int) -> subprocess.Popen:
        p = subprocess.Popen([sys.executable, "-m", "cloud_dashboard.cli", "ingest", "--config", self.config_path,
                              "--index", str(index)], stdin=subprocess.DEVNULL)
        self.procs[index] = p
        log.info("ingest worker %d started (pid %d)", index, p.pid)
        return p

    def start(self) -> "WorkerSupervisor":
        for i in range(self.first_index, self.first_index + self.workers):
            self.spawn(i)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            for i, p in list(self.procs.items()):
                if p.poll() is not None and not self._stop.is_set():
                    log.error("ingest worker %d exited with %s; restarting", i, p.returncode)
                    self.spawn(i)

    def stop(self) -> None:
        self._stop.set()
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


def serve(cfg: CloudConfig, *, workers: int | None = None, ready_file: str | None = None) -> int:
    import uvicorn

    from .db.migrate import upgrade
    from .web.app import create_app
    upgrade(cfg.database_url)          # a station never runs on an unmigrated schema
    sup = WorkerSupervisor(cfg.source, cfg.ingest.workers if workers is None else workers).start() \
        if (workers if workers is not None else cfg.ingest.workers) > 0 else None
    app = create_app(cfg)

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):  # noqa: ANN201
            # uvicorn re-raises SIGTERM after its shutdown, killing the process before the ingest workers are
            # stopped; here a signal just asks the server to exit, and serve() then stops the workers.
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGTERM, signal.SIGINT)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    server = Server(uvicorn.Config(app, host=cfg.http.host, port=cfg.http.port, log_level="warning",
                                           access_log=False, lifespan="on",
                                           # open live streams (SSE) never end by themselves: do not wait on them
                                           timeout_graceful_shutdown=3))
    url = f"http://{cfg.http.host}:{cfg.http.port}"

    def announce() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.05)
        if server.started:
            print(f"ecg-cloud serving {url} (station {cfg.station.name!r})", flush=True)
            if ready_file:
                Path(ready_file).write_text(url)
    threading.Thread(target=announce, daemon=True).start()
    try:
        server.run()
    finally:
        if sup:
            sup.stop()
    return 0
