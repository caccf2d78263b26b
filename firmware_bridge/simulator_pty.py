"""The simulator's end of the cable: a raw pseudo-terminal, optionally behind a stable symlink.

Why a pty: the host driver then opens a tty device with pyserial exactly as it opens a real UART, so
the path under test is the path in the field. Why the symlink: after a simulated cable pull the
simulator comes back on a *new* pty; the symlink (replaced atomically) plays the part of a udev by-id
name, so the host reopens the same path.
"""
from __future__ import annotations

import os
import tty


def open_pty(link_path: str | None = None) -> tuple[int, int, str]:
    """A new raw pty -> (master fd, non-blocking; slave fd; slave device path). With link_path, the
    symlink there is (re)pointed at the new device in one rename, so a reader never sees it missing."""
    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    device_path = os.ttyname(slave)
    if link_path:
        tmp = f"{link_path}.{os.getpid()}.tmp"
        try:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            os.symlink(device_path, tmp)
            os.replace(tmp, link_path)
        except BaseException:
            close_pty((master, slave))
            raise
    return master, slave, device_path


def close_pty(fds: tuple[int | None, ...], link_path: str | None = None) -> None:
    """Close the pty's fds (None and already-closed ones are skipped) and remove the symlink: the host's
    reads fail at once, as when a cable is pulled."""
    for fd in fds:
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
    if link_path:
        try:
            if os.path.islink(link_path):
                os.unlink(link_path)
        except OSError:
            pass
