"""`ecg-edge outbox`: what is waiting to be delivered (depth, oldest, by priority).

Why read-only: the daemon may be running and writing; this opens the SQLite file in read-only mode, so
inspecting a stuck clinic device can never disturb its queue. The daemon's CLI dispatches here.
"""
from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import time

from .outbox import open_readonly_summary

OUTBOX_FILE = "outbox.sqlite"  # the daemon keeps it at <storage.state_dir>/outbox.sqlite


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ecg-edge outbox", description="Show the MQTT outbox: results and alarms "
                                "waiting for the broker's acknowledgement.")
    parser.add_argument("--db", default=os.environ.get("ECG_OUTBOX_DB"),
                   help="outbox database file (default <storage.state_dir>/outbox.sqlite of --config)")
    parser.add_argument("--config", "-c", help="daemon TOML config (default: built-in defaults)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)
    if not args.db:
        from edge_app.config import load_config
        from edge_app.errors import ConfigError
        try:
            args.db = str(load_config(args.config).state_dir / OUTBOX_FILE)
        except ConfigError as exc:
            print(f"ecg-edge outbox: {exc}", file=sys.stderr)
            return 2
    try:
        summary = open_readonly_summary(args.db)
    except FileNotFoundError:
        print(f"ecg-edge outbox: no outbox at {args.db} (MQTT never enabled here, or give --config/--db "
              f"<storage.state_dir>/{OUTBOX_FILE})", file=sys.stderr)
        return 2
    except sqlite3.Error as exc:
        print(f"ecg-edge outbox: cannot read {args.db}: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(summary, indent=1))
        return 0
    print(f"outbox {summary['path']}: {summary['depth']} message(s) waiting, {summary['bytes']} bytes")
    if summary["oldest"]:
        oldest = summary["oldest"]
        print(f"oldest: {oldest['kind']} {oldest['msg_id']} priority {oldest['priority']}, queued "
              f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(oldest['created']))} "
              f"({oldest['age_s']:.0f} s ago)")
    for name, row in summary["by_priority"].items():
        age = f", oldest {time.time() - row['oldest']:.0f} s ago" if row["oldest"] else ""
        print(f"  {name:7} {row['count']:7d}{age}")
    return 0


def main() -> None:  # pragma: no cover - convenience for `python -m`
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
