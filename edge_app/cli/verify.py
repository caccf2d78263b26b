"""`ecg-edge audit verify` and `ecg-edge store verify`: integrity checks of the device's own records.

A device that never ran has nothing to check: that is said plainly and is not a failure. A missing audit
log on a device that has stored results is a failure (the log was removed).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from edge_app.cli.common import (EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, config_error, dumps, fail, load_config,
                                 plural)


def add_parsers(sub: argparse._SubParsersAction, with_config) -> None:
    sp = sub.add_parser("audit", help="audit log tools")
    asub = sp.add_subparsers(dest="audit_cmd", required=True)
    c = asub.add_parser("verify", help="verify the hash chain")
    with_config(c)
    c.add_argument("--file", help="audit.jsonl (default <state_dir>/audit.jsonl)")
    c.add_argument("--head", help="SEQ:HASH recorded off the device (telemetry audit_head): the log must hold it")
    c.add_argument("--json", action="store_true")
    sp.set_defaults(fn=cmd_audit)

    sp = sub.add_parser("store", help="result store tools")
    ssub = sp.add_subparsers(dest="store_cmd", required=True)
    c = ssub.add_parser("verify", help="check every stored result and raw strip")
    with_config(c)
    c.add_argument("--state-dir")
    c.add_argument("--json", action="store_true")
    sp.set_defaults(fn=cmd_store)


def _has_results(state_dir: Path) -> bool:
    return (state_dir / "index.sqlite").exists() or any((state_dir / "results").glob("*/*"))


def cmd_audit(args: argparse.Namespace) -> int:
    from edge_app.errors import ConfigError
    from edge_app.storage.audit import GENESIS, AuditVerification, rotated_segments, verify_audit_log
    try:
        state_dir = None if args.file else load_config(args.config).state_dir
    except ConfigError as e:
        return config_error("audit verify", e)
    path = Path(args.file) if args.file else state_dir / "audit.jsonl"
    if not path.exists() and not rotated_segments(path):
        if args.file:
            return fail("audit verify", f"{path}: no such file; give the audit.jsonl of a device "
                                        f"(default <state_dir>/audit.jsonl)", EXIT_BAD_INPUT)
        if not _has_results(state_dir):
            if args.json:
                print(dumps({"ok": True, "entries": 0, "audit_log": None, "problems": [],
                             "note": "no audit log yet: the daemon has not run with this state_dir"}))
            else:
                print(f"{path}: no audit log yet (the daemon has not run with state_dir {state_dir}); "
                      f"nothing to verify")
            return EXIT_OK
        v = AuditVerification(False, 0, GENESIS, [f"{path} is missing although {state_dir} holds stored results: "
                                                  f"the audit log was removed"])
    else:
        try:
            v = verify_audit_log(path, head=getattr(args, "head", None))
        except ValueError as e:
            return fail("audit verify", f"--head: {e}", EXIT_BAD_INPUT)
    ok = v.ok
    if args.json:
        print(dumps(v.__dict__ | {"ok": ok}))
    else:
        print(f"{path}: {'OK' if ok else 'BROKEN'}: {plural(v.entries, 'entry', 'entries')}, "
              f"last hash {v.last_hash[:16]}...")
        for p in v.problems:
            print(f"  {p}")
        for note in getattr(v, "notes", []):
            print(f"  note: {note}")
        if v.kinds:
            print("  " + ", ".join(f"{k} {n}" for k, n in sorted(v.kinds.items())))
    return EXIT_OK if ok else EXIT_FAILED


def cmd_store(args: argparse.Namespace) -> int:
    from edge_app.errors import ConfigError
    from edge_app.storage import ResultStore
    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        return config_error("store verify", e)
    state = Path(args.state_dir) if args.state_dir else cfg.state_dir
    if not _has_results(state):
        if args.json:
            print(dumps({"ok": True, "problems": [], "results": 0, "note": "no result store yet"}))
        else:
            print(f"{state}: no result store yet (the daemon has not stored results there); nothing to verify")
        return EXIT_OK
    try:
        store = ResultStore(state, max_bytes=cfg.get("storage.max_bytes"),
                            retention_days=cfg.get("storage.retention_days"))
    except OSError as e:
        return fail("store verify", f"cannot open the result store in {state}: {e}", EXIT_FAILED)
    problems = store.verify()
    st = store.stats()
    store.close()
    if args.json:
        print(dumps({"ok": not problems, "problems": problems, **st}))
    else:
        print(f"{state}: {'OK' if not problems else 'PROBLEMS'}: {plural(st['results'], 'result')}, "
              f"{st['bytes']} bytes, {st['undelivered']} undelivered")
        for p in problems:
            print(f"  {p}")
    return EXIT_OK if not problems else EXIT_FAILED
