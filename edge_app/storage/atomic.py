"""Crash-safe file writes: temp file + fsync + rename + directory fsync.

Why: the appliance may lose power or be SIGKILLed (watchdog) at any instant. A file that was
renamed into place after its bytes were fsynced, followed by an fsync of the directory, is either
entirely there or not there at all; a reader never sees half a result.
"""
from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(path: str | os.PathLike) -> None:
    fd = os.open(os.fspath(path), os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: str | os.PathLike) -> None:
    fd = os.open(os.fspath(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, sync_dir: bool = True) -> None:
    """Write `data` to `path` so that `path` is either the old content or the complete new content."""
    p = Path(path)
    tmp = p.with_name(f".{p.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, p)
    if sync_dir:
        fsync_dir(p.parent)


def atomic_move_into(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """fsync an already written file and rename it into place (caller fsyncs the directory)."""
    fsync_file(src)
    os.replace(src, dst)
