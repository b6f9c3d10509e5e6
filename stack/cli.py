"""python3 -m stack build|up|down|status - the native HITL monitoring stack.

Environment: HITL_STACK_CACHE (binaries, default ~/.cache/hitl-stack), HITL_STACK_RUN (configs,
data, logs, pid files; default $HITL_STACK_CACHE/run), HITL_STACK_SCRAPE_INTERVAL,
HITL_STACK_FLUSH_INTERVAL, HITL_STACK_RULE_EVAL_INTERVAL (defaults for the options of `up`),
HITL_STACK_PG_BIN (PostgreSQL bin directory; default: newest /usr/lib/postgresql/*/bin),
HITL_STACK_PORT_OFFSET (added to every port, so a second stack - the end-to-end tests use 100 with
their own HITL_STACK_RUN - runs beside the first; `status` and the printed URLs honour it).

Needs on the machine: Go (for `build`), Debian's postgresql (server + client: initdb, postgres,
pg_isready, psql) and redis-server. It installs nothing itself.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from stack import process
from stack import ha
from stack import preflight
from stack import kubernetes
from stack.services import (APP_PORT, HOST, PG_PORT, REDIS_PORT, REPO_ROOT, SERVICE_ORDER, STOP_SIGNALS, TOPOLOGIES,
                            Options, Service, Stack, parse_duration)

BUILD_SCRIPT = REPO_ROOT / "stack" / "build.sh"


def say(message: str) -> None:
    print(f"[stack] {message}", file=sys.stderr, flush=True)


def cache_dir() -> Path:
    return Path(os.environ.get("HITL_STACK_CACHE", Path.home() / ".cache" / "hitl-stack"))


def run_dir() -> Path:
    return Path(os.environ.get("HITL_STACK_RUN", cache_dir() / "run"))


def build(targets: list[str] | None = None) -> int:
    return subprocess.run(["bash", str(BUILD_SCRIPT), *(targets or [])]).returncode


def binary_paths() -> dict[str, str]:
    out = subprocess.run(["bash", str(BUILD_SCRIPT), "--paths"], check=True,
                         capture_output=True, text=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def port_offset() -> int:
    return int(os.environ.get("HITL_STACK_PORT_OFFSET", "0"))


def topology_file() -> Path:
    """What `up` started (topology and gateways), for `status` and `stop` later."""
    return run_dir() / "topology"


def make_stack(args: argparse.Namespace | None = None) -> Stack:
    offset = port_offset()
    opts = Options(run_dir=run_dir(), cache_dir=cache_dir(), port_offset=offset,
                   pg_port=PG_PORT + offset, redis_port=REDIS_PORT + offset, app_port=APP_PORT + offset)
    if topology_file().exists():
        topology, _, gateways = topology_file().read_text().strip().partition(" ")
        opts.topology, opts.gateways = topology, int(gateways or ha.DEFAULT_GATEWAYS)
    if args is not None and args.command == "up":
        opts.topology = args.topology or "single"
        opts.gateways = args.gateways or ha.DEFAULT_GATEWAYS
        opts.scrape_interval = args.scrape_interval
        opts.flush_interval = args.flush_interval
        opts.rule_eval_interval = args.rule_eval_interval
        opts.fast_alerts = args.fast_alerts
        opts.alert_sink = args.alert_sink
        opts.alert_smtp = args.alert_smtp
        opts.pg_port = args.pg_port or opts.pg_port
        opts.redis_port = args.redis_port or opts.redis_port
        opts.app_port = args.app_port or opts.app_port
        opts.python = args.python
        opts.start_app = not args.no_app
        opts.timeout = args.timeout
    return Stack(opts, binary_paths())


def check_prerequisites(stack: Stack) -> list[str]:
    problems = []
    if shutil.which("redis-server") is None:
        problems.append("redis-server not found (apt-get install redis-server)")
    if shutil.which("pg_isready") is None:
        problems.append("pg_isready not found (apt-get install postgresql-client)")
    try:
        stack.pg_bin()
    except RuntimeError as e:
        problems.append(str(e))
    return problems


def running_pids(stack: Stack) -> dict[int, str]:
    """{pid: service} of this run dir's live processes."""
    pids = {}
    for name in SERVICE_ORDER:
        pid = stack.pid_file(name).running_pid()
        if pid is not None:
            pids[pid] = name
    return pids


