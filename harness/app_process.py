"""Runs the service as a real process (uvicorn, its own telemetry set-up) for telemetry tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from harness.polling import wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppProcess:
    def __init__(self, *, env: dict[str, str], log_path: Path, module: str = "app"):
        """`module`: what `python -m` runs (`serve` is added for the service itself)."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        full_env.update(env)
        full_env.update({"APP_PORT": str(self.port), "APP_HOST": "127.0.0.1"})
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *(["serve"] if module == "app" else [])],
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parents[1],
        )
        try:
            wait_for(f"the app on {self.url} to be ready", self._ready, timeout=30)
        except AssertionError:
            self.stop()
            raise AssertionError(f"app did not start; log:\n{log_path.read_text()[-3000:]}") from None

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"app exited with {self.proc.returncode}")
        return httpx.get(self.url + "/health/ready", timeout=1).status_code == 200

    def rss_bytes(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def kill(self) -> None:
        """SIGKILL: the process dies wherever it is, with nothing flushed or finished."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()

    def stop(self, timeout: float = 20) -> float:
        """SIGTERM and wait; returns the seconds the shutdown took."""
        start = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return time.monotonic() - start
