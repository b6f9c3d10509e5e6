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
From gateway.jsonl's `--alone` rows, gateway-alone.png: the span rate one collector on one core
accepted against the rate offered, and its CPU, with the knee marked; from its soak row,
gateway-soak.png: RSS and CPU over the 10 minutes.
Reads app-admission.jsonl (benchmarks.app_capacity with `-unbounded` variants) and writes
app-admission.png: the requests per second answered within 10 s and without error (goodput), and
the p95 latency, against the offered rate, with and without admission control.
Reads cardinality.jsonl (benchmarks.cardinality --out) and writes cardinality.png: span-metric
series in the collector and head series in Prometheus against the dimension combinations sent,
and Prometheus' and the collector's memory, the step past the cardinality limit marked.
Reads app-memory.jsonl (benchmarks.app_memory --out) and writes app-memory.png: the service's RSS
against the requests served, with its collector gone and with a receiver listening (each run).
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


def load_steps(path: Path, kind: str = "step") -> dict[str, dict[float, list[dict]]]:
    """variant -> offered rate -> the rows of this kind measured at it."""
    out: dict[str, dict[float, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if row.get("kind") == kind:
            out[row["variant"]][row["offered_spans_per_s"]].append(row)
    return out


def knee(points) -> float | None:
    """The knee of a curve: the highest x that passes with every lower x passing too, from
    (x, passes) pairs in any order (a later pass after a failure does not count: overload)."""
    best = None
    for x, passes in sorted(points):
        if not passes:
            break
        best = x
    return best


def app_ok(r: dict) -> bool:
    return r["errors"] == 0 and r["p95_ms"] < 500


def gateway_ok(r: dict) -> bool:
    return (r["refused_spans"] == r["dropped_spans"] == 0
            and r["accepted_spans_per_s"] >= 0.95 * r["offered_spans_per_s"])


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def spread(rows_at: dict[float, list[dict]], xs: list[float], metric: str) -> tuple[list, list, list]:
    """Median, min and max of `metric` over the runs at each x."""
    values = [[r[metric] for r in rows_at[x]] for x in xs]
    return [statistics.median(v) for v in values], [min(v) for v in values], [max(v) for v in values]


def plot_gateway(results: Path, out: Path) -> list[Path]:
    plt = pyplot()
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
            med, low, high = spread(by_rate, rates, metric)
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
    plt = pyplot()
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
            med, low, high = spread(by[variant], rates, metric)
            color, style = APP_STYLE.get(variant, (None, "-"))
            line, = ax.plot(rates, med, marker="o", linestyle=style, color=color, label=APP_LABELS.get(variant, variant))
            ax.fill_between(rates, low, high, alpha=0.15, color=line.get_color())
            if metric == "p95_ms":
                # The knee of the median curve, with no error in any run.
                k = knee((x, statistics.median(r["p95_ms"] for r in by[variant][x]) < 500
                          and all(r["errors"] == 0 for r in by[variant][x])) for x in rates)
                if k:
                    ax.plot([k], [med[rates.index(k)]], marker="*", markersize=14, color=line.get_color())
        if metric == "p95_ms":
            ax.axhline(500, color="red", linewidth=1, alpha=0.6)
            ax.text(ax.get_xlim()[0], 520, " latency SLO: p95 < 500 ms", color="red", fontsize=8, va="bottom")
            ax.set_yscale("log")
        written.append(finish(plt, fig, ax, "offered requests per second (open loop, the mix of docs/capacity.md)",
                              ylabel, "upper left", out / name))
    return written


def plot_admission(results: Path, out: Path) -> list[Path]:
    plt = pyplot()
    by: dict[str, dict[float, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for line in (results / "app-admission.jsonl").read_text().splitlines():
        row = json.loads(line)
        by[row["variant"]][row["offered_rps"]].append(row)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 7), dpi=100, sharex=True)
    top_rate = max(rate for rates in by.values() for rate in rates)
    top.plot([0, top_rate], [0, top_rate], color="grey", linewidth=1, linestyle=":", label="offered")
    for variant in sorted(by):
        rates = sorted(by[variant])
        label = ("no admission control (APP_MAX_IN_FLIGHT=0)" if variant.endswith("-unbounded")
                 else "admission control (APP_MAX_IN_FLIGHT=32, the default)")
        label = f"{APP_LABELS.get(variant.removesuffix('-unbounded'), variant)}, {label}"
        style = "--" if variant.endswith("-unbounded") else "-"
        for ax, metric in ((top, "achieved_rps"), (bottom, "p95_ms")):
            med, low, high = spread(by[variant], rates, metric)
            line, = ax.plot(rates, med, marker="o", linestyle=style, label=label)
            ax.fill_between(rates, low, high, alpha=0.15, color=line.get_color())
    top.set_ylabel("answered without error (req/s)")
    top.grid(True, alpha=0.3)
    top.legend(fontsize=8, loc="upper left")
    bottom.axhline(500, color="red", linewidth=1, alpha=0.6)
    bottom.set_yscale("log")
    return [finish(plt, fig, bottom, "offered requests per second (open loop)", "p95 latency (ms, log scale)",
                   "upper left", out / "app-admission.png")]


def plot_gateway_alone(results: Path, out: Path) -> list[Path]:
    """The collector on one core, a sink behind it: accepted against offered, and its CPU."""
    plt = pyplot()
    # The curves of the two pipelines (the stage variants measured alone are in a table).
    steps = {v: by_rate for v, by_rate in load_steps(results / "gateway.jsonl", kind="alone").items() if v in LABELS}
    if not steps:
        return []
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 7), dpi=100, sharex=True)
    top_rate = max(rate for by_rate in steps.values() for rate in by_rate)
    top.plot([0, top_rate], [0, top_rate], color="grey", linewidth=1, linestyle=":", label="offered = accepted")
    for variant, by_rate in sorted(steps.items()):
        rates = sorted(by_rate)
        med, low, high = spread(by_rate, rates, "accepted_spans_per_s")
        line, = top.plot(rates, med, marker="o", label=LABELS.get(variant, variant))
        top.fill_between(rates, low, high, alpha=0.2, color=line.get_color())
        cpu, cpu_low, cpu_high = spread(by_rate, rates, "cpu_cores")
        bottom.plot(rates, cpu, marker="o", color=line.get_color(), label=LABELS.get(variant, variant))
        bottom.fill_between(rates, cpu_low, cpu_high, alpha=0.2, color=line.get_color())
        # The knee: the last rate at which every run kept up with nothing refused or dropped.
        k = knee((x, all(gateway_ok(r) for r in by_rate[x])) for x in rates)
        if k:
            top.plot([k], [med[rates.index(k)]], marker="*", markersize=14, color=line.get_color())
    bottom.axhline(1.0, color="red", linewidth=1, alpha=0.6)
    bottom.set_ylim(0, 1.15)
    bottom.text(0, 1.02, " the one core it has", color="red", fontsize=8, va="bottom")
    top.set_ylabel("spans per second accepted")
    top.grid(True, alpha=0.3)
    top.legend(fontsize=8, loc="upper left")
    return [finish(plt, fig, bottom, "spans per second offered (collector pinned to one core)",
                   "collector CPU (cores)", "lower right", out / "gateway-alone.png")]


