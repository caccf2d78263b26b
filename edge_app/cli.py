"""`ecg-edge`: the appliance's command line. Prints for humans; --json for machines.

    ecg-edge run --config FILE            the daemon (systemd Type=notify)
    ecg-edge demo [--duration S] [--display]  simulator on a real PTB-XL MI record -> daemon -> results on
                                          screen (--display: also the bedside page; its URL is printed)
    ecg-edge replay PATH [PATH ...]       analyse WFDB records through exactly the daemon's chain
    ecg-edge selftest                     model hash + golden outputs on the built-in real records
    ecg-edge config check FILE | default  validate a config / print the defaults
    ecg-edge measure ...                  heart rate and beats of a record (signal chain)
    ecg-edge patient set|clear|show       patient context of the running daemon (local control socket)
    ecg-edge status | results | alarms    ask the running daemon
    ecg-edge audit verify                 check the hash chain of the audit log
    ecg-edge store verify                 check every stored result and strip
    ecg-edge outbox                       the uplink's outbox depth

A triage aid, not a diagnosis.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Sequence

NOTICE = "Triage aid, not a diagnosis."
RECORDS_DIR = Path(__file__).resolve().parent / "data" / "records"
DEFAULT_DEMO_RECORD = RECORDS_DIR / "00181_hr"
LEVEL_TEXT = {"high": "SUSPECTED MI - HIGH PRIORITY", "medium": "ABNORMAL - MEDIUM PRIORITY",
              "none": "no finding above threshold", "cannot_interpret": "CANNOT INTERPRET (technical alarm)"}


def _setup_logging(level: str = "INFO", stream: Any = None) -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), stream=stream or sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)


def _load(path: str | None) -> Any:
    from edge_app.config import load_config
    return load_config(path)


def _config_error(e: Exception) -> int:
    print(f"ecg-edge: configuration error: {e}", file=sys.stderr)
    return 2


# ------------------------------------------------------------------------------------------- run
def cmd_run(args: argparse.Namespace) -> int:
    from edge_app.errors import ConfigError
    try:
        cfg = _load(args.config)
    except ConfigError as e:
        return _config_error(e)
    _setup_logging(args.log_level or cfg.get("logging.level"))
    from edge_app.daemon import Daemon
    d = Daemon(cfg)
    d.install_signal_handlers()
    try:
        d.start()
    except ConfigError as e:
        return _config_error(e)
    except Exception as e:  # noqa: BLE001 - startup failures: say what, exit non-zero (systemd restarts)
        logging.getLogger("edge_app.daemon").exception("startup failed: %s", e)
        d.shutdown()
        return 1
    d.run()
    return 0


# ------------------------------------------------------------------------------------------- demo
def format_result(d: dict[str, Any]) -> str:
    w = d["window"]
    hr = d.get("heart_rate_bpm")
    q = d["quality"]
    lines = [f"[{d['time'][11:19]}Z] window {w['start_s']:.1f}-{w['end_s']:.1f} s: "
             f"{LEVEL_TEXT.get(d['triage_level'], d['triage_level'])}"
             f"   HR {'--' if hr is None else f'{hr:.0f}'} bpm   quality {q['verdict']}"
             + (f" ({'; '.join(q['reasons'])})" if q.get("reasons") else "")]
    if d.get("probabilities"):
        lines.append("   " + "  ".join(f"{c} {p:.2f}" for c, p in d["probabilities"].items()))
    for f in d["explanation"]["findings"]:
        lines.append(f"   {f['text']}")
    for a in d.get("alarms", []):
        lines.append(f"   ALARM [{a['priority']} {a['kind']}] {a['message']}")
    lines.append(f"   {NOTICE}")
    return "\n".join(lines)


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cmd_demo(args: argparse.Namespace) -> int:
    from edge_app.config import config_from_dict
    from edge_app.daemon import Daemon
    from firmware_bridge.simulator import FrontEndSimulator
    _setup_logging("ERROR" if not args.verbose else "INFO")
    record = Path(args.record) if args.record else DEFAULT_DEMO_RECORD
    tmp = tempfile.TemporaryDirectory(prefix="ecg-edge-demo-")
    sim = FrontEndSimulator(str(record), fs=500, speed=args.speed, loop=True, faults=args.fault or [],
                            link_path=os.path.join(tmp.name, "frontend"))
    port = sim.start()
    raw = {"device": {"id": "demo"}, "frontend": {"port": port},
           "storage": {"state_dir": os.path.join(tmp.name, "state")}}
    if args.age is not None or args.sex:
        raw["patient"] = {k: v for k, v in (("age", args.age), ("sex", args.sex)) if v is not None}
    if args.stride:
        raw["windows"] = {"stride_s": args.stride}
    if args.display:
        raw["display"] = {"enabled": True, "host": args.display_host, "port": args.display_port or _free_port()}
    cfg = config_from_dict(raw)

    def show(d: dict[str, Any]) -> None:
        if args.json:
            print(json.dumps(d), flush=True)
        else:
            print(format_result(d) + "\n", flush=True)

    d = Daemon(cfg, sinks=(show,))
    d.install_signal_handlers()
    if not args.json:
        print(f"ecg-edge demo: simulator replays {record.name} (real PTB-XL record) at {args.speed:g}x on {port}.\n"
              f"First result once 10 s of clean signal exist, then every {cfg.get('windows.stride_s'):g} s. "
              f"Ctrl-C to stop. {NOTICE}\n", flush=True)
    try:
        d.start()
        if d.display is not None:
            # Results go to stdout as JSON lines with --json, so the URL goes to stderr there.
            print(f"ecg-edge demo: bedside page on {d.display.url} (open it in a browser). {NOTICE}",
                  file=sys.stderr if args.json else sys.stdout, flush=True)
        if args.duration:
            threading.Timer(args.duration, d.request_stop).start()
        d.run()
    finally:
        sim.stop()
        tmp.cleanup()
    if not args.json:
        print(f"ecg-edge demo: {d.counters['windows']} windows analysed. {NOTICE}")
    return 0


# ----------------------------------------------------------------------------------------- replay
def cmd_replay(args: argparse.Namespace) -> int:
    from edge_app.errors import ConfigError
    from edge_app.pipeline import PipelineSettings, RecordError, analyse_record
    try:
        cfg = _load(args.config)
    except ConfigError as e:
        return _config_error(e)
    _setup_logging("WARNING")
    from edge_app.inference import load_model
    from edge_app.patient import validate_patient
    try:
        ctx = validate_patient(args.age, args.sex)
    except ValueError as e:
        print(f"ecg-edge replay: {e}", file=sys.stderr)
        return 2
    model = load_model(cfg.manifest_path, backend=cfg.get("model.backend"), num_threads=cfg.get("model.num_threads"))
    settings = PipelineSettings.from_config(cfg)
    if args.stride:
        settings.stride_s = float(args.stride)
    rc, n = 0, 0
    for path in args.paths:
        try:
            results = analyse_record(path, ctx.age, ctx.sex, model=model, settings=settings,
                                     device_id=cfg.device_id, config=cfg)
        except RecordError as e:
            print(f"ecg-edge replay: {e}", file=sys.stderr)
            rc = 1
            continue
        if not results:
            print(f"ecg-edge replay: {path}: shorter than one 10 s window; nothing analysed", file=sys.stderr)
            rc = 1
        for r in results:
            n += 1
            line = r.replay_dict()
            if args.json:
                print(json.dumps(line), flush=True)
            else:
                print(format_result(r.to_dict() | {"time": r.time}).replace(
                    "window", f"{Path(path).name} window", 1) + "\n", flush=True)
    return rc


# ---------------------------------------------------------------------------------------- selftest
def cmd_selftest(args: argparse.Namespace) -> int:
    from edge_app.errors import ConfigError
    from edge_app.inference import run_selftest
    try:
        cfg = _load(args.config)
    except ConfigError as e:
        return _config_error(e)
    rep = run_selftest(cfg.manifest_path, backend=cfg.get("model.backend"), num_threads=cfg.get("model.num_threads"))
    if args.json:
        print(json.dumps(rep.to_dict(), default=str))
    else:
        print(f"model {rep.model_version} sha256 {rep.model_sha256}")
        for r in rep.records:
            print(f"  {r['record']}: max |diff| {r['max_abs_diff']:.5f} {'ok' if r['ok'] else 'FAIL'}")
        print(f"selftest {'PASSED' if rep.ok else 'FAILED: ' + rep.error} "
              f"(tolerance {rep.tolerance}, {rep.seconds:.2f} s)")
    return 0 if rep.ok else 1


# ------------------------------------------------------------------------------------------ config
def cmd_config(args: argparse.Namespace) -> int:
    from edge_app.config import default_toml, load_config
    from edge_app.errors import ConfigError
    if args.config_cmd == "default":
        sys.stdout.write(default_toml())
        return 0
    try:
        cfg = load_config(args.file)
    except ConfigError as e:
        if args.json:
            print(json.dumps({"ok": False, "key": e.key, "problem": e.problem, "fix": e.fix, "error": str(e)}))
        else:
            print(f"{args.file}: ERROR {e}")
        return 2
    if args.json:
        print(json.dumps({"ok": True, "config": cfg.to_dict()}, default=str))
    else:
        print(f"{args.file}: OK")
        if not cfg.manifest_path.exists():
            print(f"  warning: model manifest {cfg.manifest_path} does not exist (yet)")
    return 0


# ------------------------------------------------------------------------------ running-daemon calls
def _socket_path(args: argparse.Namespace) -> Path:
    if getattr(args, "socket", None):
        return Path(args.socket)
    return _load(args.config).control_socket


def _call(args: argparse.Namespace, cmd: str, **kw: Any) -> int:
    from edge_app.errors import ConfigError
    from edge_app.patient import call
    try:
        reply = call(_socket_path(args), cmd, **kw)
    except ConfigError as e:
        return _config_error(e)
    except ConnectionError as e:
        print(f"ecg-edge: {e}", file=sys.stderr)
        return 3
    if not reply.get("ok"):
        print(f"ecg-edge: {cmd} refused: {reply.get('error')}", file=sys.stderr)
        return 2
    res = reply["result"]
    if getattr(args, "json", False):
        print(json.dumps(res, default=str))
    elif cmd == "latest":
        for d in reversed(res):
            print(format_result(d) + "\n")
    elif cmd == "status":
        print(f"state {res['state']}  front end {res['frontend']['status']}  windows {res['counters']['windows']}"
              f"  patient {res['patient']}  model {res['model']['version']}")
        for a in res["alarms_active"]:
            print(f"  ALARM [{a['priority']} {a['kind']}] {a['message']}  id {a['id']}")
        print(f"  store {res['store']}   latency ms {res['latency_ms']}\n  {NOTICE}")
    elif cmd == "alarms":
        for a in res:
            print(f"{a['time']} [{a['priority']} {a['kind']}] {'ACTIVE' if a['active'] else 'ended '} "
                  f"{'acked by ' + a['acknowledged_by'] if a['acknowledged_by'] else 'unacked':>16}  {a['id']}  {a['message']}")
    else:
        print(json.dumps(res, indent=1, default=str))
    return 0


def cmd_patient(args: argparse.Namespace) -> int:
    if args.patient_cmd == "set":
        if args.age is None and args.sex is None:
            print("ecg-edge patient set: give --age and/or --sex", file=sys.stderr)
            return 2
        age, sex = args.age, args.sex
        if age is None or sex is None:          # keep the part not given (set age now, sex later)
            from edge_app.patient import call
            try:
                cur = call(_socket_path(args), "status")["result"]["patient"]
            except (ConnectionError, KeyError):
                cur = {}
            age = cur.get("age") if age is None else age
            sex = cur.get("sex") if sex is None else sex
        return _call(args, "set_patient", age=age, sex=sex)
    if args.patient_cmd == "clear":
        return _call(args, "clear_patient")
    return _show_patient(args)


def _show_patient(args: argparse.Namespace) -> int:
    from edge_app.patient import call
    try:
        reply = call(_socket_path(args), "status")
    except ConnectionError as e:
        print(f"ecg-edge: {e}", file=sys.stderr)
        return 3
    print(json.dumps(reply["result"]["patient"]))
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from edge_app.storage.audit import verify_audit_log
    path = Path(args.file) if args.file else _load(args.config).state_dir / "audit.jsonl"
    v = verify_audit_log(path)
    if args.json:
        print(json.dumps(v.__dict__))
    else:
        print(f"{path}: {'OK' if v.ok else 'BROKEN'}: {v.entries} entries, last hash {v.last_hash[:16]}...")
        for p in v.problems:
            print(f"  {p}")
        if v.kinds:
            print("  " + ", ".join(f"{k} {n}" for k, n in sorted(v.kinds.items())))
    return 0 if v.ok else 1


def cmd_store(args: argparse.Namespace) -> int:
    from edge_app.storage import ResultStore
    cfg = _load(args.config)
    state = Path(args.state_dir) if args.state_dir else cfg.state_dir
    store = ResultStore(state, max_bytes=cfg.get("storage.max_bytes"), retention_days=cfg.get("storage.retention_days"))
    problems = store.verify()
    st = store.stats()
    store.close()
    if args.json:
        print(json.dumps({"ok": not problems, "problems": problems, **st}))
    else:
        print(f"{state}: {'OK' if not problems else 'PROBLEMS'}: {st['results']} results, {st['bytes']} bytes, "
              f"{st['undelivered']} undelivered")
        for p in problems:
            print(f"  {p}")
    return 0 if not problems else 1


# ------------------------------------------------------------------------------------------ parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ecg-edge", description=f"12-lead ECG triage appliance. {NOTICE}",
                                epilog="also: 'ecg-edge measure RECORD' (heart rate, beats, quality of a record) and "
                                       "'ecg-edge outbox' (uplink outbox depth); each takes --help")
    sub = p.add_subparsers(dest="cmd", required=True)

    def with_config(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--config", "-c", help="TOML config file (default: built-in defaults)")

    sp = sub.add_parser("run", help="run the daemon")
    with_config(sp)
    sp.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sp.set_defaults(fn=cmd_run)

    sp = sub.add_parser("demo", help="simulator on a real record -> daemon -> results on screen")
    sp.add_argument("--record", help=f"WFDB record to replay (default {DEFAULT_DEMO_RECORD.name}, PTB-XL, MI)")
    sp.add_argument("--duration", type=float, help="stop after S seconds (default: until Ctrl-C)")
    sp.add_argument("--speed", type=float, default=1.0, help="replay speed (1 = real time)")
    sp.add_argument("--stride", type=float, help="seconds between results (default 5)")
    sp.add_argument("--fault", action="append", help="inject a simulator fault, e.g. electrode_off:LA@22+8")
    sp.add_argument("--age", type=float)
    sp.add_argument("--sex", choices=["male", "female"])
    sp.add_argument("--json", action="store_true", help="one JSON result per line")
    sp.add_argument("--display", action="store_true", help="also serve the bedside page and print its URL")
    sp.add_argument("--display-port", type=int, default=0, metavar="PORT", help="port for --display (default: a free one)")
    sp.add_argument("--display-host", default="127.0.0.1", metavar="ADDR",
                    help="address for --display (default 127.0.0.1; 0.0.0.0 serves other machines)")
    sp.add_argument("--verbose", "-v", action="store_true")
    sp.set_defaults(fn=cmd_demo)

    sp = sub.add_parser("replay", help="analyse WFDB records through the daemon's chain")
    sp.add_argument("paths", nargs="+", metavar="PATH")
    sp.add_argument("--age", type=float)
    sp.add_argument("--sex", choices=["male", "female"])
    sp.add_argument("--stride", type=float, help="seconds between windows (default: config, 5)")
    sp.add_argument("--json", action="store_true")
    with_config(sp)
    sp.set_defaults(fn=cmd_replay)

    sp = sub.add_parser("selftest", help="model hash and golden outputs on built-in records")
    with_config(sp)
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(fn=cmd_selftest)

    sp = sub.add_parser("config", help="check a config file or print the defaults")
    csub = sp.add_subparsers(dest="config_cmd", required=True)
    c = csub.add_parser("check")
    c.add_argument("file")
    c.add_argument("--json", action="store_true")
    csub.add_parser("default")
    sp.set_defaults(fn=cmd_config)

    sp = sub.add_parser("patient", help="patient context of the running daemon")
    psub = sp.add_subparsers(dest="patient_cmd", required=True)
    for name in ("set", "clear", "show"):
        c = psub.add_parser(name)
        with_config(c)
        c.add_argument("--socket", help="control socket (default <state_dir>/control.sock)")
        c.add_argument("--json", action="store_true")
        if name == "set":
            c.add_argument("--age", type=float)
            c.add_argument("--sex", choices=["male", "female", "unknown"])
    sp.set_defaults(fn=cmd_patient)

    for name, cmd, helptext in (("status", "status", "the running daemon's status"),
                                ("results", "latest", "latest results of the running daemon"),
                                ("alarms", "alarms", "recent alarms of the running daemon")):
        sp = sub.add_parser(name, help=helptext)
        with_config(sp)
        sp.add_argument("--socket")
        sp.add_argument("--json", action="store_true")
        if name == "results":
            sp.add_argument("-n", type=int, default=5)
        if name == "alarms":
            sp.add_argument("--ack", metavar="ALARM_ID", help="acknowledge this alarm")
            sp.add_argument("--by", default=os.environ.get("USER", "local"))
        sp.set_defaults(fn=lambda a, _c=cmd: (_call(a, "acknowledge_alarm", alarm_id=a.ack, by=a.by)
                                              if getattr(a, "ack", None) else
                                              _call(a, _c, **({"n": a.n} if _c == "latest" else {}))))

    sp = sub.add_parser("audit", help="audit log tools")
    asub = sp.add_subparsers(dest="audit_cmd", required=True)
    c = asub.add_parser("verify", help="verify the hash chain")
    with_config(c)
    c.add_argument("--file", help="audit.jsonl (default <state_dir>/audit.jsonl)")
    c.add_argument("--json", action="store_true")
    sp.set_defaults(fn=cmd_audit)

    sp = sub.add_parser("store", help="result store tools")
    ssub = sp.add_subparsers(dest="store_cmd", required=True)
    c = ssub.add_parser("verify", help="check every stored result and raw strip")
    with_config(c)
    c.add_argument("--state-dir")
    c.add_argument("--json", action="store_true")
    sp.set_defaults(fn=cmd_store)
    return p


DISPATCH = {"measure": ("edge_app.signal_chain.measure_cli", "run"),
            "outbox": ("edge_app.uplink.outbox_cli", "run")}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in DISPATCH:
        import importlib
        mod, fn = DISPATCH[argv[0]]
        try:
            return int(getattr(importlib.import_module(mod), fn)(argv[1:]) or 0)
        except ImportError as e:
            print(f"ecg-edge {argv[0]}: not available in this build ({e})", file=sys.stderr)
            return 1
    args = build_parser().parse_args(argv)
    try:
        return int(args.fn(args) or 0)
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
