"""A throwaway Alertmanager (the pinned binary) on a free port, with alertmanager.yml rendered
the way the native stack must render it, and a local HTTP receiver standing in for PagerDuty,
Slack and the heartbeat service.

Rendering (the same two substitutions the native stack needs, see alertmanager/alertmanager.yml):
  /etc/alertmanager/secrets/               -> a directory holding the four secret files
  https://events.pagerduty.com/v2/enqueue  -> a local receiver (tests only)
The Slack and heartbeat URLs are secrets, so the secret files themselves point those at the
local receiver."""

from __future__ import annotations

import json
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from harness.app_process import free_port
from harness.polling import wait_for

SECRETS_DIR = "/etc/alertmanager/secrets/"
PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
SECRET_FILES = ("pagerduty-routing-key", "slack-webhook-url", "smtp-password", "heartbeat-url")


def render_config(source: str, secrets_dir: Path, pagerduty_url: str | None = None) -> str:
    if SECRETS_DIR not in source:
        raise ValueError(f"alertmanager.yml no longer reads its secrets from {SECRETS_DIR}")
    text = source.replace(SECRETS_DIR, f"{secrets_dir}/")
    if pagerduty_url:
        if f"url: {PAGERDUTY_EVENTS_URL}" not in text:
            raise ValueError("alertmanager.yml has no PagerDuty url line to point elsewhere")
        text = text.replace(f"url: {PAGERDUTY_EVENTS_URL}", f"url: {pagerduty_url}")
    return text


class Receiver:
    """Records every POST: path -> list of JSON bodies."""

    def __init__(self):
        received: dict[str, list] = {}
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with lock:
                    received.setdefault(self.path, []).append(json.loads(body or b"null"))
                self.send_response(202 if self.path == "/pagerduty" else 200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"status": "success"}')

            def log_message(self, *args):  # quiet
                pass

        self.received = received
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Alertmanager:
    def __init__(self, binary: str, config_source: str, workdir: Path, receiver: Receiver):
        secrets = workdir / "secrets"
        secrets.mkdir(parents=True)
        values = {"pagerduty-routing-key": "test-routing-key", "slack-webhook-url": f"{receiver.url}/slack",
                  "smtp-password": "test-password", "heartbeat-url": f"{receiver.url}/heartbeat"}
        for name in SECRET_FILES:
            (secrets / name).write_text(values[name] + "\n")
        config = workdir / "alertmanager.yml"
        config.write_text(render_config(config_source, secrets, f"{receiver.url}/pagerduty"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(workdir / "alertmanager.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address="],
            stdout=self.log, stderr=subprocess.STDOUT)
        try:
            wait_for("alertmanager to be ready", lambda: httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200,
                     timeout=20)
        except AssertionError:
            self.stop()
            raise AssertionError((workdir / "alertmanager.log").read_text()[-3000:])

    def post(self, *alerts: dict) -> None:
        body = [{"labels": labels, "annotations": {"summary": labels["alertname"],
                                                   "runbook_url": f"https://runbooks.test/{labels['alertname']}.md",
                                                   "dashboard_url": "http://grafana.test/d/hitl-overview"}}
                for labels in alerts]
        httpx.post(f"{self.url}/api/v2/alerts", json=body, timeout=5).raise_for_status()

    def alerts(self) -> list[dict]:
        return httpx.get(f"{self.url}/api/v2/alerts", timeout=5).json()

    def groups(self) -> list[dict]:
        return httpx.get(f"{self.url}/api/v2/alerts/groups", timeout=5).json()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
