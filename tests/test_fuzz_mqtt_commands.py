"""Fuzz/negative layer for fleet commands: hostile payloads through a real mosquitto into the real uplink,
command router and device operations (real state dir, real model store with a real key).

Each case is published with an MQTT 5 Correlation Data property so its reply can be matched. Asserted: every
case that reaches the device gets a reply with a documented error code (never "failed", the code for a
daemon-side exception), no traceback is logged, nothing changes (config version, patient, model, alarms)
except through a reply that says ok, and afterwards the device still answers and delivers results.
"""
from __future__ import annotations

import json
import logging
import random
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cloud_dashboard.fleet_cli import keygen
from device_helpers import real_device
from edge_app.command_router import names
from edge_app.model_store import ModelStore
from edge_app.uplink.service import Uplink
from edge_app.uplink.settings import MqttConfig
from mosquitto_broker import MosquittoBroker
from mqtt_helpers import Collector

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "quantized_models" / "manifest.json"
DEV = "amb-fuzz"
KNOWN_CODES = {"bad_json", "bad_request", "unknown_command", "too_large", "busy", "unavailable", "invalid_config",
               "not_found", "conflict", "model_rejected", "rollback_refused"}
MAX_BYTES = 64 * 1024


def _values(rng: random.Random) -> list:
    return [None, True, False, 0, -1, 2 ** 63, 1e308, -0.0, "", "x" * rng.randint(1, 300), "\u0000", "💥",
            [], [1, "a"], {}, {"a": {"b": [None]}}, 130.5, -5, "../../etc/passwd", {"$where": "1"}]


def cases(rng: random.Random) -> list[tuple[str, bytes]]:
    """(command name, payload) pairs: malformed JSON, wrong types, huge, unknown, mutated valid commands."""
    out: list[tuple[str, bytes]] = []
    mqtt_names = list(names("mqtt")) + ["model/chunk"]
    valid = {
        "config/set": {"args": {"changes": {"windows.stride_s": 5}}},
        "patient/set": {"args": {"age": 63, "sex": "female"}},
        "alarm/ack": {"args": {"alarm_id": "a-1"}},
        "status": {},
        "model/install": {"args": {"model_b64": "AAAA", "manifest_b64": "e30=", "signature_b64": "AAAA"}},
        "model/chunk": {"args": {"upload_id": "u1", "index": 0, "count": 2, "total_sha256": "0" * 64,
                                 "data_b64": "e30="}},
        "model/rollback": {"args": {"from": "2.0.0", "to": "1.0.0", "not_after": 1, "signature_b64": "AAAA"}},
    }
    # 1. not JSON / not UTF-8 / JSON that is not an object / JSON constants / deep nesting
    raw = [b"{", b"}", b"{\"args\": ", b"\xff\xfe\x00", b"null", b"[]", b"42", b"\"str\"", b"true",
           b"{\"args\": NaN}", b"{\"args\": Infinity}", b"[" * 30000 + b"]" * 30000,
           b"{\"args\":" * 10000 + b"1" + b"}" * 10000, b"\x00" * 100, "{\"by\": \"\ud800\"}".encode("utf-8", "surrogatepass")]
    raw += [bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 200))) for _ in range(30)]
    for payload in raw:
        out.append((rng.choice(mqtt_names), payload))
    # 2. wrong envelope types and unknown envelope keys
    for name in mqtt_names:
        for v in _values(rng):
            out.append((name, json.dumps({"args": v}).encode()))
            out.append((name, json.dumps({"by": v, "args": {}}).encode()))
        out.append((name, json.dumps({"args": {}, "evil": 1}).encode()))
    # 3. wrong argument types/keys for every command
    for name in mqtt_names:
        for _ in range(25):
            args = {rng.choice(["changes", "age", "sex", "alarm_id", "model_b64", "manifest_b64", "signature_b64",
                                "files_b64", "upload_id", "index", "count", "total_sha256", "data_b64", "from",
                                "to", "not_after", "n", rng.choice(["x", "__class__", "a" * 200])]):
                    rng.choice(_values(rng)) for _ in range(rng.randint(1, 4))}
            out.append((name, json.dumps({"args": args}).encode()))
    for v in _values(rng):                                 # config/set changes of every shape
        out.append(("config/set", json.dumps({"args": {"changes": {"windows.stride_s": v}}}).encode()))
        out.append(("config/set", json.dumps({"args": {"changes": {"mqtt.port": v, "nope.key": 1}}}).encode()))
    # 4. unknown commands (and names that try to walk the topic tree)
    for name in ["", "x", "status/", "status/extra", "config", "config/set/now", "model", "model/../status",
                 "STATUS", "a" * 200, "\u00e9t\u00e9", "reply2", "+", "cmd"]:
        if name and "+" not in name:
            out.append((name, b"{}"))
    # 5. huge payloads (over mqtt.max_command_bytes: refused before parsing)
    for name in ("status", "model/install", "config/set"):
        out.append((name, b"{\"args\": {\"x\": \"" + b"A" * (MAX_BYTES + 10) + b"\"}}"))
    # 6. bit-flipped / truncated valid commands
    for _ in range(120):
        name = rng.choice(list(valid))
        blob = bytearray(json.dumps(valid[name]).encode())
        if rng.random() < 0.5 and len(blob) > 2:
            del blob[rng.randrange(len(blob)):]
        else:
            for _ in range(rng.randint(1, 3)):
                i = rng.randrange(len(blob))
                blob[i] ^= 1 << rng.randrange(8)
        out.append((name, bytes(blob)))
    for name, doc in valid.items():                        # and the valid ones themselves (refused for content)
        out.append((name, json.dumps(doc).encode()))
    return out


