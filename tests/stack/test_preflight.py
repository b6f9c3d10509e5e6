"""The preflight port check: a taken port stops `up` before anything starts, naming the port, the
service that wanted it and the process holding it."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from stack import cli, preflight
from stack.services import HOST, Options, Stack


@pytest.fixture
def listener():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((HOST, 0))
    s.listen()
    yield s.getsockname()[1]
    s.close()


def own_comm() -> str:
    return Path(f"/proc/{os.getpid()}/comm").read_text().strip()


def test_a_taken_port_names_this_process(listener):
    [conflict] = preflight.conflicts(HOST, {listener: "prometheus"})
    message = conflict.message()
    assert f"port {listener} (wanted by prometheus)" in message
    assert f"pid {os.getpid()} ({own_comm()})" in message


def test_a_free_port_is_no_conflict(listener):
    with socket.socket() as s:
        s.bind((HOST, 0))
        free = s.getsockname()[1]
    assert preflight.conflicts(HOST, {free: "app"}) == []


def test_an_unreadable_holder_is_an_unknown_process(listener, tmp_path):
    proc = tmp_path / "proc"
    (proc / "net").mkdir(parents=True)
    (proc / "net" / "tcp").write_text(
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
        f"   0: 0100007F:{listener:04X} 00000000:0000 0A 00000000:00000000 00:00000000 00000000   114  0 4242 1\n")
    (proc / "1234").mkdir()  # a process whose fd directory we may not read
    assert str(preflight.port_holder(listener, proc)) == "unknown process"


def test_debians_postgres_gets_the_hint_to_stop_it(listener):
    [conflict] = preflight.conflicts(HOST, {listener: "postgres"})
    assert "sudo systemctl stop postgresql" in conflict.message()


def make_test_stack(tmp_path, monkeypatch, **options) -> Stack:
    monkeypatch.setenv("HITL_STACK_RUN", str(tmp_path))
    monkeypatch.setattr(cli, "binary_paths", lambda: {n: f"/nonexistent/{n}" for n in (
        "jaeger", "victoria-logs", "otelcol-hitl", "otelcol-hitl-agent", "prometheus", "alertmanager")})
    return Stack(Options(run_dir=tmp_path, cache_dir=tmp_path, **options), cli.binary_paths())


@pytest.mark.parametrize("topology", ["single", "ha"])
def test_every_port_of_the_topology_is_checked(tmp_path, monkeypatch, topology):
    stack = make_test_stack(tmp_path, monkeypatch, topology=topology)
    ports = [p for svc in stack.services() for p in svc.ports]
    assert len(ports) == len(set(ports)), "two services on one port"
    assert set(stack.ports.values()) <= set(ports)
    assert {stack.opts.pg_port, stack.opts.redis_port, stack.opts.app_port} <= set(ports)
    if topology == "ha":
        assert stack.gateway_ports(stack.opts.gateways - 1)["otlp_grpc"] in ports


def test_up_stops_before_starting_anything_when_a_port_is_taken(tmp_path, monkeypatch, listener, capsys):
    monkeypatch.setenv("HITL_STACK_RUN", str(tmp_path))
    make_test_stack(tmp_path, monkeypatch)
    monkeypatch.setattr(cli, "check_prerequisites", lambda stack: [])
    monkeypatch.setattr(cli.process, "start_detached", lambda *a, **k: pytest.fail("started a process"))
    code = cli.main(["up", "--skip-build", "--redis-port", str(listener)])
    err = capsys.readouterr().err
    assert code == 1
    assert f"port {listener} (wanted by redis) is taken by pid {os.getpid()} ({own_comm()})" in err
    assert "nothing was started" in err


def test_a_port_held_by_this_stack_says_it_is_already_running(tmp_path, monkeypatch, listener):
    stack = make_test_stack(tmp_path, monkeypatch)
    stack.pid_file("app").write(os.getpid())  # this test process plays the stack's running app
    [problem] = cli.port_problems(stack, {listener: "app"})
    assert "already running" in problem and "bash scripts/run.sh status" in problem


def test_run_sh_app_leaves_a_bad_setting_to_the_app_to_name(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("HITL_STACK_RUN", str(tmp_path))
    monkeypatch.setenv("APP_PORT", "not-a-port")
    assert cli.main(["check-app-port"]) == 0
    assert capsys.readouterr().err == ""


def test_run_sh_app_names_the_holder_of_its_port(monkeypatch, tmp_path, listener, capsys):
    monkeypatch.setenv("HITL_STACK_RUN", str(tmp_path))
    monkeypatch.setenv("APP_PORT", str(listener))
    assert cli.main(["check-app-port"]) == 1
    assert f"port {listener} (wanted by app) is taken by pid {os.getpid()}" in capsys.readouterr().err
