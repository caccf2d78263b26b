"""`ecg-edge demo`: the front-end simulator replays a real PTB-XL record -> the daemon -> results on screen."""
from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import threading
from typing import Any

from edge_app.cli.builtin import DEFAULT_DEMO_RECORD, RECORDS_DIR, builtin_names, resolve_record
from edge_app.cli.common import EXIT_BAD_INPUT, EXIT_OK, NOTICE, fail, plural, setup_logging
from edge_app.cli.show import format_result


def add_parser(sub: argparse._SubParsersAction) -> None:
    sp = sub.add_parser("demo", help="simulator on a real record -> daemon -> results on screen")
    sp.add_argument("--record", help=f"WFDB record path or built-in record name (default {DEFAULT_DEMO_RECORD.name}, "
                                     f"PTB-XL, MI; built-in: {', '.join(builtin_names())})")
    sp.add_argument("--duration", type=float, help="stop after S seconds (default: until Ctrl-C)")
    sp.add_argument("--speed", type=float, default=1.0, help="replay speed (1 = real time)")
    sp.add_argument("--stride", type=float, help="seconds between results (default 5)")
    sp.add_argument("--fault", action="append", help="inject a simulator fault, e.g. electrode_off:LA@22+8")
    sp.add_argument("--age", type=float)
    sp.add_argument("--sex", choices=["male", "female"])
    sp.add_argument("--json", action="store_true", help="one JSON result per line")
    sp.add_argument("--display", action="store_true", help="also serve the bedside page and print its URL")
    sp.add_argument("--display-port", type=int, default=0, metavar="PORT",
                    help="port for --display (default: a free one)")
    sp.add_argument("--display-host", default="127.0.0.1", metavar="ADDR",
                    help="address for --display (default 127.0.0.1; 0.0.0.0 serves other machines)")
    sp.add_argument("--verbose", "-v", action="store_true")
    sp.set_defaults(fn=cmd_demo)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cmd_demo(args: argparse.Namespace) -> int:
    from edge_app.config import config_from_dict
    from edge_app.errors import ConfigError
    from firmware_bridge.records import RecordError
    from firmware_bridge.simulator import FrontEndSimulator, SimulatorError
    setup_logging("ERROR" if not args.verbose else "INFO")
    if args.duration is not None and not 0 < args.duration < float("inf"):
        return fail("demo", f"--duration {args.duration:g}: give a number of seconds above 0 (or leave it out "
                            f"to run until Ctrl-C)", EXIT_BAD_INPUT)
    tmp = tempfile.TemporaryDirectory(prefix="ecg-edge-demo-")
    try:
        record = resolve_record(args.record) if args.record else DEFAULT_DEMO_RECORD
        sim = FrontEndSimulator(str(record), fs=500, speed=args.speed, loop=True, faults=args.fault or [],
                                link_path=os.path.join(tmp.name, "frontend"))
    except (RecordError, SimulatorError) as e:
        tmp.cleanup()
        return fail("demo", str(e), EXIT_BAD_INPUT)
    raw: dict[str, Any] = {"device": {"id": "demo"}, "frontend": {"port": sim.start()},
                           "storage": {"state_dir": os.path.join(tmp.name, "state")}}
    if args.age is not None or args.sex:
        raw["patient"] = {k: v for k, v in (("age", args.age), ("sex", args.sex)) if v is not None}
    if args.stride is not None:
        raw["windows"] = {"stride_s": args.stride}
    if args.display:
        raw["display"] = {"enabled": True, "host": args.display_host, "port": args.display_port or _free_port()}
    try:
        cfg = config_from_dict(raw)
    except ConfigError as e:
        sim.stop()
        tmp.cleanup()
        return fail("demo", str(e), EXIT_BAD_INPUT)

    from edge_app.daemon import Daemon       # after the record is known good: a typo is answered at once

    def show(d: dict[str, Any]) -> None:
        print(json.dumps(d) if args.json else format_result(d) + "\n", flush=True)

    d = Daemon(cfg, sinks=(show,))
    d.install_signal_handlers()
    if not args.json:
        kind = "real PTB-XL record" if record.parent == RECORDS_DIR else "WFDB record"
        print(f"ecg-edge demo: simulator replays {record.name} ({kind}) at {args.speed:g}x on "
              f"{raw['frontend']['port']}.\nFirst result once 10 s of clean signal exist, then every "
              f"{cfg.get('windows.stride_s'):g} s. Ctrl-C to stop. {NOTICE}\n", flush=True)
    timer = None
    try:
        try:
            d.start()
        except ConfigError as e:          # e.g. --display-host not an address of this machine
            d.shutdown()
            return fail("demo", str(e), EXIT_BAD_INPUT)
        if d.display is not None:
            # Results go to stdout as JSON lines with --json, so the URL goes to stderr there.
            print(f"ecg-edge demo: bedside page on {d.display.url} (open it in a browser). {NOTICE}",
                  file=sys.stderr if args.json else sys.stdout, flush=True)
        if args.duration:
            timer = threading.Timer(args.duration, d.request_stop)
            timer.daemon = True           # Ctrl-C before the duration ends must not wait for it
            timer.start()
        d.run()
    finally:
        if timer is not None:
            timer.cancel()
        sim.stop()
        tmp.cleanup()
    if not args.json:
        print(f"ecg-edge demo: {plural(d.telemetry.counters['windows'], 'window')} analysed. {NOTICE}")
    return EXIT_OK
