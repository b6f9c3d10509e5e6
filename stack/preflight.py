"""Before anything starts: is every port this run will listen on free, and if not, who holds it?

A Debian machine that has just installed the `postgresql` and `redis-server` packages runs their
system servers on 5432 and 6379, the stack's own ports; without this check our PostgreSQL would
fail minutes later with a log line nobody reads. The holder is found the way `ss -p` does it: the
listening socket's inode in /proc/net/tcp{,6}, then the process whose /proc/PID/fd links to
`socket:[inode]` (proc(5)). Another user's processes cannot be read without root: "unknown process".
"""

from __future__ import annotations

import errno
import os
import socket
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
TCP_LISTEN = "0A"  # st column of /proc/net/tcp: TCP_LISTEN in include/net/tcp_states.h

# Why a well-known port is likely taken on a fresh Debian/Ubuntu machine, by the service that wants it.
HINTS = {
    "postgres": "Debian's postgresql package starts a server on 5432: `sudo systemctl stop postgresql` "
                "or `sudo service postgresql stop`",
    "redis": "Debian's redis-server package starts a server on 6379: `sudo systemctl stop redis-server` "
             "or `sudo service redis-server stop`",
    "app": "stop it, or give the review service another port: APP_PORT=8001 bash scripts/run.sh app, "
           "or --app-port for the whole stack",
}
GENERIC_HINT = "stop it, or run this stack beside it with every port shifted: HITL_STACK_PORT_OFFSET=1000"


@dataclass(frozen=True)
class Holder:
    pid: int | None
    comm: str

    def __str__(self) -> str:
        return f"pid {self.pid} ({self.comm})" if self.pid is not None else self.comm


def port_is_free(host: str, port: int) -> bool:
    """Can we bind host:port? SO_REUSEADDR as the servers themselves set it, so a connection in
    TIME_WAIT does not count as taken and a socket in LISTEN does."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def listening_inodes(port: int, proc: Path = PROC) -> set[str]:
    inodes = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == TCP_LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    inodes.discard("0")
    return inodes


def port_holder(port: int, proc: Path = PROC) -> Holder:
    """The process listening on port, or Holder(None, "unknown process")."""
    links = {f"socket:[{inode}]" for inode in listening_inodes(port, proc)}
    if links:
        for pid_dir in proc.iterdir():
            if not pid_dir.name.isdigit():
                continue
            try:
                fds = list((pid_dir / "fd").iterdir())
            except OSError:  # not ours to read, or gone
                continue
            for fd in fds:
                try:
                    if os.readlink(fd) in links:
                        return Holder(int(pid_dir.name), (pid_dir / "comm").read_text().strip())
                except OSError:
                    continue
    return Holder(None, "unknown process")


@dataclass(frozen=True)
class Conflict:
    port: int
    service: str
    holder: Holder

    def message(self) -> str:
        hint = HINTS.get(self.service, GENERIC_HINT)
        return f"port {self.port} (wanted by {self.service}) is taken by {self.holder}: {hint}"


def conflicts(host: str, wanted: dict[int, str]) -> list[Conflict]:
    """The taken ports of wanted ({port: service that will listen there}), with their holders."""
    return [Conflict(port, service, port_holder(port))
            for port, service in sorted(wanted.items()) if not port_is_free(host, port)]