def port_problems(stack: Stack, wanted: dict[int, str], host: str = HOST) -> list[str]:
    """Why the taken ports of wanted ({port: service}) stop this start; a port held by this stack's
    own process is not a conflict to fix but a stack already running."""
    ours = running_pids(stack)
    problems = []
    for conflict in preflight.conflicts(host, wanted):
        if conflict.holder.pid in ours:
            problems.append(f"port {conflict.port}: {ours[conflict.holder.pid]} of this stack is already running "
                            f"(pid {conflict.holder.pid}): bash scripts/run.sh status")
        else:
            problems.append(conflict.message())
    return problems


def wait_healthy(stack: Stack, services: list[Service], deadline: float) -> list[str]:
    """Wait until every service answers its health check; returns the failures."""
    pending = {s.name: s for s in services}
    reasons: dict[str, str] = {}
    while pending and time.monotonic() < deadline:
        for name, svc in list(pending.items()):
            if stack.pid_file(name).running_pid() is None:
                reasons[name] = "process exited"
                del pending[name]
                continue
            reason = svc.health()
            if reason is None:
                if svc.after_healthy:
                    svc.after_healthy()
                say(f"{name}: healthy")
                del pending[name]
            else:
                reasons[name] = reason
        if pending:
            time.sleep(0.5)
    failed = [n for n in reasons if n in pending or stack.pid_file(n).running_pid() is None]
    for name in list(pending):
        reasons[name] = f"not healthy in time: {reasons.get(name, '?')}"
    for name in failed:
        say(f"{name}: FAILED - {reasons[name]}; last lines of {stack.log_file(name)}:")
        print(process.tail(stack.log_file(name)), file=sys.stderr)
    return failed


def start_services(stack: Stack, services: list[Service]) -> list[Service]:
    started = []
    for svc in services:
        pid_file = stack.pid_file(svc.name)
        pid = pid_file.running_pid()
        if pid is not None:
            say(f"{svc.name}: already running (pid {pid})")
            started.append(svc)
            continue
        if svc.prepare:
            svc.prepare()
        env = svc.env() if callable(svc.env) else (svc.env or stack.base_env())
        pid = process.start_detached(svc.argv, log_path=stack.log_file(svc.name), pid_file=pid_file,
                                     env=env, cwd=REPO_ROOT, user=svc.user)
        say(f"{svc.name}: started (pid {pid}, log {stack.log_file(svc.name)})")
        started.append(svc)
    return started


def cmd_up(args: argparse.Namespace) -> int:
    try:
        return _up(args)
    except (RuntimeError, ValueError, OSError) as e:
        say(f"FAILED: {e}")
        say("services already started are left running: python3 -m stack down")
        return 1


def _up(args: argparse.Namespace) -> int:
    for value in (args.scrape_interval, args.flush_interval, args.rule_eval_interval):
        if value is not None:
            parse_duration(value)
    if not args.skip_build and build() != 0:
        say("build failed")
        return 1
    stack = make_stack(args)
    problems = check_prerequisites(stack)
    if problems:
        for p in problems:
            say(p)
        return 1
    if stack.opts.start_app and not (REPO_ROOT / "app" / "__main__.py").exists():
        say("warning: app/__main__.py does not exist yet; not starting the app and the simulator")
        stack.opts.start_app = False
    for d in (stack.logs, stack.pids, stack.config, stack.data):
        d.mkdir(parents=True, exist_ok=True)
    running = [n for n in SERVICE_ORDER if stack.pid_file(n).running_pid() is not None]
    previous = topology_file().read_text().strip() if topology_file().exists() else "single"
    wanted = f"{stack.opts.topology} {stack.opts.gateways}" if stack.opts.topology == "ha" else "single"
    if running and previous != wanted:
        say(f"FAILED: this run dir runs topology {previous!r}; `python3 -m stack down` first")
        return 1
    services = stack.services()
    # Services already running keep their ports (start_services leaves them be); the others need
    # theirs free before anything starts, or a half-started stack is left to clean up.
    listening = {port: svc.name for svc in services if stack.pid_file(svc.name).running_pid() is None
                 for port in svc.ports}
    problems = port_problems(stack, listening)
    if problems:
        for p in problems:
            say(p)
        say("nothing was started")
        return 1
    topology_file().write_text(wanted + "\n")

    backends = [s for s in services if s.name not in ("app", "simulator")]
    apps = [s for s in services if s.name in ("app", "simulator")]
    t0 = time.monotonic()
    failed = wait_healthy(stack, start_services(stack, backends), t0 + stack.opts.timeout)
    if not failed and apps:
        # The app needs the database and the collector; the simulator needs the app.
        app = [s for s in apps if s.name == "app"]
        failed = wait_healthy(stack, start_services(stack, app), time.monotonic() + stack.opts.timeout)
        if not failed:
            sim = [s for s in apps if s.name == "simulator"]
            start_services(stack, sim)
            time.sleep(1.0)
            failed = wait_healthy(stack, sim, time.monotonic() + 5)
    if failed:
        say(f"FAILED: {', '.join(failed)}. Other services are left running: python3 -m stack down")
        return 1
    say(f"all healthy in {time.monotonic() - t0:.1f}s; run dir {stack.run}")
    for svc in services:
        for label, url in svc.urls.items():
            print(f"  {label:42} {url}")
    return 0


