"""Shared by benchmarks/bench_cloud_*.py: real device messages, a broker, ingest workers, DB counts."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from cloud_dashboard.config import write_config  # noqa: E402
from cloud_dashboard.testing import (PostgresServer, record_analysis, result_messages, station_config,  # noqa: E402
                                     wait_workers_subscribed)


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, int(round(p / 100 * (len(s) - 1)))))]


def templates() -> list[tuple]:
    """(result, window, fs) of two built-in PTB-XL records (an MI and a normal) through the device's real chain."""
    return [record_analysis("00270_hr", "tmpl"), record_analysis("00387_hr", "tmpl", age=18, sex="female")]


def make_messages(n_results: int, devices: list[str], tmpl: list[tuple]) -> list[tuple[str, bytes]]:
    """n_results (triage + strip) pairs, round-robin over devices, as (topic, payload)."""
    out = []
    for i in range(n_results):
        dev = devices[i % len(devices)]
        tri, strip = result_messages(*tmpl[i % len(tmpl)], device_id=dev, seq=2 * i)
        out.append((f"ecg/{dev}/triage", json.dumps(tri).encode()))
        out.append((f"ecg/{dev}/strip", json.dumps(strip).encode()))
    return out


def new_database(kind: str, work: Path, pg: PostgresServer | None) -> str:
    if kind == "sqlite":
        return f"sqlite:///{work / ('b-' + uuid.uuid4().hex[:8] + '.sqlite')}"
    import psycopg
    name = "b_" + uuid.uuid4().hex[:10]
    admin = pg.url.replace("postgresql+psycopg://", "postgresql://").rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    return pg.url.rsplit("/", 1)[0] + "/" + name


class Workers:
    """N `ecg-cloud ingest` processes on one config."""

    def __init__(self, work: Path, broker_port: int, url: str, n: int):
        from cloud_dashboard.db.migrate import upgrade
        from cloud_dashboard.db.models import utcnow
        upgrade(url)
        self.cfg = station_config(work, broker_port, url, workers=n, station="Bench")
        path = write_config(work / f"bench-{uuid.uuid4().hex[:6]}.toml", self.cfg)
        self.cfg = replace(self.cfg, source=str(path))
        t0 = utcnow()
        self.procs = [subprocess.Popen([sys.executable, "-m", "cloud_dashboard.cli", "ingest", "--config", str(path),
                                        "--index", str(i)], stdout=subprocess.DEVNULL, stderr=open(work / f"w{i}.log", "ab"))
                      for i in range(n)]
        wait_workers_subscribed(url, n, since=t0, timeout=60)

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()


def counts(url: str) -> dict[str, int]:
    from sqlalchemy import func, select

    from cloud_dashboard.db.engine import make_engine, session_factory
    from cloud_dashboard.db.models import Message, Quarantine, Result, Strip
    engine = make_engine(url)
    with session_factory(engine)() as s:
        out = {"messages": s.scalar(select(func.count()).select_from(Message)),
               "results": s.scalar(select(func.count()).select_from(Result)),
               "distinct_results": s.scalar(select(func.count(func.distinct(Result.result_id)))),
               "strips": s.scalar(select(func.count()).select_from(Strip)),
               "quarantine": s.scalar(select(func.count()).select_from(Quarantine))}
    engine.dispose()
    return out


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())