def plot_gateway_soak(results: Path, out: Path) -> list[Path]:
    plt = pyplot()
    soaks = [json.loads(line) for line in (results / "gateway.jsonl").read_text().splitlines()
             if json.loads(line).get("kind") == "soak"]
    if not soaks:
        return []
    soak = soaks[-1]
    t = [s[0] for s in soak["samples"]]
    rss = [s[2] for s in soak["samples"]]
    # Cores over each sampling interval, from the cumulative CPU seconds.
    cores = [(b[1] - a[1]) / (b[0] - a[0]) if b[0] > a[0] else 0.0
             for a, b in zip(soak["samples"], soak["samples"][1:])]
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    ax.plot(t, rss, marker=".", color="tab:purple", label="RSS (MiB)")
    ax.axhline(300, color="red", linewidth=1, alpha=0.6)
    ax.text(0, 305, " goal: RSS < 300 MiB", color="red", fontsize=8, va="bottom")
    ax.set_ylim(0, max(320, max(rss) * 1.1))
    twin = ax.twinx()
    twin.plot(t[1:], cores, color="tab:green", alpha=0.7, label="CPU (cores)")
    twin.set_ylabel("collector CPU (cores)")
    twin.set_ylim(0, 1.2)
    twin.legend(fontsize=8, loc="lower right")
    return [finish(plt, fig, ax, f"seconds at {soak['offered_spans_per_s']:g} spans/s offered "
                   f"(full pipeline, one core)", "collector RSS (MiB)", "lower left", out / "gateway-soak.png")]


