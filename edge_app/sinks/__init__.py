"""Sinks: the subscribers that carry the daemon's published messages somewhere.

Each sink is one module with one class and a `subscribe(dispatcher)` method that says which messages
(edge_app.messages) it takes. The daemon (edge_app/daemon.py, `_assemble_sinks`) subscribes the configured
ones, in this order, which is the order each message reaches them:

    record.RecordSink    store the result and its strip, audit it (always)
    uplink.UplinkSink    queue results, alarms and events on the MQTT outbox; birth; telemetry ([mqtt])
    strip_upload.StripSink   queue each result's 12-lead strip right after it (ecg.strip/1; mqtt.strips)
    display.DisplaySink  push blocks, results, alarms, status, patient into the bedside page ([display])
    station_feedback.StationFeedbackSink   receipts and reviews from the receiving station (inbound MQTT)
                         -> feedback store, audit, bedside page (always; "kept on this device" without MQTT)

Adding a sink = one module here with such a class + one line in `_assemble_sinks`
(tests/test_daemon_dispatch.py shows it with a JSON-lines sink).
"""
