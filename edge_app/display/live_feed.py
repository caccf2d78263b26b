"""The bedside page's live feed: GET /api/live as Server-Sent Events.

Why SSE: one long-lived response the browser reconnects by itself, no WebSocket library on the device. The
feed starts with 'hello' (status + the buffered live strip), then sends 'samples', 'result', 'quality',
'alarm', 'patient', 'status', 'electrodes', 'heart_rate', 'feedback' as they happen. A reader too slow for
the hub's bounded event log gets 'resync' (the full status) instead of a silent gap. Sample pushes are
batched to ~10 writes per second per client, whatever the block rate, to bound the daemon's CPU; live
clients are limited (connection_guard.SseSlots) so the network cannot take every slot from the kiosk.

A mixin of the display's request handler (server.py): it uses the handler's connection (wfile, headers)
and `owner` (the DisplayServer: slots, limits, stop flag).
"""
from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from edge_app.display.http_params import HttpError

if TYPE_CHECKING:
    from edge_app.display.hub import LiveHub
    from edge_app.display.server import DisplayServer

SSE_MIN_INTERVAL_S = 0.1     # at most ~10 sample pushes per second per client: bounds daemon CPU
SSE_KEEPALIVE_S = 10.0


class LiveFeed:
    owner: DisplayServer       # set by the request handler (server.py)
    hub: LiveHub

    def _sse(self, q: dict[str, list[str]]) -> None:
        """Server-Sent Events: 'hello' (status + buffered strip), then 'samples', 'result', 'quality',
        'alarm', 'patient', 'status', 'electrodes', 'heart_rate', 'feedback' as they happen."""
        owner = self.owner
        if self.command == "HEAD":
            self._send(200, b"", "text/event-stream")
            return
        addr = self.client_address[0]
        if not owner.sse_slots.enter(addr):
            raise HttpError(503, f"too many live clients (limit {owner.limits.sse_max}, "
                                 f"{owner.limits.sse_per_client} per address)")
        self.server.mark(self.request, "streaming")
        try:
            self.close_connection = True
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            hub = self.hub
            version = hub.version
            eseq = hub.event_seq
            strip = hub.live_strip(None)
            seq = strip["end"]
            self._event("hello", {"status": hub.status(), "strip": strip})
            last_write = time.monotonic()
            while not owner._stopping.is_set():
                new_version = hub.wait(version, 1.0)
                now = time.monotonic()
                if new_version == version:
                    if now - last_write > SSE_KEEPALIVE_S:
                        self.wfile.write(b": keepalive\n\n")
                        self.wfile.flush()
                        last_write = now
                    continue
                eseq, evs, lost = hub.events_since(eseq)
                if lost:
                    self._event("resync", hub.status())
                for _, kind, payload in evs:
                    self._event(kind, payload)
                strip = hub.live_strip(seq)
                if strip["data"] or strip["reset"]:
                    self._event("samples", strip)
                    seq = strip["end"]
                version = new_version
                last_write = time.monotonic()
                # Batch samples: waiting here keeps per-client cost ~10 writes/s however fast blocks arrive.
                owner._stopping.wait(SSE_MIN_INTERVAL_S)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass
        finally:
            owner.sse_slots.exit(addr)

    def _event(self, kind: str, payload: Any) -> None:
        data = json.dumps(payload, allow_nan=False, separators=(",", ":"))
        self.wfile.write(f"event: {kind}\ndata: {data}\n\n".encode())
        self.wfile.flush()
