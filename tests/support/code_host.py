"""A local HTTP server standing in for the code host (an external SaaS), recording calls."""

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Call:
    method: str
    path: str
    headers: dict[str, str]
    body: dict


@dataclass
class CodeHostServer:
    fail_next: int = 0  # answer 502 to this many calls before succeeding
    host: str = "127.0.0.1"  # listen address (the compose tests: the Docker bridge's gateway)
    calls: list[Call] = field(default_factory=list)

    def __post_init__(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                server.calls.append(Call("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                status = 200
                if server.fail_next > 0:
                    server.fail_next -= 1
                    status = 502
                payload = json.dumps({"ok": status == 200}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self._httpd = ThreadingHTTPServer((self.host, 0), Handler)
        self.url = f"http://{self.host}:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self):
        self._httpd.shutdown()
        self._httpd.server_close()
