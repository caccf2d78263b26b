"""Inference side by side, in ONE run, on the same real PTB-XL val windows:

  int8-litert-1t   the SHIPPED model (quantized_models/manifest.json) in the LiteRT interpreter, 1 thread
                   (what the daemon runs: model.num_threads = 1)
  int8-litert-2t   the same, 2 threads
  float32-litert   the same network as float32 TFLite, LiteRT interpreter, 1 thread
  keras-tf         the float Keras model run by full TensorFlow, the notebook way: `model(x, training=False)`
                   per window, plus `model.predict(x)` per window and batched `model.predict(X, batch_size=32)`

Why every backend runs in its own fresh subprocess: import time, start time and resident memory are
properties of a process; measured in one process they would contaminate each other (TensorFlow alone
pulls in hundreds of MB). A bare `python -c "import numpy"` process is measured the same way as the
baseline. Why ratios (vs int8-litert-1t): this machine is shared with other jobs, absolute times drift
with the load; ratios measured back to back drift much less. Rounds are interleaved and each backend's
best round (lowest median) is kept; CPU time per window is reported too (it is what a Pi pays).

Where the float model comes from (printed and recorded as `float_source`): the training run whose
train_info.json matches the shipped manifest's training record (training/runs/*/model.keras and its
*_float32.tflite). If only the Keras model is there, the float TFLite is converted from it into a temp dir
with training.export.convert (the same converter the shipped int8 came from). The float/int8 agreement on
the benchmark windows is printed, so a mismatched float model would be visible.

Windows: `--n` real PTB-XL val (strat_fold 9) records from ../shared/data/ptbxl100 (evenly spaced over the
fold), through the device contract (make_model_input + demographics_vector); without the shared data the
42 official-layout fixture records (tests/fixtures) are used and the output says so.

    python benchmarks/bench_inference.py [--n 200] [--rounds 2] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

T_PROCESS_START = time.perf_counter()
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_MANIFEST = ROOT / "quantized_models" / "manifest.json"
SHARED = Path(os.environ.get("ECG_SHARED_DATA", ROOT.parent / "shared" / "data"))
FIXTURES = ROOT / "tests" / "fixtures" / "ptbxl_official_sample"
REFERENCE = "int8-litert-1t"


# ------------------------------------------------------------------------------------------ worker side
def _rss_mb() -> float:
    import psutil
    return psutil.Process().memory_info().rss / 2 ** 20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _pct(v: list[float], q: float) -> float:
    s = sorted(v)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def worker(a: argparse.Namespace) -> dict:
    """Runs in a fresh process: import, load, first inference, timed loop. Returns one JSON-able dict."""
    import numpy as np
    t_numpy = time.perf_counter()
    z = np.load(a.inputs)
    ecg, demo = z["ecg"].astype(np.float32), z["demo"].astype(np.float32)
    n = len(ecg)
    out: dict = {"backend": a.backend, "model": a.model, "threads": a.threads, "n": n}
    if a.backend == "baseline":
        out.update(import_s=0.0, rss_mb=round(_rss_mb(), 1), peak_rss_mb=round(_peak_rss_mb(), 1),
                   python_start_s=round(t_numpy - T_PROCESS_START, 3))
        return out
    t0 = time.perf_counter()
    if a.backend == "litert":
        from ai_edge_litert.interpreter import Interpreter
        t1 = time.perf_counter()
        interp = Interpreter(model_path=a.model, num_threads=a.threads)
        runner = interp.get_signature_runner("serving_default")

        def infer(k: int):
            return runner(ecg=ecg[k:k + 1], demographics=demo[k:k + 1])["probabilities"]
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import tensorflow as tf
        t1 = time.perf_counter()
        model = tf.keras.models.load_model(a.model, compile=False)

        def infer(k: int):
            return model({"ecg": ecg[k:k + 1], "demographics": demo[k:k + 1]}, training=False)["probabilities"].numpy()
    p0 = np.asarray(infer(0))
    t2 = time.perf_counter()
    out.update(import_s=round(t1 - t0, 3), load_and_first_inference_s=round(t2 - t1, 3),
               start_s=round(t2 - t0, 3), rss_after_load_mb=round(_rss_mb(), 1))
    for k in range(min(5, n)):
        infer(k)
    lat, probs = [], np.zeros((n, p0.shape[-1]), dtype=np.float32)
    passes = a.passes if a.backend == "litert" else 1      # sub-ms runs: more samples for a stable p99
    c0, w0 = time.process_time(), time.perf_counter()
    for _ in range(passes):
        for k in range(n):
            s = time.perf_counter()
            probs[k] = np.asarray(infer(k)).reshape(-1)
            lat.append((time.perf_counter() - s) * 1000.0)
    wall = time.perf_counter() - w0
    cpu = time.process_time() - c0
    out["timed_runs"] = len(lat)
    n_runs = len(lat)
    out.update(latency_ms_median=round(statistics.median(lat), 3), latency_ms_p99=round(_pct(lat, 0.99), 3),
               latency_ms_mean=round(statistics.fmean(lat), 3),
               throughput_per_s=round(n_runs / wall, 1), cpu_ms_per_window=round(1000 * cpu / n_runs, 3),
               rss_mb=round(_rss_mb(), 1), peak_rss_mb=round(_peak_rss_mb(), 1),
               load_avg_1m=round(os.getloadavg()[0], 2))
    if a.backend == "keras":
        # The notebook way proper: model.predict per window (Keras's predict loop overhead included) ...
        m = min(n, 40)
        lp = []
        for k in range(m):
            s = time.perf_counter()
            model.predict({"ecg": ecg[k:k + 1], "demographics": demo[k:k + 1]}, verbose=0)
            lp.append((time.perf_counter() - s) * 1000.0)
        # ... and batched predict over all windows (best case for TF: throughput, not latency)
        s = time.perf_counter()
        model.predict({"ecg": ecg, "demographics": demo}, batch_size=32, verbose=0)
        bw = time.perf_counter() - s
        out.update(predict_latency_ms_median=round(statistics.median(lp), 3),
                   predict_latency_ms_p99=round(_pct(lp, 0.99), 3), predict_n=m,
                   batched_predict_throughput_per_s=round(n / bw, 1),
                   rss_mb=round(_rss_mb(), 1), peak_rss_mb=round(_peak_rss_mb(), 1),
                   tf_version=tf.__version__)
    np.save(a.probs_out, probs)
    return out


# ------------------------------------------------------------------------------------------ parent side
def load_windows(n: int) -> tuple:
    """Real PTB-XL val windows through the device contract. Returns (ecg, demo, ecg_ids, description)."""
    import numpy as np
    from training.data import load_official, load_shards, to_model_inputs
    data = SHARED / "ptbxl100"
    if (data / "manifest.json").exists():
        ds = load_shards(data, splits=("val",))
        idx = np.unique(np.linspace(0, len(ds) - 1, num=min(n, len(ds))).round().astype(int))
        ds = ds.subset(idx)
        desc = f"{len(ds)} PTB-XL val records (strat_fold 9, evenly spaced by ecg_id) from {data}"
    else:
        ds = load_official(FIXTURES, rate=100)
        desc = (f"{len(ds)} PTB-XL records from the official-layout fixture ({FIXTURES}); "
                "../shared/data/ptbxl100 not found, so these are NOT val-only")
    ecg, demo = to_model_inputs(ds)
    return ecg, demo, ds.ecg_id, desc


def find_float_models(manifest: dict, manifest_path: Path, tmp: Path) -> dict:
    """Locate the float Keras model and float TFLite of the network that was quantized into the shipped int8."""
    tr = manifest.get("training", {})
    runs = sorted((ROOT / "training" / "runs").glob("*/train_info.json"))
    match = None
    for ti in runs:
        try:
            info = json.loads(ti.read_text())
        except (OSError, ValueError):
            continue
        same = (info.get("epochs_run") == tr.get("epochs") and info.get("best_epoch") == tr.get("best_epoch")
                and abs(float(info.get("seconds", -1)) - float(tr.get("seconds", -2))) < 1e-6)
        if same and (ti.parent / "model.keras").exists():
            match = ti.parent
            break
    if match is None:
        return _untrained_same_architecture(manifest, tmp)
    res = {"run_dir": str(match.relative_to(ROOT)), "keras": str(match / "model.keras")}
    ftfl = sorted(match.glob("*_float32.tflite"))
    if ftfl:
        res["float_tflite"] = str(ftfl[0])
        res["float_source"] = (f"float Keras model and float32 TFLite saved by the training run {res['run_dir']} "
                               "that produced the shipped int8 (matched by its train_info.json)")
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import tensorflow as tf
        from training.export import convert
        m = tf.keras.models.load_model(match / "model.keras", compile=False)
        p = convert(m, tmp / "float32.tflite")
        res["float_tflite"] = str(p)
        res["float_source"] = (f"float Keras model from {res['run_dir']}; float32 TFLite converted from it into a "
                               "temp dir by training.export.convert (not shipped)")
    return res


def _untrained_same_architecture(manifest: dict, tmp: Path) -> dict:
    """No training run in this checkout (training/runs/ is not shipped): build the SAME architecture from the
    manifest's training config with untrained weights, save it as .keras and convert it to float32 TFLite.
    Speed, memory and start figures are those of the same network; agreement figures are meaningless."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf
    from training.export import convert
    from training.model import build_model
    cfg = manifest.get("training", {}).get("config", {})
    tf.keras.utils.set_random_seed(int(cfg.get("seed", 1)))
    m = build_model(widths=tuple(cfg.get("widths", (32, 48, 64, 96))), kernel=int(cfg.get("kernel", 7)),
                    stem_pool=bool(cfg.get("stem_pool", True)))
    want = manifest.get("training", {}).get("params")
    if want and int(m.count_params()) != int(want):
        raise SystemExit(f"error: rebuilt architecture has {m.count_params()} parameters, the shipped model's training "
                         f"record says {want}; cannot stand in for its float version")
    kpath = tmp / "model_untrained.keras"
    m.save(kpath)
    fpath = convert(m, tmp / "float32_untrained.tflite")
    return {"run_dir": None, "keras": str(kpath), "float_tflite": str(fpath), "untrained": True,
            "float_source": ("NO training run matching the shipped model in training/runs/ (not shipped in git): the SAME "
                             f"architecture ({m.count_params()} parameters, config from the manifest) with UNTRAINED "
                             "weights, saved and converted into a temp dir; speed/memory/start figures are valid, the "
                             "agreement figures are not")}