def plot_cardinality(results: Path, out: Path) -> list[Path]:
    plt = pyplot()
    rows = [json.loads(line) for line in (results / "cardinality.jsonl").read_text().splitlines()]
    by: dict[int, list[dict]] = defaultdict(list)
    for r in rows:
        by[(r["routes"], r["statuses"], r["instances"])].append(r)
    steps = sorted(by, key=lambda k: (k[0] * k[1] * k[2], k))
    xs = [k[0] * k[1] * k[2] for k in steps]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 7), dpi=100, sharex=True)
    for metric, label in (("collector_series", "span-metric series the collector exposes"),
                          ("prometheus_head_series", "Prometheus head series (with the rules' results)")):
        med = [statistics.median(r[metric] for r in by[k]) for k in steps]
        top.plot(xs, med, marker="o", label=label)
    top.plot(xs, [16 * x for x in xs], color="grey", linestyle=":", linewidth=1, label="16 series per combination")
    for k, x in zip(steps, xs):
        if any(r["overflow_series"] for r in by[k]):
            y = statistics.median(r["collector_series"] for r in by[k])
            top.annotate(f"{k[0]}x{k[1]} per instance > limit {by[k][0]['limit']}:\nthe rest in the overflow series",
                         (x, y), textcoords="offset points", xytext=(-170, 10), fontsize=8,
                         arrowprops={"arrowstyle": "->"})
    top.set_xscale("log")
    top.set_yscale("log")
    top.set_ylabel("series")
    top.grid(True, alpha=0.3)
    top.legend(fontsize=8, loc="upper left")
    for metric, label in (("prometheus_rss_mib", "Prometheus RSS"), ("prometheus_heap_mib", "Prometheus Go heap in use"),
                          ("collector_rss_mib", "collector RSS")):
        bottom.plot(xs, [statistics.median(r[metric] for r in by[k]) for k in steps], marker="o", label=label)
    return [finish(plt, fig, bottom, "dimension combinations sent (routes x status codes x instances)",
                   "memory (MiB)", "upper left", out / "cardinality.png")]


def plot_app_memory(results: Path, out: Path) -> list[Path]:
    plt = pyplot()
    rows = [json.loads(line) for line in (results / "app-memory.jsonl").read_text().splitlines()]
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    colors = {"collector-down": "tab:red", "collector-up": "tab:blue"}
    labels = {"collector-down": "nothing listening on the OTLP endpoint", "collector-up": "a receiver listening"}
    labelled = set()
    for run, variant in sorted({(r["run"], r["variant"]) for r in rows}):
        points = sorted((r["requests"], r["rss_mib"]) for r in rows if (r["run"], r["variant"]) == (run, variant))
        label = None if variant in labelled else labels[variant]  # one legend entry per variant
        labelled.add(variant)
        ax.plot(*zip(*points), marker="o", markersize=3, color=colors[variant], label=label)
    ax.set_ylim(bottom=0)
    return [finish(plt, fig, ax, "requests served (9 lists to 1 submit)", "service RSS (MiB)", "lower right",
                   out / "app-memory.png")]


