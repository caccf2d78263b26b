"""`ecg-edge replay PATH ...`: analyse WFDB records through exactly the daemon's chain (edge_app.pipeline).

Paths may be record paths (with or without .hea/.dat) or built-in record names. A record that cannot
be read is reported (file, problem, fix) and the others are still analysed; the exit code is then 2.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from edge_app.cli.common import (EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, config_error, fail, load_config,
                                 setup_logging)
from edge_app.cli.show import format_result


def add_parser(sub: argparse._SubParsersAction, with_config) -> None:
    sp = sub.add_parser("replay", help="analyse WFDB records through the daemon's chain")
    sp.add_argument("paths", nargs="+", metavar="PATH", help="WFDB record (path without extension) or built-in name")
    sp.add_argument("--age", type=float)
    sp.add_argument("--sex", choices=["male", "female"])
    sp.add_argument("--stride", type=float, help="seconds between windows (default: config, 5)")
    sp.add_argument("--json", action="store_true")
    with_config(sp)
    sp.set_defaults(fn=cmd_replay)


def cmd_replay(args: argparse.Namespace) -> int:
    from edge_app.errors import ConfigError
    from edge_app.pipeline import PipelineSettings
    from edge_app.replay import replay_records
    from edge_app.results import PatientContext
    from edge_app.cli.builtin import resolve_record
    from edge_app.config import apply_changes
    try:
        cfg = load_config(args.config)
        if args.stride is not None:       # the config's own rule for windows.stride_s (1..10 s)
            cfg, _ = apply_changes(cfg, {"windows.stride_s": args.stride})
    except ConfigError as e:
        return config_error("replay", e)
    setup_logging("WARNING")
    from edge_app.inference import BackendError, ModelError, load_model
    from edge_app.patient import validate_patient
    try:
        ctx = validate_patient(args.age, args.sex)
    except ValueError as e:
        return fail("replay", str(e), EXIT_BAD_INPUT)
    try:
        model = load_model(cfg.manifest_path, backend=cfg.get("model.backend"),
                           num_threads=cfg.get("model.num_threads"))
    except (ModelError, BackendError) as e:     # a missing or tampered model: the device's problem, not the input's
        return fail("replay", f"cannot load the model: {e}", EXIT_FAILED)
    settings = PipelineSettings.from_config(cfg)
    rc = EXIT_OK
    # Batch replay (edge_app.replay): the results of pipeline.analyse_record, record by record, with less work.
    patient = PatientContext(age=ctx.age, sex=ctx.sex)
    for item in replay_records(args.paths, model, settings, patient=patient, device_id=cfg.device_id,
                               resolve=resolve_record):
        given, path, results = item.given, item.path, item.results
        if item.error is not None:
            rc = fail("replay", item.error, EXIT_BAD_INPUT)
            continue
        if not results:
            rc = fail("replay", f"{given}: shorter than one 10 s window; nothing analysed (replay needs at least "
                                f"10 s of signal)", EXIT_BAD_INPUT)
        for r in results:
            if args.json:
                print(json.dumps(r.replay_dict()), flush=True)
            else:
                print(format_result(r.to_dict() | {"time": r.time}).replace(
                    "window", f"{Path(path).name} window", 1) + "\n", flush=True)
    return rc
