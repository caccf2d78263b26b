"""The README's "What the demo prints" block is the output of a real `ecg-edge demo` run (tools/readme_demo.py).

A change to what the demo prints fails this test until `python tools/readme_demo.py --write` regenerates the
block, so the README cannot drift from the appliance again (issue 14, item 13).
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import readme_demo  # noqa: E402


def test_readme_demo_block_is_a_real_run():
    out = readme_demo.run_demo()
    block = readme_demo.render(readme_demo.first_result(out))
    current = readme_demo.readme_block((ROOT / "README.md").read_text())
    assert current is not None, "README.md lost its demo markers"
    assert "window 0.0-10.0 s" in block and "Triage aid, not a diagnosis." in block
    assert current == block, ("README demo block is stale: run `python tools/readme_demo.py --write`\n"
                              f"README:\n{current}\nreal run:\n{block}")


def test_first_result_takes_the_first_block_and_hides_only_the_time():
    out = ("ecg-edge demo: simulator replays x at 4x on /tmp/p.\nFirst result once...\n\n"
           "[12:34:56Z] window 0.0-10.0 s: A\n   NORM 0.90\n   Triage aid, not a diagnosis.\n\n"
           "[12:35:01Z] window 5.0-15.0 s: B\n   Triage aid, not a diagnosis.\n\n"
           "ecg-edge demo: 2 windows analysed.\n")
    assert readme_demo.first_result(out) == ("[hh:mm:ssZ] window 0.0-10.0 s: A\n   NORM 0.90\n"
                                             "   Triage aid, not a diagnosis.")
