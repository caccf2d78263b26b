"""Start the station from a test or a benchmark, and a real PostgreSQL to run it on.

    with PostgresServer(tmp_path) as pg:                     # Debian's postgresql, free port, unprivileged user
        url = pg.url                                          # postgresql+psycopg://...
    with run_stack(tmp_path, broker_port=1883, database_url=url) as st:   # ecg-cloud serve in a subprocess
        st.url, st.token (viewer API token), st.users {"clinician": (name, password), ...}, st.api("GET", path)

Why subprocesses: the station is tested as it runs (`ecg-cloud serve` with its ingest workers), so a test can
also kill a worker (st.worker_pids()) and see that nothing is lost.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from .config import CloudConfig, DatabaseConfig, HttpConfig, IngestConfig, MqttConfig, StationConfig, write_config

PG_BIN = Path(os.environ.get("ECG_PG_BIN", "/usr/lib/postgresql/15/bin"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """A throwaway PostgreSQL cluster (initdb + postgres) on a free loopback port, run as an unprivileged user
    (as root: the `postgres` system user via runuser, data directory chowned to it). Trust auth on loopback."""

    def __init__(self, workdir: str | os.PathLike, port: int | None = None, database: str = "ecg"):
        self.port = port or free_port()
        self.database = database
        # Under the system temp dir, not `workdir`: pytest's tmp dirs are private to root (0700) and the
        # unprivileged server could not reach its data directory there.
        self.base = Path(tempfile.mkdtemp(prefix="ecg-pg-"))
        self.datadir = self.base / "data"
        self.proc: subprocess.Popen | None = None
        self.user = "postgres" if os.geteuid() == 0 else None

    def _cmd(self, *args: str) -> list[str]:
        return (["runuser", "-u", self.user, "--"] if self.user else []) + list(args)

    @property
    def url(self) -> str:
        role = self.user or os.environ.get("USER") or "postgres"
        return f"postgresql+psycopg://{role}@127.0.0.1:{self.port}/{self.database}"

    def start(self, timeout: float = 60.0) -> "PostgresServer":
        if not (PG_BIN / "initdb").exists():
            raise RuntimeError(f"PostgreSQL not found in {PG_BIN}: apt-get install postgresql (tools/install.sh)")
        if self.user:
            os.chmod(self.base, 0o755)
            shutil.chown(self.base, self.user, self.user)
        init = subprocess.run(self._cmd(str(PG_BIN / "initdb"), "-D", str(self.datadir), "-A", "trust", "-E", "UTF8",
                                        "--no-sync", "-U", self.user or os.environ.get("USER", "postgres")),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if init.returncode:
            raise RuntimeError(f"initdb failed ({init.returncode}): {init.stderr[-2000:]}")
        log = open(self.base / "postgres.log", "ab")
        self.proc = subprocess.Popen(self._cmd(str(PG_BIN / "postgres"), "-D", str(self.datadir), "-p", str(self.port),
                                               "-h", "127.0.0.1", "-k", str(self.base), "-c", "fsync=on",
                                               "-c", "max_connections=200"),
                                     stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        import psycopg
        deadline = time.monotonic() + timeout
        admin = self.url.replace("postgresql+psycopg://", "postgresql://").rsplit("/", 1)[0] + "/postgres"
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("postgres exited: " + (self.base / "postgres.log").read_text()[-2000:])
            try:
                with psycopg.connect(admin, autocommit=True, connect_timeout=2) as c:
                    c.execute(f'CREATE DATABASE "{self.database}"')
                return self
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise
                time.sleep(0.2)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)          # fast shutdown
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> "PostgresServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


@dataclass
class Stack:
    url: str
    config: CloudConfig
    config_path: Path
    token: str                                  # API token of the demo viewer
    users: dict[str, tuple[str, str]]           # role -> (username, password)
    tokens: dict[str, str] = field(default_factory=dict)   # role -> API token
    proc: subprocess.Popen | None = None

    def api(self, method: str, path: str, body: Any = None, token: str | None = None,
            timeout: float = 30.0) -> tuple[int, Any]:
        """One JSON request with a Bearer token (the viewer's unless given); returns (status, parsed body)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Authorization": f"Bearer {token or self.token}",
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                raw = r.read()
                status = r.status
        except urllib.error.HTTPError as exc:
            raw, status = exc.read(), exc.code
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw

    def worker_pids(self) -> list[int]:
        """PIDs of the running ingest worker processes (children of `ecg-cloud serve`)."""
        import psutil
        if self.proc is None:
            return []
        return [c.pid for c in psutil.Process(self.proc.pid).children()
                if "ingest" in " ".join(c.cmdline())]


def station_config(data_dir: Path, broker_port: int, database_url: str = "", http_port: int | None = None,
                   workers: int = 1, station: str = "Test Station ED", **mqtt: Any) -> CloudConfig:
    return CloudConfig(station=StationConfig(name=station, data_dir=str(data_dir)),
                       database=DatabaseConfig(url=database_url),
                       http=HttpConfig(port=http_port or free_port(), login_max_failures=5),
                       mqtt=MqttConfig(port=broker_port, client_id_prefix=f"ecg-cloud-{uuid.uuid4().hex[:6]}", **mqtt),
                       ingest=IngestConfig(workers=workers))


DEMO_USERS = {"clinician": ("dr.demo", "Dr Demo Cardio"), "viewer": ("viewer", "Demo Viewer"),
              "fleet_admin": ("fleetadmin", "Demo Fleet Admin")}


def provision(cfg: CloudConfig, password: str = "demo-password-1") -> tuple[dict[str, tuple[str, str]], dict[str, str]]:
    """Migrate and create one user per role with an API token each (idempotent per fresh database)."""
    from .db.engine import make_engine, session_factory
    from .db.migrate import upgrade
    from .users import add_user, new_token
    upgrade(cfg.database_url)
    engine = make_engine(cfg.database_url)
    users, tokens = {}, {}
    with session_factory(engine)() as s:
        for role, (name, display) in DEMO_USERS.items():
            add_user(s, name, password, role, display, by="provision")
            tokens[role] = new_token(s, name, "provision", by="provision")
            users[role] = (name, password)
        s.commit()
    engine.dispose()
    return users, tokens


@contextmanager
def run_stack(workdir: str | os.PathLike, broker_port: int, database_url: str = "", *, workers: int = 1,
              http_port: int | None = None, station: str = "Test Station ED", timeout: float = 60.0,
              **mqtt: Any) -> Iterator[Stack]:
    """`ecg-cloud serve` (web + ingest workers) in a subprocess on a free port, with one user per role."""
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    cfg = station_config(work / "station", broker_port, database_url, http_port, workers, station, **mqtt)
    path = write_config(work / "station.toml", cfg)
    cfg = replace(cfg, source=str(path))
    users, tokens = provision(cfg)
    ready = work / "ready.url"
    ready.unlink(missing_ok=True)
    from .db.models import utcnow
    t_start = utcnow()
    log = open(work / "ecg-cloud.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "cloud_dashboard.cli", "serve", "--config", str(path),
                             "--ready-file", str(ready)], stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    log.close()
    stack = Stack(url=f"http://127.0.0.1:{cfg.http.port}", config=cfg, config_path=path, token=tokens["viewer"],
                  users=users, tokens=tokens, proc=proc)
    try:
        deadline = time.monotonic() + timeout
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("ecg-cloud serve did not start: " + (work / "ecg-cloud.log").read_text()[-3000:])
            time.sleep(0.1)
        wait_workers_subscribed(cfg.database_url, workers, since=t_start, timeout=max(1.0, deadline - time.monotonic()))
        yield stack
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def wait_workers_subscribed(database_url: str, n: int, since: Any = None, timeout: float = 30.0) -> None:
    """Block until n ingest workers have recorded `subscribed` in a heartbeat newer than `since`."""
    from sqlalchemy import func, select

    from .db.engine import make_engine, session_factory
    from .db.models import IngestWorkerState
    engine = make_engine(database_url)
    try:
        deadline = time.monotonic() + timeout
        while True:
            with session_factory(engine)() as s:
                q = select(func.count()).select_from(IngestWorkerState).where(IngestWorkerState.subscribed.is_(True))
                if since is not None:
                    q = q.where(IngestWorkerState.heartbeat_at >= since)
                if (s.scalar(q) or 0) >= n:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{n} ingest workers did not subscribe within {timeout:.0f}s")
            time.sleep(0.1)
    finally:
        engine.dispose()


# -- real device messages for tests and benchmarks ------------------------------------------------------------
def utc_iso(dt: datetime | None = None) -> str:
    return (dt or datetime.now(timezone.utc)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def envelope(schema: str, device_id: str, body_key: str, body: dict[str, Any], priority: str = "low",
             seq: int | None = None, msg_id: str | None = None) -> dict[str, Any]:
    """The device's message envelope (docs/mqtt.md), as edge_app.uplink.service writes it."""
    now = utc_iso()
    return {"schema": schema, "msg_id": msg_id or uuid.uuid4().hex, "device_id": device_id, "priority": priority,
            "created_at": now, "sent_at": now, "historical": False, "age_s": 0.0, "seq": seq,
            "disclaimer": "Triage aid, not a diagnosis. A clinician must read the ECG.", body_key: body}


def record_analysis(record: str = "00270_hr", device_id: str = "amb-1", age: float | None = 62,
                    sex: str | None = "male") -> tuple[dict[str, Any], Any, float]:
    """(first result dict, (n,12) uV window, fs) of a built-in PTB-XL record through the device's real chain."""
    from edge_app.pipeline import analyse_record, read_record
    rec = Path(__file__).resolve().parent.parent / "edge_app" / "data" / "records" / record
    results = analyse_record(rec, age=age, sex=sex, device_id=device_id)
    r = results[0].to_dict()
    x, fs, _ = read_record(rec)
    return r, x[r["window"]["start_index"]:r["window"]["end_index"]], fs


def result_messages(result: dict[str, Any], window_uv: Any, fs: float, device_id: str,
                    seq: int | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(ecg.triage/1, ecg.strip/1) messages for one result: a fresh result id and msg ids each call."""
    from edge_app.uplink.strip_codec import encode_strip
    r = json.loads(json.dumps(result))
    r["id"], r["device_id"], r["time"] = str(uuid.uuid4()), device_id, utc_iso()
    prio = r["alarm_priority"] if r["alarm_priority"] in ("high", "medium", "low") else "none"
    tri = envelope("ecg.triage/1", device_id, "result", r, prio, seq)
    strip = encode_strip(window_uv, fs, result_id=r["id"], run_id=r.get("run_id") or uuid.uuid4().hex,
                         start_index=r["window"]["start_index"], device_time_us=None, t0=r["time"])
    return tri, envelope("ecg.strip/1", device_id, "strip", strip, prio, None if seq is None else seq + 1)
