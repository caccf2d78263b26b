"""The receiving end: ingest of every device's results and strips, the clinicians' and fleet admins' web app,
and the fleet admin tooling (`ecg-fleet`). A triage aid, not a diagnosis.

Arrows point one way: this package may import edge_app's shared message schemas and codecs
(edge_app.uplink.schemas, edge_app.uplink.strip_codec, edge_app.uplink.topics); the device never imports it.

    cloud_dashboard.config       CloudConfig.load(path) -- the one validated TOML
    cloud_dashboard.db           models (SQLAlchemy 2), engine (SQLite WAL / PostgreSQL), Alembic migrations
    cloud_dashboard.ingest       MQTT 5 shared-subscription workers: validate, store by msg_id, receipts
    cloud_dashboard.web          FastAPI app factory create_app(config)
    cloud_dashboard.testing      run_stack(...) -- ingest + uvicorn on a free port for tests/benchmarks
    cloud_dashboard.cli          `ecg-cloud serve|ingest|db|user|token|demo`
    cloud_dashboard.fleet_cli    `ecg-fleet devices|watch|cmd|keygen|sign|rollout`
"""
__version__ = "0.1.0"
NOTICE = "Triage aid, not a diagnosis. A clinician must read the ECG."
