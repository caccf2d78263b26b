"""The README's results table is the generated one: re-rendering from benchmarks/results.json reproduces it."""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import run_all  # noqa: E402


def test_readme_table_is_the_generated_one(tmp_path):
    res = json.loads((ROOT / "benchmarks" / "results.json").read_text())
    readme = ROOT / "README.md"
    copy = tmp_path / "README.md"
    copy.write_text(readme.read_text())
    assert run_all.update_readme(res, copy)
    assert copy.read_text() == readme.read_text(), "README table is stale: run `python benchmarks/run_all.py --render-only`"
    block = readme.read_text().split(run_all.README_BEGIN, 1)[1].split(run_all.README_END, 1)[0]
    assert "soak under faults" in block and "Where the appliance is slower or heavier" in block


def test_update_readme_replaces_only_between_markers(tmp_path):
    res = json.loads((ROOT / "benchmarks" / "results.json").read_text())
    p = tmp_path / "README.md"
    p.write_text(f"before\n{run_all.README_BEGIN}\nold table\n{run_all.README_END}\nafter\n")
    assert run_all.update_readme(res, p)
    text = p.read_text()
    assert text.startswith("before\n") and text.endswith("\nafter\n") and "old table" not in text
    assert "| area | figure | value |" in text
    p.write_text("no markers here\n")
    assert not run_all.update_readme(res, p)
