"""Negative/fuzz layer for the configuration file, an input the device takes from outside.

Starting from the real defaults (`ecg-edge config default`) plus an [mqtt] table, the test builds
configuration files with every key given a value of the wrong type or out of range (strings, arrays,
tables, dates, NaN/inf, huge and negative numbers...), unknown keys and sections, duplicated keys, random
character corruptions, truncations, non-UTF-8 bytes, binary junk and paths that are directories.

Every case goes through load_config (it returns a Config or raises ConfigError naming the key, the problem
and the fix; nothing else escapes; the file is never changed) and through `ecg-edge config check` in-process
(exit 0 or 2, a human line or one JSON object); a sample goes through the real `ecg-edge config check` and
`ecg-edge run --config` processes (exit 2, no traceback). Each test prints how many cases it tried.
"""
from __future__ import annotations

import io
import json
import random
import re
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from edge_app.config import default_toml, load_config
from edge_app.errors import ConfigError
from fuzz_text import mutate_text

ROOT = Path(__file__).resolve().parents[1]
MQTT = '\n[mqtt]\nenabled = false\nhost = "127.0.0.1"\nport = 1883\nprefix = "ecg"\nkeepalive_s = 30\nstrips = "all"\n'
BASE = default_toml() + MQTT
WRONG_VALUES = ['"text"', '""', "-1", "0", "1", "-0.0", "3.5", "1e308", "-1e308", "nan", "inf", "-inf",
                "99999999999999999999", "[1, 2]", "[]", "{ a = 1 }", "true", "false", "1979-05-27T07:32:00Z",
                "07:32:00", '"\\u0000"', '"' + "x" * 5000 + '"', '"../../etc/passwd"', '"\\u00e9\\u00e8"']
KEY_LINE = re.compile(r"^([A-Za-z_]+) = (.*)$")


def _key_lines(text: str) -> list[tuple[int, str, str]]:
    """(line index, section, key) of every `key = value` line."""
    out, section = [], ""
    for i, line in enumerate(text.splitlines()):
        if line.startswith("["):
            section = line.strip("[] ")
        m = KEY_LINE.match(line)
        if m:
            out.append((i, section, m.group(1)))
    return out


def cases(seed: int = 14) -> list[tuple[str, bytes, str | None]]:
    """(name, file bytes, section the error must name or None) for every generated config."""
    lines = BASE.splitlines()
    out: list[tuple[str, bytes, str | None]] = [("defaults", BASE.encode(), None)]
    for i, section, key in _key_lines(BASE):
        for k, value in enumerate(WRONG_VALUES):
            mutated = list(lines)
            mutated[i] = f"{key} = {value}"
            out.append((f"{section}.{key}={k}", ("\n".join(mutated) + "\n").encode(), section))
    sections = sorted({s for _, s, _ in _key_lines(BASE)} | {"model.thresholds"})
    for s in sections:
        out.append((f"unknown_key_in_{s}", BASE.replace(f"[{s}]\n", f"[{s}]\nbogus_key = 1\n", 1).encode(), s))
    out += [("unknown_section", (BASE + "\n[bogus]\nx = 1\n").encode(), "bogus"),
            ("nested_table", (BASE + "\n[device.extra]\nx = 1\n").encode(), "device"),
            ("threshold_unknown_class", BASE.replace("[model.thresholds]\n", "[model.thresholds]\nAF = 0.5\n").encode(),
             "model"),
            ("threshold_1.5", BASE.replace("[model.thresholds]\n", "[model.thresholds]\nMI = 1.5\n").encode(), "model"),
            ("threshold_string", BASE.replace("[model.thresholds]\n", '[model.thresholds]\nMI = "high"\n').encode(),
             "model"),
            ("section_is_value", b'device = "x"\n', "device"),
            ("duplicate_key", BASE.replace("[device]\n", "[device]\nid = \"a\"\n", 1).encode(), "<file>"),
            ("duplicate_section", (BASE + "\n[device]\nid = \"b\"\n").encode(), "<file>"),
            ("empty_file", b"", None),
            ("only_comments", b"# nothing\n", None),
            ("not_utf8", BASE.encode() + b"\n# \xff\xfe\n", "<file>"),
            ("binary", bytes(range(256)) * 4, "<file>"),
            ("json_not_toml", json.dumps({"device": {"id": "x"}}).encode(), "<file>"),
            ("hr_low_above_high", BASE.replace("hr_low_bpm = 40", "hr_low_bpm = 200").encode(), "triage"),
            ("stride_above_length", BASE.replace("stride_s = 5", "stride_s = 20").encode(), "windows")]
    rng = random.Random(seed)
    alphabet = '[]="#.\n 0123456789abcxyz-+{},\\'
    for k in range(250):
        out.append((f"random_chars_{k}", mutate_text(BASE, rng, alphabet, 5).encode(), None))
    for k in range(60):
        out.append((f"truncated_{k}", BASE.encode()[: rng.randrange(len(BASE))], None))
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> list[tuple[str, Path, str | None]]:
    where = tmp_path_factory.mktemp("config_fuzz")
    out = []
    for k, (name, data, section) in enumerate(cases()):
        p = where / f"{k:04d}.toml"
        p.write_bytes(data)
        out.append((name, p, section))
    d = where / "a_directory.toml"
    d.mkdir()
    out.append(("directory", d, "<file>"))
    out.append(("missing", where / "missing.toml", "<file>"))
    return out


