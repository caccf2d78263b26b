"""The paho client as this device uses it, and the small facts of its wire: availability payloads, the
disclaimer every message carries, timestamps.

Why in one place: the connection options (MQTT 5 or 3.1.1, TLS, credentials, the Last Will that says
"offline" when the link dies, reconnect backoff, paho's in-flight window, no offline queue in paho: the outbox
is ours) decide how the device behaves in a dead zone, and a reviewer should find them together.
"""
from __future__ import annotations

import socket
import ssl
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt

if TYPE_CHECKING:
    from edge_app.mqtt_settings import MqttConfig

    from .topics import Topics

DISCLAIMER = "Triage aid, not a diagnosis. A clinician must read the ECG."
ONLINE, OFFLINE = b"online", b"offline"


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def software_version() -> str:
    from edge_app import __version__
    return __version__


def make_client(cfg: MqttConfig, device_id: str, topics: Topics) -> mqtt.Client:
    """A configured, not yet connected paho client (callback API version 2). The caller sets the callbacks."""
    client_id = cfg.client_id or f"{cfg.prefix}-{device_id}"
    if cfg.protocol == "5":
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    else:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311,
                             clean_session=True)
    # paho's own logger reports every failed reconnect at ERROR; in a dead zone that is noise, so
    # link state is logged once per transition by the uplink's callbacks instead.
    if cfg.username:
        client.username_pw_set(cfg.username, cfg.read_password() or None)
    if cfg.tls:
        client.tls_set(ca_certs=cfg.ca_file, certfile=cfg.cert_file or None, keyfile=cfg.key_file or None,
                       cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
    client.will_set(topics.availability, OFFLINE, qos=1, retain=True)
    client.reconnect_delay_set(min_delay=cfg.reconnect_min_s, max_delay=cfg.reconnect_max_s)  # type: ignore[arg-type]
    client.max_inflight_messages_set(cfg.max_inflight)
    client.max_queued_messages_set(0)
    client.on_socket_open = no_delay
    return client


def no_delay(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    """Disable Nagle: a command reply (or the next result) right after a PUBACK otherwise waits for the
    peer's delayed ACK, ~40 ms per round trip."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):
        pass
