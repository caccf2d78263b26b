"""Sinks: the subscribers that carry the daemon's published messages (edge_app/messages.py) somewhere.

Each sink is one module with one class and a `subscribe(dispatcher)` method that says which messages it
takes. The daemon (edge_app/daemon.py, `Daemon._assemble`) subscribes the configured ones, one line each, in
this order, which is the order each message reaches them:

    rhythm_watch.RhythmWatch          every block -> live rhythm alarms; the rhythm label onto each result
    record.RecordSink                 store the result and its strip, audit it (always)
    uplink.UplinkSink                 results, alarms, events, telemetry, birth, config/reported -> MQTT ([mqtt])
    strip_upload.StripSink            each result's 12-lead strip, right after it ([mqtt], mqtt.strips)
    display.DisplaySink               blocks, results, alarms, status, patient -> the bedside page ([display])
    station_feedback.StationFeedbackSink   the station's receipts and reviews -> audit, page

(the run ledger, edge_app/run_ledger.py, and telemetry, edge_app/telemetry.py, subscribe the same way: the
ledger first, telemetry last so a result's latency covers every sink.)

Adding a sink = one module here with such a class + one line in `Daemon._assemble`
(tests/test_daemon_dispatch.py shows it with a JSON-lines sink; docs/daemon.md has the rules).
"""
