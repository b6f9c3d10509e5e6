"""A real Kubernetes control plane on loopback for the tests: etcd, kube-apiserver and
kube-controller-manager at the versions versions.env pins (stack/build.sh kubernetes etcd), and
kubectl to talk to it.

No scheduler and no kubelet: the controllers turn Deployments, StatefulSets, DaemonSets and Jobs
into Pods (and PVCs) and the API server's admission (Pod Security, ServiceAccounts, defaults)
accepts or refuses them, but nothing runs them; Pods stay Pending. A Node object is registered so
the DaemonSet controller has a node to make a Pod for.

Authentication: a static token (group system:masters) over the API server's self-signed TLS.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import time
import urllib.request
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from stack import process

REPO_ROOT = Path(__file__).resolve().parents[2]


def binaries() -> dict[str, str]:
    out = subprocess.run(["bash", str(REPO_ROOT / "stack" / "build.sh"), "--paths", "kubernetes", "etcd", "kubeconform"],
                         capture_output=True, text=True, check=True).stdout
    paths = dict(line.split("=", 1) for line in out.split())
    missing = [name for name, path in paths.items() if not os.access(path, os.X_OK)]
    if missing:
        raise RuntimeError(f"not built: {missing}; run `bash stack/build.sh kubernetes etcd kubeconform`")
    return paths


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class KubeCluster:
    workdir: Path
    bins: dict[str, str] = field(default_factory=binaries)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.token = secrets.token_hex(16)
        self.etcd_port, self.etcd_peer_port, self.api_port = free_port(), free_port(), free_port()
        self.server = f"https://127.0.0.1:{self.api_port}"
        self.kubeconfig = self.workdir / "kubeconfig"

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self, timeout: float = 90.0) -> None:
        w = self.workdir
        (w / "pki").mkdir(parents=True, exist_ok=True)
        key = w / "pki" / "sa.key"
        subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
        tokens = w / "pki" / "tokens.csv"
        tokens.write_text(f"{self.token},admin,admin,system:masters\n")
        self.kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {"server": self.server, "insecure-skip-tls-verify": True}}],
            "users": [{"name": "admin", "user": {"token": self.token}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "admin"}}]}))
        etcd_url = f"http://127.0.0.1:{self.etcd_port}"
        peer_url = f"http://127.0.0.1:{self.etcd_peer_port}"
        self._spawn("etcd", [self.bins["etcd"], "--data-dir", str(w / "etcd"), "--name", "test",
                             "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
                             "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
                             "--initial-cluster", f"test={peer_url}", "--log-level", "warn"])
        self._wait(lambda: self._http(f"{etcd_url}/health"), timeout, "etcd")
        self._spawn("kube-apiserver", [
            self.bins["kube-apiserver"], f"--etcd-servers={etcd_url}", "--bind-address=127.0.0.1",
            f"--secure-port={self.api_port}", f"--cert-dir={w / 'certs'}",
            "--service-cluster-ip-range=10.96.0.0/16",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={key}", f"--service-account-signing-key-file={key}",
            f"--token-auth-file={tokens}", "--authorization-mode=RBAC",
            # No kubelet or node network here: the `kubernetes` Service's endpoints are not kept.
            "--endpoint-reconciler-type=none"])
        self._wait(lambda: self._http(f"{self.server}/readyz", token=True), timeout, "kube-apiserver")
        self._spawn("kube-controller-manager", [
            self.bins["kube-controller-manager"], f"--kubeconfig={self.kubeconfig}",
            f"--authentication-kubeconfig={self.kubeconfig}", f"--authorization-kubeconfig={self.kubeconfig}",
            "--bind-address=127.0.0.1", "--secure-port=0", "--leader-elect=false",
            f"--service-account-private-key-file={key}", "--use-service-account-credentials=false",
            "--controllers=*"])
        # Ready when it has made the default namespace's ServiceAccount (a Pod needs its own).
        self._wait(lambda: self.kubectl("get", "serviceaccount", "default", "-n", "default", check=False).returncode == 0,
                   timeout, "kube-controller-manager")

    def stop(self) -> None:
        for name in reversed(list(self.procs)):
            process.terminate(self.procs.pop(name), 15)

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.workdir / f"{name}.log", "wb")
        self.procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)

    def _wait(self, check, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self.procs.get(what)
            if proc is not None and proc.poll() is not None:
                break
            try:
                if check():
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"{what} not ready in {timeout:.0f}s; log:\n{self.log_tail(what)}")

    def _http(self, url: str, token: bool = False) -> bool:
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {self.token}"} if token else {})
        ctx = ssl._create_unverified_context() if url.startswith("https") else None
        with urllib.request.urlopen(req, timeout=3, context=ctx) as resp:
            return resp.status == 200

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.workdir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"

    # -- clients ------------------------------------------------------------------------------

    def kubectl(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        result = subprocess.run([self.bins["kubectl"], f"--kubeconfig={self.kubeconfig}", *args], input=input,
                                capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}{result.stdout}")
        return result

    def get(self, *args: str) -> dict:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def raw(self, path: str) -> dict:
        return json.loads(self.kubectl("get", "--raw", path).stdout)

    def wait_for(self, check, timeout: float, what: str, interval: float = 0.5):
        """Poll check() until it returns something truthy; its last value in the error."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = check()
            if last and not isinstance(last, str):
                return last
            time.sleep(interval)
        raise AssertionError(f"{what}: not within {timeout:.0f}s (last: {last!r})\n"
                             f"controller manager log:\n{self.log_tail('kube-controller-manager', 20)}")
