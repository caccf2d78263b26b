"""Availability (Last Will, retained birth), TLS with client certificates, and the example ACL — real mosquitto."""
from __future__ import annotations

import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from edge_app.uplink.service import Uplink
from edge_app.uplink.settings import MqttConfig
from mosquitto_broker import MosquittoBroker
from device_helpers import real_device
from mqtt_helpers import Collector, retained

REPO = Path(__file__).resolve().parents[1]


def cfg(port: int, **kw) -> MqttConfig:
    return MqttConfig.from_dict({"enabled": True, "port": port, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5,
                                 "keepalive_s": 5, "telemetry_interval_s": 3600, **kw})


def test_birth_availability_and_config_are_retained_and_clean_stop_says_offline(tmp_path):
    with MosquittoBroker(tmp_path) as broker:
        device = real_device(tmp_path, "amb-07")
        up = Uplink(cfg(broker.port), "amb-07", tmp_path / "o.db", control=device.operations)
        up.set_birth({"frontend": {"model": "ADS1298-sim", "firmware": "1.0"}, "config_version": 1})
        up.start()
        assert up.wait_connected(10)
        up.publish_telemetry({"signal_quality": "good", "inference_ms": 42.0, "frontend_status": "streaming"})
        time.sleep(0.5)
        # a dashboard that connects later still learns everything from retained messages
        assert retained(broker.port, "ecg/amb-07/availability") == b"online"
        birth = json.loads(retained(broker.port, "ecg/amb-07/birth"))
        assert birth["schema"] == "ecg.birth/1" and birth["frontend"]["model"] == "ADS1298-sim"
        assert "model/install" in birth["capabilities"] and birth["software_version"]
        tel = json.loads(retained(broker.port, "ecg/amb-07/telemetry"))
        assert tel["signal_quality"] == "good" and tel["outbox_depth"] == 0 and "cpu_percent" in tel
        rep = json.loads(retained(broker.port, "ecg/amb-07/config/reported"))
        assert rep["config_version"] == device.state.runtime.version() and rep["config"]["signal"]["mains_hz"] == 50
        up.stop()
        assert retained(broker.port, "ecg/amb-07/availability") == b"offline"


LWT_RUNNER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {repo!r})
    from edge_app.uplink.service import Uplink
    from edge_app.uplink.settings import MqttConfig
    cfg = MqttConfig.from_dict({{"enabled": True, "port": int(sys.argv[1]), "keepalive_s": 5}})
    up = Uplink(cfg, "amb-lwt", sys.argv[2])
    up.start()
    up.wait_connected(10)
    print("UP", flush=True)
    while True:
        time.sleep(1)
""")


def test_last_will_marks_a_killed_device_offline(tmp_path):
    with MosquittoBroker(tmp_path) as broker:
        script = tmp_path / "lwt.py"
        script.write_text(LWT_RUNNER.format(repo=str(REPO)))
        proc = subprocess.Popen([sys.executable, str(script), str(broker.port), str(tmp_path / "o.db")],
                                stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip() == "UP"
            time.sleep(0.3)
            assert retained(broker.port, "ecg/amb-lwt/availability") == b"online"
            col = Collector(broker.port, "ecg/amb-lwt/availability")
            proc.send_signal(signal.SIGKILL)  # no goodbye: the broker notices the dead socket and sends the Will
            proc.wait(10)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and not any(p == b"offline" for _, p, _ in col.raw("availability")):
                time.sleep(0.05)
            col.close()
            assert retained(broker.port, "ecg/amb-lwt/availability") == b"offline"
        finally:
            if proc.poll() is None:
                proc.kill()


# ---- TLS ---------------------------------------------------------------------------------------------------
def _make_pki(d: Path) -> dict[str, str]:
    """A throwaway CA, broker certificate (CN/SAN 127.0.0.1) and device client certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    import ipaddress

    now = datetime.datetime.now(datetime.timezone.utc)

    def key():
        return ec.generate_private_key(ec.SECP256R1())

    def write_key(k, path):
        path.write_bytes(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()))

    ca_key = key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ecg-test-ca")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .sign(ca_key, hashes.SHA256()))

    def leaf(cn: str, server: bool):
        k = key()
        b = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
             .issuer_name(ca_name).public_key(k.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                                   else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
        if server:
            b = b.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                              x509.DNSName("localhost")]), critical=False)
        return k, b.sign(ca_key, hashes.SHA256())

    out = {}
    (d / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    out["ca"] = str(d / "ca.crt")
    for name, cn, server in (("broker", "127.0.0.1", True), ("device", "amb-tls", False)):
        k, c = leaf(cn, server)
        (d / f"{name}.crt").write_bytes(c.public_bytes(serialization.Encoding.PEM))
        write_key(k, d / f"{name}.key")
        out[f"{name}_crt"], out[f"{name}_key"] = str(d / f"{name}.crt"), str(d / f"{name}.key")
    # a client certificate from a CA the broker does not trust
    rogue = d / "rogue"
    rogue.mkdir()
    other_key = key()
    other_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rogue-ca")])
    rogue_cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "amb-tls")]))
                  .issuer_name(other_name).public_key(other_key.public_key()).serial_number(1)
                  .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
                  .sign(other_key, hashes.SHA256()))
    (rogue / "c.crt").write_bytes(rogue_cert.public_bytes(serialization.Encoding.PEM))
    write_key(other_key, rogue / "c.key")
    out["rogue_crt"], out["rogue_key"] = str(rogue / "c.crt"), str(rogue / "c.key")
    return out


