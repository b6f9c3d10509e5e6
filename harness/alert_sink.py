"""A local HTTP server standing in for PagerDuty, Slack and a heartbeat service (external SaaS):
records every notification Alertmanager posts to it."""

from __future__ import annotations

import json
import socketserver
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Notification:
    receiver: str  # first path segment: pagerduty, slack, heartbeat
    body: dict
    at: float = field(default_factory=time.time)  # when it arrived

    @property
    def text(self) -> str:
        return json.dumps(self.body)


class AlertSink:
    """host: the address to listen on (loopback; the compose tests give the Docker bridge's
    gateway, the host's address that containers reach)."""

    def __init__(self, host: str = "127.0.0.1"):
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

        self._httpd = ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self._httpd.server_address[1]}"
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def received(self, receiver: str, *needles: str) -> list[Notification]:
        with self._lock:
            return [n for n in self.notifications if n.receiver == receiver and all(x in n.text for x in needles)]

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


class SmtpSink:
    """A minimal SMTP server standing in for the mail relay: accepts every message (no AUTH, no
    STARTTLS offered) and keeps its raw text."""

    def __init__(self, host: str = "127.0.0.1"):
        self.messages: list[str] = []
        sink = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                self.wfile.write(b"220 smtp-sink ESMTP\r\n")
                while line := self.rfile.readline():
                    verb = line.decode(errors="replace").strip().split(" ")[0].upper()
                    if verb in ("EHLO", "HELO"):
                        self.wfile.write(b"250 smtp-sink\r\n")
                    elif verb == "DATA":
                        self.wfile.write(b"354 end with <CRLF>.<CRLF>\r\n")
                        lines = []
                        while (data := self.rfile.readline()) and data not in (b".\r\n", b".\n"):
                            lines.append(data.decode(errors="replace"))
                        sink.messages.append("".join(lines))
                        self.wfile.write(b"250 queued\r\n")
                    elif verb == "QUIT":
                        self.wfile.write(b"221 bye\r\n")
                        return
                    else:  # MAIL, RCPT, RSET, NOOP
                        self.wfile.write(b"250 ok\r\n")

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server((host, 0), Handler)
        self.address = f"{host}:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def received(self, *needles: str) -> list[str]:
        return [m for m in list(self.messages) if all(x in m for x in needles)]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
