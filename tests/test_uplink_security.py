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
def _make_pki(d: Path, devices: tuple[str, ...] = (), admins: tuple[str, ...] = ()) -> dict[str, str]:
    """A throwaway CA, broker certificate (CN/SAN 127.0.0.1) and device client certificate.

    devices: more device certificates from the fleet CA (keys "<cn>_crt", "<cn>_key"); admins: certificates
    from a separate admin CA ("admin_ca", "<cn>_crt", "<cn>_key")."""
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
    for cn in devices:
        k, c = leaf(cn, False)
        (d / f"{cn}.crt").write_bytes(c.public_bytes(serialization.Encoding.PEM))
        write_key(k, d / f"{cn}.key")
        out[f"{cn}_crt"], out[f"{cn}_key"] = str(d / f"{cn}.crt"), str(d / f"{cn}.key")
    if admins:
        adm_key = key()
        adm_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ecg-test-admin-ca")])
        adm_ca = (x509.CertificateBuilder().subject_name(adm_name).issuer_name(adm_name)
                  .public_key(adm_key.public_key()).serial_number(x509.random_serial_number())
                  .not_valid_before(now - datetime.timedelta(minutes=5))
                  .not_valid_after(now + datetime.timedelta(days=1))
                  .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                  .sign(adm_key, hashes.SHA256()))
        (d / "admin-ca.crt").write_bytes(adm_ca.public_bytes(serialization.Encoding.PEM))
        out["admin_ca"] = str(d / "admin-ca.crt")
        for cn in admins:
            k = key()
            c = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
                 .issuer_name(adm_name).public_key(k.public_key()).serial_number(x509.random_serial_number())
                 .not_valid_before(now - datetime.timedelta(minutes=5))
                 .not_valid_after(now + datetime.timedelta(days=1)).sign(adm_key, hashes.SHA256()))
            (d / f"{cn}.crt").write_bytes(c.public_bytes(serialization.Encoding.PEM))
            write_key(k, d / f"{cn}.key")
            out[f"{cn}_crt"], out[f"{cn}_key"] = str(d / f"{cn}.crt"), str(d / f"{cn}.key")
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


def _shipped_conf(tmp_path: Path, pki: dict[str, str], pw: str) -> tuple[str, int, int, int]:
    """deploy/mosquitto/mosquitto.conf with only paths and ports substituted -> (text, plain, device, admin port)."""
    from mosquitto_broker import free_port
    plain, tls_port, admin_port = free_port(), free_port(), free_port()
    text = (REPO / "deploy" / "mosquitto" / "mosquitto.conf").read_text()
    for old, new in (("/etc/mosquitto/ecg.passwd", pw), ("/etc/mosquitto/ecg.acl", str(REPO / "deploy/mosquitto/acl")),
                     ("/etc/mosquitto/certs/fleet-ca.crt", pki["ca"]),
                     ("/etc/mosquitto/certs/admin-ca.crt", pki["admin_ca"]),
                     ("/etc/mosquitto/certs/broker.crt", pki["broker_crt"]),
                     ("/etc/mosquitto/certs/broker.key", pki["broker_key"]),
                     ("listener 1883 127.0.0.1", f"listener {plain} 127.0.0.1"),
                     ("listener 8883", f"listener {tls_port} 127.0.0.1"),
                     ("listener 8884", f"listener {admin_port} 127.0.0.1"),
                     ("/var/lib/mosquitto/", f"{tmp_path}/"), ("log_dest syslog", "log_dest stderr")):
        assert old in text, old
        text = text.replace(old, new)
    assert not [l for l in text.splitlines() if "/etc/" in l and not l.lstrip().startswith("#")]
    return text, plain, tls_port, admin_port


