"""The plots of docs/capacity.md, drawn from the recorded results (never from fresh runs).

    pip install '.[bench]'       # matplotlib, pinned in pyproject.toml
    python -m benchmarks.plot_capacity [--results docs/capacity] [--out docs/capacity]

Reads gateway.jsonl (benchmarks.gateway_capacity --out) and writes gateway-cpu.png and
gateway-rss.png: collector CPU and RSS against the offered span rate, the full gateway pipeline
beside the pass-through baseline, with the knee (the highest rate with nothing refused or
dropped) marked on each curve. Medians of repeated runs at the same rate, with their spread.
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


def clean(row: dict) -> bool:
    return (row["refused_spans"] == 0 and row["dropped_spans"] == 0
            and row["accepted_spans_per_s"] >= 0.95 * row["offered_spans_per_s"])


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
            med = [statistics.median(r[metric] for r in by_rate[x]) for x in rates]
            low = [min(r[metric] for r in by_rate[x]) for x in rates]
            high = [max(r[metric] for r in by_rate[x]) for x in rates]
            line, = ax.plot(rates, med, marker="o", label=LABELS.get(variant, variant))
            ax.fill_between(rates, low, high, alpha=0.2, color=line.get_color())
            ok = [x for x in rates if all(clean(r) for r in by_rate[x])]
            if ok:
                knee = max(ok)
                ax.axvline(knee, color=line.get_color(), linestyle=":", linewidth=1)
                ax.annotate(f"knee {knee:,.0f}/s", (knee, med[rates.index(knee)]), textcoords="offset points",
                            xytext=(5, 8), color=line.get_color(), fontsize=8)
        ax.set_xlabel("offered spans per second")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
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