def test_tls_with_client_certificates(tmp_path):
    pki = _make_pki(tmp_path)
    tls = {"cafile": pki["ca"], "certfile": pki["broker_crt"], "keyfile": pki["broker_key"],
           "require_certificate": True}
    with MosquittoBroker(tmp_path, tls=tls) as broker:
        col = Collector(broker.port, "ecg/#", ca_file=pki["ca"], cert_file=pki["device_crt"],
                        key_file=pki["device_key"])
        up = Uplink(cfg(broker.port, tls=True, ca_file=pki["ca"], cert_file=pki["device_crt"],
                        key_file=pki["device_key"]), "amb-tls", tmp_path / "o.db")
        up.start()
        try:
            assert up.wait_connected(10), f"TLS connect failed: {up.stats()['last_error']} {broker.log_text()[-500:]}"
            mid = up.publish_result({"n": 1}, "high")
            assert up.wait_drained(10)
            assert [m["msg_id"] for m in col.wait_for("triage", 1)] == [mid]
        finally:
            up.stop()
            col.close()

        # no client certificate, or one from a foreign CA: the broker refuses; results stay queued
        for cert, key in ((None, None), (pki["rogue_crt"], pki["rogue_key"])):
            c = {"tls": True, "ca_file": pki["ca"]}
            if cert:
                c.update(cert_file=cert, key_file=key)
            bad = Uplink(cfg(broker.port, **c), "amb-tls", tmp_path / f"bad-{bool(cert)}.db")
            bad.publish_result({"n": 2}, "high")
            bad.start()
            try:
                assert not bad.wait_connected(2.0)
                assert bad.outbox.depth() == 1
            finally:
                bad.stop()

        # and a plain-TCP client cannot talk to the TLS listener at all
        plain = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        try:
            plain.connect("127.0.0.1", broker.port, keepalive=5)
            for _ in range(20):
                if plain.loop(timeout=0.1) != mqtt.MQTT_ERR_SUCCESS:
                    break
            plain_connected = plain.is_connected()
        except (OSError, ValueError):
            plain_connected = False
        assert not plain_connected, "a plain-TCP client connected to the TLS listener"


# ---- ACL ---------------------------------------------------------------------------------------------------
def _passwd(tmp_path: Path, users: dict[str, str]) -> str:
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        pytest.skip("mosquitto_passwd not installed (apt-get install mosquitto)")
    path = tmp_path / "passwd"
    path.write_text("".join(f"{u}:{p}\n" for u, p in users.items()))
    subprocess.run([tool, "-U", str(path)], check=True)
    os.chmod(path, 0o600)
    return str(path)


