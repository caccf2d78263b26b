"""System health for the device's telemetry: uptime, CPU, memory, disk, temperature.

Why in telemetry: a fleet admin must see a Pi that runs hot, is out of disk (the outbox and the result store
live there) or swaps, before it stops delivering. psutil when installed; else the load average.
"""
from __future__ import annotations

import os
import shutil
import socket
import time
from typing import Any

THERMAL = "/sys/class/thermal"


def system_health(disk_path: str, started_at: float) -> dict[str, Any]:
    """Uptime, CPU, memory, disk and temperature (when /sys/class/thermal exists) of this machine."""
    out: dict[str, Any] = {"uptime_s": round(time.time() - started_at, 1), "hostname": socket.gethostname()}
    try:
        import psutil
        out["cpu_percent"] = psutil.cpu_percent(interval=None)
        memory = psutil.virtual_memory()
        out["memory_percent"] = memory.percent
        out["memory_available_mb"] = round(memory.available / 2**20, 1)
        out["process_rss_mb"] = round(psutil.Process().memory_info().rss / 2**20, 1)
    except Exception:  # noqa: BLE001 - psutil is optional on the device
        try:
            out["load_1m"] = os.getloadavg()[0]
        except OSError:
            pass
    try:
        usage = shutil.disk_usage(disk_path)
        out["disk_free_mb"] = round(usage.free / 2**20, 1)
        out["disk_used_percent"] = round(100 * usage.used / usage.total, 1) if usage.total else None
    except OSError:
        pass
    temperatures = []
    if os.path.isdir(THERMAL):
        for zone in sorted(os.listdir(THERMAL)):
            try:
                with open(os.path.join(THERMAL, zone, "temp")) as fh:
                    temperatures.append(int(fh.read().strip()) / 1000.0)
            except (OSError, ValueError):
                continue
    if temperatures:
        out["temperature_c"] = max(temperatures)
    return out
