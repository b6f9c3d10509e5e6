"""A local HTTP server standing in for the code host (an external SaaS), recording every call.

It records every action call (`calls`), every state read (`reads`) and every effect: the state
change an action made on the pull request (merged, closed, changes requested) or the escalation
it recorded (`effects`; `performed` lists the calls that had one).

With `honour_idempotency_keys` (the default) it treats `Idempotency-Key` as payment APIs do: the
first call with a key is performed, a repeat gets the first answer again without being performed,
and a repeat while the first is still running gets 409. Without it, it behaves like a host that
ignores the header (GitHub's merge API does): every accepted call is performed, so a repeated
request-changes or escalation is a second effect, and so is a repeated merge or close (a real host
might refuse it or record it twice; either way the service should not have sent it).

The state can be read as a service would, GitHub-like:
`GET /pulls/{n}` -> {"number", "state": "open"|"closed", "merged", "changes_requested_by_decision"}
and `GET /escalations?decision_id=ID` -> the escalations recorded for that decision.
"""

import json
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

PULL_ACTION = re.compile(r"^/pulls/(\d+)/(merge|close|request_changes)$")
PULL = re.compile(r"^/pulls/(\d+)$")


@dataclass
class Call:
    method: str
    path: str
    headers: dict[str, str]
    body: dict


@dataclass
class Effect:
    kind: str  # "merge", "close", "request_changes" or "escalate": the action that had it
    decision_id: str | None
    pr_number: int | None  # None for an escalation
    call: Call


@dataclass
class PullRequest:
    number: int
    state: str = "open"
    merged: bool = False
    changes_requested_by_decision: list[str] = field(default_factory=list)

    def as_json(self) -> dict:
        return {"number": self.number, "state": self.state, "merged": self.merged,
                "changes_requested_by_decision": list(self.changes_requested_by_decision)}


@dataclass
class CodeHostServer:
    fail_next: int = 0  # answer 502 to this many action calls before succeeding
    host: str = "127.0.0.1"  # listen address (the compose tests: the Docker bridge's gateway)
    honour_idempotency_keys: bool = True
    # Seconds between performing an action and answering: a client that dies or times out in
    # between has lost the answer of an action that was done.
    answer_delay_seconds: float = 0.0
    calls: list[Call] = field(default_factory=list)  # every action call received
    reads: list[Call] = field(default_factory=list)  # every state read received
    effects: list[Effect] = field(default_factory=list)  # every state change, in order
    pulls: dict[int, PullRequest] = field(default_factory=dict)  # those that were acted on
    failing_until: float = 0.0  # time.monotonic() before which every call and read is answered 503
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
            def do_GET(self):  # noqa: N802 - http.server's naming
                call = Call("GET", self.path, {k.lower(): v for k, v in self.headers.items()}, {})
                url = urlsplit(self.path)
                with lock:
                    server.reads.append(call)
                    if time.monotonic() < server.failing_until:
                        return self._answer(503, {"error": "unavailable"})
                    if match := PULL.match(url.path):
                        return self._answer(200, server._pull(int(match[1])).as_json())
                    if url.path == "/escalations":
                        wanted = parse_qs(url.query).get("decision_id", [None])[0]
                        found = [{"decision_id": e.decision_id, "apv_code": e.call.body.get("apv_code")}
                                 for e in server.effects if e.kind == "escalate" and e.decision_id == wanted]
                        return self._answer(200, found)
                return self._answer(404, {"error": "not found"})

            def do_POST(self):  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                call = Call("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                key = call.headers.get("idempotency-key") if server.honour_idempotency_keys else None
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
                    if not server._take_effect(call):
                        return self._answer(404, {"error": "not found"})
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

            def _answer(self, status: int, body: dict | list) -> None:
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

    def _pull(self, number: int) -> PullRequest:
        """Every pull request exists, open until an action closes it."""
        return self.pulls.setdefault(number, PullRequest(number))

    def _take_effect(self, call: Call) -> bool:
        """Change the state as the call asks (under the lock); False if the path is no action."""
        decision_id = call.body.get("decision_id")
        if call.path == "/escalations":
            self.effects.append(Effect("escalate", decision_id, None, call))
            return True
        match = PULL_ACTION.match(call.path)
        if not match:
            return False
        pull, kind = self._pull(int(match[1])), match[2]
        if kind == "merge":
            pull.state, pull.merged = "closed", True
        elif kind == "close":
            pull.state = "closed"
        else:
            pull.changes_requested_by_decision.append(decision_id)
        self.effects.append(Effect(kind, decision_id, pull.number, call))
        return True

    @property
    def performed(self) -> list[Call]:
        """The action calls that took effect, one per effect."""
        return [effect.call for effect in self.effects]

    def hold_answers(self) -> None:
        """Perform actions but keep their answers back until release_answers(): a caller killed
        meanwhile has lost the answer of an action that was done."""
        self._release.clear()

    def release_answers(self) -> None:
        self._release.set()

    def fail_for(self, seconds: float) -> None:
        """Answer every call and read 503 for this long from now."""
        self.failing_until = time.monotonic() + seconds

    def performed_per_key(self) -> dict[str, int]:
        return dict(Counter(effect.call.headers.get("idempotency-key", "") for effect in self.effects))

    def effects_per_decision(self) -> Counter:
        return Counter(effect.decision_id for effect in self.effects)

    def calls_per_decision(self) -> Counter:
        return Counter(call.body.get("decision_id") for call in self.calls)

    def close(self):
        self._release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