def test_example_acl_confines_devices_and_reserves_commands_to_admins(tmp_path):
    pw = _passwd(tmp_path, {"admin": "adminpw", "amb-01": "pw1", "amb-02": "pw2"})
    acl = str(REPO / "deploy" / "mosquitto" / "acl")
    with MosquittoBroker(tmp_path, password_file=pw, acl_file=acl) as broker:
        admin = Collector(broker.port, "ecg/#", username="admin", password="adminpw")
        device = real_device(tmp_path, "amb-01")
        dev1 = Uplink(cfg(broker.port, username="amb-01", password="pw1"), "amb-01", tmp_path / "d1.db",
                      control=device.operations)
        # amb-02's credentials used to impersonate amb-01's subtree: every publish is refused
        spoof = Uplink(cfg(broker.port, username="amb-02", password="pw2", client_id="spoofer"), "amb-01",
                       tmp_path / "spoof.db")
        dev1.start(), spoof.start()
        try:
            assert dev1.wait_connected(10) and spoof.wait_connected(10)
            good = dev1.publish_result({"n": 1}, "high")
            ev = dev1.publish_event({"code": "started"})
            forged = spoof.publish_result({"n": 666, "forged": True}, "high")
            assert dev1.wait_drained(10)
            time.sleep(1.0)
            triage = admin.on("triage")
            assert [m["msg_id"] for m in triage] == [good], "a device published into another device's subtree"
            assert [m["msg_id"] for m in admin.on("event")] == [ev], "the ACL must let a device publish events"
            assert spoof.outbox.depth() == 1, "a refused message must stay queued, not be counted as delivered"
            assert spoof.stats()["broker_refused"] >= 1 and spoof.stats()["delivered"] == 0

            # a device cannot publish commands, not even to itself or to its neighbour
            rogue = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, client_id="rogue")
            rogue.username_pw_set("amb-02", "pw2")
            rogue.connect("127.0.0.1", broker.port)
            rogue.loop_start()
            before = device.state.runtime.version()
            info = rogue.publish("ecg/amb-01/cmd/config/set", json.dumps(
                {"args": {"changes": {"model.thresholds.MI": 0.9}}}), qos=1)
            info.wait_for_publish(5)
            time.sleep(0.5)
            assert device.state.runtime.version() == before and not admin.raw("config/set/reply")
            rogue.disconnect(), rogue.loop_stop()

            # a wrong admin password is refused with a clear message
            from cloud_dashboard.fleet_cli import main as fleet_main
            assert fleet_main(["--port", str(broker.port), "-u", "admin", "-P", "wrong", "devices"]) == 2

            # the admin can
            from cloud_dashboard.fleet_cli import FleetClient
            with FleetClient(port=broker.port, username="admin", password="adminpw") as fleet:
                reply = fleet.command("amb-01", "config/set", {"changes": {"model.thresholds.MI": 0.4}})
            assert reply["ok"], reply
            assert device.state.runtime.current.thresholds["MI"] == 0.4
        finally:
            dev1.stop(), spoof.stop()
            admin.close()


def test_the_example_mosquitto_conf_itself_runs_tls_password_and_acl(tmp_path):
    """deploy/mosquitto/mosquitto.conf as shipped (only paths and ports substituted) on mosquitto 2."""
    from mosquitto_broker import free_port
    pki = _make_pki(tmp_path)  # device certificate CN is amb-tls
    pw = _passwd(tmp_path, {"admin": "adminpw", "amb-tls": "devpw"})
    plain, tls_port = free_port(), free_port()
    text = (REPO / "deploy" / "mosquitto" / "mosquitto.conf").read_text()
    for old, new in (("/etc/mosquitto/ecg.passwd", pw), ("/etc/mosquitto/ecg.acl", str(REPO / "deploy/mosquitto/acl")),
                     ("/etc/mosquitto/certs/fleet-ca.crt", pki["ca"]),
                     ("/etc/mosquitto/certs/broker.crt", pki["broker_crt"]),
                     ("/etc/mosquitto/certs/broker.key", pki["broker_key"]),
                     ("listener 1883 127.0.0.1", f"listener {plain} 127.0.0.1"),
                     ("listener 8883", f"listener {tls_port} 127.0.0.1"),
                     ("/var/lib/mosquitto/", f"{tmp_path}/"), ("log_dest syslog", "log_dest stderr")):
        assert old in text, old
        text = text.replace(old, new)
    assert not [l for l in text.splitlines() if "/etc/" in l and not l.lstrip().startswith("#")]
    with MosquittoBroker(tmp_path, port=tls_port, raw_config=text) as broker:
        admin = Collector(plain, "ecg/#", username="admin", password="adminpw")
        c = {"tls": True, "ca_file": pki["ca"], "cert_file": pki["device_crt"], "key_file": pki["device_key"],
             "username": "amb-tls", "password": "devpw"}
        up = Uplink(cfg(tls_port, **c), "amb-tls", tmp_path / "o.db", control=real_device(tmp_path, "amb-tls").operations)
        up.start()
        try:
            assert up.wait_connected(10), f"{up.stats()['last_error']} {broker.log_text()[-800:]}"
            mid = up.publish_result({"n": 1}, "high")
            assert up.wait_drained(10)
            assert [m["msg_id"] for m in admin.wait_for("triage", 1)] == [mid]
            from cloud_dashboard.fleet_cli import FleetClient
            with FleetClient(port=plain, username="admin", password="adminpw") as fleet:
                assert fleet.command("amb-tls", "status")["ok"]
        finally:
            up.stop()
            admin.close()
        # the right password without a client certificate is not enough on the TLS listener
        no_cert = Uplink(cfg(tls_port, tls=True, ca_file=pki["ca"], username="amb-tls", password="devpw"),
                         "amb-tls", tmp_path / "n.db")
        no_cert.start()
        try:
            assert not no_cert.wait_connected(2.0)
        finally:
            no_cert.stop()
