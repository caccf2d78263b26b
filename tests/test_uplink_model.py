"""Signed model rollout: tampered bundles are refused and the running model keeps running; a good bundle is
self-tested on the REAL LiteRT interpreter, swapped in atomically, reported in the birth, and rolled back."""
from __future__ import annotations

import base64
import json
import os
import shutil
import time
from pathlib import Path

import pytest

from edge_app.model_store import ModelStore, signed_digest
from cloud_dashboard.fleet_cli import (FleetClient, install_args, keygen, load_bundle, main as fleet_main,
                                       rollback_args, sign_bundle)
from edge_app.uplink.service import Uplink
from edge_app.uplink.settings import MqttConfig
from mosquitto_broker import MosquittoBroker
from device_helpers import real_device
from mqtt_helpers import retained

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "quantized_models" / "manifest.json"

needs_model = pytest.mark.skipif(not SHIPPED.exists(), reason="no shipped model in quantized_models/ (training "
                                 "has not exported one yet); the self-test needs a real model")


def _sha(data: bytes) -> str:
    import hashlib
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def keys(tmp_path):
    keygen(str(tmp_path / "fleet.key"), str(tmp_path / "fleet.pub"))
    keygen(str(tmp_path / "other.key"), str(tmp_path / "other.pub"))
    return {"priv": str(tmp_path / "fleet.key"), "pub": str(tmp_path / "fleet.pub"),
            "other_priv": str(tmp_path / "other.key")}


def new_version_bundle(tmp_path: Path, version: str, golden_shift: float = 0.0) -> Path:
    """A copy of the shipped model under a new version (same weights, so the real self-test passes), or with
    golden outputs shifted so the real self-test must fail."""
    d = tmp_path / f"bundle-{version}"
    d.mkdir()
    m = json.loads(SHIPPED.read_text())
    m["model_version"] = version
    if golden_shift:
        for g in m["golden"]:
            g["probabilities"] = {k: min(1.0, v + golden_shift) if v < 0.5 else v - golden_shift
                                  for k, v in g["probabilities"].items()}
    shutil.copy(SHIPPED.parent / m["model_file"], d / m["model_file"])
    shutil.copy(SHIPPED.parent / m["gradcam"]["file"], d / m["gradcam"]["file"])
    (d / "manifest.json").write_text(json.dumps(m, indent=1))
    return d / "manifest.json"


class Reloads:
    """The daemon's on_change: really loads the new model like the daemon would."""

    def __init__(self) -> None:
        self.loaded: list[str] = []

    def __call__(self, manifest_path: str) -> None:
        from edge_app.inference.model import load_model
        self.loaded.append(load_model(manifest_path).model_version)


