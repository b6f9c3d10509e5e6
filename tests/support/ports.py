"""The host ports the tests listen on at fixed numbers, and which of them need reserving.

Linux hands out a client's source port from net.ipv4.ip_local_port_range (32768-60999 by
default). A fixed listening port inside that range can be taken by any outgoing connection of
the moment, and the server that wants it fails with "address already in use" (it happened once in
CI, to a benchmark's collector). scripts/test.sh therefore adds the fixed ports that fall inside
the range to net.ipv4.ip_local_reserved_ports for the length of the run (when it may: root), and
`python -m tests.support.ports` prints them in the sysctl's syntax.

Ports chosen at run time (bind to port 0) need nothing: the kernel gave them out.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from stack import ha, ports
from stack.ports import APP_PORT, PG_PORT, PORTS, REDIS_PORT

# The native stack's port offsets in use: a developer's (0), the end-to-end tests' (100), the
# page benchmark's (200) and tests/ha's (300); tests/stack/test_configs.py checks they never collide.
NATIVE_OFFSETS = (0, 100, 200, 300)
# The compose test projects' HITL_TEST_PORT_PREFIX (tests/support/compose_stack.py).
COMPOSE_PREFIXES = ("2", "3")
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def native_port_list(offset: int) -> list[int]:
    """Every port of a native stack (single and HA shape) at this offset, each once: Prometheus
    replica 0 and the first Alertmanager are the single stack's own (the same port on purpose)."""
    out = [p + offset for p in (*PORTS.values(), PG_PORT, REDIS_PORT, APP_PORT)]
    out += [p for i in range(ha.MAX_GATEWAYS) for p in ha.gateway_ports(i, offset).values()]
    out += [ha.prometheus_port(r, offset) for r in range(1, ha.PROMETHEUS_REPLICAS)]
    out += [ha.alertmanager_ports(i, offset)[1] for i in range(ha.ALERTMANAGERS)]
    out += [ha.alertmanager_ports(i, offset)[0] for i in range(1, ha.ALERTMANAGERS)]
    return out


def native_ports(offset: int) -> set[int]:
    return set(native_port_list(offset))


def compose_ports(prefix: str) -> set[int]:
    from harness.compose_stack import PORTS as COMPOSE_PORTS  # prefix 2 is the default one

    return {int(prefix + str(p)[1:]) for p in COMPOSE_PORTS.values()}


def database_ports() -> set[int]:
    """scripts/test-services.sh's PostgreSQL and Redis (its defaults, or what the env moves them to)."""
    return {int(os.environ.get("HITL_TEST_PG_PORT", 55432)), int(os.environ.get("HITL_TEST_REDIS_PORT", 56379))}


def benchmark_ports() -> dict[str, set[int]]:
    """Each capacity benchmark's block (stack/ports.py)."""
    return {block: set(ports.benchmark_ports(block).values()) for block in ports.BENCHMARK_BLOCKS}


def fixed_ports() -> set[int]:
    out = database_ports().union(*benchmark_ports().values())
    for offset in NATIVE_OFFSETS:
        out |= native_ports(offset)
    for prefix in COMPOSE_PREFIXES:
        out |= compose_ports(prefix)
    return out


def ephemeral_range() -> tuple[int, int]:
    try:
        low, high = EPHEMERAL_RANGE.read_text().split()
        return int(low), int(high)
    except OSError:  # not Linux: the IANA range (RFC 6335), which BSDs and macOS use
        return 49152, 65535


def sysctl_list(ports: set[int]) -> str:
    """'a,b-c,...': the syntax of ip_local_reserved_ports, consecutive ports joined into ranges."""
    runs: list[list[int]] = []
    for p in sorted(ports):
        if runs and p == runs[-1][1] + 1:
            runs[-1][1] = p
        else:
            runs.append([p, p])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def to_reserve() -> set[int]:
    low, high = ephemeral_range()
    return {p for p in fixed_ports() if low <= p <= high}


if __name__ == "__main__":
    sys.stdout.write(sysctl_list(to_reserve()) + "\n")