def run_worker(backend: str, model: str, threads: int, inputs: Path, probs_out: Path, passes: int) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", backend, "--model", model,
           "--threads", str(threads), "--inputs", str(inputs), "--probs-out", str(probs_out),
           "--passes", str(passes)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONDONTWRITEBYTECODE="1")
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"error: worker {backend} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("{")][-1]
    d = json.loads(line)
    d["process_wall_s"] = round(wall, 3)
    return d


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", default=str(DEFAULT_MANIFEST), help="shipped model manifest")
    ap.add_argument("--n", type=int, default=200, help="real val windows to time (default 200)")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds; best median kept (default 2)")
    ap.add_argument("--passes", type=int, default=5, help="timed passes over the windows for the LiteRT "
                    "backends (they take well under 1 ms; Keras gets 1 pass)")
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--inputs", help=argparse.SUPPRESS)
    ap.add_argument("--probs-out", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        a.backend = a.worker
        print(json.dumps(worker(a)))
        return 0

    import numpy as np
    mpath = Path(a.manifest)
    manifest = json.loads(mpath.read_text())
    int8 = mpath.parent / manifest["model_file"]
    tmp = Path(tempfile.mkdtemp(prefix="bench-inference-"))
    say = (lambda *x: print(*x, file=sys.stderr, flush=True)) if a.json else print
    fl = find_float_models(manifest, mpath, tmp)
    say(f"shipped model: {int8.relative_to(ROOT) if int8.is_relative_to(ROOT) else int8} "
        f"(version {manifest['model_version']}); float: {fl['float_source']}")
    ecg, demo, ids, desc = load_windows(a.n)
    inputs = tmp / "windows.npz"
    np.savez(inputs, ecg=ecg, demo=demo)
    say(f"windows: {desc}")
    configs = [("baseline", "baseline", "", 1), (REFERENCE, "litert", str(int8), 1),
               ("int8-litert-2t", "litert", str(int8), 2), ("float32-litert", "litert", fl["float_tflite"], 1),
               ("keras-tf", "keras", fl["keras"], 1)]
    best: dict[str, dict] = {}
    for r in range(a.rounds):
        for name, backend, model, threads in configs:
            d = run_worker(backend, model, threads, inputs, tmp / f"{name}.npy", a.passes)
            d["round"] = r
            say(f"  round {r + 1}/{a.rounds} {name:15s} median {d.get('latency_ms_median', 0):8.2f} ms  "
                f"RSS {d['rss_mb']:6.1f} MB  (load {d.get('load_avg_1m', os.getloadavg()[0]):.1f})")
            if name not in best or d.get("latency_ms_median", 0) < best[name].get("latency_ms_median", 0):
                best[name] = d
    base_rss = best["baseline"]["rss_mb"]
    ref = best[REFERENCE]
    probs = {name: np.load(tmp / f"{name}.npy") for name, *_ in configs[1:]}
    sizes = {REFERENCE: int8.stat().st_size, "int8-litert-2t": int8.stat().st_size,
             "float32-litert": Path(fl["float_tflite"]).stat().st_size}
    kdir = Path(fl["keras"])
    sizes["keras-tf"] = kdir.stat().st_size if kdir.is_file() else sum(f.stat().st_size for f in kdir.rglob("*") if f.is_file())
    rows = {}
    for name, *_ in configs[1:]:
        d = best[name]
        row = {k: d.get(k) for k in ("latency_ms_median", "latency_ms_p99", "throughput_per_s", "cpu_ms_per_window",
                                     "import_s", "start_s", "rss_mb", "peak_rss_mb")}
        row["rss_above_python_mb"] = round(d["rss_mb"] - base_rss, 1)
        row["model_bytes"] = sizes[name]
        row["max_abs_prob_diff_vs_keras"] = round(float(np.max(np.abs(probs[name] - probs["keras-tf"]))), 4)
        row["mean_abs_prob_diff_vs_keras"] = round(float(np.mean(np.abs(probs[name] - probs["keras-tf"]))), 5)
        for k in ("predict_latency_ms_median", "predict_latency_ms_p99", "batched_predict_throughput_per_s",
                  "tf_version"):
            if k in d:
                row[k] = d[k]
        row["ratios_vs_int8_1t"] = {
            "latency_median": round(d["latency_ms_median"] / ref["latency_ms_median"], 2),
            "latency_p99": round(d["latency_ms_p99"] / ref["latency_ms_p99"], 2),
            "cpu_per_window": round(d["cpu_ms_per_window"] / ref["cpu_ms_per_window"], 2),
            "start": round(d["start_s"] / ref["start_s"], 2),
            "rss_above_python": round((d["rss_mb"] - base_rss) / max(1e-9, ref["rss_mb"] - base_rss), 2),
            "model_bytes": round(sizes[name] / sizes[REFERENCE], 2)}
        rows[name] = row
    import ai_edge_litert
    try:
        from importlib.metadata import version as _v
        tfv = _v("tensorflow")
        litv = _v("ai-edge-litert")
    except Exception:  # noqa: BLE001
        tfv, litv = "?", getattr(ai_edge_litert, "__version__", "?")
    out = {"what": "inference side by side, batch 1, one window = 10 s 12-lead at 100 Hz + age/sex",
           "windows": desc, "n": len(ecg), "rounds": a.rounds, "litert_passes": a.passes, "reference": REFERENCE,
           "model": {"manifest": str(mpath), "file": manifest["model_file"], "version": manifest["model_version"],
                     "sha256": manifest["model_sha256"]},
           "float_source": fl["float_source"], "float_run_dir": fl["run_dir"],
           "float_weights_trained": not fl.get("untrained", False),
           "python_baseline_rss_mb": base_rss, "versions": {"tensorflow": tfv, "ai-edge-litert": litv},
           "load_avg_1m_end": round(os.getloadavg()[0], 2), "backends": rows}
    if a.json:
        print(json.dumps(out))
        return 0
    print(f"\ninference side by side on {out['windows']}; batch 1; best of {a.rounds} interleaved rounds")
    print(f"{'backend':16s} {'median ms':>9s} {'p99 ms':>8s} {'win/s':>7s} {'CPU ms/win':>10s} {'start s':>7s} "
          f"{'import s':>8s} {'RSS MB':>7s} {'+py MB':>7s} {'file KB':>8s}  ratio(median, RSS, size) vs {REFERENCE}")
    for name, r in rows.items():
        q = r["ratios_vs_int8_1t"]
        print(f"{name:16s} {r['latency_ms_median']:9.2f} {r['latency_ms_p99']:8.2f} {r['throughput_per_s']:7.1f} "
              f"{r['cpu_ms_per_window']:10.2f} {r['start_s']:7.2f} {r['import_s']:8.2f} {r['rss_mb']:7.1f} "
              f"{r['rss_above_python_mb']:7.1f} {r['model_bytes'] / 1024:8.0f}  "
              f"x{q['latency_median']:.2f}, x{q['rss_above_python']:.2f}, x{q['model_bytes']:.2f}")
    k = rows["keras-tf"]
    print(f"keras model.predict per window: median {k['predict_latency_ms_median']:.1f} ms, p99 "
          f"{k['predict_latency_ms_p99']:.1f} ms; batched predict (32): {k['batched_predict_throughput_per_s']:.0f} win/s")
    print(f"agreement with the float Keras model: int8 max |dp| {rows[REFERENCE]['max_abs_prob_diff_vs_keras']}, "
          f"mean {rows[REFERENCE]['mean_abs_prob_diff_vs_keras']}; float32 TFLite max |dp| "
          f"{rows['float32-litert']['max_abs_prob_diff_vs_keras']}")
    print(f"python + numpy baseline RSS {base_rss} MB; float: {fl['float_source']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
