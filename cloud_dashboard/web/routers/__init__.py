"""Routers per resource: auth, results, devices, live (SSE), admin, pages."""
