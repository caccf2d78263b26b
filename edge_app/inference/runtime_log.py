"""Keep the LiteRT runtime's start-up chatter off the user's terminal, without hiding its real messages.

Why an fd-level filter: LiteRT's C++ runtime prints "INFO: Created TensorFlow Lite XNNPACK delegate for
CPU." straight to file descriptor 2 when the interpreter first allocates its tensors. Its log severity
cannot be set from Python (TF_CPP_MIN_LOG_LEVEL does not reach this logger and the C++ setter is not
exported by the ai-edge-litert wheel), and disabling the XNNPACK delegate would change inference speed.
So, for the short moment the interpreter is built, fd 2 is pointed at a temporary file; afterwards
every line that is not a known informational line is written back to the real stderr, in order.
Anything else written to stderr in that moment (a real error, another thread's log line) still
reaches the user, only slightly later.
"""
from __future__ import annotations

import os
import re
import sys
import tempfile
from contextlib import contextmanager
from typing import Iterator

#: Informational lines from the runtime that carry nothing for a user (matched at the start of a line).
QUIET_LINES = (
    re.compile(rb"^INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.\s*$"),
    re.compile(rb"^INFO: Initialized TensorFlow Lite runtime\.\s*$"),
)


@contextmanager
def quiet_runtime_info() -> Iterator[None]:
    """Filter the runtime's known INFO lines from fd 2 while the block runs; pass everything else on."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):          # no usable fd 2 (closed or redirected oddly): nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [ln for ln in capture.read().splitlines(keepends=True)
                    if not any(p.match(ln) for p in QUIET_LINES)]
            if kept:
                os.write(2, b"".join(kept))
