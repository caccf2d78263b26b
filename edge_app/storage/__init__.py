"""Local persistence: the bounded result store (JSON + raw WFDB strip) and the hash-chained audit log."""
from edge_app.storage.audit import AuditLog, verify_audit_log
from edge_app.storage.result_store import ResultStore, StoredResult

__all__ = ["AuditLog", "verify_audit_log", "ResultStore", "StoredResult"]
