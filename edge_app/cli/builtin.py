"""The real PTB-XL records shipped with the package, addressable by name (`ecg-edge demo --record 00181_hr`)."""
from __future__ import annotations

from pathlib import Path

from firmware_bridge.records import RecordError, record_base

RECORDS_DIR = Path(__file__).resolve().parents[1] / "data" / "records"
DEFAULT_DEMO_RECORD = RECORDS_DIR / "00181_hr"


def builtin_names() -> list[str]:
    """Names of the built-in records ('00181_hr', '00181_lr', ...), sorted."""
    return sorted(p.stem for p in RECORDS_DIR.glob("*.hea"))


def resolve_record(name_or_path: str | Path) -> Path:
    """A record path (with or without .hea/.dat) or a built-in record name -> record path without extension.

    A path that exists wins; otherwise a built-in name is looked up; otherwise RecordError lists the
    built-in names, so a typo is answered with the valid choices.
    """
    base = record_base(name_or_path)
    if Path(str(base) + ".hea").is_file() or base.is_dir():
        return base                               # a directory: the reader says which records are in it
    if base.name in builtin_names() and len(base.parts) == 1:
        return RECORDS_DIR / base.name
    raise RecordError(f"{name_or_path}: no WFDB record there ({base}.hea not found) and no built-in record of "
                      f"that name; give a record path without extension or one of the built-in records: "
                      f"{', '.join(builtin_names())}")