@needs_model
def test_tampered_bundles_are_refused_and_the_running_model_is_untouched(tmp_path, keys):
    reloads = Reloads()
    store = ModelStore(tmp_path / "state", SHIPPED, on_change=reloads)
    shipped_version = json.loads(SHIPPED.read_text())["model_version"]
    model, manifest, files = load_bundle(str(new_version_bundle(tmp_path, "9.9.9-good")))
    pub = Path(keys["pub"]).read_bytes()
    sig = sign_bundle(keys["priv"], model, manifest, files)

    flipped = bytearray(model)
    flipped[len(flipped) // 2] ^= 0x01
    cases = {
        "flipped model byte": (bytes(flipped), manifest, files, sig, "signature"),
        "flipped manifest byte": (model, manifest.replace(b"9.9.9-good", b"9.9.9-evil"), files, sig, "signature"),
        "flipped Grad-CAM byte": (model, manifest, {k: v[:-1] + bytes([v[-1] ^ 1]) for k, v in files.items()},
                                  sig, "signature"),
        "wrong key": (model, manifest, files, sign_bundle(keys["other_priv"], model, manifest, files), "signature"),
        "truncated signature": (model, manifest, files, sig[:-1], "signature"),
        # correctly signed, but the model does not match the manifest's sha256 (e.g. signed the wrong file)
        "hash mismatch": (bytes(flipped), manifest, files,
                          sign_bundle(keys["priv"], bytes(flipped), manifest, files), "hash"),
        "missing Grad-CAM file": (model, manifest, {}, sign_bundle(keys["priv"], model, manifest, {}), "manifest"),
    }
    for label, (mo, ma, fi, si, stage) in cases.items():
        report = store.install(mo, ma, si, pub, files=fi)
        assert report["ok"] is False, label
        assert report["stage"] == stage, (label, report)
        assert report["reason"], label
        assert store.active_manifest_path() == str(SHIPPED), label
        assert store.active_info()["version"] == shipped_version
        assert not [p for p in (tmp_path / "state" / "models").iterdir() if p.name != "current.json"], \
            f"{label}: staging left behind"
    assert reloads.loaded == [], "the daemon must not be asked to reload after a refused install"


@needs_model
def test_failed_selftest_leaves_running_model(tmp_path, keys):
    store = ModelStore(tmp_path / "state", SHIPPED)
    model, manifest, files = load_bundle(str(new_version_bundle(tmp_path, "9.9.9-badgolden", golden_shift=0.3)))
    report = store.install(model, manifest, sign_bundle(keys["priv"], model, manifest, files),
                           Path(keys["pub"]).read_bytes(), files=files)
    assert report["ok"] is False and report["stage"] == "selftest", report
    assert report["selftest"]["ok"] is False and report["selftest"]["max_abs_diff"] > 0.01
    assert store.active_manifest_path() == str(SHIPPED)


@needs_model
def test_good_model_rolled_out_over_mqtt_reported_and_rolled_back(tmp_path, keys, capsys):
    reloads = Reloads()
    store = ModelStore(tmp_path / "state", SHIPPED, on_change=reloads)
    shipped = json.loads(SHIPPED.read_text())
    bundle = new_version_bundle(tmp_path, "9.9.9-rollout")
    with MosquittoBroker(tmp_path) as broker:
        devices = {}
        for dev in ("amb-a", "amb-b"):
            cfg = MqttConfig.from_dict({"enabled": True, "port": broker.port, "telemetry_interval_s": 3600,
                                        "model_public_key": keys["pub"]})
            devices[dev] = Uplink(cfg, dev, tmp_path / f"{dev}.db", control=real_device(tmp_path / dev, dev).operations,
                                  model_store=store if dev == "amb-a" else None)
            devices[dev].start()
        try:
            for up in devices.values():
                assert up.wait_connected(10)
            birth = json.loads(retained(broker.port, "ecg/amb-a/birth"))
            assert birth["model"]["version"] == shipped["model_version"] and birth["model"]["source"] == "shipped"

            # roll out with the admin CLI to two devices: amb-a takes it, amb-b has no model store and refuses
            rc = fleet_main(["--port", str(broker.port), "--json", "rollout", "--private-key", keys["priv"],
                             "--manifest", str(bundle), "--timeout", "60", "--parallel", "2", "amb-a", "amb-b"])
            summary = json.loads(capsys.readouterr().out)
            assert rc == 1 and summary["took"] == ["amb-a"] and summary["refused"] == ["amb-b"]
            rep = summary["results"]["amb-a"]["reply"]["result"]
            assert rep["version"] == "9.9.9-rollout" and rep["selftest"]["ok"] is True
            assert rep["previous"] == "shipped" and rep["model_sha256"] == shipped["model_sha256"]
            assert store.active_manifest_path().endswith("models/9.9.9-rollout/manifest.json")
            assert reloads.loaded == ["9.9.9-rollout"]
            time.sleep(0.3)
            birth = json.loads(retained(broker.port, "ecg/amb-a/birth"))
            assert birth["model"]["version"] == "9.9.9-rollout" and birth["model"]["source"] == "installed"

            with FleetClient(port=broker.port) as fleet:
                # the same version again is refused (already running), nothing changes
                model, manifest, files = load_bundle(str(bundle))
                args = install_args(model, manifest, files, sign_bundle(keys["priv"], model, manifest, files))
                r = fleet.command("amb-a", "model/install", args, timeout=60)
                assert not r["ok"] and "already the running model" in r["error"]["message"]
                # a tampered bundle over MQTT: refused with the reason, the new model keeps running
                bad = dict(args, model_b64=base64.b64encode(model[:-1] + b"\x00").decode())
                r = fleet.command("amb-a", "model/install", bad, timeout=60)
                assert r["error"]["code"] == "model_rejected" and "signature" in r["error"]["message"]
                assert store.active_info()["version"] == "9.9.9-rollout"

                # an unsigned rollback is refused (issue 14: going back is an explicit, signed order)
                r = fleet.command("amb-a", "model/rollback", timeout=30)
                assert not r["ok"] and r["error"]["code"] == "rollback_refused" and "signed" in r["error"]["message"]
                r = fleet.command("amb-a", "model/rollback", rollback_args(keys["priv"], "9.9.9-rollout",
                                                                        shipped["model_version"]), timeout=30)
                assert r["ok"] and r["result"]["to"] == "shipped"
                assert store.active_manifest_path() == str(SHIPPED)
                assert reloads.loaded == ["9.9.9-rollout", shipped["model_version"]]
                time.sleep(0.3)
                birth = json.loads(retained(broker.port, "ecg/amb-a/birth"))
                assert birth["model"]["version"] == shipped["model_version"]
                # rolling back again returns to the installed model (kept on disk)
                r = fleet.command("amb-a", "model/rollback", rollback_args(keys["priv"], shipped["model_version"],
                                                                        "9.9.9-rollout"), timeout=30)
                assert r["ok"] and store.active_info()["version"] == "9.9.9-rollout"
        finally:
            for up in devices.values():
                up.stop()


@needs_model
def test_pointer_survives_restart_and_leftovers_are_cleaned(tmp_path, keys):
    store = ModelStore(tmp_path / "state", SHIPPED)
    model, manifest, files = load_bundle(str(new_version_bundle(tmp_path, "9.9.9-persist")))
    assert store.install(model, manifest, sign_bundle(keys["priv"], model, manifest, files),
                         keys["pub"], files=files)["ok"]
    models = tmp_path / "state" / "models"
    (models / ".staging-deadbeef").mkdir()  # a power cut during staging
    (models / ".current.json.abc.tmp").write_text("{half")  # ... or during the pointer write
    again = ModelStore(tmp_path / "state", SHIPPED)
    assert again.active_info()["version"] == "9.9.9-persist"
    assert not (models / ".staging-deadbeef").exists() and not (models / ".current.json.abc.tmp").exists()
    # a corrupted installed file is caught before rolling forward onto it
    shipped_v = json.loads(SHIPPED.read_text())["model_version"]
    assert again.rollback(**_order(keys, "9.9.9-persist", shipped_v))["ok"]
    victim = models / "9.9.9-persist" / json.loads(manifest)["model_file"]
    victim.write_bytes(victim.read_bytes()[:-10])
    r = again.rollback(**_order(keys, shipped_v, "9.9.9-persist"))
    assert not r["ok"] and "integrity" in r["reason"]
    assert again.active_manifest_path() == str(SHIPPED)


def _order(keys, frm: str, to: str, valid_s: int = 600, key: str = "priv") -> dict:
    """ModelStore.rollback keyword arguments for a signed order (what ecg-fleet sign-rollback makes)."""
    a = rollback_args(keys[key], frm, to, valid_s)
    return {"from_version": a["from"], "to_version": a["to"], "not_after": a["not_after"],
            "signature": base64.b64decode(a["signature_b64"]), "public_key_pem": Path(keys["pub"]).read_bytes()}


@needs_model
def test_replayed_older_bundle_is_refused_and_rollback_needs_a_signed_order(tmp_path, keys):
    """Issue 14 item 2: NEW -> MID (validly signed, replayed) -> refused; rollback only as a signed order
    for this very swap, within its validity."""
    store = ModelStore(tmp_path / "state", SHIPPED)
    shipped_v = json.loads(SHIPPED.read_text())["model_version"]
    major = int(shipped_v.split(".")[0])
    # versions relative to the shipped model (whatever it is): NEW > MID > shipped > OLD, NEWER > NEWER_RC > NEW
    NEW, MID, OLD = f"{major + 1}.0.0", f"{major}.5.0", "0.9.0"
    NEWER, NEWER_RC = f"{major + 1}.1.0", f"{major + 1}.1.0-rc1"
    bundles = {v: load_bundle(str(new_version_bundle(tmp_path, v))) for v in (NEW, MID, OLD, NEWER, NEWER_RC)}

    def install(v: str) -> dict:
        model, manifest, files = bundles[v]
        return store.install(model, manifest, sign_bundle(keys["priv"], model, manifest, files), keys["pub"],
                             files=files)
    assert install(NEW)["ok"]
    cases = 0
    for old in (MID, OLD):
        r = install(old)
        cases += 1
        assert not r["ok"] and r["stage"] == "version" and "downgrade" in r["reason"], r
        assert store.active_info()["version"] == NEW
    # an unsigned / wrongly signed / mismatched / expired / too long-lived rollback order: refused
    bad = {"unsigned": dict(_order(keys, NEW, shipped_v), signature=b""),
           "other key": _order(keys, NEW, shipped_v, key="other_priv"),
           "other swap": _order(keys, NEW, MID),
           "forged target": dict(_order(keys, NEW, shipped_v), to_version=MID),
           "expired": _order(keys, NEW, shipped_v, valid_s=-5),
           "valid for a year": _order(keys, NEW, shipped_v, valid_s=365 * 86400)}
    for name, order in bad.items():
        r = store.rollback(**order)
        cases += 1
        assert not r["ok"] and "rollback refused" in r["reason"], (name, r)
        assert store.active_info()["version"] == NEW, name
    # the explicit signed rollback works; after it, NEW's old bundle and MID stay refused as installs
    order = _order(keys, NEW, shipped_v)
    assert store.rollback(**order)["ok"] and store.active_info()["version"] == shipped_v
    r = store.rollback(**order)                        # the same order replayed: the device is no longer at NEW
    assert not r["ok"] and "runs " + shipped_v in r["reason"]
    for old in (MID, NEW):
        r = install(old)
        cases += 1
        assert not r["ok"] and r["stage"] == "version", (old, r)
    # a newer version installs (pre-release NEWER_RC < NEWER by semver order)
    assert install(NEWER)["ok"] and store.active_info()["version"] == NEWER
    r = install(NEWER_RC)
    assert not r["ok"] and r["stage"] == "version"
    # the floor survives a restart and a lost pointer file (then it is the highest manifest on disk)
    again = ModelStore(tmp_path / "state", SHIPPED)
    assert again.highest_version() == NEWER
    (tmp_path / "state" / "models" / "current.json").unlink()
    assert ModelStore(tmp_path / "state", SHIPPED).highest_version() == NEWER
    print(f"downgrade/rollback cases refused: {cases + 2}")


def test_signed_digest_covers_every_file():
    base = signed_digest(b"model", b"manifest", {"cam.npz": b"cam"})
    assert len(base) == 32
    assert base != signed_digest(b"modeL", b"manifest", {"cam.npz": b"cam"})
    assert base != signed_digest(b"model", b"manifesT", {"cam.npz": b"cam"})
    assert base != signed_digest(b"model", b"manifest", {"cam.npz": b"caM"})
    assert base != signed_digest(b"model", b"manifest", {"cam2.npz": b"cam"})
    assert base != signed_digest(b"model", b"manifest")


def test_fleet_cli_keygen_and_sign(tmp_path, capsys):
    from cryptography.hazmat.primitives.serialization import load_pem_public_key
    from edge_app.model_store import verify_signature
    assert fleet_main(["keygen", "--private-key", str(tmp_path / "k"), "--public-key", str(tmp_path / "k.pub")]) == 0
    assert oct(os.stat(tmp_path / "k").st_mode & 0o777) == "0o600"
    assert fleet_main(["keygen", "--private-key", str(tmp_path / "k"), "--public-key", str(tmp_path / "x")]) == 2
    d = tmp_path / "b"
    d.mkdir()
    (d / "m.tflite").write_bytes(b"\x01" * 100)
    (d / "manifest.json").write_text(json.dumps({"model_file": "m.tflite", "model_sha256": _sha(b"\x01" * 100),
                                                 "model_version": "1"}))
    assert fleet_main(["sign", "--private-key", str(tmp_path / "k"), "--manifest", str(d / "manifest.json")]) == 0
    sig = (d / "manifest.json.sig").read_bytes()
    verify_signature(sig, signed_digest((d / "m.tflite").read_bytes(), (d / "manifest.json").read_bytes()),
                     (tmp_path / "k.pub").read_bytes())
    with pytest.raises(ValueError):
        verify_signature(sig, signed_digest(b"\x02" * 100, (d / "manifest.json").read_bytes()),
                         (tmp_path / "k.pub").read_bytes())
    assert load_pem_public_key((tmp_path / "k.pub").read_bytes())


@needs_model
def test_canary_rollout_stops_after_the_first_refusal(tmp_path, keys, capsys):
    with MosquittoBroker(tmp_path) as broker:
        devs = []
        for dev in ("c-1", "c-2", "c-3"):
            cfg = MqttConfig.from_dict({"enabled": True, "port": broker.port, "telemetry_interval_s": 3600,
                                        "model_public_key": keys["pub"]})
            # c-1 has no model store: it refuses, so c-2 and c-3 must not be touched
            store = None if dev == "c-1" else ModelStore(tmp_path / dev, SHIPPED)
            devs.append((Uplink(cfg, dev, tmp_path / f"{dev}.db", model_store=store), store))
        for up, _ in devs:
            up.start()
            assert up.wait_connected(10)
        try:
            rc = fleet_main(["--port", str(broker.port), "rollout", "--private-key", keys["priv"], "--manifest",
                             str(new_version_bundle(tmp_path, "9.9.9-canary")), "--stop-on-failure", "all"])
            out = capsys.readouterr().out
            assert rc == 1 and "0/3 devices took the model" in out and "not attempted: c-2, c-3" in out, out
            assert all(s.active_manifest_path() == str(SHIPPED) for _, s in devs if s is not None)
        finally:
            for up, _ in devs:
                up.stop()


@needs_model
def test_chunked_rollout_to_a_device_with_a_small_message_limit(tmp_path, keys, capsys):
    import hashlib
    store = ModelStore(tmp_path / "state", SHIPPED)
    with MosquittoBroker(tmp_path) as broker:
        cfg = MqttConfig.from_dict({"enabled": True, "port": broker.port, "telemetry_interval_s": 3600,
                                    "model_public_key": keys["pub"], "max_command_bytes": 64 * 1024})
        up = Uplink(cfg, "amb-small", tmp_path / "o.db", model_store=store)
        up.start()
        try:
            assert up.wait_connected(10)
            time.sleep(0.2)
            bundle = new_version_bundle(tmp_path, "9.9.9-chunked")
            model, manifest, files = load_bundle(str(bundle))
            args = install_args(model, manifest, files, sign_bundle(keys["priv"], model, manifest, files))
            with FleetClient(port=broker.port) as fleet:
                # one message is too big for this device ...
                r = fleet.command("amb-small", "model/install", args, timeout=30)
                assert r["error"]["code"] == "too_large"
                # ... a corrupted chunk makes the reassembled upload fail its checksum: nothing installed
                blob = json.dumps(args, separators=(",", ":")).encode()
                parts = [blob[i:i + 40000] for i in range(0, len(blob), 40000)]
                total = hashlib.sha256(blob).hexdigest()
                for i, part in enumerate(parts):
                    if i == 1:
                        part = part[:-1] + b"#"
                    r = fleet.command("amb-small", "model/chunk", {
                        "upload_id": "u1", "index": i, "count": len(parts), "total_sha256": total,
                        "data_b64": base64.b64encode(part).decode()}, timeout=60)
                assert r["error"]["code"] == "model_rejected" and "total_sha256" in r["error"]["message"]
                assert store.active_manifest_path() == str(SHIPPED)
                bad = fleet.command("amb-small", "model/chunk", {"upload_id": "u2", "index": 5, "count": 2,
                                                                 "total_sha256": total, "data_b64": "AA=="})
                assert bad["error"]["code"] == "bad_request"
            # ecg-fleet rollout reads the limit from the birth and chunks by itself
            rc = fleet_main(["--port", str(broker.port), "rollout", "--private-key", keys["priv"],
                             "--manifest", str(bundle), "--timeout", "60", "amb-small"])
            out = capsys.readouterr().out
            assert rc == 0 and "chunk 1/" in out and "1/1 devices took the model" in out, out
            assert store.active_info()["version"] == "9.9.9-chunked"
        finally:
            up.stop()
