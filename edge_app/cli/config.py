"""`ecg-edge config check FILE | default`: validate a config file / print the defaults."""
from __future__ import annotations

import argparse
import json
import sys

from edge_app.cli.common import EXIT_BAD_INPUT, EXIT_OK, dumps


def add_parser(sub: argparse._SubParsersAction) -> None:
    sp = sub.add_parser("config", help="check a config file or print the defaults")
    csub = sp.add_subparsers(dest="config_cmd", required=True)
    c = csub.add_parser("check", help="validate FILE; every error names the key and the fix")
    c.add_argument("file")
    c.add_argument("--json", action="store_true")
    csub.add_parser("default", help="print the default configuration (a valid, commented TOML file)")
    sp.set_defaults(fn=cmd_config)


def cmd_config(args: argparse.Namespace) -> int:
    from edge_app.config import default_toml, load_config
    from edge_app.errors import ConfigError
    if args.config_cmd == "default":
        sys.stdout.write(default_toml())
        return EXIT_OK
    try:
        cfg = load_config(args.file)
    except ConfigError as e:
        if args.json:
            print(json.dumps({"ok": False, "key": e.key, "problem": e.problem, "fix": e.fix, "error": str(e)}))
        else:
            print(f"{args.file}: ERROR {e}")
        return EXIT_BAD_INPUT
    if args.json:
        print(dumps({"ok": True, "config": cfg.to_dict()}))
    else:
        print(f"{args.file}: OK")
        if not cfg.manifest_path.exists():
            print(f"  warning: model manifest {cfg.manifest_path} does not exist (yet)")
    return EXIT_OK
