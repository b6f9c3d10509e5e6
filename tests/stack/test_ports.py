"""The fixed ports the tests listen on: no two users share one, and the reservation covers them."""

from __future__ import annotations

from tests.support import ports


def test_the_benchmarks_blocks_collide_with_no_stack_and_with_each_other():
    blocks = ports.benchmark_ports()
    others = ports.database_ports()
    for offset in ports.NATIVE_OFFSETS:
        others |= ports.native_ports(offset)
    for prefix in ports.COMPOSE_PREFIXES:
        others |= ports.compose_ports(prefix)
    names = sorted(blocks)
    for i, name in enumerate(names):
        assert not blocks[name] & others, (name, sorted(blocks[name] & others))
        for other in names[i + 1:]:
            assert not blocks[name] & blocks[other], (name, other)


def test_the_benchmarks_listen_below_the_default_ephemeral_range():
    # Their blocks are the ones most likely to meet a client's source port: dozens of ports,
    # bound again and again while other tests hold many connections open.
    assert max(p for block in ports.benchmark_ports().values() for p in block) < 32768


def test_what_is_reserved_is_every_fixed_port_inside_the_range(monkeypatch):
    monkeypatch.setattr(ports, "ephemeral_range", lambda: (32768, 60999))
    reserved = ports.to_reserve()
    assert {55432, 56379, 55679, 55779, 38000} <= reserved  # test services, zpages, the HA compose app
    assert all(32768 <= p <= 60999 for p in reserved)
    assert {p for p in ports.fixed_ports() if 32768 <= p <= 60999} == reserved


def test_the_sysctl_syntax_joins_consecutive_ports():
    assert ports.sysctl_list({5, 1, 2, 3, 9, 10}) == "1-3,5,9-10"
    assert ports.sysctl_list(set()) == ""
