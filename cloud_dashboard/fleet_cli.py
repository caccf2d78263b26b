"""ecg-fleet: administer a fleet of ECG triage devices over the same MQTT broker.

Why a separate admin client: devices may only publish under their own subtree (see deploy/mosquitto/acl);
admins subscribe to everything and publish commands. Everything here speaks the topic tree of
edge_app/uplink/topics.py and the payloads of docs/mqtt.md. Output is for humans; --json for machines.

    ecg-fleet [--host H --port P --tls --ca-file F --cert-file F --key-file F -u USER -P PASS] [--json] COMMAND
      devices [--wait S]                 availability + health from retained topics
      watch [--device ID] [--seconds S]  live triage results and alarms
      cmd DEVICE NAME [--json-args '{..}'] [--timeout S]
      keygen --private-key F --public-key F
      sign --private-key F --manifest M [--model-dir D] [--out SIG]
      rollout --private-key F --manifest M DEVICE [DEVICE ...]|all [--timeout S] [--parallel N] [--stop-on-failure]
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import queue
import ssl
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_app.uplink.topics import COMMANDS, fleet_filter, split_device_topic, Topics

DISCLAIMER = "Triage aid, not a diagnosis."


class FleetError(RuntimeError):
    pass


class FleetClient:
    """A connected admin session. Use as a context manager."""

    def __init__(self, host: str = "127.0.0.1", port: int = 1883, prefix: str = "ecg", *, tls: bool = False,
                 ca_file: str | None = None, cert_file: str | None = None, key_file: str | None = None,
                 username: str | None = None, password: str | None = None, client_id: str | None = None,
                 admin: str | None = None, connect_timeout: float = 10.0):
        self.prefix = prefix
        self.admin = admin or os.environ.get("USER", "admin")
        self.client_id = client_id or f"ecg-fleet-{uuid.uuid4().hex[:10]}"
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5)
        if username:
            self._client.username_pw_set(username, password)
        if tls:
            self._client.tls_set(ca_certs=ca_file, certfile=cert_file, keyfile=key_file, cert_reqs=ssl.CERT_REQUIRED,
                                 tls_version=ssl.PROTOCOL_TLS_CLIENT)
        self._connected = threading.Event()
        self._connect_error: str | None = None
        self._lock = threading.Lock()
        self._handlers: list[tuple[str, Callable[[mqtt.MQTTMessage], None]]] = []
        self._pending: dict[str, queue.Queue] = {}
        self._reply_subs: set[str] = set()
        from edge_app.uplink.link import no_delay as _no_delay
        self._client.on_socket_open = _no_delay
        self._client.on_connect = self._on_connect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_subscribe = self._on_subscribe
        self._sub_lock = threading.Lock()
        self._sub_events: dict[int, threading.Event] = {}
        self._client.on_message = self._on_message
        self._client.connect_async(host, port, keepalive=30)
        self._client.loop_start()
        if not self._connected.wait(connect_timeout):
            self._client.loop_stop()
            raise FleetError(f"cannot connect to broker {host}:{port}: {self._connect_error or 'timeout'}")
        if self._connect_error:
            self._client.loop_stop()
            raise FleetError(f"cannot use broker {host}:{port}: {self._connect_error}")

    def __enter__(self) -> "FleetClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._connect_error = str(reason_code)
        self._connected.set()

    def _on_connect_fail(self, client, userdata) -> None:
        if not self._connected.is_set():
            self._connect_error = ("no connection (is the broker running there? check --host/--port, and --tls "
                                   "with --ca-file for a TLS listener)")
            self._connected.set()

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            handlers = list(self._handlers)
        for flt, fn in handlers:
            if mqtt.topic_matches_sub(flt, msg.topic):
                fn(msg)

    def subscribe(self, topic_filter: str, handler: Callable[[mqtt.MQTTMessage], None], qos: int = 1) -> None:
        """Route messages matching topic_filter to handler; returns once the broker's SUBACK arrived."""
        with self._lock:
            self._handlers.append((topic_filter, handler))
        with self._sub_lock:  # SUBACKs are matched by mid, so threads may subscribe concurrently
            _rc, mid = self._client.subscribe(topic_filter, qos=qos)
            done = self._sub_events.setdefault(mid, threading.Event())
        done.wait(5)
        with self._sub_lock:
            self._sub_events.pop(mid, None)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        with self._sub_lock:
            ev = self._sub_events.setdefault(mid, threading.Event())
        ev.set()

    def unsubscribe(self, topic_filter: str, handler: Callable[[mqtt.MQTTMessage], None]) -> None:
        with self._lock:
            self._handlers = [(f, h) for f, h in self._handlers if not (f == topic_filter and h is handler)]
            still = any(f == topic_filter for f, _ in self._handlers)
        if not still:
            self._client.unsubscribe(topic_filter)

    # ---- devices -------------------------------------------------------------------------------------
    def devices(self, wait_s: float = 1.0) -> dict[str, dict[str, Any]]:
        """Collect retained availability/birth/telemetry/config for every device under the prefix."""
        found: dict[str, dict[str, Any]] = {}
        lock = threading.Lock()

        def grab(msg: mqtt.MQTTMessage) -> None:
            parts = split_device_topic(self.prefix, msg.topic)
            if parts is None:
                return
            device, leaf = parts
            with lock:
                entry = found.setdefault(device, {"device_id": device})
                if leaf == "availability":
                    entry["availability"] = msg.payload.decode("utf-8", "replace")
                else:
                    try:
                        entry[leaf.replace("/", "_")] = json.loads(msg.payload)
                    except ValueError:
                        entry[leaf.replace("/", "_")] = {"unparseable": msg.payload[:200].decode("utf-8", "replace")}

        filters = [fleet_filter(self.prefix, leaf) for leaf in ("availability", "birth", "telemetry", "config/reported")]
        for flt in filters:
            self.subscribe(flt, grab)
        time.sleep(wait_s)
        for flt in filters:
            self.unsubscribe(flt, grab)
        with lock:
            return {k: dict(v) for k, v in sorted(found.items())}

    # ---- commands ------------------------------------------------------------------------------------
    def command(self, device: str, name: str, args: dict[str, Any] | None = None, timeout: float = 10.0,
                payload: bytes | None = None) -> dict[str, Any]:
        """Send one command and wait for its reply (matched by correlation id). Raises FleetError on timeout.

        `payload` sends raw bytes instead of a well-formed request (for testing a device's error handling)."""
        topics = Topics(self.prefix, device)
        reply_topic = self.prepare(device, name)
        corr = uuid.uuid4().hex
        q: queue.Queue = queue.Queue()
        with self._lock:
            self._pending[corr] = q
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = reply_topic
        props.CorrelationData = corr.encode()
        if payload is None:
            payload = json.dumps({"schema": "ecg.cmd/1", "correlation_id": corr, "by": self.admin,
                                  "args": args or {}}).encode()
        try:
            self._client.publish(topics.cmd(name), payload, qos=1, properties=props)
            try:
                return q.get(timeout=timeout)
            except queue.Empty:
                raise FleetError(f"no reply from {device} to {name} within {timeout}s (device offline?)") from None
        finally:
            with self._lock:
                self._pending.pop(corr, None)

    def install_model(self, device: str, args: dict[str, Any], timeout: float = 120.0, chunk_bytes: int = 0,
                      progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        """model/install in one message, or as model/chunk parts of at most chunk_bytes each when the request
        is bigger (a device states its limit as max_command_bytes in its birth). Returns the install reply."""
        blob = json.dumps(args, separators=(",", ":")).encode()
        if not chunk_bytes or len(blob) + 1024 <= chunk_bytes:
            return self.command(device, "model/install", args, timeout=timeout)
        raw = max(1024, (chunk_bytes - 1024) * 3 // 4)  # base64 grows data by 4/3; 1 KiB for the envelope
        parts = [blob[i:i + raw] for i in range(0, len(blob), raw)]
        uid, total = uuid.uuid4().hex[:16], hashlib.sha256(blob).hexdigest()
        self.prepare(device, "model/chunk")
        reply: dict[str, Any] = {}
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            reply = self.command(device, "model/chunk", {"upload_id": uid, "index": i, "count": len(parts),
                                                         "total_sha256": total,
                                                         "data_b64": base64.b64encode(part).decode("ascii")},
                                 timeout=timeout if last else min(timeout, 30.0))
            if not reply.get("ok"):
                return reply
            if progress:
                progress(i + 1, len(parts))
        return reply

    def prepare(self, device: str, name: str) -> str:
        """Subscribe to a command's reply topic (once); returns it."""
        reply_topic = Topics(self.prefix, device).reply(name)
        with self._lock:
            known = reply_topic in self._reply_subs
            self._reply_subs.add(reply_topic)
        if not known:
            self.subscribe(reply_topic, self._route_reply)
        return reply_topic

    def _route_reply(self, msg: mqtt.MQTTMessage) -> None:
        props = getattr(msg, "properties", None)
        corr = getattr(props, "CorrelationData", None) if props is not None else None
        try:
            doc = json.loads(msg.payload)
        except ValueError:
            return
        key = corr.decode("utf-8", "replace") if corr else doc.get("correlation_id")
        with self._lock:
            q = self._pending.get(key) if key else None
        if q is not None:
            q.put(doc)


# ---- signing -------------------------------------------------------------------------------------------
def keygen(private_path: str, public_path: str) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    key = Ed25519PrivateKey.generate()
    priv = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    pub = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(priv)
    Path(public_path).write_bytes(pub)


def load_bundle(manifest_path: str, model_dir: str | None = None) -> tuple[bytes, bytes, dict[str, bytes]]:
    """(model bytes, manifest bytes, other files) of a model bundle described by manifest.json."""
    from edge_app.model_store import bundle_files
    manifest_bytes = Path(manifest_path).read_bytes()
    manifest = json.loads(manifest_bytes)
    base = Path(model_dir) if model_dir else Path(manifest_path).parent
    names = bundle_files(manifest)
    model_name = str(manifest["model_file"])
    model = (base / model_name).read_bytes()
    files = {n: (base / n).read_bytes() for n in names if n != model_name}
    return model, manifest_bytes, files


def sign_bundle(private_key_path: str, model: bytes, manifest: bytes, files: dict[str, bytes]) -> bytes:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from edge_app.model_store import signed_digest
    key = load_pem_private_key(Path(private_key_path).read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise FleetError(f"{private_key_path} is not an Ed25519 private key (make one with `ecg-fleet keygen`)")
    return key.sign(signed_digest(model, manifest, files))


def install_args(model: bytes, manifest: bytes, files: dict[str, bytes], signature: bytes) -> dict[str, Any]:
    b = lambda data: base64.b64encode(data).decode("ascii")  # noqa: E731
    args: dict[str, Any] = {"model_b64": b(model), "manifest_b64": b(manifest), "signature_b64": b(signature)}
    if files:
        args["files_b64"] = {n: b(d) for n, d in files.items()}
    return args


def rollback_args(private_key_path: str, from_version: str, to_version: str, valid_s: int = 3600) -> dict[str, Any]:
    """A signed model/rollback order for devices running from_version whose previous model is to_version.
    Devices refuse unsigned rollbacks and replayed old installs (edge_app.model_store, issue 14)."""
    import time
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from edge_app.model_store import rollback_digest
    key = load_pem_private_key(Path(private_key_path).read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise FleetError(f"{private_key_path} is not an Ed25519 private key (make one with `ecg-fleet keygen`)")
    not_after = int(time.time()) + int(valid_s)
    sig = key.sign(rollback_digest(from_version, to_version, not_after))
    return {"from": from_version, "to": to_version, "not_after": not_after,
            "signature_b64": base64.b64encode(sig).decode("ascii")}


# ---- CLI -------------------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ecg-fleet", description="Administer ECG triage devices over MQTT. "
                                + DISCLAIMER)
    p.add_argument("--host", default=os.environ.get("ECG_FLEET_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("ECG_FLEET_PORT", "1883")))
    p.add_argument("--prefix", default="ecg")
    p.add_argument("--tls", action="store_true", help="connect with TLS (give --ca-file)")
    p.add_argument("--ca-file")
    p.add_argument("--cert-file")
    p.add_argument("--key-file")
    p.add_argument("-u", "--username")
    p.add_argument("-P", "--password", default=os.environ.get("ECG_FLEET_PASSWORD"))
    p.add_argument("--json", action="store_true", help="machine-readable output")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("devices", help="list devices with availability and health")
    d.add_argument("--wait", type=float, default=1.0, help="seconds to collect retained state")
    w = sub.add_parser("watch", help="print triage results and alarms as they arrive")
    w.add_argument("--device", default="+")
    w.add_argument("--seconds", type=float, default=0, help="stop after this long (0 = until Ctrl-C)")
    c = sub.add_parser("cmd", help="send a command and wait for the reply")
    c.add_argument("device")
    c.add_argument("name", help=", ".join(COMMANDS))
    c.add_argument("--json-args", default="{}", help="arguments as a JSON object")
    c.add_argument("--timeout", type=float, default=10.0)
    k = sub.add_parser("keygen", help="make an Ed25519 key pair for signing models")
    k.add_argument("--private-key", required=True)
    k.add_argument("--public-key", required=True)
    s = sub.add_parser("sign", help="sign a model bundle (manifest + files it names)")
    s.add_argument("--private-key", required=True)
    s.add_argument("--manifest", required=True)
    s.add_argument("--model-dir")
    s.add_argument("--out", help="signature file (default <manifest>.sig)")
    rb = sub.add_parser("sign-rollback", help="print signed model/rollback arguments (use with: cmd DEV "
                        "model/rollback --json-args ...)")
    rb.add_argument("--private-key", required=True)
    rb.add_argument("--from", dest="from_version", required=True, help="model version the devices run now")
    rb.add_argument("--to", dest="to_version", required=True, help="their previous model version")
    rb.add_argument("--valid-s", type=int, default=3600, help="seconds the order stays valid (max 7 days)")
    r = sub.add_parser("rollout", help="sign and install a model on one or many devices")
    r.add_argument("--private-key", required=True)
    r.add_argument("--manifest", required=True)
    r.add_argument("--model-dir")
    r.add_argument("--timeout", type=float, default=120.0, help="per device (includes its self-test)")
    r.add_argument("--parallel", type=int, default=1, help="devices installing at the same time")
    r.add_argument("--chunk-bytes", type=int, default=-1,
                   help="split into model/chunk messages of this size (default: each device's max_command_bytes "
                        "from its birth; 0 = always one message)")
    r.add_argument("--stop-on-failure", action="store_true",
                   help="canary: start no further device after the first refusal")
    r.add_argument("devices", nargs="+", help="device ids, or 'all' for every device currently online")
    return p


def _connect(a: argparse.Namespace) -> FleetClient:
    return FleetClient(a.host, a.port, a.prefix, tls=a.tls or bool(a.ca_file), ca_file=a.ca_file,
                       cert_file=a.cert_file, key_file=a.key_file, username=a.username, password=a.password)


def _out(a: argparse.Namespace, doc: Any, human: str) -> None:
    print(json.dumps(doc, indent=1, default=str) if a.json else human, flush=True)


def main(argv: list[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    try:
        return _run(a)
    except FleetError as exc:
        print(f"ecg-fleet: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"ecg-fleet: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


def _run(a: argparse.Namespace) -> int:
    if a.command == "keygen":
        keygen(a.private_key, a.public_key)
        _out(a, {"private_key": a.private_key, "public_key": a.public_key},
             f"wrote {a.private_key} (keep secret, mode 600) and {a.public_key} (set mqtt.model_public_key to it)")
        return 0
    if a.command == "sign":
        model, manifest, files = load_bundle(a.manifest, a.model_dir)
        sig = sign_bundle(a.private_key, model, manifest, files)
        out = a.out or a.manifest + ".sig"
        Path(out).write_bytes(sig)
        _out(a, {"signature": out, "files": 2 + len(files)}, f"signed {a.manifest} (+{1 + len(files)} files) -> {out}")
        return 0
    if a.command == "sign-rollback":
        print(json.dumps(rollback_args(a.private_key, a.from_version, a.to_version, a.valid_s)))
        return 0
    with _connect(a) as fleet:
        if a.command == "devices":
            return _devices(a, fleet)
        if a.command == "watch":
            return _watch(a, fleet)
        if a.command == "cmd":
            try:
                args = json.loads(a.json_args)
            except ValueError as exc:
                raise FleetError(f"--json-args is not JSON: {exc}")
            reply = fleet.command(a.device, a.name, args, timeout=a.timeout)
            _out(a, reply, json.dumps(reply, indent=1))
            return 0 if reply.get("ok") else 1
        if a.command == "rollout":
            return _rollout(a, fleet)
    return 2


def _devices(a: argparse.Namespace, fleet: FleetClient) -> int:
    devices = fleet.devices(a.wait)
    if a.json:
        _out(a, devices, "")
        return 0
    if not devices:
        print("no devices seen under prefix", a.prefix)
        return 0
    print(f"{'DEVICE':20} {'AVAIL':8} {'SOFTWARE':9} {'MODEL':18} {'OUTBOX':>6} {'CPU%':>5} {'TEMP':>5}  FRONT END")
    for dev, e in devices.items():
        birth, tel = e.get("birth", {}), e.get("telemetry", {})
        model = (birth.get("model") or {}).get("version") or "-"
        print(f"{dev:20} {e.get('availability', '?'):8} {str(birth.get('software_version', '-')):9} "
              f"{str(model)[:18]:18} {str(tel.get('outbox_depth', '-')):>6} {str(tel.get('cpu_percent', '-')):>5} "
              f"{str(tel.get('temperature_c', '-')):>5}  {tel.get('frontend_status', birth.get('frontend', '-'))}")
    return 0


def _watch(a: argparse.Namespace, fleet: FleetClient) -> int:
    def show(msg: mqtt.MQTTMessage) -> None:
        try:
            doc = json.loads(msg.payload)
        except ValueError:
            return
        if a.json:
            print(json.dumps({"topic": msg.topic, "payload": doc}), flush=True)
            return
        parts = split_device_topic(a.prefix, msg.topic) or ("?", "?")
        hist = f" [historical, {doc.get('age_s', 0):.0f} s late]" if doc.get("historical") else ""
        print(f"{doc.get('created_at', '')} {parts[0]:16} {parts[1]:7} {doc.get('priority', ''):7} "
              f"{describe(doc)}{hist}  ({DISCLAIMER})", flush=True)

    for leaf in ("triage", "alarm"):
        fleet.subscribe(f"{a.prefix}/{a.device}/{leaf}", show)
    deadline = time.monotonic() + a.seconds if a.seconds > 0 else None
    try:
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    return 0


def describe(doc: dict[str, Any]) -> str:
    """One line for a triage result or alarm payload (daemon result fields of edge_app.results)."""
    if isinstance(doc.get("alarm"), dict):
        al = doc["alarm"]
        return f"{al.get('kind') or al.get('type', 'alarm')} {al.get('code', '')}: {al.get('message', '')}".strip()
    r = doc.get("result") if isinstance(doc.get("result"), dict) else {}
    tri = r.get("triage")
    level = r.get("triage_level") or (tri.get("level") if isinstance(tri, dict) else tri) or "?"
    quality = r.get("quality")
    quality = quality.get("verdict") if isinstance(quality, dict) else quality
    probs = r.get("probabilities")
    out = [f"triage {level}"]
    if isinstance(probs, dict) and probs:
        top = max(probs, key=lambda k: probs[k] if isinstance(probs[k], (int, float)) else -1)
        out.append(f"top {top} {probs[top]:.2f}" if isinstance(probs[top], (int, float)) else f"top {top}")
    elif probs is None and "probabilities" in r:
        out.append("cannot interpret")
    if r.get("heart_rate_bpm") is not None:
        out.append(f"HR {r['heart_rate_bpm']:.0f}")
    if quality:
        out.append(f"quality {quality}")
    return ", ".join(out)


def _rollout(a: argparse.Namespace, fleet: FleetClient) -> int:
    """Sign once, install on each target (up to --parallel at a time), print progress and who took it.
    --stop-on-failure turns it into a canary rollout: no new device is started after the first refusal."""
    from concurrent.futures import ThreadPoolExecutor
    model, manifest, files = load_bundle(a.manifest, a.model_dir)
    sig = sign_bundle(a.private_key, model, manifest, files)
    args = install_args(model, manifest, files, sig)
    targets = list(a.devices)
    if targets == ["all"]:
        targets = [d for d, e in fleet.devices(1.0).items() if e.get("availability") == "online"]
    limits: dict[str, int] = {}
    if a.chunk_bytes < 0:  # auto: each device's max_command_bytes from its retained birth
        limits = {d: int((e.get("birth") or {}).get("max_command_bytes") or 0)
                  for d, e in fleet.devices(0.5).items()}
    for dev in targets:  # subscribe every reply topic up front: command() is then safe from many threads
        fleet.prepare(dev, "model/install")
        fleet.prepare(dev, "model/chunk")
    results: dict[str, dict[str, Any]] = {}
    lock = threading.Lock()
    stop = threading.Event()
    n = len(targets)

    def one(i: int, dev: str) -> None:
        if stop.is_set():
            with lock:
                results[dev] = {"ok": False, "skipped": True, "error": "not attempted: an earlier device refused"}
            return
        if not a.json:
            print(f"[{i}/{n}] {dev}: sending {len(model)} byte model ...", flush=True)
        try:
            chunk = a.chunk_bytes if a.chunk_bytes >= 0 else limits.get(dev, 0)

            def progress(k: int, total: int) -> None:
                if not a.json and total > 1 and k < total:
                    print(f"[{i}/{n}] {dev}: chunk {k}/{total}", flush=True)

            reply = fleet.install_model(dev, args, timeout=a.timeout, chunk_bytes=chunk, progress=progress)
            ok = bool(reply.get("ok"))
            res: dict[str, Any] = {"ok": ok, "reply": reply}
            why = "" if ok else f" -- {(reply.get('error') or {}).get('message')}"
        except FleetError as exc:
            res, ok, why = {"ok": False, "error": str(exc)}, False, f" -- {exc}"
        with lock:
            results[dev] = res
        if not ok and a.stop_on_failure:
            stop.set()
        if not a.json:
            print(f"[{i}/{n}] {dev}: {'TOOK IT' if ok else 'REFUSED'}{why}", flush=True)

    with ThreadPoolExecutor(max_workers=max(1, a.parallel)) as pool:
        for i, dev in enumerate(targets, 1):
            pool.submit(one, i, dev)
    took = [d for d in targets if results.get(d, {}).get("ok")]
    skipped = [d for d in targets if results.get(d, {}).get("skipped")]
    refused = [d for d in targets if d not in took and d not in skipped]
    summary = {"took": took, "refused": refused, "skipped": skipped, "results": results}
    _out(a, summary, f"summary: {len(took)}/{n} devices took the model; refused: {', '.join(refused) or 'none'}"
                     + (f"; not attempted: {', '.join(skipped)}" if skipped else ""))
    return 0 if len(took) == n else 1


if __name__ == "__main__":
    sys.exit(main())
