"""Fixtures of the Kubernetes tests: the rendered overlays, and a real control plane with both
overlays applied to it (tests/support/kube_cluster.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from stack import kubernetes
from tests.conftest import missing_prerequisite
from tests.support.kube_cluster import REPO_ROOT, KubeCluster, binaries

OVERLAYS = sorted(kubernetes.NAMESPACES)  # dev, prod
NODE = "node-1"


@pytest.fixture(scope="session")
def kube_binaries() -> dict[str, str]:
    try:
        return binaries()
    except RuntimeError as exc:
        missing_prerequisite(str(exc))


@pytest.fixture(scope="session")
def rendered(kube_binaries) -> dict[str, list[dict]]:
    """overlay -> its objects, as `kubectl kustomize` (the pinned kubectl's kustomize) renders them."""
    out = {}
    for overlay in OVERLAYS:
        text = subprocess.run([kube_binaries["kubectl"], "kustomize", str(kubernetes.DEPLOY_DIR / "overlays" / overlay)],
                              capture_output=True, text=True, check=True).stdout
        out[overlay] = [doc for doc in yaml.safe_load_all(text) if doc]
    return out


def secret_values() -> dict[str, str]:
    """A .env's values for the Secrets (random, never written to the repository)."""
    import secrets
    return {var: f"test-{secrets.token_hex(20)}" for var in kubernetes.secret_variables()} | {
        "REDIS_URL": "redis://:secret@redis.example.internal:6379/0",
        "DATABASE_URL": "postgresql+psycopg://hitl@db.example.internal:5432/hitl"}


# Module scope: only test_api_server.py uses the cluster, and it stops when that module is done
# rather than at the end of the session (it ran on through the benchmarks, using CPU and holding
# its etcd and watch connections, i.e. source ports, open).
@pytest.fixture(scope="module")
def cluster(kube_binaries, tmp_path_factory):
    c = KubeCluster(tmp_path_factory.mktemp("kube"), kube_binaries)
    try:
        c.start()
        # The node the DaemonSet controller makes the agent's Pod for (no kubelet behind it).
        c.kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": NODE, "labels": {"kubernetes.io/hostname": NODE, "kubernetes.io/os": "linux"}}}))
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def applied(cluster) -> dict[str, str]:
    """Both overlays applied for real (server-side apply), with their Secrets made by
    `python -m stack k8s-secrets` from a test .env. overlay -> namespace."""
    env = secret_values()
    for overlay in OVERLAYS:
        result = cluster.kubectl("apply", "--server-side", "--field-manager=hitl-tests", "-k",
                                 str(kubernetes.DEPLOY_DIR / "overlays" / overlay), timeout=180)
        # The namespace warns as well as enforces the restricted Pod Security level: a workload
        # whose template would violate it is reported here, before its Pods are refused.
        assert "Warning" not in result.stderr, result.stderr
        if overlay == "dev":
            env_for = {k: v for k, v in env.items() if k != "DATABASE_URL"}  # dev's default: in-cluster
        else:
            env_for = env
        manifest = subprocess.run([sys.executable, "-m", "stack", "k8s-secrets", "--overlay", overlay, "--env-file", "/dev/null"],
                                  env={**{k: v for k, v in os.environ.items() if k not in env}, **env_for},
                                  cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
        cluster.kubectl("apply", "--server-side", "--field-manager=hitl-tests", "-f", "-", input=manifest)
    return dict(kubernetes.NAMESPACES)
