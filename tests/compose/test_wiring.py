"""Every file compose mounts exists, and every address a config names is a compose service
that listens on that port and shares a network with the one that calls it."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

import pytest
import yaml

from tests.compose.conftest import REPO_ROOT

# Config files whose addresses must all be compose services (globs; those present are checked,
# each must be mounted by some service).
ADDRESS_CONFIGS = [
    "otel-collector/config.yaml",
    "otel-collector/agent.yaml",
    "prometheus/prometheus-ha.yml",
    "jaeger/config.yaml",
    "prometheus/prometheus.yml",
    "grafana/provisioning/datasources/*.yaml",
    "grafana/provisioning/datasources/*.yml",
]
# Read only by the HA shape (compose.ha.yaml).
HA_ONLY_CONFIGS = {"otel-collector/agent.yaml", "prometheus/prometheus-ha.yml"}
SELF_HOSTS = {"", "0.0.0.0", "::", "[::]", "localhost", "127.0.0.1"}

# [scheme://][user[:password]@]host:port[/...]; the host may be empty (":9090").
ADDRESS = re.compile(
    r"^(?:[a-z][a-z0-9+.-]*://)?(?:[^@/\s]*@)?(?P<host>\[[0-9a-fA-F:]*\]|[A-Za-z0-9_.-]*):(?P<port>\d{1,5})(?:/\S*)?$")
ENV_REFERENCE = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def bind_mounts(services):
    for name, service in services.items():
        for volume in service.get("volumes", []):
            if volume["type"] == "bind":
                yield name, Path(volume["source"]), volume


CONFIG_COPIER, CONFIG_VOLUME = "config-init", "hitl-config"


def mounted_at(service, volume_name: str) -> str | None:
    return next((v["target"] for v in service.get("volumes", [])
                 if v["type"] == "volume" and v["source"] == volume_name), None)


def owners(services, path: Path) -> list[str]:
    """Services that read `path`: those that mount it (the file itself or a folder above it),
    and, for what config-init copies into the hitl-config volume, those that mount the volume
    and name the copy's location in their command or environment."""
    found = set()
    for name, source, volume in bind_mounts(services):
        if not (path == source or source in path.parents):
            continue
        if name != CONFIG_COPIER:
            found.add(name)
            continue
        copier_root = mounted_at(services[CONFIG_COPIER], CONFIG_VOLUME)
        copied = PurePosixPath(volume["target"]).relative_to("/src")  # where it lands in the volume
        assert copier_root, "config-init does not mount the hitl-config volume"
        for reader, service in services.items():
            root = mounted_at(service, CONFIG_VOLUME)
            if reader == CONFIG_COPIER or root is None:
                continue
            mentions = " ".join([*(service.get("command") or []), *map(str, (service.get("environment") or {}).values())])
            if f"{root}/{copied}" in mentions or f"{root}/{copied.parts[0]}/" in mentions:
                found.add(reader)
    return sorted(found)


def listening_ports(service) -> set[int]:
    return {int(p) for p in service.get("expose", [])} | {int(p["target"]) for p in service.get("ports", [])}


def networks(service) -> set[str]:
    return set(service.get("networks") or {"default": None})


def addresses_in(node):
    """Every host:port string in a YAML tree; a mapping with `host` and `port` counts as one."""
    if isinstance(node, dict):
        for host_key in ("host", "hostname"):
            if {host_key, "port"} <= set(node):
                yield f"{node[host_key]}:{node['port']}"
        for value in node.values():
            yield from addresses_in(value)
    elif isinstance(node, list):
        for value in node:
            yield from addresses_in(value)
    elif isinstance(node, str):
        match = ADDRESS.match(node.strip())
        if match and (match["host"] in SELF_HOSTS or re.search(r"[A-Za-z]", match["host"])
                      or re.fullmatch(r"\d+\.\d+\.\d+\.\d+", match["host"])):
            yield node.strip()


def resolve_env(text: str, environment: dict) -> str:
    """${env:VAR:-default} as the collector and Jaeger resolve it inside that container."""
    return ENV_REFERENCE.sub(lambda m: environment.get(m[1]) or (m[2] or ""), text)


def check_address(services, caller: str, address: str, where: str) -> None:
    match = ADDRESS.match(address)
    host, port = match["host"], int(match["port"])
    if host in SELF_HOSTS:
        assert port in listening_ports(services[caller]), \
            f"{where}: {address} - {caller} does not expose port {port}"
        return
    # A service name, or a network alias (several services may share one: the gateways).
    targets = [host] if host in services else [
        name for name, service in services.items()
        if any(host in ((settings or {}).get("aliases") or []) for settings in (service.get("networks") or {}).values())]
    assert targets, f"{where}: {address} - {host} is not a compose service or network alias"
    for target in targets:
        assert port in listening_ports(services[target]), f"{where}: {address} - {target} does not expose port {port}"
        assert networks(services[caller]) & networks(services[target]), \
            f"{where}: {caller} cannot reach {target}: no common network"