def fmt(values: list[float], digits: int = 0) -> str:
    """median [min-max] over the runs ("x" alone when they agree or there is one)."""
    med, low, high = statistics.median(values), min(values), max(values)
    f = (lambda v: f"{v:,.{digits}f}")
    return f(med) if low == high else f"{f(med)} [{f(low)}-{f(high)}]"


def app_knees(rows: list[dict]) -> dict[str, list[float]]:
    """variant -> the knee of each run: the last rate within the SLO (p95 < 500 ms, no error)
    before the first outside it."""
    by_run: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        by_run[(r["variant"], r["run"])].append(r)
    out: dict[str, list[float]] = defaultdict(list)
    for (variant, _), steps in sorted(by_run.items()):
        out[variant].append(knee((r["offered_rps"], app_ok(r)) for r in steps) or 0.0)
    return out


def tables(results: Path) -> str:
    """The tables of docs/capacity.md, from the recorded results: medians [min-max] over runs."""
    out = []
    for name in ("app.jsonl", "app-admission.jsonl"):
        if not (results / name).exists():
            continue
        rows = [json.loads(line) for line in (results / name).read_text().splitlines()]
        runs = sorted({r["run"] for r in rows})
        out.append(f"### {name}: {len(runs)} runs ({', '.join(runs)})\n")
        out.append("| variant | offered req/s | answered ok req/s | p50 ms | p95 ms | p99 ms | errors | app CPU ms/request |")
        out.append("| --- | --- | --- | --- | --- | --- | --- | --- |")
        by: dict[tuple, list[dict]] = defaultdict(list)
        for r in rows:
            by[(r["variant"], r["offered_rps"])].append(r)
        for (variant, rate), rs in sorted(by.items()):
            out.append(f"| {variant} | {rate:g} | {fmt([r['achieved_rps'] for r in rs])} | "
                       f"{fmt([r['p50_ms'] for r in rs])} | {fmt([r['p95_ms'] for r in rs])} | "
                       f"{fmt([r['p99_ms'] for r in rs])} | {fmt([r['errors'] for r in rs])} | "
                       f"{fmt([r['app_cpu_ms_per_request'] for r in rs], 1)} |")
        out.append("")
        for variant, knees in sorted(app_knees(rows).items()):
            out.append(f"- knee of {variant}: {fmt(knees)} req/s (runs: {', '.join(f'{k:g}' for k in knees)})")
        out.append("")
    gateway = results / "gateway.jsonl"
    if gateway.exists():
        rows = [json.loads(line) for line in gateway.read_text().splitlines()]
        for kind in ("step", "alone"):
            steps = [r for r in rows if r.get("kind") == kind]
            if not steps:
                continue
            out.append(f"### gateway.jsonl, {kind}: {len({r.get('run') for r in steps})} runs\n")
            out.append("| variant | offered spans/s | accepted spans/s | collector CPU (cores) | spans per CPU-second "
                       "| RSS peak MiB | refused | dropped | next hop CPU (cores) |")
            out.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
            by = defaultdict(list)
            for r in steps:
                by[(r["variant"], r["offered_spans_per_s"])].append(r)
            for (variant, rate), rs in sorted(by.items()):
                out.append(f"| {variant} | {rate:g} | {fmt([r['accepted_spans_per_s'] for r in rs])} | "
                           f"{fmt([r['cpu_cores'] for r in rs], 2)} | {fmt([r['spans_per_cpu_second'] for r in rs])} | "
                           f"{fmt([r['rss_peak_mib'] for r in rs])} | {sum(r['refused_spans'] for r in rs)} | "
                           f"{sum(r['dropped_spans'] for r in rs)} | {fmt([r['jaeger_cpu_cores'] for r in rs], 2)} |")
            out.append("")
        for soak in (r for r in rows if r.get("kind") == "soak"):
            rss = [s[2] for s in soak["samples"]]
            half = len(rss) // 2
            out.append(f"- soak {soak['run']}: {soak['offered_spans_per_s']:g} spans/s offered for {soak['seconds']:g} s, "
                       f"accepted {soak['accepted_spans_per_s']:g}/s, CPU {soak['cpu_cores']:.2f} cores "
                       f"({soak['spans_per_cpu_second']:,.0f} spans per CPU-second), RSS first half max "
                       f"{max(rss[:half] or rss):g} MiB, second half max {max(rss[half:]):g} MiB, end "
                       f"{soak['rss_end_mib']:g} MiB, refused {soak['refused_spans']}, dropped {soak['dropped_spans']}")
        out.append("")
    for name, kind in (("gateway-stages.jsonl", None), ("cardinality.jsonl", None), ("logs.jsonl", None)):
        path = results / name
        if not path.exists():
            continue
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        keys = [k for k in rows[0] if k not in ("kind", "run", "samples")]
        group = {"gateway-stages.jsonl": ["variant", "offered_spans_per_s"],
                 "cardinality.jsonl": ["routes", "statuses", "instances"],
                 "logs.jsonl": ["variant", "offered_records_per_s"]}[name]
        out.append(f"### {name}: {len({r.get('run') for r in rows})} runs\n")
        out.append("| " + " | ".join(keys) + " |")
        out.append("| " + " | ".join("---" for _ in keys) + " |")
        by = defaultdict(list)
        for r in rows:
            by[tuple(r[k] for k in group)].append(r)
        for g, rs in by.items():
            cells = [str(rs[0][k]) if k in group or not isinstance(rs[0][k], (int, float))
                     else fmt([r[k] for r in rs], 0 if isinstance(rs[0][k], int) or abs(rs[0][k]) >= 100 else 3)
                     for k in keys]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    memory = results / "app-memory.jsonl"
    if memory.exists():
        rows = [json.loads(line) for line in memory.read_text().splitlines()]
        for run in sorted({r["run"] for r in rows}):
            out += [f"### app-memory.jsonl, run {run}\n", memory_table([r for r in rows if r["run"] == run]), ""]
    return "\n".join(out)


