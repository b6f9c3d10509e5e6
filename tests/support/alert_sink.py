"""A local HTTP server standing in for PagerDuty, Slack and a heartbeat service (external SaaS):
records every notification Alertmanager posts to it."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Notification:
    receiver: str  # first path segment: pagerduty, slack, heartbeat
    body: dict

    @property
    def text(self) -> str:
        return json.dumps(self.body)


class AlertSink:
    def __init__(self):
        self.notifications: list[Notification] = []
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {"raw": raw.decode(errors="replace")}
                with sink._lock:
                    sink.notifications.append(Notification(self.path.strip("/").split("/")[0], body))
                # PagerDuty's Events API answers 202; Slack and webhooks 200 - both are success.
                self.send_response(202 if self.path.startswith("/pagerduty") else 200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def received(self, receiver: str, *needles: str) -> list[Notification]:
        with self._lock:
            return [n for n in self.notifications if n.receiver == receiver and all(x in n.text for x in needles)]

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
