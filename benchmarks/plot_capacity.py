"""The plots of docs/capacity.md, drawn from the recorded results (never from fresh runs).

    pip install '.[bench]'       # matplotlib, pinned in pyproject.toml
    python -m benchmarks.plot_capacity [--results docs/capacity] [--out docs/capacity]

Reads gateway.jsonl (benchmarks.gateway_capacity --out) and writes gateway-cpu.png and
gateway-rss.png: collector CPU and RSS against the span rate the collector accepted, the full
gateway pipeline beside the pass-through baseline, with the point where Jaeger stops keeping up
marked on each curve. Medians of repeated runs at the same rate, with their spread.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LABELS = {"full": "full gateway pipeline (redaction, span metrics + exemplars, disk queue)",
          "passthrough": "pass-through baseline (batch, OTLP/HTTP)"}


def load_steps(path: Path) -> dict[str, dict[float, list[dict]]]:
    """variant -> offered rate -> the rows measured at it."""
    out: dict[str, dict[float, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if row.get("kind") == "step":
            out[row["variant"]][row["offered_spans_per_s"]].append(row)
    return out


def plot_gateway(results: Path, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = load_steps(results / "gateway.jsonl")
    written = []
    for metric, ylabel, name in (("cpu_cores", "collector CPU (cores)", "gateway-cpu.png"),
                                 ("rss_peak_mib", "collector RSS, peak (MiB)", "gateway-rss.png")):
        fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
        for variant, by_rate in sorted(steps.items()):
            rates = sorted(by_rate)
            # Against what the collector accepted: on 2 shared cores the generator, the collector
            # and Jaeger compete, and the offered rate was not always reached.
            xs = [statistics.median(r["accepted_spans_per_s"] for r in by_rate[x]) for x in rates]
            med = [statistics.median(r[metric] for r in by_rate[x]) for x in rates]
            low = [min(r[metric] for r in by_rate[x]) for x in rates]
            high = [max(r[metric] for r in by_rate[x]) for x in rates]
            line, = ax.plot(xs, med, marker="o", label=LABELS.get(variant, variant))
            ax.fill_between(xs, low, high, alpha=0.2, color=line.get_color())
            # Where Jaeger stops keeping up (exported < 95% of accepted): the queue grows.
            behind = [x for x, rate in zip(xs, rates)
                      if any(r["exported_spans_per_s"] < 0.95 * r["accepted_spans_per_s"] for r in by_rate[rate])]
            if behind:
                first = min(behind)
                ax.annotate("Jaeger falls behind", (first, med[xs.index(first)]), textcoords="offset points",
                            xytext=(-40, 12), color=line.get_color(), fontsize=8,
                            arrowprops={"arrowstyle": "->", "color": line.get_color()})
        ax.set_xlabel("spans per second accepted by the collector")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
        fig.tight_layout()
        path = out / name
        fig.savefig(path, metadata={"Software": None})
        plt.close(fig)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> list[Path]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", type=Path, default=REPO / "docs" / "capacity")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "capacity")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    written = plot_gateway(args.results, args.out)
    for path in written:
        print(path)
    return written


if __name__ == "__main__":
    main()
