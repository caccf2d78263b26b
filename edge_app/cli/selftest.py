"""`ecg-edge selftest`: the shipped model's hash and its golden outputs on the built-in real records."""
from __future__ import annotations

import argparse

from edge_app.cli.common import EXIT_FAILED, EXIT_OK, config_error, dumps, load_config


def add_parser(sub: argparse._SubParsersAction, with_config) -> None:
    sp = sub.add_parser("selftest", help="model hash and golden outputs on built-in records")
    with_config(sp)
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(fn=cmd_selftest)


def cmd_selftest(args: argparse.Namespace) -> int:
    from edge_app.errors import ConfigError
    from edge_app.inference import run_selftest
    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        return config_error("selftest", e)
    rep = run_selftest(cfg.manifest_path, backend=cfg.get("model.backend"), num_threads=cfg.get("model.num_threads"))
    if args.json:
        print(dumps(rep.to_dict()))
    else:
        print(f"model {rep.model_version} sha256 {rep.model_sha256}")
        for r in rep.records:
            print(f"  {r['record']}: max |diff| {r['max_abs_diff']:.5f} {'ok' if r['ok'] else 'FAIL'}")
        print(f"selftest {'PASSED' if rep.ok else 'FAILED: ' + rep.error} "
              f"(tolerance {rep.tolerance}, {rep.seconds:.2f} s)")
    return EXIT_OK if rep.ok else EXIT_FAILED
