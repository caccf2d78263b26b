"""What every `ecg-edge` command shares: the exit-code convention, the notice, logging and config loading.

Exit codes (docs/cli.md), the same for the same kind of outcome in every command:

    0  OK                the command did what was asked (a check found nothing wrong)
    1  FAILED            it ran, but what it checked or ran failed (self-test failed, audit chain broken,
                         store problems, the daemon could not start)
    2  BAD INPUT         the user's input cannot be used: command-line usage, a config file, a record,
                         a patient value (the message names the input, the problem and the fix)
    3  NO DAEMON         a command that talks to the running daemon could not reach it
"""
from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from edge_app.config import Config

NOTICE = "Triage aid, not a diagnosis."
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_NO_DAEMON = 3


def setup_logging(level: str = "INFO", stream: TextIO | None = None) -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), stream=stream or sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)


def fail(command: str, message: str, code: int = EXIT_BAD_INPUT) -> int:
    """Print `ecg-edge COMMAND: message` on stderr and return the exit code."""
    print(f"ecg-edge {command}: {message}", file=sys.stderr)
    return code


def load_config(path: str | None) -> Config:
    """The one validated TOML (built-in defaults when path is None); raises ConfigError."""
    from edge_app.config import load_config as _load
    return _load(path)


def config_error(command: str, e: Exception) -> int:
    return fail(command, f"configuration error: {e}", EXIT_BAD_INPUT)


def plural(n: int, word: str, words: str | None = None) -> str:
    """'1 window', '2 windows'."""
    return f"{n} {word if n == 1 else (words or word + 's')}"


def dumps(obj: Any) -> str:
    """JSON for machines: one line, NaN/inf as null (JSON has no NaN)."""
    import json
    from edge_app.jsonsafe import json_safe
    return json.dumps(json_safe(obj, unknown=str), allow_nan=False)
