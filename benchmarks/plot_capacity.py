"""The plots of docs/capacity.md, drawn from the recorded results (never from fresh runs).

    pip install '.[bench]'       # matplotlib, pinned in pyproject.toml
    python -m benchmarks.plot_capacity [--results docs/capacity] [--out docs/capacity]

Reads gateway.jsonl (benchmarks.gateway_capacity --out) and writes gateway-cpu.png and
gateway-rss.png: collector CPU and RSS against the span rate the collector accepted, the full
gateway pipeline beside the pass-through baseline, with the point where Jaeger stops keeping up
marked on each curve. Medians of repeated runs at the same rate, with their spread.
Reads app.jsonl (benchmarks.app_capacity --out) and writes app-latency.png: p95 latency against
the offered request rate for each variant (telemetry on/off, 1 and 2 processes), the 500 ms SLO
drawn across, the knee of each curve marked; app-cpu.png: the app's CPU per request.
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
        written.append(finish(plt, fig, ax, "spans per second accepted by the collector", ylabel, "lower right",
                              out / name))
    return written


def finish(plt, fig, ax, xlabel: str, ylabel: str, legend: str, path: Path) -> Path:
    """Labels, grid and legend, then the PNG (without the matplotlib version, so a re-plot of the
    same results gives the same file)."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc=legend)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
    return path


APP_LABELS = {"on-1": "1 process, telemetry on", "off-1": "1 process, OTEL_SDK_DISABLED",
              "on-2": "2 processes, telemetry on", "off-2": "2 processes, OTEL_SDK_DISABLED"}
APP_STYLE = {"on-1": ("tab:blue", "-"), "off-1": ("tab:blue", "--"), "on-2": ("tab:orange", "-"),
             "off-2": ("tab:orange", "--")}


def plot_app(results: Path, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by: dict[str, dict[float, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for line in (results / "app.jsonl").read_text().splitlines():
        row = json.loads(line)
        by[row["variant"]][row["offered_rps"]].append(row)
    written = []
    for metric, ylabel, name, log in (("p95_ms", "p95 latency (ms, log scale)", "app-latency.png", True),
                                      ("app_cpu_ms_per_request", "app CPU per request (ms)", "app-cpu.png", False)):
        fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
        for variant in sorted(by, key=lambda v: list(APP_STYLE).index(v) if v in APP_STYLE else 9):
            rates = sorted(by[variant])
            med = [statistics.median(r[metric] for r in by[variant][x]) for x in rates]
            low = [min(r[metric] for r in by[variant][x]) for x in rates]
            high = [max(r[metric] for r in by[variant][x]) for x in rates]
            color, style = APP_STYLE.get(variant, (None, "-"))
            line, = ax.plot(rates, med, marker="o", linestyle=style, color=color, label=APP_LABELS.get(variant, variant))
            ax.fill_between(rates, low, high, alpha=0.15, color=line.get_color())
            if metric == "p95_ms":
                # The knee: the last rate of the median curve within the SLO with no error at all.
                ok = [x for x in rates if statistics.median(r["p95_ms"] for r in by[variant][x]) < 500
                      and all(r["errors"] == 0 for r in by[variant][x])]
                knee = None
                for x in rates:
                    if x not in ok:
                        break
                    knee = x
                if knee:
                    ax.plot([knee], [med[rates.index(knee)]], marker="*", markersize=14, color=line.get_color())
        if metric == "p95_ms":
            ax.axhline(500, color="red", linewidth=1, alpha=0.6)
            ax.text(ax.get_xlim()[0], 520, " latency SLO: p95 < 500 ms", color="red", fontsize=8, va="bottom")
            ax.set_yscale("log")
        written.append(finish(plt, fig, ax, "offered requests per second (open loop, the mix of docs/capacity.md)",
                              ylabel, "upper left", out / name))
    return written


def main(argv: list[str] | None = None) -> list[Path]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", type=Path, default=REPO / "docs" / "capacity")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "capacity")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    written = plot_gateway(args.results, args.out)
    if (args.results / "app.jsonl").exists():
        written += plot_app(args.results, args.out)
    for path in written:
        print(path)
    return written


if __name__ == "__main__":
    main()