def test_load_config_returns_a_config_or_a_config_error_naming_the_key(corpus):
    accepted = refused = 0
    for name, path, section in corpus:
        before = path.read_bytes() if path.is_file() else None
        try:
            cfg = load_config(path)
        except ConfigError as e:
            refused += 1
            assert e.key and e.problem and e.fix, f"{name}: incomplete error {e!r}"
            if section is not None:
                assert e.key == section or e.key.startswith(section + ".") or e.key == "<file>", \
                    f"{name}: error names {e.key!r}, expected [{section}]: {e}"
        except Exception as e:  # noqa: BLE001 - exactly what the test is looking for
            pytest.fail(f"{name}: {type(e).__name__} escaped load_config: {e}")
        else:
            accepted += 1
            json.dumps(cfg.to_dict(), default=str, allow_nan=False)       # no NaN/inf got through
        if before is not None:
            assert path.read_bytes() == before, f"{name}: the file was changed"
    print(f"\nconfig fuzz: {len(corpus)} config files tried through load_config: {accepted} accepted, "
          f"{refused} refused with a ConfigError naming key + fix; 0 other exceptions")
    assert refused >= 1000 and accepted >= 5


def test_config_check_command_in_process(corpus):
    from edge_app.cli import main
    codes = {0: 0, 2: 0}
    for name, path, _section in corpus:
        for as_json in (False, True):
            out, err = io.StringIO(), io.StringIO()
            with redirect_stdout(out), redirect_stderr(err):
                rc = main(["config", "check", str(path), *(["--json"] if as_json else [])])
            assert rc in codes, f"{name}: exit {rc}"
            codes[rc] += 1
            text = out.getvalue()
            assert "Traceback" not in text + err.getvalue()
            if as_json:
                d = json.loads(text)
                assert d["ok"] is (rc == 0) and (rc == 0 or (d["key"] and d["fix"]))
            else:
                assert text.strip().endswith("OK") or ("ERROR" in text and "Fix:" in text), f"{name}: {text}"
                assert "--config" not in text, f"{name}: suggests a flag `config check` lacks: {text}"
    print(f"\n`ecg-edge config check` in-process: {2 * len(corpus)} runs (human + --json): "
          f"exit 0 x{codes[0]}, exit 2 x{codes[2]}")


@pytest.mark.parametrize("name", ["windows.stride_s=0", "device.id=13", "not_utf8", "random_chars_3", "missing",
                                  "directory"])
def test_real_processes_exit_2_without_a_traceback(corpus, name):
    path = {n: p for n, p, _ in corpus}[name]
    for args in (["config", "check", str(path)], ["run", "--config", str(path)]):
        if args[0] == "run":
            try:
                load_config(path)
                continue                                  # a valid file would start the daemon: not here
            except ConfigError:
                pass
        r = subprocess.run([sys.executable, "-m", "edge_app.cli", *args], cwd=str(ROOT), capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert "Traceback" not in r.stderr + r.stdout and "Fix:" in r.stderr + r.stdout, (args, r.stderr)
