"""The in-process dispatcher: what the daemon produces is published once; every sink subscribes.

Why (in the spirit of Frigate's dispatcher, but it only routes): the data path should not know who
listens. The daemon publishes a message (edge_app.messages: a new sample block, a result, an alarm
change, a device event, a status tick, ...) and the dispatcher hands it to each handler subscribed to
that message type, in subscription order. A sink that is not configured is simply not subscribed,
so the daemon has no `if self.uplink is not None` branches.

Rules a subscriber can rely on, and must respect:
- Handlers run synchronously on the publisher's thread, in the order they were subscribed. Blocks, results,
  status and telemetry are published by the data path (main thread); alarm, patient and config changes can
  also come from a command thread (control socket, MQTT, the page): their handlers must be thread-safe.
  Subscription order is the daemon's assembly order, so the record sink (store + audit) runs before the
  uplink sink, which needs the stored result's index row.
- A handler that raises is logged and skipped; the others still run and the data path goes on
  (one broken sink must not stop the appliance).
- Handlers must be quick (a block handler runs 50 times a second); slow work goes to the sink's own
  thread (the uplink's sender, the display's HTTP server).
"""
from __future__ import annotations

import logging
import threading
from collections import defaultdict
from typing import Any, Callable, Protocol, TypeVar, runtime_checkable

log = logging.getLogger(__name__)

M = TypeVar("M")
Handler = Callable[[Any], None]


@runtime_checkable
class Subscriber(Protocol):
    """A sink: says which messages it takes by subscribing its handlers (see edge_app/sinks/)."""

    def subscribe(self, bus: Dispatcher) -> None: ...


class Dispatcher:
    """Routes each published message to the handlers subscribed to its exact type."""

    def __init__(self) -> None:
        self._handlers: dict[type, list[Handler]] = defaultdict(list)
        self._lock = threading.Lock()
        self.failures = 0               # handler exceptions so far (telemetry/tests)

    def subscribe(self, message_type: type[M], handler: Callable[[M], None]) -> None:
        """Call `handler(message)` for every published message of exactly `message_type`."""
        with self._lock:
            self._handlers[message_type] = self._handlers[message_type] + [handler]   # copy-on-write

    def wants(self, message_type: type) -> bool:
        """True when someone listens: lets the publisher skip building an expensive message."""
        return bool(self._handlers.get(message_type))

    def publish(self, message: Any) -> None:
        """Hand `message` to each subscriber in order; a failing subscriber is logged, never raised."""
        for handler in self._handlers.get(type(message), ()):
            try:
                handler(message)
            except Exception:  # noqa: BLE001 - a broken sink must not stop the data path or other sinks
                self.failures += 1
                log.exception("%s subscriber %s failed", type(message).__name__,
                              getattr(handler, "__qualname__", handler))
