"""The serial side of the data path: a reader thread that keeps the front end drained, and the front end's
technical alarm conditions.

Why a reader thread and a queue (2 min deep): the serial port must be drained even while a window is being
analysed, so a slow window never overflows the front end's buffer (which would cost samples and reset the
window). The data path takes blocks from the queue. When no sample arrived for `frontend.idle_timeout_s` the
reader puts an idle tick (None): the driver's own status then says whether that is an honest "no device" /
"connecting" (progress for the watchdog, a technical alarm for the crew) or a front end that is connected but
silent (`frontend_stalled`, no watchdog progress).
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edge_app.alarm_latch import AlarmLatch
    from firmware_bridge.driver import FrontEndDriver
    from firmware_bridge.samples import SampleBlock

log = logging.getLogger(__name__)
QUEUE_BLOCKS = 50 * 120          # 2 min of 20 ms blocks between the serial reader and the analysis
HONEST_IDLE = ("no_device", "connecting")     # driver states that count as progress while idle
CONDITIONS = ("no_device", "frontend_connecting", "frontend_stalled")


class FrontEndLink:
    def __init__(self, driver: FrontEndDriver, idle_s: float, port: str, alarms: AlarmLatch):
        self.driver = driver
        self.idle_s = idle_s
        self.port = port
        self.alarms = alarms
        self.queue: queue.Queue[tuple[float, SampleBlock | None]] = queue.Queue(maxsize=QUEUE_BLOCKS)

    def start(self, stop: threading.Event) -> None:
        threading.Thread(target=self._read, args=(stop,), name="frontend-reader", daemon=True).start()

    def _read(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                for block in self.driver.blocks(idle_timeout_s=self.idle_s):
                    self.queue.put((time.monotonic(), block))
                    if stop.is_set():
                        break
            except Exception:  # noqa: BLE001 - the driver promises not to raise; if it does, retry
                log.exception("front-end driver failed; retrying in 1 s")
            if not stop.is_set():
                stop.wait(1.0)
        self.queue.put((time.monotonic(), None))

    def next(self) -> tuple[float, SampleBlock | None]:
        """(monotonic receive time, block or None = idle tick). Raises queue.Empty when not even an idle tick
        came in twice the idle timeout: the serial path itself is stuck."""
        return self.queue.get(timeout=2 * self.idle_s + 1.0)

    def idle(self) -> tuple[str, bool]:
        """No samples for idle_s: raise the matching condition; return (driver status, honest idle?)."""
        status = str(getattr(self.driver, "status", "unknown"))
        if status in HONEST_IDLE:
            self.alarms.raise_condition("no_device" if status == "no_device" else "frontend_connecting", "technical",
                                        "medium" if status == "no_device" else "low",
                                        f"No ECG front end on {self.port} ({status}); check the cable.")
        else:
            self.alarms.raise_condition("frontend_stalled", "technical", "medium",
                                        f"ECG front end connected but sending no samples ({status}).")
        return status, status in HONEST_IDLE

    def samples_arrived(self) -> None:
        for code in CONDITIONS:
            self.alarms.clear_condition(code)
