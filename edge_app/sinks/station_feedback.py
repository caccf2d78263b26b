"""The station feedback sink: word back from the receiving station to the crew (receipts, reviews).

Field systems are known for leaving crews unsure whether their ECG even arrived. The station answers every
stored message with a receipt (`<prefix>/<device_id>/receipt`, ecg.receipt/1) and later sends a
clinician's review (`.../review`, ecg.review/1). This module is the one place the device handles them:

- subscribes to both topics on the uplink (handlers run on the uplink's inbound thread, never paho's);
- validates each message against its schema, checks it is addressed to this device and names a result this
  device holds; anything else is logged and ignored (never raised: a bad message must not stop the link);
- stores it idempotently (FeedbackStore: receipts by msg_id, reviews by review_id), writes an audit entry
  (`result_received`, `review_received`) for what is new, and tells the bedside page (LiveHub.push_feedback);
- answers the page's question for any result: received by whom and when, or sent / queued (N in the
  outbox) / kept on this device only, plus the reviews (`feedback(result_id)`, the hub's feedback_lookup);
- on the dispatcher it follows new results (ResultReady) and, every status tick, re-sends their delivery
  state to the page while they wait for a receipt, so "not yet delivered, N queued" counts down live.

A triage aid, not a diagnosis: a review is the hospital's word, shown with its reviewer and time.
"""
from __future__ import annotations

import collections
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from edge_app.messages import ResultReady, StatusTick, TelemetryUpdate
from edge_app.storage.feedback_store import FeedbackStore
from edge_app.uplink import schemas

if TYPE_CHECKING:
    from edge_app.dispatcher import Dispatcher

log = logging.getLogger(__name__)
#: A receipt or review is a few hundred bytes; anything far larger is not one.
MAX_PAYLOAD_BYTES = 16 * 1024
MAX_MSG_IDS = 100
#: Results whose delivery the page follows live (the newest ones; older ones are looked up on demand).
WATCHED = 20


class Results(Protocol):
    """What this module needs of the result store (edge_app.storage.ResultStore)."""

    def get(self, rid: str) -> dict[str, Any] | None: ...
    def ids(self) -> list[str]: ...
    def mark_delivered_msg(self, msg_id: str) -> str | None: ...