def stop_services(stack, names, *, timeout: float, verbose: bool = True) -> None:
    for name in names:
        result = process.stop(stack.pid_file(name), sig=STOP_SIGNALS.get(name, signal.SIGTERM), timeout=timeout)
        if result != "not running" or verbose:
            say(f"{name}: {result}")


def cmd_down(args: argparse.Namespace) -> int:
    stack = make_stack()
    stop_services(stack, reversed(SERVICE_ORDER), timeout=args.timeout, verbose=args.verbose)
    if args.purge:
        # PostgreSQL's data may live outside the run dir (as root, see Stack.pg_dir).
        pg = stack.data / "postgres"
        if pg.is_symlink():
            shutil.rmtree(pg.resolve(), ignore_errors=True)
        shutil.rmtree(stack.run, ignore_errors=True)
        say(f"removed {stack.run} (data, logs, generated keys and tokens)")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    """Stop some services only (e.g. PostgreSQL, to see DatabaseDown); `up` starts them again."""
    stop_services(make_stack(), args.services, timeout=args.timeout)
    return 0


def cmd_check_app_port(args: argparse.Namespace) -> int:
    """`bash scripts/run.sh app`: is the address the review service will bind free? Takes the
    options of `python -m app serve`, whose defaults are the app's settings."""
    from app.config import get_settings

    try:
        settings = get_settings()
    except ValueError:
        return 0  # the app itself names the bad setting when it starts
    port = args.port or settings.port
    # Only the pid files are read: no binaries, so no Go needed for the app alone.
    stack = Stack(Options(run_dir=run_dir(), cache_dir=cache_dir()), binaries={})
    problems = port_problems(stack, {port: "app"}, args.host or settings.host)
    for p in problems:
        say(p)
    return 1 if problems else 0


