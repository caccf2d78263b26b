"""Commands that ask the running daemon over its local control socket: status, results, alarms, patient."""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from edge_app.cli.common import (EXIT_BAD_INPUT, EXIT_NO_DAEMON, EXIT_OK, NOTICE, config_error, dumps, fail,
                                 load_config)
from edge_app.cli.show import format_result


def add_parsers(sub: argparse._SubParsersAction, with_config) -> None:
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
                                ("results", "results/latest", "latest results of the running daemon"),
                                ("alarms", "alarms/list", "recent alarms of the running daemon")):
        sp = sub.add_parser(name, help=helptext)
        with_config(sp)
        sp.add_argument("--socket")
        sp.add_argument("--json", action="store_true")
        if name == "results":
            sp.add_argument("-n", type=int, default=5)
        if name == "alarms":
            sp.add_argument("--ack", metavar="ALARM_ID", help="acknowledge this alarm")
            sp.add_argument("--by", default=os.environ.get("USER", "local"))
        sp.set_defaults(fn=cmd_ask, daemon_cmd=cmd)


def _socket_path(args: argparse.Namespace) -> Path:
    if getattr(args, "socket", None):
        return Path(args.socket)
    return load_config(args.config).control_socket


def call_daemon(args: argparse.Namespace, cmd: str, **kw: Any) -> tuple[int, Any]:
    """(exit code, result) of one control-socket command; errors are printed here."""
    from edge_app.errors import ConfigError
    from edge_app.control_socket import call
    try:
        reply = call(_socket_path(args), cmd, **kw)
    except ConfigError as e:
        return config_error(args.cmd, e), None
    except ConnectionError as e:
        return fail(args.cmd, str(e), EXIT_NO_DAEMON), None
    if not reply.get("ok"):
        return fail(args.cmd, f"{cmd} refused: {(reply.get('error') or {}).get('message')}", EXIT_BAD_INPUT), None
    return EXIT_OK, reply["result"]


def _print(args: argparse.Namespace, cmd: str, res: Any) -> None:
    if getattr(args, "json", False):
        print(dumps(res))
    elif cmd == "results/latest":
        for d in reversed(res):
            print(format_result(d) + "\n")
    elif cmd == "status":
        print(f"state {res['state']}  front end {res['frontend']['status']}  windows {res['counters']['windows']}"
              f"  patient {res['patient']}  model {res['model']['version']}")
        for a in res["alarms_active"]:
            print(f"  ALARM [{a['priority']} {a['kind']}] {a['message']}  id {a['id']}")
        print(f"  store {res['store']}   latency ms {res['latency_ms']}\n  {NOTICE}")
    elif cmd == "alarms/list":
        for a in res:
            print(f"{a['time']} [{a['priority']} {a['kind']}] {'ACTIVE' if a['active'] else 'ended '} "
                  f"{'acked by ' + a['acknowledged_by'] if a['acknowledged_by'] else 'unacked':>16}  {a['id']}  {a['message']}")
    else:
        print(json.dumps(res, indent=1, default=str))


def _run(args: argparse.Namespace, cmd: str, **kw: Any) -> int:
    rc, res = call_daemon(args, cmd, **kw)
    if rc == EXIT_OK:
        _print(args, cmd, res)
    return rc


def cmd_ask(args: argparse.Namespace) -> int:
    """status / results / alarms [--ack ID]."""
    if getattr(args, "ack", None):
        return _run(args, "alarm/ack", alarm_id=args.ack, by=args.by)
    return _run(args, args.daemon_cmd, **({"n": args.n} if args.daemon_cmd == "results/latest" else {}))


def cmd_patient(args: argparse.Namespace) -> int:
    if args.patient_cmd == "set":
        if args.age is None and args.sex is None:
            return fail("patient set", "give --age and/or --sex", EXIT_BAD_INPUT)
        age, sex = args.age, args.sex
        if age is None or sex is None:          # keep the part not given (set age now, sex later)
            rc, status = call_daemon(args, "status")
            if rc != EXIT_OK:
                return rc
            cur = status.get("patient") or {}
            age = cur.get("age") if age is None else age
            sex = cur.get("sex") if sex is None else sex
        return _run(args, "patient/set", age=age, sex=sex)
    if args.patient_cmd == "clear":
        return _run(args, "patient/clear")
    rc, status = call_daemon(args, "status")
    if rc == EXIT_OK:
        print(dumps(status["patient"]))
    return rc
