"""`ecg-edge run`: the daemon (systemd Type=notify)."""
from __future__ import annotations

import argparse
import logging

from edge_app.cli.common import EXIT_FAILED, EXIT_OK, config_error, load_config, setup_logging


def add_parser(sub: argparse._SubParsersAction, with_config) -> None:
    sp = sub.add_parser("run", help="run the daemon")
    with_config(sp)
    sp.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sp.set_defaults(fn=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from edge_app.errors import ConfigError
    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        return config_error("run", e)
    setup_logging(args.log_level or cfg.get("logging.level"))
    from edge_app.daemon import Daemon
    from edge_app.inference import BackendError, ModelError
    d = Daemon(cfg)
    d.install_signal_handlers()
    try:
        d.start()
    except ConfigError as e:
        return config_error("run", e)
    except (ModelError, BackendError, OSError) as e:   # known causes: one line that says what, no traceback
        logging.getLogger("edge_app.daemon").error("startup failed: %s", e)
        d.shutdown()
        return EXIT_FAILED
    except Exception as e:  # noqa: BLE001 - an unexpected startup failure is a bug: keep its traceback
        logging.getLogger("edge_app.daemon").exception("startup failed: %s", e)
        d.shutdown()
        return EXIT_FAILED
    d.run()
    return EXIT_OK