class StationFeedbackSink:
    """Receipts and reviews -> feedback store, audit log, bedside page. Thread-safe; never raises on input.

    uplink None (MQTT off): nothing arrives, and the page says results are kept on this device only."""

    def __init__(self, state_dir: str | Path, results: Results, audit: Any | None = None,
                 uplink: Any | None = None, hub: Any | None = None):
        self.store = FeedbackStore(state_dir)
        self.store.prune(set(results.ids()))          # results that retention deleted take their word along
        self.results = results
        self.audit = audit
        self.uplink = uplink
        self.hub = hub
        self.device_id = uplink.device_id if uplink is not None else None
        #: ignored: malformed / foreign / unknown result; unmatched: a well-formed receipt for messages this
        #: device does not map to a result (its alarms and events, or results retention deleted): not an error
        self.counters = {"receipts": 0, "reviews": 0, "ignored": 0, "repeats": 0, "unmatched": 0}
        self._watch: collections.OrderedDict[str, str] = collections.OrderedDict()   # result id -> last state
        self.bus: Dispatcher | None = None
        if uplink is not None:
            uplink.subscribe(uplink.topics.receipt, self.on_receipt)
            uplink.subscribe(uplink.topics.review, self.on_review)
        if hub is not None:
            hub.feedback_lookup = self.feedback
            last = self.store.latest_review()
            if last is not None:                          # the newest word survives a restart of the daemon
                self._push(last["result_id"])

    def subscribe(self, bus: Dispatcher) -> None:
        self.bus = bus
        if self.uplink is not None:
            bus.subscribe(ResultReady, self.on_result)
            bus.subscribe(StatusTick, self.on_status)

    def on_result(self, msg: ResultReady) -> None:
        self._watch[str(msg.result["id"])] = ""
        while len(self._watch) > WATCHED:
            self._watch.popitem(last=False)

    def on_status(self, msg: StatusTick) -> None:
        """Every 5 s: tell the page how far each watched result got (queued N -> sent -> received), and the
        fleet (telemetry) how many receipts and reviews arrived and how many messages were ignored."""
        self.bus.publish(TelemetryUpdate({"station_feedback": dict(self.counters)}, now=False))
        if self.hub is None:
            return
        for rid in list(self._watch):
            fb = self.feedback(rid)
            d = fb["delivery"]
            key = f"{d['state']}/{d.get('queued')}"
            if key != self._watch.get(rid):
                self._watch[rid] = key
                self._push(rid, fb)
            if d["state"] == "received":
                self._watch.pop(rid, None)

    # ---- inbound ----------------------------------------------------------------------------------
    def _parse(self, kind: str, topic: str, payload: bytes) -> dict[str, Any] | None:
        if len(payload) > MAX_PAYLOAD_BYTES:
            return self._ignore(kind, topic, f"{len(payload)} bytes is too large")
        try:
            doc = json.loads(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            return self._ignore(kind, topic, f"not JSON ({exc})")
        try:   # the device's own validator (jsonschema is a development dependency; ~10x slower per message)
            schemas.validate(doc, kind, use_jsonschema=False)
        except schemas.SchemaError as exc:
            return self._ignore(kind, topic, f"does not match ecg.{kind}/1: {exc}")
        if doc["device_id"] != self.device_id:
            return self._ignore(kind, topic, f"addressed to device {doc['device_id']!r}, not {self.device_id!r}")
        return doc

    def _ignore(self, kind: str, topic: str, why: str) -> None:
        self.counters["ignored"] += 1
        log.warning("ignored a %s on %s: %s", kind, topic, why)
        return None

    def on_receipt(self, topic: str, payload: bytes) -> None:
        """ecg.receipt/1: mark the result's messages as stored by the station."""
        doc = self._parse("receipt", topic, payload)
        if doc is None:
            return
        ids = doc["msg_ids"]
        if not 1 <= len(ids) <= MAX_MSG_IDS:
            self._ignore("receipt", topic, f"{len(ids)} msg_ids (expected 1..{MAX_MSG_IDS})")
            return
        if len(self.store.has_receipt(ids)) == len(set(ids)):          # a re-send (on every reconnect): no writes
            self.counters["repeats"] += 1
            return
        kinds = doc.get("kinds") or []
        held = bool(doc["result_id"]) and self.results.get(doc["result_id"]) is not None
        known: dict[str, tuple[str, str | None]] = {}
        for i, mid in enumerate(ids):
            rid = self.results.mark_delivered_msg(mid)       # the result's own message: a receipt implies delivery
            hit = (rid, "triage") if rid else None
            if hit is None and held:                          # its strip (or another part of it)
                hit = (doc["result_id"], kinds[i] if i < len(kinds) else None)
            if hit is None:
                continue
            if doc["result_id"] and hit[0] != doc["result_id"]:
                log.warning("receipt %s: message %s belongs to result %s, not %s; skipped", doc["receipt_id"][:8],
                            mid[:8], hit[0], doc["result_id"])
                continue
            known[mid] = hit
        if not known:
            self.counters["unmatched"] += 1
            log.debug("receipt %s: none of its messages maps to a result held here (alarm/event receipts do not)",
                      doc["receipt_id"][:8])
            return
        new = self.store.add_receipt(doc, known)
        if not new:
            self.counters["repeats"] += 1
            return
        self.counters["receipts"] += 1
        for rid in sorted({known[m][0] for m in new}):
            mids = [m for m in new if known[m][0] == rid]
            if self.audit is not None:
                self.audit.append("result_received", {"result_id": rid, "station": doc["station"],
                                                      "stored_at": doc["stored_at"], "msg_ids": mids,
                                                      "kinds": [known[m][1] for m in mids],
                                                      "receipt_id": doc["receipt_id"]})
            log.info("result %s received by %s at %s", rid[:8], doc["station"], doc["stored_at"])
            self._push(rid)

    def on_review(self, topic: str, payload: bytes) -> None:
        """ecg.review/1: store a clinician's review with its result, audit it, show it."""
        doc = self._parse("review", topic, payload)
        if doc is None:
            return
        rid = doc["result_id"]
        if self.results.get(rid) is None:
            self._ignore("review", topic, f"result {rid!r} is not held on this device")
            return
        if not self.store.add_review(doc):
            self.counters["repeats"] += 1
            return
        self.counters["reviews"] += 1
        if self.audit is not None:
            self.audit.append("review_received", {k: doc.get(k) for k in (
                "review_id", "result_id", "verdict", "text", "reviewer", "reviewed_at", "station")})
        log.warning("REVIEW of result %s by %s (%s): %s%s", rid[:8], doc["reviewer"], doc["station"],
                    doc["verdict"], f" - {doc['text']}" if doc.get("text") else "")
        self._push(rid)

    def _push(self, rid: str, fb: dict[str, Any] | None = None) -> None:
        if self.hub is None:
            return
        try:
            self.hub.push_feedback(rid, fb if fb is not None else self.feedback(rid))
        except Exception:  # noqa: BLE001 - the page is a view; the word back is already stored
            log.exception("could not show feedback of %s on the bedside page", rid)

    # ---- the page's question ---------------------------------------------------------------------
    def feedback(self, result_id: str) -> dict[str, Any]:
        """Delivery state and reviews of one result, for the bedside page and the display API.

        delivery.state: "received" (station, stored_at, strip_received) | "sent" (the broker acknowledged it,
        no receipt yet) | "queued" (queued: messages waiting in the outbox) | "local_only" (no uplink)."""
        receipts = self.store.receipts(result_id)
        reviews = self.store.reviews(result_id)
        stored = self.results.get(result_id)
        if receipts:
            first = next((r for r in receipts if r["kind"] == "triage"), receipts[0])
            delivery: dict[str, Any] = {"state": "received", "station": first["station"],
                                        "stored_at": first["stored_at"],
                                        "strip_received": any(r["kind"] == "strip" for r in receipts)}
        elif self.uplink is None:
            delivery = {"state": "local_only"}
        else:
            if stored is not None and stored.get("delivered"):
                delivery = {"state": "sent"}
            else:
                delivery = {"state": "queued", "queued": _outbox_depth(self.uplink)}
        return {"result_id": result_id, "result_time": stored.get("time") if stored else None,
                "delivery": delivery, "review": reviews[-1] if reviews else None, "reviews": reviews}


def _outbox_depth(uplink: Any) -> int | None:
    try:
        return int(uplink.outbox.depth())
    except Exception:  # noqa: BLE001 - closed during shutdown
        return None