def cmd_k8s_secrets(args: argparse.Namespace) -> int:
    """Print the Secrets of a Kubernetes overlay, from .env and the environment (which wins)."""
    env: dict[str, str] = {}
    if args.env_file and Path(args.env_file).exists():
        for line in Path(args.env_file).read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                key, value = line.split("=", 1)
                env[key.strip()] = value.strip()
    env.update({k: v for k, v in os.environ.items() if k in kubernetes.secret_variables()})
    try:
        sys.stdout.write(kubernetes.secrets_manifest(env, args.overlay))
    except ValueError as exc:
        say(f"k8s-secrets: {exc}")
        return 2
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    stack = make_stack()
    stack.opts.start_app = True
    bad = 0
    for svc in stack.services():
        pid = stack.pid_file(svc.name).running_pid()
        if pid is None:
            state = "stopped"
            if svc.name not in ("app", "simulator"):
                bad += 1
        else:
            reason = svc.health()
            state = f"running (pid {pid}), " + ("healthy" if reason is None else f"UNHEALTHY: {reason}")
            bad += reason is not None
        print(f"{svc.name:13} {state}")
    return 0 if bad == 0 else 3


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python3 -m stack", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="build the pinned binaries (stack/build.sh)")
    b.add_argument("targets", nargs="*", help="default: all")

    u = sub.add_parser("up", help="build if needed, start everything, wait for health")
    u.add_argument("--no-app", action="store_true", help="start the backends only")
    u.add_argument("--topology", choices=TOPOLOGIES, default=os.environ.get("HITL_STACK_TOPOLOGY"),
                   help="single (default): one collector, Prometheus, Alertmanager; ha: an agent, "
                        "gateways, two Prometheus and three clustered Alertmanagers (docs/reliability.md)")
    u.add_argument("--gateways", type=int, choices=range(1, ha.MAX_GATEWAYS + 1), metavar="N",
                   help=f"gateway collectors of the ha topology (default {ha.DEFAULT_GATEWAYS})")
    u.add_argument("--skip-build", action="store_true", help="do not run stack/build.sh first")
    u.add_argument("--scrape-interval", default=os.environ.get("HITL_STACK_SCRAPE_INTERVAL", "5s"),
                   help="Prometheus global scrape interval (default 5s)")
    u.add_argument("--flush-interval", default=os.environ.get("HITL_STACK_FLUSH_INTERVAL", "5s"),
                   help="span_metrics metrics_flush_interval (default 5s); the collector's "
                        "exporter is scraped at most every half of it")
    u.add_argument("--rule-eval-interval", default=os.environ.get("HITL_STACK_RULE_EVAL_INTERVAL"),
                   help="Prometheus evaluation_interval (default: prometheus.yml's)")
    u.add_argument("--fast-alerts", action="store_true",
                   default=os.environ.get("HITL_STACK_FAST_ALERTS", "") not in ("", "0", "false"),
                   help="tests only: cap every alert's `for` at 5s and Alertmanager's group_wait/"
                        "group_interval at 1s/5s")
    u.add_argument("--alert-sink", default=os.environ.get("HITL_STACK_ALERT_SINK"),
                   help="base URL that receives Alertmanager's PagerDuty (/pagerduty), Slack (/slack) "
                        "and heartbeat (/heartbeat) notifications; default: nowhere")
    u.add_argument("--alert-smtp", default=os.environ.get("HITL_STACK_ALERT_SMTP"), metavar="HOST:PORT",
                   help="SMTP server for Alertmanager's e-mail notifications, without TLS (a local "
                        "stand-in); default: the one in alertmanager.yml")
    for name, default in (("pg", PG_PORT), ("redis", REDIS_PORT), ("app", APP_PORT)):
        env = os.environ.get(f"HITL_STACK_{name.upper()}_PORT")
        u.add_argument(f"--{name}-port", type=int, default=int(env) if env else None,
                       help=f"default {default} + HITL_STACK_PORT_OFFSET")
    u.add_argument("--python", default=sys.executable,
                   help="interpreter for the app and the simulator (default: this one)")
    u.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for health")

    d = sub.add_parser("down", help="stop everything that `up` started")
    d.add_argument("--timeout", type=float, default=15.0, help="seconds before SIGKILL")
    d.add_argument("-v", "--verbose", action="store_true")
    d.add_argument("--purge", action="store_true",
                   help="also delete the run dir: every database, log, key and token of this stack")

    s = sub.add_parser("stop", help="stop the named services only (`up` starts them again)")
    s.add_argument("services", nargs="+", choices=SERVICE_ORDER, metavar="SERVICE",
                   help=", ".join(SERVICE_ORDER))
    s.add_argument("--timeout", type=float, default=15.0, help="seconds before SIGKILL")
    sub.add_parser("status", help="show which services run and whether they are healthy")
    c = sub.add_parser("check-app-port", help="is the review service's port free (bash scripts/run.sh app)")
    c.add_argument("--host")
    c.add_argument("--port", type=int)
    k = sub.add_parser("k8s-secrets", help="print the Secrets of a Kubernetes overlay from .env (docs/kubernetes.md)")
    k.add_argument("--overlay", choices=sorted(kubernetes.NAMESPACES), default="prod")
    k.add_argument("--env-file", default=".env", help="compose's .env (default: ./.env); the environment wins")
    return p


def main(argv: list[str] | None = None) -> int:
    args, unknown = parser().parse_known_args(argv)
    if unknown and args.command != "check-app-port":
        parser().error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command == "build":
        return build(args.targets)
    if args.command == "up":
        return cmd_up(args)
    if args.command == "down":
        return cmd_down(args)
    if args.command == "stop":
        return cmd_stop(args)
    if args.command == "check-app-port":
        return cmd_check_app_port(args)
    if args.command == "k8s-secrets":
        return cmd_k8s_secrets(args)
    return cmd_status(args)
