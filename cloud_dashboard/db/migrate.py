"""Alembic, driven from code (`ecg-cloud db upgrade`): the migrations live in cloud_dashboard/migrations.

Why programmatic: the station has one config file; nobody should have to keep an alembic.ini in step with it.
"""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    from .engine import make_engine
    make_engine(url).dispose()    # creates the SQLite directory
    command.upgrade(alembic_config(url), revision)


def current(url: str) -> str | None:
    from .engine import make_engine
    engine = make_engine(url)
    with engine.connect() as conn:
        rev = MigrationContext.configure(conn).get_current_revision()
    engine.dispose()
    return rev


def head() -> str:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head() or ""
