"""MQTT uplink: durable store-and-forward outbox, device commands, fleet administration, model rollout.

A triage aid, not a diagnosis: every triage payload carries "disclaimer".

Public API (other modules depend on these names; see docs/mqtt.md for the topic tree and payloads)
---------------------------------------------------------------------------------------------------
edge_app.uplink.settings (defined in edge_app/mqtt_settings.py, below the config loader)
    MqttConfig (frozen dataclass) -- the [mqtt] TOML section.
    MqttConfig.from_dict(d: dict) -> MqttConfig     raises edge_app.errors.ConfigError("mqtt.<key>", problem, fix)
    keys: enabled=false, host="127.0.0.1", port=1883, prefix="ecg", keepalive_s=30, client_id="", protocol="5"|"3.1.1",
          username, password | password_file, tls=false, ca_file, cert_file, key_file, telemetry_interval_s=30,
          reconnect_min_s=1, reconnect_max_s=60, max_command_bytes=8 MiB, model_public_key (Ed25519 PEM path),
          outbox_max_bytes=512 MiB, outbox_min_free_bytes=64 MiB, historical_after_s=60, max_inflight=20
edge_app.command_router.DeviceControl (Protocol, implemented by edge_app.operations.DeviceOperations):
        the device operations MQTT commands reach through the one command router (uplink/commands.py only
        decodes the MQTT envelope); see edge_app/command_router.py for names, arguments and error codes.
edge_app.model_store
    ModelStore(state_dir, shipped_manifest_path, on_change=None, selftest=None)
        active_manifest_path() -> str          manifest of the model to load (staged 'current' or the shipped one)
        active_info() -> dict                  {"version", "model_sha256", "source": "shipped"|"installed", ...}
        install(model_bytes, manifest_bytes, signature, public_key_pem, files=None) -> dict
            files = the other files the manifest names (Grad-CAM head) {name: bytes};
            returns {"ok": True, "version", "model_sha256", "previous", "selftest", "active"} or
                    {"ok": False, "stage": size|signature|manifest|hash|stage|selftest|activate, "reason"}
        rollback() -> dict
        on_change(manifest_path) is called after a successful swap or rollback so the daemon reloads.
    Signature = Ed25519 over model_store.signed_digest(model_bytes, manifest_bytes, files) (32 bytes, docs/mqtt.md).
edge_app.uplink.outbox
    Outbox(path, max_bytes, min_free_bytes) -- SQLite WAL, synchronous=FULL, priority then time order.
edge_app.uplink.service
    Uplink(config, device_id, outbox_path, control=None, model_store=None, on_delivered=None)
        start() / stop()
        publish_result(result: dict, priority: str) -> message_id   returns once the message is fsync'd in the outbox
        publish_alarm(alarm: dict, priority: str) -> message_id      (durable too)
        publish_event(event: dict, priority="low") -> message_id     (durable; daemon started/stopped/stream_gap)
        publish_strip(strip: dict, priority: str) -> message_id      (durable; ecg.strip/1, right after its result)
        subscribe(topic, handler(topic, payload))                    station -> device topics (receipt, review)
        publish_telemetry(metrics: dict) -> None                     latest only, not queued durably
        set_birth(info: dict) -> None                                retained birth, republished on every connect
        stats() -> dict                                               connected, outbox depth by priority, sent, ...
        wait_connected(timeout) -> bool; wait_drained(timeout) -> bool  (tests, orderly shutdown)
    priorities: "high" (suspected MI / critical), "medium", "low", "none" (alias "technical")
    raises OutboxFull (edge_app.uplink.outbox) when the disk budget is exhausted: nothing is deleted.
edge_app.uplink.outbox_cli.run(argv) -> int   "ecg-edge outbox [--config TOML | --db PATH] [--json]"
                                              (depth, oldest, by priority; file <state_dir>/outbox.sqlite)
cloud_dashboard.fleet_cli.main(argv=None)   "ecg-fleet" (admin side, moved out of the device package)
    FleetClient(host, port, prefix, tls=..., username=..., password=...).command(device, name, args, timeout)
edge_app.uplink.topics    Topics(prefix, device_id) -- every topic string; COMMANDS
edge_app.uplink.schemas   load(name) -> JSON Schema dict; BY_LEAF
edge_app.uplink.strip_codec encode_strip(...) -> strip dict; decode_message(msg) / decode_strip(strip) -> Strip
                          (verified: schema, lengths, sha256; raises StripError only). Used by the station too.
tests/mosquitto_broker.py MosquittoBroker(workdir, tls=..., password_file=..., acl_file=..., persistence=...)
                          -- a real mosquitto on a free loopback port for any test
"""
