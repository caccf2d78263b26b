"""`ecg-edge`: the appliance's command line. Prints for humans; --json for machines.

    ecg-edge run --config FILE            the daemon (systemd Type=notify)             edge_app/cli/run.py
    ecg-edge demo [--duration S] [--record NAME] [--display]                           edge_app/cli/demo.py
                                          simulator on a real PTB-XL MI record -> daemon -> results on screen
    ecg-edge replay PATH [PATH ...]       analyse WFDB records through the daemon's chain  edge_app/cli/replay.py
    ecg-edge selftest                     model hash + golden outputs on built-in records  edge_app/cli/selftest.py
    ecg-edge config check FILE | default  validate a config / print the defaults         edge_app/cli/config.py
    ecg-edge measure ...                  heart rate and beats of a record (signal chain)
    ecg-edge patient set|clear|show       patient context of the running daemon        edge_app/cli/daemon_calls.py
    ecg-edge status | results | alarms    ask the running daemon                       edge_app/cli/daemon_calls.py
    ecg-edge audit verify                 check the hash chain of the audit log        edge_app/cli/verify.py
    ecg-edge store verify                 check every stored result and strip          edge_app/cli/verify.py
    ecg-edge outbox                       the uplink's outbox depth

Exit codes, the same in every command (edge_app/cli/common.py, docs/cli.md): 0 ok, 1 failed (a check
found a problem, the daemon could not start), 2 bad input (usage, config, record, patient value),
3 the running daemon could not be reached.

A triage aid, not a diagnosis.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from edge_app.cli import config, daemon_calls, demo, replay, run, selftest, verify
from edge_app.cli.builtin import DEFAULT_DEMO_RECORD, RECORDS_DIR  # noqa: F401 - public names
from edge_app.cli.common import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, NOTICE
from edge_app.cli.show import LEVEL_TEXT, format_result  # noqa: F401 - public names

#: Commands that bring their own argument parser (their modules live with their area).
DISPATCH = {"measure": ("edge_app.signal_chain.measure_cli", "run"),
            "outbox": ("edge_app.uplink.outbox_cli", "run")}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ecg-edge", description=f"12-lead ECG triage appliance. {NOTICE}",
                                epilog="also: 'ecg-edge measure RECORD' (heart rate, beats, quality of a record) and "
                                       "'ecg-edge outbox' (uplink outbox depth); each takes --help. Exit codes: "
                                       "0 ok, 1 failed, 2 bad input, 3 daemon not reachable.")
    sub = p.add_subparsers(dest="cmd", required=True)

    def with_config(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--config", "-c", help="TOML config file (default: built-in defaults)")

    run.add_parser(sub, with_config)
    demo.add_parser(sub)
    replay.add_parser(sub, with_config)
    selftest.add_parser(sub, with_config)
    config.add_parser(sub)
    daemon_calls.add_parsers(sub, with_config)
    verify.add_parsers(sub, with_config)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in DISPATCH:
        mod, fn = DISPATCH[argv[0]]
        try:
            entry = getattr(importlib.import_module(mod), fn)
        except ImportError as e:
            print(f"ecg-edge {argv[0]}: not available in this build ({e})", file=sys.stderr)
            return EXIT_FAILED
        return int(entry(argv[1:]) or EXIT_OK)
    args = build_parser().parse_args(argv)     # usage errors exit 2 (argparse), as bad input does
    try:
        return int(args.fn(args) or EXIT_OK)
    except KeyboardInterrupt:
        return EXIT_OK
    except BrokenPipeError:
        return EXIT_OK


__all__ = ["main", "build_parser", "format_result", "EXIT_OK", "EXIT_FAILED", "EXIT_BAD_INPUT"]
