"""What arrives from the broker: fleet commands (<base>/cmd/<name>) and station messages (receipts, reviews).

Why queues and worker threads: paho's callbacks run on its network thread and must never block, so
`on_message` only enqueues. Commands run one at a time on their own thread (a model install runs a
self-test for seconds and must not stall keep-alives); station messages on another, so a slow command
never delays a receipt. A full command queue answers "busy" at once instead of dropping silently.
"""
from __future__ import annotations

import json
import logging
import queue
import threading
from typing import TYPE_CHECKING, Any, Callable

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt

    from .commands import CommandProcessor
    from .topics import Topics

log = logging.getLogger(__name__)
COMMAND_QUEUE = 16
INBOUND_QUEUE = 2048     # a station re-sends up to a few hundred receipts when the device (re)connects


class Inbox:
    def __init__(self, topics: Topics, commands: CommandProcessor, client: Callable[[], mqtt.Client | None],
                 v5: bool, count: Callable[[str], None]):
        self.topics = topics
        self.commands = commands
        self._client = client
        self._v5 = v5
        self._count = count
        self._commands: queue.Queue[tuple[str, bytes, Any] | None] = queue.Queue(maxsize=COMMAND_QUEUE)
        #: station -> device topics (receipts, reviews): exact topic -> handler(topic, payload)
        self.handlers: dict[str, Callable[[str, bytes], None]] = {}
        self._inbound: queue.Queue[tuple[str, bytes] | None] = queue.Queue(maxsize=INBOUND_QUEUE)

    def subscriptions(self) -> list[str]:
        """What to subscribe on every (re)connect."""
        return [self.topics.cmd_filter, *self.handlers]

    def add_handler(self, topic: str, handler: Callable[[str, bytes], None]) -> None:
        self.handlers = {**self.handlers, topic: handler}      # copy-on-write: paho's thread reads it

    def start(self, stop: threading.Event) -> list[threading.Thread]:
        threads = [threading.Thread(target=self._command_loop, args=(stop,), name="uplink-commands", daemon=True),
                   threading.Thread(target=self._inbound_loop, args=(stop,), name="uplink-inbound", daemon=True)]
        for thread in threads:
            thread.start()
        return threads

    def stop(self) -> None:
        for pending in (self._commands, self._inbound):
            try:
                pending.put_nowait(None)
            except queue.Full:
                pass

    # ---- paho's network thread: enqueue only ---------------------------------------------------------
    def on_message(self, msg: mqtt.MQTTMessage) -> None:
        if msg.topic in self.handlers:
            try:
                self._inbound.put_nowait((msg.topic, bytes(msg.payload)))
            except queue.Full:  # the station re-sends (docs/mqtt.md); never block paho's thread
                log.error("inbound queue full; dropped a message on %s", msg.topic)
            return
        name = self.topics.command_name(msg.topic)
        if name is None:
            return
        props = getattr(msg, "properties", None)
        try:
            self._commands.put_nowait((name, bytes(msg.payload), props))
        except queue.Full:
            reply = self.commands.reply(name, _correlation(props), ok=False,
                                        error={"code": "busy", "message": "too many commands queued; retry later"})
            self.send_reply(name, reply, props)

    # ---- worker threads ------------------------------------------------------------------------------
    def _command_loop(self, stop: threading.Event) -> None:
        while not stop.is_set():
            item = self._commands.get()
            if item is None:
                break
            name, payload, props = item
            correlation = getattr(props, "CorrelationData", None) if props is not None else None
            reply = self.commands.handle(name, payload, correlation)
            self._count("commands")
            self.send_reply(name, reply, props)

    def _inbound_loop(self, stop: threading.Event) -> None:
        while not stop.is_set():
            item = self._inbound.get()
            if item is None:
                break
            topic, payload = item
            handler = self.handlers.get(topic)
            try:
                if handler is not None:
                    handler(topic, payload)
            except Exception:  # noqa: BLE001 - a bad message must not stop the link
                log.exception("handler for %s failed; message dropped", topic)

    def send_reply(self, name: str, reply: dict[str, Any], request_props: Any) -> None:
        client = self._client()
        if client is None:
            return
        topic = self.topics.reply(name)
        props = None
        if self._v5:
            props = Properties(PacketTypes.PUBLISH)
            response_topic = getattr(request_props, "ResponseTopic", None) if request_props is not None else None
            # Honour a response topic only inside our own subtree: the ACL forbids anything else anyway.
            if (response_topic and response_topic.startswith(self.topics.base + "/") and "#" not in response_topic
                    and "+" not in response_topic):
                topic = response_topic
            correlation = getattr(request_props, "CorrelationData", None) if request_props is not None else None
            if correlation:
                props.CorrelationData = correlation
        client.publish(topic, json.dumps(reply, separators=(",", ":"), default=str), qos=1, properties=props)


def _correlation(props: Any) -> str | None:
    data = getattr(props, "CorrelationData", None) if props is not None else None
    return data.decode("utf-8", "replace") if data else None