def memory_table(rows: list[dict]) -> str:
    """One run of benchmarks.app_memory: RSS by requests served, both variants side by side."""
    rss = {(r["variant"], r["requests"]): r["rss_mib"] for r in rows}
    lines = ["| requests | RSS, collector down (MiB) | RSS, receiver listening (MiB) | difference |",
             "| --- | --- | --- | --- |"]
    for n in sorted({n for _, n in rss}):
        down, up = rss.get(("collector-down", n)), rss.get(("collector-up", n))
        diff = f"{down - up:+.1f}" if down is not None and up is not None else "-"
        lines.append(f"| {n:,} | {down if down is not None else '-'} | {up if up is not None else '-'} | {diff} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[Path]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", type=Path, default=REPO / "docs" / "capacity")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "capacity")
    p.add_argument("--tables", action="store_true", help="print the tables of docs/capacity.md instead of plotting")
    args = p.parse_args(argv)
    if args.tables:
        print(tables(args.results))
        return []
    args.out.mkdir(parents=True, exist_ok=True)
    written = plot_gateway(args.results, args.out)
    written += plot_gateway_alone(args.results, args.out) + plot_gateway_soak(args.results, args.out)
    if (args.results / "app.jsonl").exists():
        written += plot_app(args.results, args.out)
    if (args.results / "app-admission.jsonl").exists():
        written += plot_admission(args.results, args.out)
    if (args.results / "cardinality.jsonl").exists():
        written += plot_cardinality(args.results, args.out)
    if (args.results / "app-memory.jsonl").exists():
        written += plot_app_memory(args.results, args.out)
    for path in written:
        print(path)
    return written


if __name__ == "__main__":
    main()
