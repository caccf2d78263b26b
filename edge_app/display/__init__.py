"""Bedside display: a local page + JSON API for the crew, working with no network at all.

A triage aid, not a diagnosis: the page and every PNG say so.

Why this shape: the daemon must never block on a browser, and the display must never reach into the
daemon's internals. So the daemon PUSHES what it already has into a thread-safe in-memory
`LiveHub`; a stdlib `DisplayServer` (ThreadingHTTPServer, no web framework, every asset shipped in
`edge_app/display/static/`) serves the page and API from the hub. Writes from the page (patient
context, alarm acknowledgement) go through the hub's `commands` (the device's command router,
edge_app/command_router.py, transport "http"), so they are validated, audited and visible over MQTT
exactly like fleet-side writes.

Wiring (daemon side)::

    from edge_app.display import LiveHub, DisplayServer

    hub = LiveHub(commands=CommandRouter(operations, "http"))   # None: the page refuses writes (503)
    server = DisplayServer(hub, host="127.0.0.1", port=8080)
    server.start()                                    # background threads; returns at once
    ...
    hub.push_block(block)                             # firmware_bridge.samples.SampleBlock (leads + lead-off bits)
    #   or hub.push_samples(first_index, fs, leads_uv (n, 12) uV, lead_off=(n, 9) bool | None)
    hub.push_quality({"verdict": "ok"|"noisy"|"unusable", "reasons": [...],
                      "electrodes_off": ["LA", ...], "noisy_leads": ["V3", ...], "leads": {...}})
    hub.push_result(result.to_dict(), strip_uv=window_uv, strip_fs=fs)   # strip optional, see below
    hub.push_alarm({"id": "...", "priority": "high"|"medium"|"low", "kind": "clinical"|"technical",
                    "message": "...", "result_id": "...", "acknowledged": False})
    hub.set_status({...})                             # anything JSON-able; shown on /api/status
    hub.set_patient_view({"age": 63, "sex": "male"})  # current patient context, if changed elsewhere
    ...
    server.stop()

The daemon (edge_app/daemon.py, `[display] enabled = true`) does this through edge_app/sinks/display.py,
which turns the dispatcher's messages (blocks, results, alarm changes, status, patient) into these pushes.

Result dicts (TriageResult.to_dict()) are shown as they are; the page reads these keys when present:
``id``, ``time`` (ISO-8601 or epoch s), ``triage`` {``level``/``label``, ``priority``, ``message``} or
top-level ``priority``/``level``/``label``, ``probabilities`` {class: p}, ``quality`` {``verdict``,
``reasons``, ``electrodes_off``}, ``explanation`` {``class``, ``leads``: [lead names], ``seconds``:
[[start, end], ...] or [start, end], ``cam``: {class: [weights over the window]}}, ``heart_rate``
(bpm), ``patient`` {``age``, ``sex``}, ``model`` / ``model_version``. Raw strip for the result detail
and PNG: pass ``strip_uv`` ((n, 12) microvolts, LEADS order) + ``strip_fs`` to push_result, or set
``hub.strip_lookup = callable(result_id) -> (fs, array) | None`` (e.g. the daemon's result store),
and ``hub.result_lookup = callable(result_id) -> dict | None`` for results older than the in-memory
history, and ``hub.history_lookup = callable(n) -> [newest stored results]`` (ResultStore.latest) so
the banner and history survive a daemon restart.

HTTP API (documented in docs/display.md): GET /, /static/*, /api/status, /api/latest,
/api/results?limit=, /api/results/<id>, /api/results/<id>.png, /api/strip?since=, /api/live (SSE),
/api/alarms, GET/POST/DELETE /api/patient, POST /api/alarms/<id>/ack. Bad input -> 4xx JSON
{"error": ...}, state unchanged.
"""
from __future__ import annotations

from edge_app.display.hub import LiveHub
from edge_app.display.server import DisplayServer

__all__ = ["LiveHub", "DisplayServer"]
