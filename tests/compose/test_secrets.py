"""compose.yaml loads with the secrets a user fills into .env, refuses to load without any one
of them, and lets each secret reach only the containers that need it."""

from __future__ import annotations

import re
import shutil

import pytest

from tests.compose.conftest import (
    ENV_EXAMPLE,
    REPO_ROOT,
    filled_env,
    read_env_file,
    required_variables,
    secret_variables,
)

EXPECTED_SERVICES = {"config-init", "app", "app-init", "simulator", "postgres", "redis", "otel-collector", "jaeger",
                     "victorialogs", "prometheus", "alertmanager", "grafana"}
HA_SERVICES = {"otel-gateway-0", "otel-gateway-1", "otel-gateway-2", "prometheus-1", "alertmanager-1", "alertmanager-2"}

# Where a secret may appear in the loaded model, besides compose `secrets:` (files under
# /run/secrets). Each of these programs reads that setting from its environment only.
SECRET_IN_ENVIRONMENT = {
    "OTELCOL_REDACTION_HMAC_KEY": {("otel-collector", "OTELCOL_REDACTION_HMAC_KEY"),
                                   *((f"otel-gateway-{i}", "OTELCOL_REDACTION_HMAC_KEY") for i in range(3))},
}


def test_compose_loads_with_the_secrets_of_env_example_filled_in(model, shape):
    assert model["name"] == "hitl"
    assert set(model["services"]) == EXPECTED_SERVICES | (HA_SERVICES if shape == "ha" else set())


def test_plain_docker_compose_reads_versions_env_and_dotenv_without_flags(load, tmp_path, versions):
    # `docker compose up` in a checkout: no --env-file, the user's .env next to compose.yaml.
    for name in ("compose.yaml", "compose.stack.yaml", "versions.env"):
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    filled_env(tmp_path / ".env", secret_variables())
    model = load(None, tmp_path / "compose.yaml").model
    assert model["services"]["grafana"]["image"] == f"grafana/grafana:{versions['GRAFANA_VERSION']}"
    # Precedence, as compose.yaml says: .env (and the shell) over versions.env.
    with (tmp_path / ".env").open("a") as env:
        env.write("GRAFANA_VERSION=0.0.0-override\n")
    model = load(None, tmp_path / "compose.yaml").model
    assert model["services"]["grafana"]["image"] == "grafana/grafana:0.0.0-override"


def test_every_secret_is_required_with_a_message_and_listed_empty_in_env_example():
    example = read_env_file(ENV_EXAMPLE)
    secrets = secret_variables()
    assert secrets, "compose requires no secret at all?"
    for name in secrets:
        assert name in example, f"{name} is required by compose but missing from .env.example"
        assert example[name] == "", f".env.example must not carry a value for the secret {name}"
        assert ".env" in required_variables()[name], f"the message for {name} should say where to set it"


def test_every_compose_secret_is_sourced_from_a_required_variable(model):
    for name, secret in model["secrets"].items():
        assert set(secret) <= {"name", "environment"}, f"secret {name} must come from an environment variable"
        assert secret["environment"] in secret_variables(), f"secret {name}: {secret['environment']} is not required"


def test_env_example_pins_no_version(versions):
    # A version in .env would silently override versions.env for everyone who copies it.
    assert not set(read_env_file(ENV_EXAMPLE)) & set(versions)


def test_env_example_as_copied_fails_to_load_and_names_every_secret(load):
    done = load(ENV_EXAMPLE)
    assert done.returncode != 0
    for name in secret_variables():
        assert f"required variable {name} is missing a value" in done.stderr


@pytest.mark.parametrize("missing", sorted(secret_variables()))
def test_loading_fails_without_any_one_secret(load, tmp_path, missing):
    env = tmp_path / ".env"
    filled_env(env, secret_variables(), leave_out=missing)
    done = load(env)
    assert done.returncode != 0, f"compose loaded without {missing}"
    assert f"required variable {missing} is missing a value" in done.stderr
    assert required_variables()[missing] in done.stderr  # the message that says what to do
    others = secret_variables() - {missing}
    assert not any(f"variable {name} " in done.stderr for name in others)


def test_secret_values_reach_only_secret_files_and_the_documented_environments(model, env_file):
    _, values = env_file
    found = []

    def walk(node, path):
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, (*path, key))
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, (*path, i))
        elif isinstance(node, str):
            for name in secret_variables():
                if values[name] in node:
                    found.append((name, path))

    walk(model, ())
    for name, path in found:
        allowed = {("services", svc, "environment", key) for svc, key in SECRET_IN_ENVIRONMENT.get(name, ())}
        assert path in allowed, f"the value of {name} appears at {'.'.join(map(str, path))}"
    # ...and each documented place really gets it.
    assert {p for _, p in found} == {("services", svc, "environment", key)
                                     for pairs in SECRET_IN_ENVIRONMENT.values() for svc, key in pairs
                                     if svc in model["services"]}


def test_every_credential_setting_of_a_container_comes_from_dotenv_or_a_secret_file(services, env_file):
    # Nothing credential-like is written into the compose files: a *_FILE setting points at a
    # compose secret, any other takes the value of the same-named variable of .env.
    _, values = env_file
    credential = re.compile(r"(PASSWORD|TOKEN|SECRET|_KEY)(_+FILE)?$")
    checked = 0
    for name, service in services.items():
        for key, value in (service.get("environment") or {}).items():
            if not credential.search(key):
                continue
            checked += 1
            if re.search(r"_+FILE$", key):
                mounted = {s["target"] for s in service.get("secrets", [])}
                assert value in mounted, f"{name}: {key}={value} is not one of its secrets {mounted}"
            else:
                assert key in values and value == values[key], f"{name}: {key} is not taken from .env"
    assert checked >= 4


def test_docker_build_context_of_the_app_leaves_secrets_and_local_files_out():
    # An allow-list: everything is ignored except what the image installs.
    patterns = [line.strip() for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*"
    allowed = [p[1:] for p in patterns if p.startswith("!")]
    assert allowed and all(not p.startswith((".env", "var", "tests", ".git")) for p in allowed), allowed


def test_no_read_only_service_gets_an_environment_sourced_secret(model, services):
    # Compose writes such a secret into the container before it starts; with read_only it stops
    # (>= 2.33.1: "cannot create secret ... in read-only service"; older: the engine refuses).
    # The real engine run (tests/e2e on the compose stack) is the proof; this says why at once.
    from_environment = {name for name, s in model["secrets"].items() if "environment" in s}
    for name, service in services.items():
        used = {s["source"] for s in service.get("secrets", [])} & from_environment
        assert not (used and service.get("read_only")), f"{name} is read_only and gets {used}"


def test_every_secret_file_has_an_explicit_mode_every_image_user_can_read(services):
    # Compose 2.34.0 wrote environment-sourced secrets 0440 root:root (docker/compose#12658):
    # unreadable by the non-root users of these images. 0444 root-owned on every use instead,
    # and no uid/gid: with one set, Docker Engine 20.10 gives the file to the container's USER,
    # looked up on the host, which fails for a numeric user (compose.stack.yaml says more).
    checked = 0
    for name, service in services.items():
        for secret in service.get("secrets", []):
            checked += 1
            where = f"{name}: secret {secret['source']}"
            mode = secret.get("mode")  # compose-go writes a FileMode as an octal string
            assert mode is not None and int(str(mode), 8) == 0o444, f"{where} has mode {mode!r}, not 0444"
            assert "uid" not in secret and "gid" not in secret, f"{where} sets an owner"
    assert checked >= 9
