"""One file pins every version: compose runs exactly what versions.env says, and what the native
stack builds (stack/build.sh sources the same file) is the same release."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from tests.compose.conftest import REPO_ROOT

# Upstream image -> its tag, from versions.env.
UPSTREAM_IMAGES = {
    "postgres": lambda v: v["POSTGRES_VERSION"],
    "redis": lambda v: v["REDIS_VERSION"],
    "jaegertracing/jaeger": lambda v: v["JAEGER_VERSION"],
    "victoriametrics/victoria-logs": lambda v: f"v{v['VICTORIALOGS_VERSION']}",
    "prom/prometheus": lambda v: f"v{v['PROMETHEUS_VERSION']}",
    "prom/alertmanager": lambda v: f"v{v['ALERTMANAGER_VERSION']}",
    "grafana/grafana": lambda v: v["GRAFANA_VERSION"],
}
# Images built here: Dockerfile -> the build arguments it needs, each a versions.env variable.
BUILT_IMAGES = {
    "Dockerfile": {"PYTHON_VERSION"},
    "otel-collector/Dockerfile": {"OTELCOL_VERSION", "GOLANG_VERSION", "ALPINE_VERSION"},
}
# ...and the one that is not a version: which collector the collector Dockerfile builds (no
# default either) -> the image tag each value must have.
COLLECTOR_DISTS = {"otelcol-hitl": "hitl-otelcol", "otelcol-hitl-agent": "hitl-otelcol-agent"}
SELECTOR_ARGS = {"otel-collector/Dockerfile": {"DIST"}}


def split_image(image: str) -> tuple[str, str]:
    name, _, tag = image.rpartition(":")
    return name, tag


def test_every_upstream_image_has_the_tag_pinned_in_versions_env(services, versions):
    seen = set()
    for name, service in services.items():
        if "build" in service:
            continue
        repo, tag = split_image(service["image"])
        assert repo in UPSTREAM_IMAGES, f"{name}: image {repo} is not pinned in versions.env (add it here and there)"
        assert tag == UPSTREAM_IMAGES[repo](versions), f"{name}: {service['image']}"
        seen.add(repo)
    assert seen == set(UPSTREAM_IMAGES), f"pinned but not used: {set(UPSTREAM_IMAGES) - seen}"


def dockerfile_args(path) -> set[str]:
    return set(re.findall(r"^ARG\s+([A-Z0-9_]+)", (REPO_ROOT / path).read_text(), re.MULTILINE))


@pytest.mark.parametrize("dockerfile", sorted(BUILT_IMAGES))
def test_built_images_take_every_version_from_versions_env(services, versions, dockerfile):
    builds = [s["build"] for s in services.values()
              if "build" in s and (REPO_ROOT / dockerfile).parent == (REPO_ROOT / s["build"]["context"])
              and s["build"].get("dockerfile", "Dockerfile") == (REPO_ROOT / dockerfile).name]
    assert builds, f"no service builds {dockerfile}"
    # The Dockerfile declares no defaults for them: a build outside compose must pass them too.
    declared = dockerfile_args(dockerfile)
    selectors = SELECTOR_ARGS.get(dockerfile, set())
    assert declared == BUILT_IMAGES[dockerfile] | selectors
    assert not re.search(r"^ARG\s+[A-Z0-9_]+=", (REPO_ROOT / dockerfile).read_text(), re.MULTILINE)
    for build in builds:
        versioned = {k: v for k, v in build["args"].items() if k not in selectors}
        assert versioned == {arg: versions[arg] for arg in BUILT_IMAGES[dockerfile]}
        assert set(build["args"]) >= selectors


def test_built_collector_images_are_tagged_with_the_collector_version(services, versions, shape):
    built = {name: s for name, s in services.items() if s.get("build", {}).get("args", {}).get("DIST")}
    for name, service in built.items():
        dist = service["build"]["args"]["DIST"]
        assert service["image"] == f"{COLLECTOR_DISTS[dist]}:{versions['OTELCOL_VERSION']}", name
    dists = {name: s["build"]["args"]["DIST"] for name, s in built.items()}
    if shape == "single":
        assert dists == {"otel-collector": "otelcol-hitl"}
    else:
        # The services send to the agent; the gateways run the single shape's collector.
        assert dists == {"otel-collector": "otelcol-hitl-agent",
                         **{f"otel-gateway-{i}": "otelcol-hitl" for i in range(3)}}


def test_the_collector_manifest_is_the_pinned_release(versions):
    manifest = yaml.safe_load((REPO_ROOT / "otel-collector" / "builder-config.yaml").read_text())
    assert manifest["dist"]["version"] == versions["OTELCOL_VERSION"]
    allowed = {f"v{versions['OTELCOL_VERSION']}", f"v{versions['OTELCOL_STABLE_MODULE_VERSION']}"}
    for section in ("receivers", "processors", "connectors", "exporters", "extensions", "providers"):
        for component in manifest.get(section) or []:
            assert component["gomod"].split()[-1] in allowed, component["gomod"]


def test_native_build_and_compose_run_the_same_releases(services, versions):
    # What stack/build.sh builds is named <name>-<version>: read its versions from its own
    # output (it sources versions.env), not from the file again.
    out = subprocess.run(["bash", "stack/build.sh", "--paths"], cwd=REPO_ROOT, capture_output=True,
                         text=True, check=True).stdout
    built = {}
    for line in out.splitlines():
        _, _, path = line.partition("=")
        dir_name = path.split("/")[-2]
        match = re.fullmatch(r"(.+?)-(\d+\.\d+\.\d+)(?:-[0-9a-f]+)?", dir_name)
        assert match, dir_name
        built[match.group(1)] = match.group(2)
    image_tag = {split_image(s["image"])[0]: split_image(s["image"])[1].removeprefix("v")
                 for s in services.values() if "build" not in s}
    assert built["prometheus"] == image_tag["prom/prometheus"]
    assert built["alertmanager"] == image_tag["prom/alertmanager"]
    assert built["jaeger"] == image_tag["jaegertracing/jaeger"]
    assert built["victoria-logs"] == image_tag["victoriametrics/victoria-logs"]
    assert built["otelcol-hitl"] == services["otel-collector"]["build"]["args"]["OTELCOL_VERSION"]
