"""Fuzz/negative layer for model bundles: the real ModelStore (real Ed25519 keys, real staging, the real LiteRT
self-test for what gets that far) against truncated, bit-flipped, wrongly signed, wrongly hashed, downgraded,
oversized and path-traversing bundles. Each must be refused with a report naming the stage, nothing may be
written outside the model directory, the running model and pointer must not change, no staging dir may be
left behind, and a good bundle must still install afterwards."""
from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path


from cloud_dashboard.fleet_cli import keygen, load_bundle, sign_bundle
from edge_app.model_store import ModelStore
from test_uplink_model import SHIPPED, needs_model, new_version_bundle

STAGES = {"size", "signature", "manifest", "hash", "version", "stage", "selftest", "activate"}


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@needs_model
def test_fuzzed_model_bundles_are_refused_and_change_nothing(tmp_path):
    keygen(str(tmp_path / "fleet.key"), str(tmp_path / "fleet.pub"))
    keygen(str(tmp_path / "other.key"), str(tmp_path / "other.pub"))
    priv, pub = str(tmp_path / "fleet.key"), (tmp_path / "fleet.pub").read_bytes()
    state = tmp_path / "dev" / "state"
    store = ModelStore(state, SHIPPED, max_bundle_bytes=8 * 1024 * 1024)
    model, manifest_b, files = load_bundle(str(new_version_bundle(tmp_path, "3.0.0")))
    manifest = json.loads(manifest_b)
    cam_name = manifest["gradcam"]["file"]
    rng = random.Random(14)
    assert store.install(model, manifest_b, sign_bundle(priv, model, manifest_b, files), pub, files=files)["ok"]
    before_tree, before_ptr = _tree(tmp_path / "dev"), (state / "models" / "current.json").read_bytes()
    sig = sign_bundle(priv, model, manifest_b, files)

    def resigned(m: dict, mdl: bytes = model, fl: dict | None = None) -> tuple:
        mb = json.dumps(m).encode()
        fl = files if fl is None else fl
        return mdl, mb, fl, sign_bundle(priv, mdl, mb, fl)

    def with_hash(m: dict, mdl: bytes) -> dict:
        return dict(m, model_sha256=hashlib.sha256(mdl).hexdigest())

    cases: dict[str, tuple] = {}
    # truncated / bit-flipped with the original signature
    for n in (0, 1, 100, len(model) // 2, len(model) - 1):
        cases[f"model truncated to {n}"] = (model[:n], manifest_b, files, sig)
    for i in range(25):
        b = bytearray(model)
        b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        cases[f"model bit flip {i}"] = (bytes(b), manifest_b, files, sig)
    for i in range(10):
        b = bytearray(manifest_b)
        b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        cases[f"manifest bit flip {i}"] = (model, bytes(b), files, sig)
    for i in range(5):
        b = bytearray(files[cam_name])
        b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        cases[f"gradcam bit flip {i}"] = (model, manifest_b, {cam_name: bytes(b)}, sig)
    # signatures: empty, truncated, flipped, another key, random
    cases["empty signature"] = (model, manifest_b, files, b"")
    cases["truncated signature"] = (model, manifest_b, files, sig[:40])
    cases["flipped signature"] = (model, manifest_b, files, bytes([sig[0] ^ 1]) + sig[1:])
    cases["other key"] = (model, manifest_b, files, sign_bundle(str(tmp_path / "other.key"), model, manifest_b, files))
    cases["random signature"] = (model, manifest_b, files, os.urandom(64))
    # correctly signed but wrong: hashes, manifests, names, versions, garbage models
    cases["wrong model hash"] = resigned(dict(manifest, model_sha256="0" * 64))
    cases["wrong gradcam hash"] = resigned(dict(manifest, gradcam=dict(manifest["gradcam"], sha256="1" * 64)))
    for key in ("model_file", "model_sha256", "model_version"):
        cases[f"manifest without {key}"] = resigned({k: v for k, v in manifest.items() if k != key})
    for m in (b"[]", b"null", b"not json", b"\xff\xfe", b"{}"):
        cases[f"manifest {m[:8]!r}"] = (model, m, files, sign_bundle(priv, model, m, files))
    for bad in ("../../../../tmp/evil", "/etc/evil", "a/b", "..", ".", "", "x" * 200, "shipped", "current.json",
                "3.1.0\n", "3.1.0/..", "\u0000", "-rf"):
        cases[f"model_version {bad[:20]!r}"] = resigned(dict(manifest, model_version=bad))
    for bad in ("../../evil.tflite", "/tmp/evil.tflite", "sub/m.tflite", "manifest.json", ".hidden", "..", "a\u0000b",
                "x" * 300):
        m = with_hash(dict(manifest, model_file=bad, model_version="3.2.0"), model)
        cases[f"model_file {bad[:20]!r}"] = resigned(m)
        g = dict(manifest, model_version="3.2.1", gradcam=dict(manifest["gradcam"], file=bad))
        cases[f"gradcam file {bad[:20]!r}"] = resigned(g, fl={bad: files[cam_name]})
    cases["extra file not named"] = resigned(dict(manifest, model_version="3.3.0"),
                                             fl={**files, "extra.bin": b"x"})
    cases["missing gradcam file"] = resigned(dict(manifest, model_version="3.3.1"), fl={})
    for v in ("2.9.9", "1.0.0", "3.0.0-rc9", "3.0.0", "0.0.1"):
        cases[f"downgrade/replay {v}"] = resigned(dict(manifest, model_version=v))
    cases["oversized"] = resigned(dict(manifest, model_version="3.4.0"), mdl=model + b"\0" * (8 * 1024 * 1024))
    for i, junk in enumerate((os.urandom(4096), b"TFL3" + os.urandom(2000), model[: len(model) // 3])):
        cases[f"signed garbage model {i}"] = resigned(with_hash(dict(manifest, model_version=f"3.5.{i}"), junk),
                                                       mdl=junk)
    stages: dict[str, int] = {}
    for name, (mdl, mb, fl, sg) in cases.items():
        report = store.install(mdl, mb, sg, pub, files=fl)
        assert report["ok"] is False and report.get("stage") in STAGES and report.get("reason"), (name, report)
        stages[report["stage"]] = stages.get(report["stage"], 0) + 1
        assert store.active_info()["version"] == "3.0.0", name
        assert not list((state / "models").glob(".staging-*")), f"{name}: staging left behind"
    after_tree = _tree(tmp_path / "dev")
    assert after_tree == before_tree, f"files appeared or vanished: {sorted(after_tree ^ before_tree)[:10]}"
    assert (state / "models" / "current.json").read_bytes() == before_ptr
    assert not (tmp_path / "evil").exists() and not Path("/tmp/evil.tflite").exists()
    print(f"model bundle fuzz: {len(cases)} bundles tried, all refused; by stage {dict(sorted(stages.items()))}")
    # and a good, newer bundle still installs
    m2, mb2, f2 = load_bundle(str(new_version_bundle(tmp_path, "3.6.0")))
    assert store.install(m2, mb2, sign_bundle(priv, m2, mb2, f2), pub, files=f2)["ok"]


@needs_model
def test_hostile_chunked_uploads_over_mqtt(tmp_path):
    """model/chunk sequences through a real mosquitto: a flipped part, a lying total_sha256, parts of another
    upload, a part beyond count, a reassembly that is not the install args, a chunked downgrade. Each is refused,
    the running model stays, and a good chunked upload still installs afterwards."""
    import base64 as b64m

    from cloud_dashboard.fleet_cli import FleetClient, install_args
    from device_helpers import real_device
    from edge_app.uplink.service import Uplink
    from edge_app.uplink.settings import MqttConfig
    from mosquitto_broker import MosquittoBroker

    keygen(str(tmp_path / "fleet.key"), str(tmp_path / "fleet.pub"))
    priv = str(tmp_path / "fleet.key")
    store = ModelStore(tmp_path / "state", SHIPPED)
    dev = real_device(tmp_path, "amb-chunk")

    def args_of(version: str) -> bytes:
        m, mb, f = load_bundle(str(new_version_bundle(tmp_path, version)))
        return json.dumps(install_args(m, mb, f, sign_bundle(priv, m, mb, f)), separators=(",", ":")).encode()

    def parts(blob: bytes, n: int = 4) -> list[bytes]:
        k = -(-len(blob) // n)
        return [blob[i:i + k] for i in range(0, len(blob), k)]

    def send(fleet, uid: str, chunks: list[bytes], total: str, count: int | None = None,
             order: list[int] | None = None) -> dict:
        reply: dict = {}
        for i in (order if order is not None else range(len(chunks))):
            reply = fleet.command("amb-chunk", "model/chunk", {
                "upload_id": uid, "index": i, "count": count or len(chunks), "total_sha256": total,
                "data_b64": b64m.b64encode(chunks[i % len(chunks)]).decode()}, timeout=60)
            if not reply.get("ok") or reply["result"].get("complete") is not False:
                return reply
        return reply

    good = args_of("4.0.0")
    sha = lambda b: hashlib.sha256(b).hexdigest()  # noqa: E731
    with MosquittoBroker(tmp_path) as broker:
        cfg = MqttConfig.from_dict({"enabled": True, "port": broker.port, "telemetry_interval_s": 3600,
                                    "model_public_key": str(tmp_path / "fleet.pub")})
        up = Uplink(cfg, "amb-chunk", tmp_path / "o.db", control=dev.operations, model_store=store)
        up.start()
        try:
            assert up.wait_connected(10)
            shipped_v = store.active_info()["version"]
            refused = {}
            with FleetClient(port=broker.port) as fleet:
                ch = parts(good)
                flipped = list(ch)
                flipped[2] = bytes([flipped[2][0] ^ 1]) + flipped[2][1:]
                refused["flipped part"] = send(fleet, "u-flip", flipped, sha(good))
                refused["lying total"] = send(fleet, "u-lie", ch, "0" * 64)
                first_two = send(fleet, "u-count", ch, sha(good), order=[0, 1])
                assert first_two["ok"] and first_two["result"]["received"] == 2
                refused["count changes mid-upload"] = fleet.command("amb-chunk", "model/chunk", {
                    "upload_id": "u-count", "index": 2, "count": 9, "total_sha256": sha(good), "data_b64": ""})
                refused["index beyond count"] = fleet.command("amb-chunk", "model/chunk", {
                    "upload_id": "u-idx", "index": 4, "count": 4, "total_sha256": sha(good), "data_b64": ""})
                refused["a part carrying another part's data"] = send(fleet, "u-dup", [ch[0], ch[1], ch[3], ch[3]],
                                                                      sha(good))
                not_args = b"[1, 2, 3]"
                refused["reassembly is not install args"] = send(fleet, "u-arr", parts(not_args, 2), sha(not_args))
                deep = b"[" * 20000 + b"]" * 20000
                refused["reassembly nested too deep"] = send(fleet, "u-deep", parts(deep, 4), sha(deep))
                down = args_of("0.9.0")
                refused["chunked downgrade"] = send(fleet, "u-down", parts(down), sha(down))
                for name, r in refused.items():
                    assert r and not r["ok"] and r["error"]["code"] in ("bad_request", "model_rejected", "bad_json"), \
                        (name, r)
                    assert r["error"]["code"] != "failed"
                    assert store.active_info()["version"] == shipped_v, name
                assert refused["chunked downgrade"]["error"]["details"]["report"]["stage"] == "version"
                ok = send(fleet, "u-good", parts(good), sha(good))
                assert ok["ok"] and ok["result"]["version"] == "4.0.0", ok
            print(f"chunked upload cases refused: {len(refused)}, then a good chunked upload installed")
        finally:
            up.stop()
            dev.close()
