"""Ingest: MQTT 5 workers sharing one fleet (store.py decides and writes; worker.py speaks MQTT)."""
