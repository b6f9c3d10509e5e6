"""Start-up order and health: every service says how compose knows it is healthy (or why it
cannot), and every dependency waits for the strongest condition its target offers. The backends
run with the native stack's flags."""

from __future__ import annotations

import re
import subprocess

import pytest

from stack.sources import victorialogs_flags
from tests.compose.conftest import REPO_ROOT


def one_shot(service) -> bool:
    return service.get("restart") == "no"


def test_every_service_has_a_healthcheck_or_says_why_not(services):
    for name, service in services.items():
        check = service.get("healthcheck")
        reason = service.get("x-healthcheck-omitted")
        if check and not check.get("disable"):
            assert check["test"][0] in ("CMD", "CMD-SHELL"), name
            assert not reason, f"{name} has a healthcheck and a reason not to have one"
        else:
            assert isinstance(reason, str) and len(reason) > 20, \
                f"{name} has no healthcheck: add one, or x-healthcheck-omitted with the reason"


def test_every_dependency_waits_for_the_strongest_condition_its_target_offers(services):
    for name, service in services.items():
        for target, dependency in (service.get("depends_on") or {}).items():
            dependee = services[target]
            if one_shot(dependee):
                expected = "service_completed_successfully"
            elif dependee.get("healthcheck"):
                expected = "service_healthy"
            else:
                expected = "service_started"
            assert dependency["condition"] == expected, f"{name} -> {target}"


def test_services_that_use_another_depend_on_it(services):
    assert {"postgres", "redis", "otel-collector", "app-init"} <= set(services["app"]["depends_on"])
    assert {"app", "app-init", "otel-collector"} <= set(services["simulator"]["depends_on"])
    assert {"jaeger", "victorialogs"} <= set(services["otel-collector"]["depends_on"])
    assert {"prometheus", "jaeger", "victorialogs", "alertmanager"} <= set(services["grafana"]["depends_on"])


def test_the_simulator_gets_its_keys_from_the_init_job_through_a_volume_only_they_share(services):
    users = {name: volume for name, s in services.items() for volume in s.get("volumes", [])
             if volume["type"] == "volume" and volume["source"] == "simulator-keys"}
    assert set(users) == {"app-init", "simulator"}
    assert users["simulator"].get("read_only") and not users["app-init"].get("read_only")
    assert "create-key" in " ".join(services["app-init"]["command"])


def test_stateful_services_keep_their_data_in_named_volumes(model, services):
    data = {"postgres": "/var/lib/postgresql/data", "prometheus": "/prometheus", "alertmanager": "/alertmanager",
            "grafana": "/var/lib/grafana", "victorialogs": "/victoria-logs-data",
            "otel-collector": "/var/lib/otelcol/file_storage", "jaeger": "/tmp"}
    for name, target in data.items():
        volume = next((v for v in services[name].get("volumes", []) if v["target"] == target), None)
        assert volume and volume["type"] == "volume" and volume["source"] in model["volumes"], name


def flag_names(argv) -> set[str]:
    return {arg.split("=", 1)[0] for arg in argv if arg.startswith("-")}


@pytest.fixture(scope="module")
def native_argv(tmp_path_factory, monkeypatch_module) -> dict[str, list[str]]:
    """argv of each native service (stack/services.py), without starting anything."""
    from stack.services import Options, Stack

    monkeypatch_module.setenv("HITL_STACK_PG_BIN", "/nonexistent/postgres/bin")
    tmp = tmp_path_factory.mktemp("native")
    binaries = {name: f"/bin/{name}" for name in ("otelcol-hitl", "jaeger", "prometheus", "alertmanager",
                                                   "victoria-logs", "promtool", "amtool")}
    stack = Stack(Options(run_dir=tmp, cache_dir=tmp, start_app=False), binaries)
    return {s.name: s.argv[1:] for s in stack.services()}


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@pytest.mark.parametrize("native, compose", [("prometheus", "prometheus"), ("alertmanager", "alertmanager"),
                                             ("victorialogs", "victorialogs"), ("jaeger", "jaeger"),
                                             ("otelcol", "otel-collector")])
def test_backends_get_every_flag_the_native_stack_gives_them(services, native_argv, native, compose):
    # Values differ (container paths, 0.0.0.0); the flags are the same.
    missing = flag_names(native_argv[native]) - flag_names(services[compose]["command"])
    assert not missing, f"compose {compose} lacks {missing} (stack/services.py passes them)"


def test_prometheus_keeps_exemplars(services):
    assert "--enable-feature=exemplar-storage" in services["prometheus"]["command"]


def test_victorialogs_gets_its_flags_file_line_for_line(services):
    flags = victorialogs_flags()
    command = services["victorialogs"]["command"]
    assert command[-len(flags):] == flags
    assert flag_names(command[:-len(flags)]) == {"-httpListenAddr", "-storageDataPath"}


def test_init_job_creates_the_simulator_keys_once_and_the_simulator_loads_them(services, tmp_path):
    # The two shell scripts of compose.stack.yaml, run here with the repository's python: keys
    # go to a temporary folder instead of the volume, the database is a SQLite file, and a
    # `python` shim stands in for the simulator (it prints the SIM_* variables it got).
    import sys

    keys_dir = tmp_path / "keys"
    keys_dir.mkdir()
    shim_dir = tmp_path / "bin"
    shim_dir.mkdir()
    (shim_dir / "python").write_text(
        "#!/bin/sh\n"
        'if [ "$1 $2" = "-m simulator" ]; then env | grep "^SIM_" | sort; exit 0; fi\n'
        f'exec {sys.executable} "$@"\n')
    (shim_dir / "python").chmod(0o755)
    env = {"PATH": f"{shim_dir}:/usr/bin:/bin", "APP_ENV": "development",
           "DATABASE_URL": f"sqlite:///{tmp_path / 'hitl.db'}", "OTEL_SDK_DISABLED": "true",
           "PYTHONPATH": str(REPO_ROOT), "HOME": str(tmp_path)}

    def run(service: str) -> str:
        entrypoint = services[service]["entrypoint"]
        script = services[service]["command"][0].replace("/run/hitl-keys", str(keys_dir))
        done = subprocess.run([*entrypoint, script], env=env, cwd=tmp_path, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    assert "written" in run("app-init")
    keys_file = keys_dir / "simulator.env"
    first = keys_file.read_text()
    assert oct(keys_file.stat().st_mode & 0o777) == "0o600"
    assert re.fullmatch(r"SIM_PIPELINE_KEY=\S+\nSIM_REVIEWER_KEY=\S+\n", first)
    assert "already" in run("app-init")  # a restart keeps the keys
    assert keys_file.read_text() == first
    got = run("simulator")
    assert set(got.splitlines()) >= set(first.splitlines())
    # The keys are the ones the database knows, with the right roles.
    import sqlite3

    from app.auth.service import hash_token

    tokens = dict(line.split("=", 1) for line in first.splitlines())
    with sqlite3.connect(tmp_path / "hitl.db") as db:
        roles = {h: role for h, role in db.execute("SELECT key_hash, role FROM api_keys")}
    assert {str(roles.get(hash_token(tokens["SIM_PIPELINE_KEY"]))).lower(),
            str(roles.get(hash_token(tokens["SIM_REVIEWER_KEY"]))).lower()} == {"pipeline", "reviewer"}
