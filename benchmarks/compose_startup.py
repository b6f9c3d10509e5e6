"""How long the compose stack takes to come up, cold and warm, on the project's Docker engine.

    python -m benchmarks.compose_startup [--cold] [--warm-rounds 3]

--cold: a new engine data root and twin cache in a temporary folder (nothing built, no BuildKit
cache, no Go module cache inside the builds): measures the image twins (debootstrap included),
`docker compose build` of the app and collector images from nothing, and the first
`docker compose up --wait`. Then, and without --cold on the usual engine: `warm-rounds` times
`down` + `up --wait` with everything built. The stack is the tests' (harness/compose_stack.py:
compose.yaml + the test overlay, every service but Grafana and the simulator). Prints one line
per step; results go to docs/benchmarks.md by hand, with the machine.

Needs root and nothing running on the engine's ports; a cold run takes about 10-20 minutes and
stops its temporary engine at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from harness.compose_stack import REPO, bring_up, engine_env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", action="store_true", help="new engine data root and caches")
    parser.add_argument("--warm-rounds", type=int, default=3)
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="hitl-compose-bench-"))
    if args.cold:
        # The engine running now (if any) must go: two engines would share docker0.
        subprocess.run(["bash", "scripts/docker-engine.sh", "stop"], cwd=REPO, check=False)
        os.environ["HITL_DOCKER_HOME"] = str(scratch / "docker")
        os.environ["HITL_TWINS_CACHE"] = str(scratch / "twins")
    env = engine_env()
    results: dict[str, object] = {"cold": args.cold}
    try:
        t = time.monotonic()
        stack = bring_up(env, scratch, alert_sink="http://127.0.0.1:9", smtp="127.0.0.1:25",
                         code_host="", flush_interval="2s", rule_eval_interval="2s")
        results["first up (total s)"] = round(time.monotonic() - t, 1)
        results.update({f"{k} (s)": round(v, 1) for k, v in json.loads((scratch / "timings.json").read_text()).items()})
        print(json.dumps(results), flush=True)
        warm = []
        for _ in range(args.warm_rounds):
            stack.down(volumes=False)
            t = time.monotonic()
            stack.up(timeout=300)
            warm.append(time.monotonic() - t)
        if warm:
            results["warm up --wait (s)"] = {"min": round(min(warm), 1), "median": round(statistics.median(warm), 1),
                                             "max": round(max(warm), 1), "rounds": len(warm)}
        stack.down(volumes=True)
    finally:
        if args.cold:
            subprocess.run(["bash", "scripts/docker-engine.sh", "stop"], cwd=REPO, env=os.environ, check=False)
            shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