def test_the_example_mosquitto_conf_itself_runs_tls_password_and_acl(tmp_path):
    """deploy/mosquitto/mosquitto.conf as shipped (only paths and ports substituted) on mosquitto 2."""
    pki = _make_pki(tmp_path, admins=("admin",))  # device certificate CN is amb-tls
    pw = _passwd(tmp_path, {"admin": "adminpw", "amb-tls": "devpw"})
    text, plain, tls_port, admin_port = _shipped_conf(tmp_path, pki, pw)
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
            # admins over the network: admin-CA certificate on the admin listener; two sessions at once
            adm = {"tls": True, "ca_file": pki["ca"], "cert_file": pki["admin_crt"], "key_file": pki["admin_key"]}
            with FleetClient(port=admin_port, **adm) as f1, FleetClient(port=admin_port, **adm) as f2:
                assert f1.command("amb-tls", "status")["ok"] and f2.command("amb-tls", "status")["ok"]
            # a device certificate is no admin credential
            from cloud_dashboard.fleet_cli import FleetError
            with pytest.raises((FleetError, OSError)):
                with FleetClient(port=admin_port, tls=True, ca_file=pki["ca"], cert_file=pki["device_crt"],
                                 key_file=pki["device_key"], connect_timeout=3.0) as f3:
                    f3.command("amb-tls", "status")
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


def _attacker(port: int, pki: dict[str, str], cn: str, client_id: str, will_topic: str | None) -> tuple[mqtt.Client, list]:
    """A device logged in with ITS OWN certificate (cn) but another client id (and maybe a Will elsewhere)."""
    results: list = []
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.tls_set(ca_certs=pki["ca"], certfile=pki[f"{cn}_crt"], keyfile=pki[f"{cn}_key"])
    if will_topic:
        c.will_set(will_topic, b"offline", qos=1, retain=True)
    c.on_connect = lambda cl, ud, flags, rc, props: results.append(("connect", str(rc)))
    c.on_disconnect = lambda cl, ud, flags, rc, props: results.append(("disconnect", str(rc)))
    c.connect("127.0.0.1", port, keepalive=5)
    c.loop_start()
    return c, results


def test_client_id_takeover_is_impossible_with_the_shipped_conf(tmp_path):
    """Issue 14 item 1: amb-01, with its own certificate, claims client id ecg-amb-02 (and amb-02), sets Wills
    into amb-02's subtree and dies abruptly, ten times over: the real amb-02 must stay online throughout."""
    pki = _make_pki(tmp_path, devices=("amb-01", "amb-02"), admins=("admin",))
    pw = _passwd(tmp_path, {"admin": "adminpw"})
    text, plain, tls_port, _ = _shipped_conf(tmp_path, pki, pw)
    with MosquittoBroker(tmp_path, port=tls_port, raw_config=text) as broker:
        watch = Collector(plain, "ecg/amb-02/#", username="admin", password="adminpw")
        c = {"tls": True, "ca_file": pki["ca"], "cert_file": pki["amb-02_crt"], "key_file": pki["amb-02_key"]}
        victim = Uplink(cfg(tls_port, **c), "amb-02", tmp_path / "v.db",
                        control=real_device(tmp_path, "amb-02").operations)
        victim.start()
        attempts = 0
        try:
            assert victim.wait_connected(10), f"{victim.stats()['last_error']} {broker.log_text()[-800:]}"
            time.sleep(0.3)
            assert retained(plain, "ecg/amb-02/availability", username="admin", password="adminpw") == b"online"
            connects = victim.stats()["connects"]
            for i in range(10):
                cid = ("ecg-amb-02", "amb-02")[i % 2]
                will = ("ecg/amb-02/availability", None, "ecg/amb-01/availability")[i % 3]
                atk, res = _attacker(tls_port, pki, "amb-01", cid, will)
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline and not res:
                    time.sleep(0.02)
                attempts += 1
                sock = atk.socket()
                if sock is not None:                 # die without DISCONNECT: the broker sends the Will
                    import socket as _s
                    try:
                        sock.shutdown(_s.SHUT_RDWR)
                    except OSError:
                        pass
                atk.loop_stop()
                time.sleep(0.1)
            time.sleep(1.0)
            offline = [p for _, p, _ in watch.raw("availability") if p == b"offline"]
            assert not offline, f"amb-02 was reported offline {len(offline)} times by the takeover attempts"
            assert victim.wait_connected(0.1) and retained(plain, "ecg/amb-02/availability", username="admin", password="adminpw") == b"online"
            st = victim.stats()
            assert st["connects"] == connects and st["disconnects"] == 0, "amb-02 was disconnected by the attacker"
            # and amb-02 still works end to end
            mid = victim.publish_result({"n": 1}, "high")
            assert victim.wait_drained(10)
            assert mid in [m["msg_id"] for m in watch.wait_for("triage", 1)]
            print(f"client-id takeover attempts: {attempts}, victim offline events: 0")
        finally:
            victim.stop()
            watch.close()
