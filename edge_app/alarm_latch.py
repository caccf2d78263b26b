"""The alarm latch: one alarm per persisting condition, with hysteresis, persistence and restore.

Why (IEC 60601-1-8 spirit): a condition that persists over consecutive windows must keep ONE alarm id,
not raise a new alarm every stride. Each alarm is audited and published when it is raised, when it is
acknowledged and when its condition ends.

- Hysteresis: a window-level clinical condition (WINDOW_CONDITIONS) ends after CLEAR_AFTER_WINDOWS
  consecutive windows without it, so a probability hovering at its threshold does not flap;
  `signal_unusable` ends at the first interpretable window. Other conditions (technical ones, and those
  a stream-level analyser raises) end only when their owner calls `clear_condition`.
- Persistence: the active alarms are written atomically to <state_dir>/alarms.json on every change and
  refreshed every ALARM_REFRESH_S while any is active (so the file's age is how long we were down).
- Restore: the next run continues alarms saved less than ALARM_RESTORE_MAX_AGE_S ago (same id, same
  acknowledgement). Older state, or a clock that went backwards, is not carried over (a new patient may be
  attached by then): those alarms are audited and published as cleared.

Thread-safe: the data path raises and clears, the control socket / MQTT / page acknowledge.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from edge_app.errors import StateConflict
from edge_app.messages import AlarmChanged
from edge_app.results import Alarm, new_id, utc_now_iso
from edge_app.storage.atomic import atomic_write_bytes

if TYPE_CHECKING:
    from edge_app.storage import AuditLog

log = logging.getLogger(__name__)
WINDOW_CONDITIONS = ("suspected_mi", "abnormal_ecg", "extreme_heart_rate", "signal_unusable")
CLEAR_AFTER_WINDOWS = 2
ALARM_RESTORE_MAX_AGE_S = 600.0  # active alarms saved longer ago than this are not continued after a restart
ALARM_REFRESH_S = 60.0           # re-save alarms.json this often while alarms are active (its age = downtime)
RECENT_KEPT = 500                # recent alarms kept in memory (acknowledgeable by id)


class AlarmLatch:
    """Latches alarm conditions into alarms; publishes AlarmChanged through `publish`."""

    def __init__(self, path: str | Path, device_id: str, run_id: str, audit: AuditLog,
                 publish: Callable[[AlarmChanged], None], clock: Callable[[], float] = time.time):
        self.path = Path(path)
        self.device_id = device_id
        self.run_id = run_id
        self.audit = audit
        self.publish = publish
        self.clock = clock
        self._lock = threading.RLock()
        self._file_lock = threading.Lock()
        self._recent: OrderedDict[str, Alarm] = OrderedDict()   # alarm id -> alarm, oldest first
        self._active: dict[str, str] = {}                        # condition code -> active alarm id
        self._absent: dict[str, int] = {}                        # code -> consecutive windows without it
        self._saved_at = 0.0                                     # monotonic time of the last save

    # --------------------------------------------------------------------------------- conditions
    def raise_condition(self, code: str, kind: str, priority: str, message: str,
                        result_id: str | None = None) -> Alarm:
        """The condition `code` is present: return its active alarm (message refreshed) or raise a new one."""
        with self._lock:
            active_id = self._active.get(code)
            if active_id is not None and active_id in self._recent:
                alarm = self._recent[active_id]
                alarm.message, alarm.result_id = message, result_id or alarm.result_id
                return alarm
            alarm = Alarm(id=new_id(), kind=kind, priority=priority, code=code, message=message,
                          time=utc_now_iso(), device_id=self.device_id, result_id=result_id)
            self._recent[alarm.id] = alarm
            while len(self._recent) > RECENT_KEPT:
                self._recent.popitem(last=False)
            self._active[code] = alarm.id
        self.save()
        self.audit.append("alarm", alarm.to_dict() | {"state": "raised"})
        log.warning("ALARM %s (%s, %s priority): %s", code, kind, priority, message)
        self.publish(AlarmChanged(alarm, "raised"))
        return alarm

    def clear_condition(self, code: str) -> None:
        """The condition `code` has ended: its alarm (if any) is cleared."""
        with self._lock:
            active_id = self._active.pop(code, None)
            self._absent.pop(code, None)
            alarm = self._recent.get(active_id) if active_id else None
        if alarm is None:
            return
        self.save()
        self.audit.append("alarm_cleared", {"id": alarm.id, "code": code})
        log.info("alarm condition %s ended", code)
        self.publish(AlarmChanged(alarm, "cleared"))

    def observe_window(self, window_alarms: list[Alarm], result_id: str) -> list[Alarm]:
        """Latch the alarm conditions one analysed window found; return them as latched alarms (their ids
        are what the result carries). Window conditions absent from it count towards their end."""
        present = {a.code for a in window_alarms}
        latched = [self.raise_condition(a.code, a.kind, a.priority, a.message, result_id=result_id)
                   for a in window_alarms]
        with self._lock:
            ending = []
            for code in list(self._active):
                if code in present:
                    self._absent.pop(code, None)
                elif code in WINDOW_CONDITIONS:
                    self._absent[code] = self._absent.get(code, 0) + 1
                    if self._absent[code] >= CLEAR_AFTER_WINDOWS or code == "signal_unusable":
                        ending.append(code)
        for code in ending:
            self.clear_condition(code)
        return latched

    def acknowledge(self, alarm_id: str, by: str) -> Alarm:
        """Acknowledge an alarm. KeyError for an unknown id; StateConflict when it is already acknowledged
        (the first acknowledgement stands, and the second caller learns by whom)."""
        with self._lock:
            alarm = self._recent.get(alarm_id)
            if alarm is None:
                raise KeyError(f"unknown alarm id {alarm_id!r}")
            if alarm.acknowledged_by is not None:
                raise StateConflict(f"alarm {alarm_id!r} is already acknowledged (by {alarm.acknowledged_by} "
                                    f"at {alarm.acknowledged_at})")
            alarm.acknowledged_by, alarm.acknowledged_at = str(by or "unknown"), utc_now_iso()
            still_active = alarm.id in self._active.values()
        self.save()
        self.audit.append("alarm_ack", {"id": alarm.id, "code": alarm.code, "by": alarm.acknowledged_by})
        self.publish(AlarmChanged(alarm, "acknowledged" if still_active else "cleared"))
        return alarm

    # ------------------------------------------------------------------------------------- views
    def active_codes(self) -> list[str]:
        with self._lock:
            return sorted(self._active)

    def active_alarms(self) -> list[dict]:
        with self._lock:
            return [self._recent[a].to_dict() for a in self._active.values() if a in self._recent]

    def recent(self) -> list[dict]:
        """Recent alarms (oldest first), each with whether its condition is still active."""
        with self._lock:
            active = set(self._active.values())
            return [a.to_dict() | {"active": a.id in active} for a in self._recent.values()]

    # -------------------------------------------------------------------------------- persistence
    def save(self) -> None:
        """Persist the active alarms atomically (never raises: an unwritable file costs continuity only)."""
        with self._file_lock:
            doc = {"saved_at": utc_now_iso(), "saved_at_epoch": self.clock(), "run_id": self.run_id,
                   "active": self.active_alarms()}
            try:
                atomic_write_bytes(self.path, json.dumps(doc, indent=1).encode())
                self._saved_at = time.monotonic()
            except OSError as e:
                log.error("could not persist alarm state to %s: %s", self.path, e)

    def refresh_if_due(self) -> None:
        """Re-save while alarms are active, so the file's age tells the next run how long we were down."""
        with self._lock:
            any_active = bool(self._active)
        if any_active and time.monotonic() - self._saved_at > ALARM_REFRESH_S:
            self.save()

    def restore(self, max_age_s: float = ALARM_RESTORE_MAX_AGE_S) -> None:
        """Continue the alarms that were active when the previous run ended (if saved recently enough)."""
        try:
            doc = json.loads(self.path.read_text())
            saved = list(doc.get("active") or [])
            age = self.clock() - float(doc.get("saved_at_epoch", 0.0))
        except FileNotFoundError:
            return
        except (OSError, ValueError, TypeError, AttributeError) as e:
            log.error("ignoring unreadable %s (%s): alarms start afresh", self.path, e)
            doc, saved, age = {}, [], 0.0
        names = {f.name for f in dataclasses.fields(Alarm)}
        for entry in saved:
            try:
                alarm = Alarm(**{k: v for k, v in entry.items() if k in names})
            except (TypeError, AttributeError):
                log.error("ignoring a malformed saved alarm: %r", entry)
                continue
            if not 0.0 <= age <= max_age_s:
                # Too old (or the clock went backwards): do not carry an acknowledgement over to what may be
                # another patient. Close it; a condition still present raises a new alarm.
                self.audit.append("alarm_cleared", {"id": alarm.id, "code": alarm.code,
                                                    "reason": f"not continued after restart (saved {age:.0f} s ago)"})
                self.publish(AlarmChanged(alarm, "cleared"))
                continue
            with self._lock:
                self._recent[alarm.id] = alarm
                self._active[alarm.code] = alarm.id
            self.audit.append("alarm_restored", {"id": alarm.id, "code": alarm.code,
                                                 "acknowledged_by": alarm.acknowledged_by,
                                                 "from_run_id": doc.get("run_id"), "saved_s_ago": round(age, 1)})
            log.warning("alarm %s (%s) continues from the previous run%s", alarm.code, alarm.id[:8],
                        f", acknowledged by {alarm.acknowledged_by}" if alarm.acknowledged_by else "")
            self.publish(AlarmChanged(alarm, "acknowledged" if alarm.acknowledged_by else "raised", restored=True))
        self.save()
