"""`ecg-frontend-sim`: a replaying ECG front end on a pseudo-terminal, for people and scripts.

Prints the device path on the first stdout line (then, with --json, events as JSON lines). Exit codes as
`ecg-edge` (docs/cli.md): 0 ok, 2 bad input (a record or fault that cannot be used, message says the fix).
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from typing import Sequence

from .simulator import FrontEndSimulator, SimulatorError, parse_fault

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ecg-frontend-sim",
        description="Replay a WFDB ECG record as an ADS1298-class front end on a pseudo-terminal. "
                    "Prints the device path on the first stdout line.",
        epilog="Fault syntax: KIND[:ARG[:ARG]]@START[+DURATION], times in stream seconds. Examples: "
               "electrode_off:LA@2+3, noise:80@1, wander:600@0, mains:60:150@0+5, flat@4+1, "
               "saturate@4+1, drop:5@3 (frames), corrupt:2@3 (frames), reset@5, disconnect:2@5.")
    p.add_argument("record", help="WFDB record path without extension (e.g. .../records500/00000/00018_hr)")
    p.add_argument("--fs", type=int, default=500, help="boot sample rate in Hz (250/500/1000 or the "
                   "record's own rate); the host may change it with SET_RATE (default 500)")
    p.add_argument("--speed", type=float, default=1.0,
                   help="1 = real time, N = N times faster, 0 = as fast as the reader takes it")
    p.add_argument("--no-loop", action="store_true", help="stop at the end of the record")
    p.add_argument("--fault", action="append", default=[], metavar="SPEC", help="inject a fault (repeatable)")
    p.add_argument("--link", metavar="PATH", help="keep a symlink PATH -> current pty (survives disconnects)")
    p.add_argument("--seed", type=int, default=0, help="seed for noise and byte corruption")
    p.add_argument("--duration", type=float, default=None, help="exit after this many wall seconds")
    p.add_argument("--device-id", default="SIM-ADS1298")
    p.add_argument("--json", action="store_true",
                   help="after the device path line, print events as JSON lines on stdout")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    def json_event(text: str, t: float) -> None:
        print(json.dumps({"event": text, "stream_time_s": round(t, 3), "device": sim.device_path}),
              flush=True)

    if args.duration is not None and not 0 < args.duration < float("inf"):
        print(f"ecg-frontend-sim: error: --duration {args.duration:g}: give wall seconds above 0 (or leave it "
              f"out to run until stopped)", file=sys.stderr)
        return 2
    try:
        sim = FrontEndSimulator(args.record, fs=args.fs, speed=args.speed, loop=not args.no_loop,
                                faults=[parse_fault(s) for s in args.fault], link_path=args.link,
                                seed=args.seed, device_id=args.device_id,
                                on_event=json_event if args.json else None)
    except SimulatorError as e:
        print(f"ecg-frontend-sim: error: {e}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def _on_signal(signum, _frame):
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    path = sim.start()
    print(path, flush=True)
    print(f"ecg-frontend-sim: {sim.device_id} replaying {args.record} ({sim.record_fs} Hz) at "
          f"{sim.rate} Hz, LSB {sim.lsb_pv / 1000:.3f} nV, speed {args.speed:g}; pty {sim.device_path}",
          file=sys.stderr, flush=True)
    deadline = time.monotonic() + args.duration if args.duration else None
    try:
        while not stop.is_set():
            if deadline and time.monotonic() >= deadline:
                break
            if sim.finished and not sim._out:
                break
            stop.wait(0.1)
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
