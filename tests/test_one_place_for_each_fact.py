"""One place for each fact (issue 13): leads, electrodes and their map, the class names, the WFDB reader and
the JSON-safe converter are each defined once. These checks read the source, so a second copy fails here
instead of drifting silently."""
from __future__ import annotations

import ast
import re
from pathlib import Path

from firmware_bridge.leads import (CHANNELS, CHEST_LEADS, ELECTRODE_LEADS, ELECTRODES, LEAD_ELECTRODES, LEADS,
                                   LIMB_LEADS, canonical_lead)

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("edge_app", "firmware_bridge", "training", "cloud_dashboard")


def _sources() -> list[Path]:
    return [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py") if "firmware/" not in p.as_posix()]


def _where(pattern: str) -> list[str]:
    rx = re.compile(pattern)
    return sorted(str(p.relative_to(ROOT)) for p in _sources() if rx.search(p.read_text(errors="replace")))


def test_lead_names_and_class_names_are_written_down_once():
    assert _where(r'"aVR",\s*"aVL"') == ["firmware_bridge/leads.py"]
    assert _where(r'"NORM",\s*"MI"') == ["edge_app/signal_chain/contract.py"]
    assert _where(r'\bLEADS\s*(:\s*[\w\[\], .]+)?=\s*\(') == ["firmware_bridge/leads.py"]


def _calls(attr: str) -> list[str]:
    """Files whose code (not docstrings) calls something named `attr`."""
    out = []
    for p in _sources():
        tree = ast.parse(p.read_text(errors="replace"))
        if any(isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == attr
               for n in ast.walk(tree)):
            out.append(str(p.relative_to(ROOT)))
    return sorted(out)


def test_one_wfdb_reader_and_one_json_converter():
    # training/signal_eval.py reads MIT-BIH beat annotations with their record (an offline evaluation tool)
    assert _calls("rdrecord") in (["firmware_bridge/records.py"],
                                             ["firmware_bridge/records.py", "training/signal_eval.py"])
    assert _where(r"def _?json(able|_safe)\(") == ["edge_app/jsonsafe.py"]


def test_the_lead_electrode_map_is_consistent():
    assert LEADS[:6] == LIMB_LEADS and LEADS[6:] == CHEST_LEADS and set(CHANNELS) <= set(LEADS)
    for e in ELECTRODES:
        assert ELECTRODE_LEADS[e] == tuple(ld for ld in LEADS if e in LEAD_ELECTRODES[ld])
    assert ELECTRODE_LEADS["V3"] == ("V3",)
    assert ELECTRODE_LEADS["LA"] == ("I", "III", "aVR", "aVL", "aVF", *CHEST_LEADS)   # Wilson's terminal
    assert canonical_lead(" avr ") == "aVR" and canonical_lead("MLII") == "II"
    assert canonical_lead("X6") is None and canonical_lead("V7") is None and canonical_lead("") is None


def test_the_signal_chain_uses_the_same_objects():
    from edge_app.signal_chain import contract, quality
    from firmware_bridge import samples
    assert contract.LEADS is LEADS and samples.LEADS is LEADS and samples.ELECTRODES is ELECTRODES
    assert quality.ELECTRODES is ELECTRODES and quality.ELECTRODE_LEADS is ELECTRODE_LEADS
    assert contract.CONTRACT["leads"] == list(LEADS)
