"""A local HTTP server standing in for the code host (an external SaaS), recording calls.

It honours `Idempotency-Key` as code hosts and payment APIs do: the first call with a key is
performed, a repeat gets the first answer again without being performed, and a repeat while the
first is still running gets 409. `performed` is what the code host did, one entry per action.
"""

import json
import threading
import time
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
    # Seconds between performing an action and answering: a client that dies or times out in
    # between has lost the answer of an action that was done.
    answer_delay_seconds: float = 0.0
    calls: list[Call] = field(default_factory=list)  # every call received
    performed: list[Call] = field(default_factory=list)  # every action carried out
    failing_until: float = 0.0  # time.monotonic() before which every call is answered 503
    held: int = 0  # answers of performed actions being held back now (see hold_answers)
    replayed: int = 0  # repeats of a performed action's key, answered without performing again
    # Seconds between the bytes of an answer's body (0: all at once): a host that keeps a call
    # alive past any per-read timeout, since every byte restarts it.
    trickle_seconds: float = 0.0

    def __post_init__(self):
        server = self
        lock = threading.Lock()
        self._release = threading.Event()
        self._release.set()
        answers: dict[str, tuple[int, bytes] | None] = {}  # key -> first answer (None: running)

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                call = Call("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                key = call.headers.get("idempotency-key")
                with lock:
                    server.calls.append(call)
                    if key is not None and key in answers:
                        earlier = answers[key]
                        if earlier is None:
                            return self._answer(409, {"error": "a request with this Idempotency-Key is running"})
                        server.replayed += 1
                        return self._send(*earlier)
                    if time.monotonic() < server.failing_until:
                        return self._answer(503, {"error": "unavailable"})
                    if server.fail_next > 0:
                        server.fail_next -= 1
                        return self._answer(502, {"error": "bad gateway"})
                    server.performed.append(call)
                    if key is not None:
                        answers[key] = None
                payload = json.dumps({"ok": True, "path": self.path}).encode()
                if key is not None:
                    with lock:
                        answers[key] = (200, payload)
                if server.answer_delay_seconds:
                    time.sleep(server.answer_delay_seconds)
                if not server._release.is_set():
                    with lock:
                        server.held += 1
                    server._release.wait(30)
                    with lock:
                        server.held -= 1
                self._send(200, payload)

            def _answer(self, status: int, body: dict) -> None:
                self._send(status, json.dumps(body).encode())

            def _send(self, status: int, payload: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if not server.trickle_seconds:
                        self.wfile.write(payload)
                    for i in range(len(payload) if server.trickle_seconds else 0):
                        self.wfile.write(payload[i:i + 1])
                        self.wfile.flush()
                        time.sleep(server.trickle_seconds)
                except (BrokenPipeError, ConnectionResetError):  # the caller gave up or died
                    pass

            def log_message(self, *args):
                pass

        self._httpd = ThreadingHTTPServer((self.host, 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://{self.host}:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def hold_answers(self) -> None:
        """Perform actions but keep their answers back until release_answers(): a caller killed
        meanwhile has lost the answer of an action that was done."""
        self._release.clear()

    def release_answers(self) -> None:
        self._release.set()

    def fail_for(self, seconds: float) -> None:
        """Answer every call 503 for this long from now."""
        self.failing_until = time.monotonic() + seconds

    def performed_per_key(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for call in self.performed:
            key = call.headers.get("idempotency-key", "")
            counts[key] = counts.get(key, 0) + 1
        return counts

    def close(self):
        self._release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
