"""Fixtures shared by tests/test_cloud_*.py: the same tests on SQLite and on a REAL PostgreSQL (Debian's server,
started here on a free port as the unprivileged `postgres` user when running as root), and real device messages
(a built-in PTB-XL record through the device's own chain + strip codec).

Use:  from cloud_support import database_url, pg_server, mi_record  # noqa: F401  (pytest finds them by name)
"""
from __future__ import annotations

import uuid

import pytest

from cloud_dashboard.testing import PostgresServer, record_analysis


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory):
    with PostgresServer(tmp_path_factory.mktemp("pg")) as pg:
        yield pg


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """A fresh, empty database of each kind (the PostgreSQL server is shared; one database per test)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'station.sqlite'}"
        return
    pg = request.getfixturevalue("pg_server")
    import psycopg
    name = "t_" + uuid.uuid4().hex[:12]
    admin = pg.url.replace("postgresql+psycopg://", "postgresql://").rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    yield pg.url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(scope="session")
def mi_record():
    """(result dict, (n,12) uV window, fs) of PTB-XL 00270 (MI): a real suspected-MI result from the real model."""
    return record_analysis("00270_hr", device_id="amb-1")


@pytest.fixture(scope="session")
def norm_record():
    return record_analysis("00387_hr", device_id="amb-2", age=18, sex="female")
