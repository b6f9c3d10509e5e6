"""Detached processes with pid files, and the health probes used to wait for them."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path


def write_file(path: Path, text: str, mode: int | None = None) -> None:
    """Write text so that a running process reading path sees the old or the new content, never
    a truncated file (one Alertmanager of three read its config while the next one's start was
    rewriting it): unchanged content is not rewritten, a change goes through a rename."""
    try:
        if path.read_text() == text:
            return
    except OSError:
        pass
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    if mode is not None:
        tmp.chmod(mode)
    os.replace(tmp, path)


def _start_ticks(pid: int) -> str | None:
    """Kernel start time of a process (field 22 of /proc/PID/stat), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    return stat.rsplit(")", 1)[1].split()[19]


@dataclass(frozen=True)
class PidFile:
    """``<pid> <start ticks>``: the start time guards against signalling a recycled pid."""

    path: Path

    def write(self, pid: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(f"{pid} {_start_ticks(pid) or '?'}\n")

    def running_pid(self) -> int | None:
        """The recorded pid if that very process is still alive (not a zombie), else None."""
        try:
            pid_text, ticks = self.path.read_text().split()
            pid = int(pid_text)
        except (OSError, ValueError):
            return None
        if _start_ticks(pid) != ticks:
            return None
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return None
        return None if state == "Z" else pid

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def start_detached(
    argv: list[str],
    *,
    log_path: Path,
    pid_file: PidFile,
    env: dict[str, str],
    cwd: Path,
    user: str | None = None,
) -> int:
    """Start argv in its own session (so it survives us and `down` can signal its group)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log, open(os.devnull, "rb") as devnull:
        log.write(f"\n==== {time.strftime('%Y-%m-%dT%H:%M:%S')} start: {' '.join(argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            argv,
            stdin=devnull,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
            user=user,
            group=user,
            extra_groups=[] if user else None,
        )
    pid_file.write(proc.pid)
    return proc.pid


def terminate(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """SIGTERM a child, wait up to timeout, then SIGKILL it (and reap it either way)."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def stop(pid_file: PidFile, *, sig: int = signal.SIGTERM, timeout: float = 15.0) -> str:
    """Signal the process group, wait up to timeout, then SIGKILL it. Returns what happened."""
    pid = pid_file.running_pid()
    if pid is None:
        pid_file.remove()
        return "not running"
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pid_file.remove()
        return "not running"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pid_file.running_pid() is None:
            _reap(pid)
            pid_file.remove()
            return f"stopped (pid {pid})"
        time.sleep(0.1)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    time.sleep(0.2)
    _reap(pid)
    pid_file.remove()
    return f"killed after {timeout:.0f}s (pid {pid})"


def _reap(pid: int) -> None:
    # Only our own children can be reaped; for others this is a harmless ECHILD.
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def tail(path: Path, lines: int = 30) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode(errors="replace")
    except OSError as e:
        return f"(no log: {e})"
    return "\n".join(text.splitlines()[-lines:])


# ---- health probes: each returns None when healthy, else a short reason ---------------------


def http_probe(url: str, *, expect_status: int = 200, expect_body: str | None = None) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            body = resp.read(4096).decode(errors="replace")
            if resp.status != expect_status:
                return f"HTTP {resp.status} from {url}"
            if expect_body is not None and expect_body not in body:
                return f"unexpected body from {url}: {body[:80]!r}"
            return None
    except urllib.error.HTTPError as e:
        return f"HTTP {e.code} from {url}"
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        return f"{url}: {getattr(e, 'reason', e)}"


def prometheus_target_probe(base_url: str, job: str) -> str | None:
    """Prometheus is ready AND has scraped `job` successfully at least once.

    /-/ready alone is not enough for tests: the first scrapes only start after the scrape
    manager's first target sync (up to 5 s after start), and an exemplar is exposed by the
    collector for one span-metrics flush interval only - telemetry sent in between is counted
    but its exemplars are never scraped.
    """
    reason = http_probe(f"{base_url}/-/ready")
    if reason:
        return reason
    try:
        with urllib.request.urlopen(f"{base_url}/api/v1/targets?state=active", timeout=2) as resp:
            targets = json.load(resp)["data"]["activeTargets"]
    except (urllib.error.URLError, OSError, ValueError, KeyError) as e:
        return f"targets API: {e}"
    health = [t.get("health") for t in targets if t.get("labels", {}).get("job") == job]
    if not health:
        return f"no active target for job {job}"
    if "up" not in health:
        return f"job {job} not scraped yet ({', '.join(health)})"
    return None


def tcp_probe(host: str, port: int) -> str | None:
    try:
        with socket.create_connection((host, port), timeout=2):
            return None
    except OSError as e:
        return f"{host}:{port}: {e.strerror or e}"


def redis_probe(host: str, port: int) -> str | None:
    """The same check as `redis-cli ping`, without needing redis-cli."""
    try:
        with socket.create_connection((host, port), timeout=2) as s:
            s.sendall(b"PING\r\n")
            reply = s.recv(64)
    except OSError as e:
        return f"{host}:{port}: {e.strerror or e}"
    return None if reply.startswith(b"+PONG") else f"redis replied {reply!r}"


def command_probe(argv: list[str]) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{argv[0]}: {e}"
    if done.returncode != 0:
        return f"{' '.join(argv)} -> exit {done.returncode}: {(done.stdout + done.stderr).strip()[:120]}"
    return None