def test_every_bind_mounted_file_exists_in_the_repository(services):
    mounts = list(bind_mounts(services))
    assert mounts
    for name, source, volume in mounts:
        assert source.exists(), f"{name} mounts {source}, which does not exist"
        assert REPO_ROOT in source.parents, f"{name} mounts {source} from outside the repository"
        assert volume.get("read_only"), f"{name} mounts {source} writable: configs are read-only"


def address_config_files() -> list[Path]:
    return sorted({p for pattern in ADDRESS_CONFIGS for p in REPO_ROOT.glob(pattern)})


def test_the_backends_config_files_are_present():
    names = {str(p.relative_to(REPO_ROOT)) for p in address_config_files()}
    assert {"otel-collector/config.yaml", "jaeger/config.yaml", "prometheus/prometheus.yml"} <= names


@pytest.mark.parametrize("path", address_config_files(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_address_in_a_config_file_is_a_compose_service_port(services, shape, path):
    if path.relative_to(REPO_ROOT).as_posix() in HA_ONLY_CONFIGS and shape == "single":
        named = [name for name, service in services.items()
                 if path.name in " ".join([*(service.get("command") or []),
                                           *map(str, (service.get("environment") or {}).values())])]
        assert not named, f"the single shape runs {path.name} in {named}"
        return
    users = owners(services, path)
    assert users, f"{path.relative_to(REPO_ROOT)} is not mounted by any service"
    for caller in users:
        text = resolve_env(path.read_text(), services[caller].get("environment") or {})
        found = list(addresses_in(yaml.safe_load(text)))
        assert found, f"no address found in {path.name}?"
        for address in found:
            check_address(services, caller, address, f"{path.relative_to(REPO_ROOT)} (in {caller})")


def test_every_address_in_compose_itself_is_a_compose_service_port(services):
    # Environment values (DATABASE_URL, OTLP endpoints, SIM_URL...), listen flags and the
    # healthchecks' URLs.
    checked = 0
    for name, service in services.items():
        values = list((service.get("environment") or {}).values())
        values += [arg.split("=", 1)[1] for arg in service.get("command") or [] if "=" in arg]
        values += (service.get("healthcheck") or {}).get("test", [])[1:]
        for address in addresses_in([v for v in values if v]):
            check_address(services, name, address, f"compose service {name}")
            checked += 1
    assert checked >= 10


def test_datastores_are_only_on_the_internal_network(model, services):
    assert model["networks"]["backend"].get("internal") is True
    for datastore in ("postgres", "redis"):
        assert networks(services[datastore]) == {"backend"}
        assert not services[datastore].get("ports"), f"{datastore} must not be published"
    on_backend = {name for name, s in services.items() if "backend" in networks(s)}
    assert on_backend == {"postgres", "redis", "app", "app-init"}


def test_only_the_authenticated_otlp_receiver_is_published_beyond_localhost(services):
    wide = set()
    for name, service in services.items():
        for port in service.get("ports", []):
            if port.get("host_ip") != "127.0.0.1":
                wide.add((name, int(port["target"])))
    assert wide == {("otel-collector", 4319), ("otel-collector", 4320)}


FILE_KEYS = re.compile(r"(_file|^filename|^path|^directory)$")


def file_settings(node):
    """(key, value) of every setting in a YAML tree that names a file or folder by absolute path."""
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, str) and FILE_KEYS.search(str(key)) and value.startswith("/"):
                yield key, value
            else:
                yield from file_settings(value)
    elif isinstance(node, list):
        for value in node:
            yield from file_settings(value)


def visible_in_container(services, name: str, path: str) -> bool:
    """Is `path` provided by a secret, a named volume or an existing file of a bind mount? In
    the hitl-config volume: an existing file of what config-init copies there."""
    service = services[name]
    if path in {s["target"] for s in service.get("secrets", [])}:
        return True
    for volume in service.get("volumes", []):
        target = volume["target"].rstrip("/")
        if path == target or path.startswith(target + "/"):
            if volume["type"] == "volume" and volume["source"] == CONFIG_VOLUME and name != CONFIG_COPIER:
                return visible_in_container(services, CONFIG_COPIER, "/src" + path[len(target):])
            if volume["type"] != "bind":
                return True
            return (Path(volume["source"]) / path[len(target):].lstrip("/")).exists()
    return False


def test_every_file_a_mounted_config_names_is_there_in_the_container(services):
    # e.g. alertmanager.yml's *_file secrets, the collector's bearer token file, Grafana's
    # dashboards folder: each must be a compose secret, a volume or a mounted repository file.
    checked = 0
    for _, source, _ in bind_mounts(services):
        files = [source] if source.is_file() else sorted(source.rglob("*"))
        for path in files:
            if path.suffix not in (".yml", ".yaml"):
                continue
            for name in owners(services, path):
                text = resolve_env(path.read_text(), services[name].get("environment") or {})
                for key, value in file_settings(yaml.safe_load(text)):
                    checked += 1
                    assert visible_in_container(services, name, value), \
                        f"{path.relative_to(REPO_ROOT)} ({name}): {key}: {value} does not exist in the container"
    assert checked >= 5
