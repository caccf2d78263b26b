"""The package imports cheaply (training imports it) and exports the public API."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_is_lazy_and_free_of_daemon_code():
    code = ("import sys, edge_app.signal_chain as sc; "
            "assert 'scipy' not in sys.modules and 'edge_app.signal_chain.quality' not in sys.modules; "
            "f = sc.ecg_peaks; q = sc.ecg_quality; r = sc.StreamingResampler; m = sc.make_model_input; "
            "bad = [m for m in sys.modules if m.startswith(('edge_app.', 'paho', 'tensorflow', 'ai_edge_litert', "
            "'tflite_runtime', 'serial')) and not m.startswith('edge_app.signal_chain')]; "
            "assert not bad, bad; print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_public_names_resolve():
    import edge_app.signal_chain as sc
    for name in sc.__all__:
        assert getattr(sc, name) is not None
    try:
        sc.no_such_name
    except AttributeError as e:
        assert "no_such_name" in str(e)
    else:
        raise AssertionError("unknown attribute must raise")