@pytest.fixture
def device(tmp_path):
    dev = real_device(tmp_path, DEV)
    yield dev
    dev.close()


def test_fuzzed_commands_are_refused_cleanly_and_change_nothing(tmp_path, device, caplog):
    caplog.set_level(logging.WARNING)
    keygen(str(tmp_path / "fleet.key"), str(tmp_path / "fleet.pub"))
    store = ModelStore(tmp_path / "state", SHIPPED)
    with MosquittoBroker(tmp_path) as broker:
        cfg = MqttConfig.from_dict({"enabled": True, "port": broker.port, "telemetry_interval_s": 3600,
                                    "max_command_bytes": MAX_BYTES, "model_public_key": str(tmp_path / "fleet.pub")})
        up = Uplink(cfg, DEV, tmp_path / "o.db", control=device.operations, model_store=store)
        col = Collector(broker.port, f"ecg/{DEV}/triage")
        up.start()
        replies: dict[bytes, dict] = {}
        got = threading.Condition()

        def on_message(client, userdata, msg):
            corr = getattr(msg.properties, "CorrelationData", None)
            with got:
                replies[bytes(corr or b"")] = json.loads(msg.payload)
                got.notify_all()
        atk = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fuzzer", protocol=mqtt.MQTTv5)
        atk.on_message = on_message
        atk.connect("127.0.0.1", broker.port)
        atk.subscribe(f"ecg/{DEV}/fuzz/#", qos=1)
        atk.loop_start()
        try:
            assert up.wait_connected(10)
            before_mid = up.publish_result({"n": "before"}, "high")
            config_before = device.state.runtime.current.to_dict()
            model_v = store.active_info()["version"]
            time.sleep(0.3)
            all_cases = cases(random.Random(14))
            no_reply, ok_replies, codes = 0, [], {}
            for i, (name, payload) in enumerate(all_cases):
                props = Properties(PacketTypes.PUBLISH)
                corr = f"case-{i}".encode()
                props.CorrelationData = corr
                props.ResponseTopic = f"ecg/{DEV}/fuzz/reply"
                atk.publish(f"ecg/{DEV}/cmd/{name}", payload, qos=1, properties=props)
                with got:
                    got.wait_for(lambda: corr in replies, timeout=5.0)
                r = replies.get(corr)
                if r is None:
                    no_reply += 1
                    continue
                if r["ok"]:
                    ok_replies.append((name, payload[:80]))
                else:
                    codes[r["error"]["code"]] = codes.get(r["error"]["code"], 0) + 1
                    assert r["error"]["code"] in KNOWN_CODES, (name, payload[:120], r)
            print(f"MQTT command fuzz: {len(all_cases)} cases, {len(all_cases) - no_reply} replies "
                  f"({len(ok_replies)} ok), no reply {no_reply}, codes {dict(sorted(codes.items()))}")
            # what succeeded is what is valid: reads, an empty patient update, a patient clear, a first chunk, and a
            # config/set to the value already in force; no config value, model or alarm changed
            assert {n for n, _ in ok_replies} <= {"status", "config/get", "patient/set", "patient/clear",
                                                  "model/chunk", "config/set"}, ok_replies
            expected = json.loads(json.dumps(config_before))
            for n, p in ok_replies:               # a bit flip can make another valid stride (5 -> 4): applied
                if n == "config/set":
                    changes = json.loads(p)["args"]["changes"]
                    assert list(changes) == ["windows.stride_s"], p
                    expected["windows"]["stride_s"] = changes["windows.stride_s"]
            assert json.loads(json.dumps(device.state.runtime.current.to_dict())) == expected
            assert device.state.alarms.active_codes() == []
            assert store.active_info()["version"] == model_v
            tracebacks = [r for r in caplog.records if r.exc_info and r.name.startswith("edge_app")]
            assert not tracebacks, [r.getMessage() for r in tracebacks][:5]
            assert up.stats()["connected"] and up.stats()["disconnects"] == 0
            after_mid = up.publish_result({"n": "after"}, "high")
            assert up.wait_drained(10)
            assert [m["msg_id"] for m in col.wait_for("triage", 2)] == [before_mid, after_mid]
            # replies can only be those the device sends for requests it received (unsubscribed topics: none)
            assert no_reply <= 20, f"{no_reply} cases got no reply"
        finally:
            atk.loop_stop()
            atk.disconnect()
            up.stop()
            col.close()
